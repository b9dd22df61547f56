// `mmpareto report RUN...`: one self-contained HTML page (inline CSS and SVG, no network) that
// compares training runs: a results table, loss and validation-accuracy curves, and the
// integrator telemetry of the paper's Fig. 1 — cos β between the multimodal and unimodal
// gradients over steps (1a), α, and the distributions of |g_m| and |g_u| (1d) — per encoder.
import { dirname, resolve } from 'node:path';
import { ensureDir, writeFileAtomic } from '../io/files.ts';
import type { EvalRecord } from '../run/run-log.ts';
import { loadRun, type RunData } from './run-data.ts';
import { escapeHtml, finiteRange, histogram, histogramChart, lineChart, type LineSeries } from './svg.ts';

/** Bins of the gradient-magnitude histograms. */
export const MAGNITUDE_BINS = 20;

// ---- formatting --------------------------------------------------------------------------

/** Any config value as escaped text; missing as '—'. */
const text = (v: unknown): string => (v === undefined || v === null ? '—' : escapeHtml(String(v)));
/** Accuracies as percentages with two decimals: 0.8125 → "81.25%". */
export const formatAccuracy = (a: number): string => `${(100 * a).toFixed(2)}%`;
/** Macro-F1 with four decimals; steps/s with two. */
export const formatF1 = (f: number): string => f.toFixed(4);
export const formatRate = (r: number): string => r.toFixed(2);

export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '—';
  if (s < 60) return `${s.toFixed(1)} s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h ? `${h} h ${String(m).padStart(2, '0')} min` : `${m} min ${String(sec).padStart(2, '0')} s`;
}

const label = (run: RunData, i: number): string => `#${i + 1} ${String(run.config.method ?? '?')}`;

/** Names in first-seen order over all runs; 'mm' (the multimodal head) first. */
function unionKeys(maps: Array<Record<string, unknown>>): string[] {
  const keys = [...new Set(maps.flatMap((m) => Object.keys(m)))];
  return keys.includes('mm') ? ['mm', ...keys.filter((k) => k !== 'mm')] : keys;
}

/** The main logits name of an evaluation: 'mm' when present, else its first. */
const mainKey = (e: EvalRecord): string | undefined => ('mm' in e.acc ? 'mm' : Object.keys(e.acc)[0]);

// ---- sections ----------------------------------------------------------------------------

function header(runs: RunData[]): string {
  const rows = runs.map((r, i) => {
    const c = r.config;
    const wall = r.final
      ? formatDuration(r.final.wall_s)
      : r.steps.length
        ? `${formatDuration(r.steps[r.steps.length - 1]!.time_s)} so far`
        : '—';
    const status = r.final ? 'complete' : '<span class="incomplete">incomplete</span>';
    const cells = [c.dataset, c.model, c.method, c.seed, c.epochs, c.device, c.version].map(
      (v) => `<td>${text(v)}</td>`,
    );
    const path = `<td class="path">${text(r.dir)}</td>`;
    return `<tr><td>#${i + 1}</td>${path}${cells.join('')}<td>${wall}</td><td>${status}</td></tr>`;
  });
  const names = [
    '#',
    'run directory',
    'dataset',
    'model',
    'method',
    'seed',
    'epochs',
    'device',
    'version',
    'wall time',
    'status',
  ];
  const head = names.map((n) => `<th>${n}</th>`).join('');
  return `<h1>Training report: ${runs.length} run${runs.length === 1 ? '' : 's'}</h1>
<table class="runs"><tr>${head}</tr>
${rows.join('\n')}</table>`;
}

interface Column {
  name: string;
  values: Array<number | undefined>;
  format: (v: number) => string;
  /** Highlight the largest value. */
  best: boolean;
}

function comparisonTable(runs: RunData[]): string {
  // Best by validation: the final record's; for an incomplete run, the best validation evaluation so far.
  const best = runs.map((r) => {
    if (r.final) return { epoch: r.final.best_epoch, val: r.final.best_val };
    const vals = r.evals.filter((e) => e.split === 'val' && mainKey(e) !== undefined);
    const top = vals.reduce<EvalRecord | undefined>(
      (b, e) => (!b || e.acc[mainKey(e)!]! > b.acc[mainKey(b)!]! ? e : b),
      undefined,
    );
    return top ? { epoch: top.epoch, val: top.acc[mainKey(top)!]! } : { epoch: undefined, val: undefined };
  });
  const accKeys = unionKeys(runs.map((r) => r.final?.test.acc ?? {}));
  const cols: Column[] = [
    { name: 'best epoch', values: best.map((b) => b.epoch), format: String, best: false },
    { name: 'val acc', values: best.map((b) => b.val), format: formatAccuracy, best: true },
    ...accKeys.map((k) => ({
      name: `test acc ${k}`,
      values: runs.map((r) => r.final?.test.acc[k]),
      format: formatAccuracy,
      best: true,
    })),
    {
      name: 'test macro-F1',
      values: runs.map((r) => (r.final ? r.final.test.macro_f1[mainKey(r.final.test) ?? ''] : undefined)),
      format: formatF1,
      best: true,
    },
    { name: 'steps/s', values: runs.map((r) => r.final?.steps_per_s), format: formatRate, best: true },
  ];
  const head = `<tr><th>run</th><th>status</th>${cols.map((c) => `<th>${escapeHtml(c.name)}</th>`).join('')}</tr>`;
  const tops = cols.map((c) => Math.max(...c.values.filter((v): v is number => v !== undefined && Number.isFinite(v))));
  const rows = runs.map((r, i) => {
    const cells = cols.map((c, j) => {
      const v = c.values[i];
      if (v === undefined) return '<td>—</td>';
      return `<td${c.best && v === tops[j] ? ' class="best"' : ''}>${escapeHtml(c.format(v))}</td>`;
    });
    const status = r.final ? 'complete' : '<span class="incomplete">incomplete</span>';
    return `<tr class="run"><td>${escapeHtml(label(r, i))}</td><td>${status}</td>${cells.join('')}</tr>`;
  });
  const note =
    "Best epoch and val acc by validation (the main head: 'mm', or the first task); test columns from the final " +
    'test evaluation of the best epoch; the best value per column is highlighted. An incomplete run shows its best ' +
    'validation so far.';
  return `<h2>Comparison</h2>
<p class="note">${note}</p>
<table class="compare">${head}
${rows.join('\n')}</table>`;
}

/** Sample standard deviation (n − 1); 0 for one value. */
export const sampleStd = (xs: number[]) =>
  xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));

/** Complete runs grouped by (dataset, model, method): test metrics as mean ± std over the group's seeds. */
function methodSummary(runs: RunData[]): string {
  const groups = new Map<string, RunData[]>();
  for (const r of runs) {
    if (!r.final) continue;
    const key = [r.config.dataset, r.config.model, r.config.method].map(String).join(' / ');
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  if (![...groups.values()].some((g) => g.length > 1)) return '';
  const accKeys = unionKeys(runs.map((r) => r.final?.test.acc ?? {}));
  const pm = (xs: number[], f: (v: number) => string) => `${f(mean(xs))} ± ${f(sampleStd(xs))}`;
  const rows = [...groups].map(([key, g]) => {
    const tests = g.map((r) => r.final!.test);
    const cells = accKeys.map((k) => {
      const xs = tests.map((t) => t.acc[k]).filter((v): v is number => v !== undefined);
      return `<td>${xs.length ? escapeHtml(pm(xs, formatAccuracy)) : '—'}</td>`;
    });
    const f1 = tests.map((t) => t.macro_f1[mainKey(t) ?? '']).filter((v): v is number => v !== undefined);
    const seeds = escapeHtml(g.map((r) => String(r.config.seed)).join(', '));
    const f1Cell = f1.length ? escapeHtml(pm(f1, formatF1)) : '—';
    const lead = `<td>${escapeHtml(key)}</td><td>${g.length}</td><td>${seeds}</td>`;
    return `<tr class="method">${lead}${cells.join('')}<td>${f1Cell}</td></tr>`;
  });
  const note =
    'Complete runs grouped by data set, model and method: test metrics as mean ± sample standard deviation over the ' +
    'runs (seeds).';
  const accHeads = accKeys.map((k) => `<th>test acc ${escapeHtml(k)}</th>`).join('');
  const heads = `<th>dataset / model / method</th><th>runs</th><th>seeds</th>${accHeads}<th>test macro-F1</th>`;
  return `<h2>By method</h2>
<p class="note">${note}</p>
<table class="compare"><tr>${heads}</tr>
${rows.join('\n')}</table>`;
}

/** Loss curves show at most this many points per run: per-step losses are averaged in runs of consecutive steps. */
export const LOSS_POINTS = 120;

/** Consecutive points averaged in groups so that at most `max` remain (x: the group's last; NaN kept as a gap). */
export function binnedMeans(points: readonly (readonly [number, number])[], max: number): [number, number][] {
  const per = Math.max(1, Math.ceil(points.length / max));
  const out: [number, number][] = [];
  for (let i = 0; i < points.length; i += per) {
    const group = points.slice(i, i + per);
    out.push([group[group.length - 1]![0], group.reduce((a, p) => a + p[1], 0) / group.length]);
  }
  return out;
}

function lossCurves(runs: RunData[]): string {
  const names = unionKeys(runs.flatMap((r) => r.steps.map((s) => s.loss)));
  if (!names.length) return '<h2>Training losses</h2><p class="note">No step records yet.</p>';
  const charts = names.map((n) => {
    const series: LineSeries[] = runs.map((r, i) => ({
      name: label(r, i),
      points: binnedMeans(
        r.steps.map((s) => [s.step, s.loss[n] ?? NaN] as const),
        LOSS_POINTS,
      ),
    }));
    return lineChart(series, { title: `training loss '${n}'`, xLabel: 'step', yLabel: 'mean loss' });
  });
  return `<h2>Training losses</h2>\n${charts.join('\n')}`;
}

function accuracyCurves(runs: RunData[]): string {
  const vals = runs.map((r) => r.evals.filter((e) => e.split === 'val'));
  const names = unionKeys(vals.flat().map((e) => e.acc));
  if (!names.length) return '<h2>Validation accuracy</h2><p class="note">No validation evaluations yet.</p>';
  const charts = names.map((n) => {
    const series: LineSeries[] = runs.map((r, i) => ({
      name: label(r, i),
      points: vals[i]!.map((e) => [e.epoch, 100 * (e.acc[n] ?? NaN)] as const),
    }));
    return lineChart(series, {
      title: `validation accuracy '${n}'`,
      xLabel: 'epoch',
      yLabel: 'accuracy (%)',
      integerX: true,
    });
  });
  return `<h2>Validation accuracy</h2>\n${charts.join('\n')}`;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]) => Math.sqrt(mean(xs.map((x) => (x - mean(xs)) ** 2)));
const stat = (xs: number[]) => (xs.length ? `mean ${mean(xs).toPrecision(3)}, std ${std(xs).toPrecision(3)}` : 'none');

const ALPHA_CAPTION =
  "α: MMPareto's α_m (0.5 where the plain sum was taken), MGDA's weight of the multimodal loss, else its share " +
  'of the coefficients.';

function telemetrySections(runs: RunData[]): string {
  const withT = runs.map((r, i) => ({ r, i })).filter(({ r }) => r.telemetry.length > 0);
  const notes = runs
    .map((r, i) =>
      r.telemetry.length
        ? ''
        : `<p class="note">${escapeHtml(label(r, i))}: no integrator telemetry in its metrics.jsonl (methods such ` +
          `as 'uniform' and 'one-joint-loss' log none); skipped in the charts below.</p>`,
    )
    .join('');
  const head = '<h2>Gradient telemetry per encoder</h2>';
  if (!withT.length) return `${head}${notes}`;
  const groups = [...new Set(withT.flatMap(({ r }) => r.telemetry.map((t) => t.group)))];
  const parts = groups.map((g) => {
    const per = withT
      .map(({ r, i }) => ({ name: label(r, i), t: r.telemetry.filter((t) => t.group === g) }))
      .filter((p) => p.t.length);
    const cos = lineChart(
      per.map((p) => ({ name: p.name, points: p.t.map((t) => [t.step, t.cos] as const) })),
      { title: `cos β, encoder '${g}'`, xLabel: 'step', yLabel: 'cos(g_m, g_u)', yRange: [-1, 1], zeroLine: true },
    );
    const conflicts = per.map((p) => {
      const finite = p.t.filter((t) => Number.isFinite(t.cos));
      const n = finite.filter((t) => t.cos < 0).length;
      return (
        `${escapeHtml(p.name)}: ${finite.length ? formatAccuracy(n / finite.length) : '—'} of ` +
        `${finite.length} logged steps with cos β &lt; 0`
      );
    });
    const alpha = lineChart(
      per.map((p) => ({ name: p.name, points: p.t.map((t) => [t.step, t.alpha] as const) })),
      { title: `α, encoder '${g}'`, xLabel: 'step', yLabel: 'α' },
    );
    const hists = per.map((p) => {
      const ok = p.t.filter((t) => !t.non_finite);
      const m = ok.map((t) => t.norm_m);
      const u = ok.map((t) => t.norm_u);
      const range = finiteRange([...m, ...u]);
      if (!range) return `<p class="note">${escapeHtml(p.name)}: no finite gradient norms for '${escapeHtml(g)}'.</p>`;
      const edges = Array.from(
        { length: MAGNITUDE_BINS + 1 },
        (_, k) => range[0] + ((range[1] - range[0]) * k) / MAGNITUDE_BINS,
      );
      const chart = histogramChart(
        edges,
        [
          { name: '|g_m| multimodal', counts: histogram(m, MAGNITUDE_BINS, range) },
          { name: '|g_u| unimodal', counts: histogram(u, MAGNITUDE_BINS, range) },
        ],
        {
          title: `|g_m| vs |g_u|, encoder '${g}', ${p.name}`,
          xLabel: 'gradient norm over the encoder',
          yLabel: 'logged steps',
        },
      );
      return (
        `<figure class="hist" data-group="${escapeHtml(g)}" ` +
        `data-run="${escapeHtml(p.name)}">${chart}<figcaption>${escapeHtml(p.name)}: |g_m| ` +
        `${stat(m)}; |g_u| ${stat(u)} (${ok.length} logged steps)</figcaption></figure>`
      );
    });
    return `<h3>Encoder '${escapeHtml(g)}'</h3>
<figure>${cos}<figcaption>Paper Fig. 1a. Conflicts: ${conflicts.join('; ')}.</figcaption></figure>
<figure>${alpha}<figcaption>${ALPHA_CAPTION}</figcaption></figure>
<p class="note">Paper Fig. 1d: distributions of the gradient norms over logged steps, on a shared bin range per run.</p>
${hists.join('\n')}`;
  });
  return `${head}${notes}\n${parts.join('\n')}`;
}

function confusionTables(runs: RunData[]): string {
  const parts = runs.map((r, i) => {
    const title = `<h3>${escapeHtml(label(r, i))}</h3>`;
    if (!r.final) return `${title}<p class="note">No final test evaluation (incomplete run).</p>`;
    const m = r.final.test.confusion;
    const head = `<tr><th>true \\ pred</th>${m.map((_, c) => `<th>${c}</th>`).join('')}</tr>`;
    const rows = m.map((row, t) => {
      const total = row.reduce((a, b) => a + b, 0) || 1;
      // White text on the darker half of the shades.
      const cells = row.map((v, p) => {
        const style = `background:rgba(0,114,178,${(v / total).toFixed(3)})${v / total > 0.5 ? ';color:#fff' : ''}`;
        return `<td style="${style}"${p === t ? ' class="diag"' : ''}>${v}</td>`;
      });
      return `<tr><th>${t}</th>${cells.join('')}</tr>`;
    });
    return `${title}<table class="confusion">${head}${rows.join('')}</table>`;
  });
  return (
    `<h2>Confusion matrices (final test evaluation; shade = share of the true class's ` +
    `row)</h2>\n${parts.join('\n')}`
  );
}

const STYLE = [
  'body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}',
  'table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}',
  'th{background:#f3f3f3}td.path{text-align:left;font-family:monospace}td.best{background:#d8f0d8;font-weight:bold}',
  '.incomplete{color:#b00;font-weight:bold}.note{color:#555;font-size:13px}' +
    'figure{display:inline-block;margin:6px 12px 12px 0;vertical-align:top}',
  'figcaption{font-size:12px;color:#444;max-width:640px}table.confusion td{min-width:28px}' +
    'table.confusion td.diag{font-weight:bold}',
  'svg.chart text{font-size:11px;fill:#333}svg.chart .title{font-size:13px;font-weight:bold}' +
    'svg.chart .label{font-size:12px}',
  'svg.chart .grid{stroke:#e4e4e4}svg.chart .axis{stroke:#555}svg.chart .plot{fill:none;stroke:#555}' +
    'svg.chart .zero{stroke:#900;stroke-dasharray:5 4}',
].join('\n');

/** The whole page for these runs (pure: data in, HTML out). */
export function renderReport(runs: RunData[]): string {
  if (!runs.length) throw new Error('renderReport: no runs to report');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MMPareto training report</title><style>${STYLE}</style></head>
<body>
${header(runs)}
${comparisonTable(runs)}
${methodSummary(runs)}
${lossCurves(runs)}
${accuracyCurves(runs)}
${telemetrySections(runs)}
${confusionTables(runs)}
</body></html>
`;
}

/** Loads the run directories and writes the page to `outFile` (temp file + rename, so no half-written page). */
export function writeReport(runDirs: string[], outFile: string): { path: string; runs: number } {
  if (!runDirs.length) throw new Error('report: no run directories given (usage: mmpareto report RUN_DIR...)');
  const html = renderReport(runDirs.map(loadRun));
  const path = resolve(outFile);
  ensureDir(dirname(path), `report --out ${path}`);
  writeFileAtomic(path, new TextEncoder().encode(html));
  return { path, runs: runDirs.length };
}
