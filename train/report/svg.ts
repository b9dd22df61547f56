// Inline SVG charts for the HTML report, as strings: a line chart (axes with ticks and labels,
// several series, a legend, gaps at non-finite values) and an overlaid histogram. No external
// resources and no `xmlns` URL: inline <svg> in HTML5 needs none, and the page stays offline.

/** Escapes text for HTML/SVG element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Colour-blind-friendly palette (Okabe–Ito), cycled by series index. */
const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'];
export function seriesColor(i: number): string {
  return PALETTE[i % PALETTE.length]!;
}

/** The 1-2-5 × 10^k step that splits [lo, hi] into about `target` intervals (nearest on a log scale). */
function tickStep(lo: number, hi: number, target: number): number {
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const err = raw / mag; // thresholds at the geometric means √2, √10, √50 of neighbouring steps
  return mag * (err >= Math.sqrt(50) ? 10 : err >= Math.sqrt(10) ? 5 : err >= Math.sqrt(2) ? 2 : 1);
}

/** About `target` round tick values (1, 2 or 5 × 10^k apart) inside [lo, hi]. */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!(Number.isFinite(lo) && Number.isFinite(hi)) || hi < lo) throw new Error(`niceTicks: bad range [${lo}, ${hi}]`);
  if (hi === lo) return [lo];
  const step = tickStep(lo, hi, target);
  // Rounded to the step's precision so that 0.1 + 0.2 prints as 0.3.
  const digits = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  const ticks: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++)
    ticks.push(Number((k * step).toFixed(digits)));
  return ticks;
}

/** [lo, hi] widened outward to the nearest ticks, so that a data-driven axis starts and ends on a label. */
export function niceDomain(lo: number, hi: number, target = 5): [number, number] {
  if (!(hi > lo)) return [lo, hi];
  const step = tickStep(lo, hi, target);
  const round = (v: number) => Number(v.toFixed(Math.max(0, -Math.floor(Math.log10(step)) + 1)));
  return [round(Math.floor(lo / step + 1e-9) * step), round(Math.ceil(hi / step - 1e-9) * step)];
}

/** Short tick label: 0.25, 1.5k, 3e-5. */
export function formatTick(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1).replace('e+', 'e');
  if (a >= 1000) return `${Number((v / 1000).toFixed(2))}k`;
  return String(Number(v.toPrecision(3)));
}

export interface LineSeries {
  name: string;
  /** (x, y) points in x order; a non-finite y breaks the line there. */
  points: ReadonlyArray<readonly [number, number]>;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Fixed y range (e.g. [-1, 1] for a cosine); default: the data's range, widened to ticks. */
  yRange?: readonly [number, number];
  /** Draw a dashed horizontal line at y = 0 (cos β = 0 separates conflict from agreement). */
  zeroLine?: boolean;
  /** Only whole-number x ticks (epochs). */
  integerX?: boolean;
  width?: number;
  height?: number;
}

interface Frame {
  svg: string[];
  x: (v: number) => number;
  y: (v: number) => number;
}

const MARGIN = { left: 62, right: 160, top: 26, bottom: 44 };

/** Finite [min, max] of the values, widened to a non-empty interval; null when none is finite. */
export function finiteRange(values: Iterable<number>): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  if (lo > hi) return null;
  if (lo === hi) return [lo - (Math.abs(lo) * 0.1 || 0.5), hi + (Math.abs(hi) * 0.1 || 0.5)];
  return [lo, hi];
}

/** Axes, grid, ticks, labels and title; returns the frame and the data → pixel maps. */
function frame(
  opts: ChartOptions,
  xData: readonly [number, number],
  yData: readonly [number, number],
  fixed: { x: boolean; y: boolean },
): Frame {
  const W = opts.width ?? 640;
  const H = opts.height ?? 300;
  const pw = W - MARGIN.left - MARGIN.right;
  const ph = H - MARGIN.top - MARGIN.bottom;
  // A data-driven axis ends on ticks; a fixed one (cos ∈ [-1, 1], histogram edges) keeps its bounds.
  const xr = fixed.x ? xData : niceDomain(xData[0], xData[1]);
  const [y0, y1] = fixed.y ? yData : niceDomain(yData[0], yData[1]);
  const xt = opts.integerX ? niceTicks(xr[0], xr[1]).filter(Number.isInteger) : niceTicks(xr[0], xr[1]);
  const yt = niceTicks(y0, y1);
  const x = (v: number) => MARGIN.left + ((v - xr[0]) / (xr[1] - xr[0] || 1)) * pw;
  const y = (v: number) => MARGIN.top + ph - ((v - y0) / (y1 - y0 || 1)) * ph;
  const r = (v: number) => v.toFixed(1);
  const svg = [
    `<svg class="chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" ` +
      `aria-label="${escapeHtml(opts.title)}">`,
  ];
  svg.push(
    `<text x="${W / 2 - MARGIN.right / 2}" y="16" text-anchor="middle" class="title">${escapeHtml(opts.title)}</text>`,
  );
  for (const t of yt.filter((t) => t >= y0 && t <= y1)) {
    svg.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + pw}" y1="${r(y(t))}" y2="${r(y(t))}" class="grid"/>`);
    svg.push(`<text x="${MARGIN.left - 6}" y="${r(y(t) + 4)}" text-anchor="end">${formatTick(t)}</text>`);
  }
  for (const t of xt.filter((t) => t >= xr[0] && t <= xr[1])) {
    svg.push(
      `<line x1="${r(x(t))}" x2="${r(x(t))}" y1="${MARGIN.top + ph}" y2="${MARGIN.top + ph + 5}" class="axis"/>`,
    );
    svg.push(`<text x="${r(x(t))}" y="${MARGIN.top + ph + 18}" text-anchor="middle">${formatTick(t)}</text>`);
  }
  svg.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${pw}" height="${ph}" class="plot"/>`);
  svg.push(
    `<text x="${MARGIN.left + pw / 2}" y="${H - 6}" text-anchor="middle" ` +
      `class="label">${escapeHtml(opts.xLabel)}</text>`,
  );
  svg.push(
    `<text transform="translate(14 ${MARGIN.top + ph / 2}) rotate(-90)" text-anchor="middle" ` +
      `class="label">${escapeHtml(opts.yLabel)}</text>`,
  );
  if (opts.zeroLine && y0 < 0 && y1 > 0)
    svg.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + pw}" y1="${r(y(0))}" y2="${r(y(0))}" class="zero"/>`);
  return { svg, x, y };
}

/** One legend row per name in the right margin; `swatch` draws the key at (x, y). */
function legend(
  svg: string[],
  names: string[],
  width: number,
  swatch: (i: number, x: number, y: number) => string,
): void {
  names.forEach((name, i) => {
    const ly = MARGIN.top + 6 + i * 18;
    const lx = width - MARGIN.right + 12;
    svg.push(`${swatch(i, lx, ly)}<text x="${lx + 22}" y="${ly + 4}">${escapeHtml(name)}</text>`);
  });
}

function noData(opts: ChartOptions): string {
  const W = opts.width ?? 640;
  return (
    `<svg class="chart" width="${W}" height="60" viewBox="0 0 ${W} 60"><text x="10" y="20" ` +
    `class="title">${escapeHtml(opts.title)}</text><text x="10" y="44">no data</text></svg>`
  );
}

/** A line chart of the series on shared axes, one colour per series, legend on the right. */
export function lineChart(series: readonly LineSeries[], opts: ChartOptions): string {
  const xr = finiteRange(series.flatMap((s) => s.points.filter((p) => Number.isFinite(p[1])).map((p) => p[0])));
  const yr = opts.yRange ?? finiteRange(series.flatMap((s) => s.points.map((p) => p[1])));
  if (!xr || !yr) return noData(opts);
  const { svg, x, y } = frame(opts, xr, yr, { x: false, y: opts.yRange !== undefined });
  series.forEach((s, i) => {
    const color = seriesColor(i);
    // Contiguous runs of finite points become one polyline each: a NaN leaves a gap.
    const segments: Array<Array<[number, number]>> = [[]];
    for (const [px, py] of s.points) {
      if (Number.isFinite(px) && Number.isFinite(py)) segments[segments.length - 1]!.push([x(px), y(py)]);
      else if (segments[segments.length - 1]!.length) segments.push([]);
    }
    const finite = segments.reduce((n, seg) => n + seg.length, 0);
    for (const seg of segments) {
      if (seg.length > 1)
        svg.push(
          `<polyline points="${seg.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' ')}" fill="none" ` +
            `stroke="${color}" stroke-width="1.6"/>`,
        );
      // Markers where points are few (per-epoch curves) or isolated between gaps.
      if (seg.length === 1 || finite <= 40)
        for (const [a, b] of seg)
          svg.push(`<circle cx="${a.toFixed(1)}" cy="${b.toFixed(1)}" r="2.6" fill="${color}"/>`);
    }
  });
  legend(
    svg,
    series.map((s) => s.name),
    opts.width ?? 640,
    (i, lx, ly) =>
      `<line x1="${lx}" x2="${lx + 18}" y1="${ly}" y2="${ly}" stroke="${seriesColor(i)}" stroke-width="3"/>`,
  );
  svg.push('</svg>');
  return svg.join('');
}

/**
 * Counts of `values` in `bins` equal-width bins over [lo, hi]: bin i holds lo + i·w ≤ v < lo + (i+1)·w,
 * the last bin also holds hi; values outside the range and non-finite values are not counted.
 */
export function histogram(values: readonly number[], bins: number, range: readonly [number, number]): number[] {
  if (!Number.isInteger(bins) || bins < 1) throw new Error(`histogram: bins must be an integer >= 1, got ${bins}`);
  const [lo, hi] = range;
  if (!(Number.isFinite(lo) && Number.isFinite(hi) && hi > lo))
    throw new Error(`histogram: range must be finite with hi > lo, got [${lo}, ${hi}]`);
  const width = (hi - lo) / bins;
  const counts = new Array<number>(bins).fill(0);
  for (const v of values) if (v >= lo && v <= hi) counts[Math.min(bins - 1, Math.floor((v - lo) / width))]!++;
  return counts;
}

export interface HistogramSeries {
  name: string;
  counts: readonly number[];
}

/**
 * Overlaid translucent histograms on the shared bin edges (bins + 1 of them). Each bar's <title> gives its bin and
 * count.
 */
export function histogramChart(
  edges: readonly number[],
  series: readonly HistogramSeries[],
  opts: ChartOptions,
): string {
  const bins = edges.length - 1;
  if (bins < 1 || series.length === 0) return noData(opts);
  for (const s of series)
    if (s.counts.length !== bins)
      throw new Error(`histogramChart: series '${s.name}' has ${s.counts.length} counts for ${bins} bins`);
  const top = Math.max(1, ...series.flatMap((s) => s.counts));
  const { svg, x, y } = frame(opts, [edges[0]!, edges[bins]!], [0, top], { x: true, y: false });
  series.forEach((s, i) => {
    s.counts.forEach((c, b) => {
      if (c === 0) return;
      const x0 = x(edges[b]!);
      const x1 = x(edges[b + 1]!);
      const tip =
        `${s.name}: [${formatTick(edges[b]!)}, ` + `${formatTick(edges[b + 1]!)}${b === bins - 1 ? ']' : ')'} ${c}`;
      svg.push(
        `<rect x="${x0.toFixed(1)}" y="${y(c).toFixed(1)}" width="${Math.max(0.5, x1 - x0 - 0.5).toFixed(1)}" ` +
          `height="${(y(0) - y(c)).toFixed(1)}" fill="${seriesColor(i)}" fill-opacity="0.45" ` +
          `stroke="${seriesColor(i)}" data-series="${i}" data-bin="${b}" ` +
          `data-count="${c}"><title>${escapeHtml(tip)}</title></rect>`,
      );
    });
  });
  legend(
    svg,
    series.map((s) => s.name),
    opts.width ?? 640,
    (i, lx, ly) =>
      `<rect x="${lx}" y="${ly - 5}" width="18" height="10" fill="${seriesColor(i)}" fill-opacity="0.45" ` +
      `stroke="${seriesColor(i)}"/>`,
  );
  svg.push('</svg>');
  return svg.join('');
}
