// SVG figures of docs/RESULTS.md. Line charts and histograms come from the report's
// train/report/svg.ts; this file adds a bar chart with error bars (mean ± sample std over seeds, with
// each seed's value as a dot) and turns the report's inline <svg> into a standalone .svg file
// (the xmlns the file format needs and the report's chart CSS inlined).
import { escapeHtml, formatTick, niceDomain, niceTicks, seriesColor } from '../train/report/svg.ts';

const CHART_CSS =
  'text{font:11px system-ui,sans-serif;fill:#333}.title{font-size:13px;font-weight:bold}.label{font-size:12px}' +
  '.grid{stroke:#e4e4e4}.axis{stroke:#555}.plot{fill:none;stroke:#555}.zero{stroke:#900;stroke-dasharray:5 4}';

/** An inline chart from train/report/svg.ts (or barChart) as a standalone SVG document. */
export function standaloneSvg(inline: string): string {
  if (!inline.startsWith('<svg')) throw new Error('standaloneSvg: not an <svg> element');
  const background = `$1<style>${CHART_CSS}</style><rect width="100%" height="100%" fill="#fff"/>`;
  const svg = inline.replace('<svg', '<svg xmlns="http://www.w3.org/2000/svg"').replace(/^(<svg[^>]*>)/, background);
  return `<?xml version="1.0" encoding="UTF-8"?>\n${svg}\n`;
}

export interface BarGroup {
  /** Category label under the bars (a method). */
  name: string;
  /** One bar per series (e.g. per head): the seeds' values; an empty list draws no bar. */
  values: readonly (readonly number[])[];
}

export interface BarChartOptions {
  title: string;
  yLabel: string;
  /** Series names (legend), one per entry of BarGroup.values. */
  series: readonly string[];
  /** Reference marks per group and series (e.g. the paper's numbers), drawn as a short black line. */
  reference?: readonly (readonly (number | undefined)[])[];
  width?: number;
  height?: number;
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: readonly number[]) =>
  xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));

/** Grouped bars of the mean with ±1 sample-std whiskers and the individual values as dots. */
export function barChart(groups: readonly BarGroup[], opts: BarChartOptions): string {
  const W = opts.width ?? 720;
  const H = opts.height ?? 320;
  const M = { left: 62, right: 150, top: 26, bottom: 52 };
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const all = groups.flatMap((g) =>
    g.values.flatMap((v) => (v.length ? [mean(v) + sd(v), mean(v) - sd(v), ...v] : [])),
  );
  const refs = (opts.reference ?? []).flat().filter((v): v is number => v !== undefined);
  if (!all.length)
    return (
      `<svg class="chart" width="${W}" height="60" viewBox="0 0 ${W} 60"><text x="10" y="20" ` +
      `class="title">${escapeHtml(opts.title)}</text><text x="10" y="44">no data yet</text></svg>`
    );
  const [y0, y1] = niceDomain(Math.min(0, ...all, ...refs), Math.max(...all, ...refs));
  const y = (v: number) => M.top + ph - ((v - y0) / (y1 - y0 || 1)) * ph;
  const r = (v: number) => v.toFixed(1);
  const svg = [
    `<svg class="chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" ` +
      `aria-label="${escapeHtml(opts.title)}">`,
  ];
  svg.push(
    `<text x="${W / 2 - M.right / 2}" y="16" text-anchor="middle" class="title">${escapeHtml(opts.title)}</text>`,
  );
  for (const t of niceTicks(y0, y1)) {
    svg.push(
      `<line x1="${M.left}" x2="${M.left + pw}" y1="${r(y(t))}" y2="${r(y(t))}" class="grid"/><text ` +
        `x="${M.left - 6}" y="${r(y(t) + 4)}" text-anchor="end">${formatTick(t)}</text>`,
    );
  }
  svg.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" class="plot"/>`);
  svg.push(
    `<text transform="translate(14 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle" ` +
      `class="label">${escapeHtml(opts.yLabel)}</text>`,
  );
  const gw = pw / Math.max(1, groups.length);
  const bw = (gw * 0.8) / Math.max(1, opts.series.length);
  groups.forEach((g, gi) => {
    const gx = M.left + gi * gw + gw * 0.1;
    svg.push(
      `<text x="${r(M.left + (gi + 0.5) * gw)}" y="${M.top + ph + 18}" ` +
        `text-anchor="middle">${escapeHtml(g.name)}</text>`,
    );
    g.values.forEach((v, si) => {
      const x = gx + si * bw;
      const ref = opts.reference?.[gi]?.[si];
      if (ref !== undefined)
        svg.push(
          `<line x1="${r(x)}" x2="${r(x + bw * 0.9)}" y1="${r(y(ref))}" y2="${r(y(ref))}" stroke="#000" ` +
            `stroke-width="2"><title>reference ${formatTick(ref)}</title></line>`,
        );
      if (!v.length) return;
      const m = mean(v);
      const s = sd(v);
      const c = seriesColor(si);
      const title = escapeHtml(`${g.name} ${opts.series[si]}: ${m.toFixed(2)} ± ${s.toFixed(2)} (n = ${v.length})`);
      svg.push(
        `<rect x="${r(x)}" y="${r(y(Math.max(m, y0)))}" width="${r(bw * 0.9)}" ` +
          `height="${r(Math.abs(y(Math.max(m, y0)) - y(Math.max(0, y0))))}" fill="${c}" ` +
          `fill-opacity="0.45" stroke="${c}"><title>${title}</title></rect>`,
      );
      const cx = x + bw * 0.45;
      svg.push(
        `<line x1="${r(cx)}" x2="${r(cx)}" y1="${r(y(m - s))}" y2="${r(y(m + s))}" stroke="#222" ` +
          `stroke-width="1.4"/><line x1="${r(cx - 4)}" x2="${r(cx + 4)}" y1="${r(y(m - s))}" ` +
          `y2="${r(y(m - s))}" stroke="#222"/><line x1="${r(cx - 4)}" x2="${r(cx + 4)}" ` +
          `y1="${r(y(m + s))}" y2="${r(y(m + s))}" stroke="#222"/>`,
      );
      v.forEach((p, k) => {
        svg.push(
          `<circle cx="${r(cx + (k - (v.length - 1) / 2) * 3)}" cy="${r(y(p))}" r="2" fill="#222" fill-opacity="0.7"/>`,
        );
      });
    });
  });
  opts.series.forEach((name, i) => {
    const ly = M.top + 6 + i * 18;
    const lx = W - M.right + 12;
    svg.push(
      `<rect x="${lx}" y="${ly - 5}" width="18" height="10" fill="${seriesColor(i)}" fill-opacity="0.45" ` +
        `stroke="${seriesColor(i)}"/><text x="${lx + 22}" y="${ly + 4}">${escapeHtml(name)}</text>`,
    );
  });
  if (opts.reference) {
    const ly = M.top + 6 + opts.series.length * 18;
    svg.push(
      `<line x1="${W - M.right + 12}" x2="${W - M.right + 30}" y1="${ly}" y2="${ly}" stroke="#000" ` +
        `stroke-width="2"/><text x="${W - M.right + 34}" y="${ly + 4}">paper</text>`,
    );
  }
  svg.push(
    `<text x="${M.left}" y="${H - 8}" class="label">bars: mean; whiskers: ±1 sample std over seeds; dots: seeds</text>`,
  );
  svg.push('</svg>');
  return svg.join('');
}
