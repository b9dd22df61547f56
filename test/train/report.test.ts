// The HTML report: two hand-made run directories (one complete with telemetry, one incomplete
// without, its method and directory name holding `<&>`), rendered and checked for
// self-containment, charts, table numbers, escaping, histogram counts and loader errors.
// Host-only: no GPU device is involved.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binnedMeans, MAGNITUDE_BINS, renderReport, sampleStd, writeReport } from '../../train/report/report.ts';
import { loadRun } from '../../train/report/run-data.ts';
import { histogram, niceDomain, niceTicks } from '../../train/report/svg.ts';
import { throwsWith } from '../helpers.ts';
import type { EvalRecord, RunRecord } from '../../train/run/run-log.ts';

const test = suite('report');

/**
 * Host reference: bin i of `bins` over [lo, hi] holds lo + i·w ≤ v < lo + (i+1)·w (the last bin also hi), by comparison
 * with the edges.
 */
function hostCounts(values: number[], bins: number, lo: number, hi: number): number[] {
  const w = (hi - lo) / bins;
  return Array.from(
    { length: bins },
    (_, i) => values.filter((v) => v >= lo + i * w && (i === bins - 1 ? v <= hi : v < lo + (i + 1) * w)).length,
  );
}

const evalRec = (
  split: EvalRecord['split'],
  epoch: number,
  acc: Record<string, number>,
  confusion: number[][] = [
    [1, 0],
    [0, 1],
  ],
): EvalRecord => ({
  type: 'eval',
  epoch,
  step: 10 * epoch,
  split,
  loss: Object.fromEntries(Object.keys(acc).map((k) => [k, 1])),
  acc,
  macro_f1: Object.fromEntries(Object.keys(acc).map((k) => [k, 0.5])),
  confusion,
});

// Run A's telemetry for 'gray': cos with one conflict-free NaN step (non-finite) and 2 of 5 finite < 0;
// norms chosen off the bin edges. The non-finite record's norm 100 must not stretch the range.
const GRAY_COS = [0.5, -0.2, 0.1, -0.4, 0.3];
const GRAY_M = [0.02, 0.13, 0.17, 0.55, 0.58];
const GRAY_U = [0.9, 1.23, 1.27, 1.95, 2.0];
const CONFUSION = [
  [5, 1, 0],
  [2, 6, 0],
  [0, 0, 2],
];

function writeRun(dir: string, config: Record<string, unknown>, records: RunRecord[], torn = ''): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  // JSON.stringify writes NaN as null, as the trainer's appendRecord does.
  writeFileSync(join(dir, 'metrics.jsonl'), records.map((r) => `${JSON.stringify(r)}\n`).join('') + torn);
}

function makeRuns(root: string): [string, string] {
  const a = join(root, 'run-a');
  const b = join(root, 'run-b<&>');
  const base = { dataset: 'cg-fmnist', model: 'cnn', seed: 7, epochs: 2, version: '0.1.0', device: 'lavapipe' };
  const aRecs: RunRecord[] = [
    { type: 'step', epoch: 1, step: 5, steps: 5, loss: { mm: 2.0, gray: 2.2, color: 2.1 }, lr: 0.1, time_s: 1 },
    { type: 'step', epoch: 1, step: 10, steps: 5, loss: { mm: NaN, gray: 2.0, color: 1.9 }, lr: 0.1, time_s: 2 },
    { type: 'step', epoch: 2, step: 15, steps: 5, loss: { mm: 1.5, gray: 1.8, color: 1.2 }, lr: 0.1, time_s: 3 },
    { type: 'step', epoch: 2, step: 20, steps: 5, loss: { mm: 1.2, gray: 1.7, color: 1.0 }, lr: 0.1, time_s: 4 },
  ];
  GRAY_COS.forEach((cos, k) => {
    const t = {
      type: 'telemetry',
      step: k,
      cos,
      alpha: 0.5,
      norm_h: 1,
      scale: 1,
      conflict: cos < 0,
      non_finite: false,
    } as const;
    aRecs.push(
      { ...t, group: 'gray', norm_m: GRAY_M[k]!, norm_u: GRAY_U[k]! },
      { ...t, group: 'color', norm_m: 1, norm_u: 2 + k },
    );
  });
  aRecs.push({
    type: 'telemetry',
    step: 5,
    group: 'gray',
    cos: NaN,
    alpha: NaN,
    norm_m: 100,
    norm_u: NaN,
    norm_h: NaN,
    scale: 1,
    conflict: false,
    non_finite: true,
  });
  aRecs.push(
    evalRec('val', 1, { mm: 0.5, gray: 0.4, color: 0.3 }),
    evalRec('val', 2, { mm: 0.75, gray: 0.5, color: 0.4 }),
  );
  const testEval = {
    ...evalRec('test', 2, { mm: 0.8125, gray: 0.625, color: 0.5 }, CONFUSION),
    macro_f1: { mm: 0.80123, gray: 0.6, color: 0.4 },
  };
  aRecs.push({ type: 'final', best_epoch: 2, best_val: 0.75, test: testEval, wall_s: 75, steps_per_s: 12.5 });
  writeRun(a, { ...base, method: 'mmpareto' }, aRecs);
  const bRecs: RunRecord[] = [
    { type: 'step', epoch: 1, step: 5, steps: 5, loss: { mm: 2.1 }, lr: 0.1, time_s: 1.5 },
    { type: 'step', epoch: 1, step: 10, steps: 5, loss: { mm: 1.9 }, lr: 0.1, time_s: 3 },
    evalRec('val', 1, { mm: 0.9 }),
  ];
  // A torn last line (crash mid-write) is skipped, not an error.
  writeRun(b, { ...base, method: 'uni<&>form' }, bRecs, '{"type":"step","epo');
  return [a, b];
}

/** The text of each <td> of each comparison-table row. */
function tableRows(html: string): Array<Array<{ text: string; best: boolean }>> {
  const table = html.slice(html.indexOf('<table class="compare">'));
  const rows = [...table.slice(0, table.indexOf('</table>')).matchAll(/<tr class="run">(.*?)<\/tr>/g)].map(
    (m) => m[1]!,
  );
  return rows.map((r) =>
    [...r.matchAll(/<td( class="best")?>(.*?)<\/td>/g)].map((m) => ({ text: m[2]!, best: m[1] !== undefined })),
  );
}

test('a self-contained page: one HTML document, no network references, one <svg> per chart', () => {
  const root = mkdtempSync(join(tmpdir(), 'report-'));
  try {
    const [a, b] = makeRuns(root);
    const out = join(root, 'out', 'report.html');
    const res = writeReport([a, b], out);
    assert.equal(res, { path: out, runs: 2 });
    assert.ok(existsSync(out));
    const html = readFileSync(out, 'utf8');
    assert.ok(html.startsWith('<!DOCTYPE html>'));
    for (const tag of ['<html', '</html>', '<head>', '<body>', '</body>'])
      assert.is(html.split(tag).length - 1, 1, tag);
    for (const bad of ['http://', 'https://', 'src=', '<script', '<link', 'url(', '<img'])
      assert.not.ok(html.includes(bad), `page contains ${bad}`);
    // Charts: losses mm, gray, color (3); val accuracy mm, gray, color (3); per encoder gray and
    // color: cos β, α, and run A's magnitude histogram (2 × 3); run B has no telemetry.
    assert.is(html.split('<svg').length - 1, 12);
    for (const title of [
      "training loss 'mm'",
      "training loss 'color'",
      "validation accuracy 'gray'",
      "cos β, encoder 'gray'",
      "α, encoder 'color'",
      "|g_m| vs |g_u|, encoder 'color', #1 mmpareto",
    ]) {
      assert.ok(html.includes(`aria-label="${title.replace(/'/g, '&#39;')}"`), title);
    }
    // The pure renderer gives the same page for the same data.
    assert.is(renderReport([loadRun(a), loadRun(b)]), html);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test(
  'comparison table: one row per run, accuracies as NN.NN%, ' + 'macro-F1 to 4 places, best per column highlighted',
  () => {
    const root = mkdtempSync(join(tmpdir(), 'report-'));
    try {
      const html = renderReport(makeRuns(root).map(loadRun));
      const rows = tableRows(html);
      assert.is(rows.length, 2);
      // Columns: run, status, best epoch, val acc, test acc mm / gray / color, test macro-F1, steps/s.
      assert.equal(
        rows[0]!.map((c) => c.text),
        ['#1 mmpareto', 'complete', '2', '75.00%', '81.25%', '62.50%', '50.00%', '0.8012', '12.50'],
      );
      assert.equal(
        rows[1]!.map((c) => c.text),
        [
          '#2 uni&lt;&amp;&gt;form',
          '<span class="incomplete">incomplete</span>',
          '1',
          '90.00%',
          '—',
          '—',
          '—',
          '—',
          '—',
        ],
      );
      // Run B's val acc (0.9 so far) beats A's 0.75; A holds every test column alone; best epoch is not ranked.
      assert.equal(
        rows[0]!.map((c) => c.best),
        [false, false, false, false, true, true, true, true, true],
      );
      assert.equal(
        rows[1]!.map((c) => c.best),
        [false, false, false, true, false, false, false, false, false],
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
);

test(
  'text from configs and paths is escaped; the incomplete run and the run without telemetry are marked, not ' +
    'crashed on',
  () => {
    const root = mkdtempSync(join(tmpdir(), 'report-'));
    try {
      const html = renderReport(makeRuns(root).map(loadRun));
      assert.ok(html.includes('uni&lt;&amp;&gt;form'));
      assert.ok(html.includes('run-b&lt;&amp;&gt;'));
      assert.not.ok(html.includes('<&>'));
      assert.ok(html.includes('#2 uni&lt;&amp;&gt;form: no integrator telemetry'));
      assert.ok(html.includes('No final test evaluation (incomplete run)'));
      // Header: A's wall time from its final record, B's from its last step record.
      assert.ok(html.includes('<td>1 min 15 s</td><td>complete</td>'));
      assert.ok(html.includes('<td>3.0 s so far</td><td><span class="incomplete">incomplete</span></td>'));
      // Conflicts for 'gray': 2 of the 5 finite cos values are negative (the NaN step is left out).
      assert.ok(html.includes('#1 mmpareto: 40.00% of 5 logged steps with cos β &lt; 0'));
      // A NaN loss leaves a gap: run A's 'mm' curve is two pieces (a polyline and a lone marker), run B's one polyline.
      const mmChart = html.slice(html.indexOf(`aria-label="training loss &#39;mm&#39;"`)).split('</svg>')[0]!;
      assert.is(mmChart.split('<polyline').length - 1, 2);
      // Confusion matrix of A's final test: counts in row order, the diagonal marked.
      const conf = html.slice(html.indexOf('<table class="confusion">')).split('</table>')[0]!;
      assert.equal(
        [...conf.matchAll(/<td[^>]*>(\d+)<\/td>/g)].map((m) => Number(m[1])),
        CONFUSION.flat(),
      );
      assert.is(conf.split('class="diag"').length - 1, 3);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
);

test('magnitude histogram: bar counts equal a host count of |g_m| and |g_u| on their shared range', () => {
  const root = mkdtempSync(join(tmpdir(), 'report-'));
  try {
    const html = renderReport(makeRuns(root).map(loadRun));
    const fig = html.slice(html.indexOf('<figure class="hist" data-group="gray"')).split('</figure>')[0]!;
    const counts = [new Array<number>(MAGNITUDE_BINS).fill(0), new Array<number>(MAGNITUDE_BINS).fill(0)];
    for (const m of fig.matchAll(/data-series="(\d)" data-bin="(\d+)" data-count="(\d+)"/g))
      counts[Number(m[1])]![Number(m[2])] = Number(m[3]);
    // Shared range [0.02, 2.0] (the non-finite record is skipped): w = 0.099. By hand: 0.02 → 0,
    // 0.13 and 0.17 → 1, 0.55 and 0.58 → 5; 0.9 → 8, 1.23 and 1.27 → 12, 1.95 → 19, 2.0 (= hi) → 19.
    const byHand = (bins: Record<number, number>) => Array.from({ length: MAGNITUDE_BINS }, (_, i) => bins[i] ?? 0);
    assert.equal(counts[0], byHand({ 0: 1, 1: 2, 5: 2 }));
    assert.equal(counts[1], byHand({ 8: 1, 12: 2, 19: 2 }));
    assert.equal(counts[0], hostCounts(GRAY_M, MAGNITUDE_BINS, 0.02, 2.0));
    assert.equal(counts[1], hostCounts(GRAY_U, MAGNITUDE_BINS, 0.02, 2.0));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test(
  'histogram(): equal-width bins against a host count; out-of-range and NaN values not counted; bad input ' +
    'named; axis ticks',
  () => {
    // A golden-ratio sequence spread over [-0.5, 3.5), counted over [0, 3]: some fall outside.
    const values = Array.from({ length: 500 }, (_, i) => -0.5 + 4 * ((i * 0.6180339887) % 1));
    values.push(NaN, Infinity, 0, 3);
    const got = histogram(values, 7, [0, 3]);
    assert.equal(got, hostCounts(values, 7, 0, 3));
    assert.is(
      got.reduce((a, b) => a + b, 0),
      values.filter((v) => v >= 0 && v <= 3).length,
    );
    throwsWith(() => histogram(values, 0, [0, 1]), 'bins must be an integer >= 1', 'got 0');
    throwsWith(() => histogram(values, 3, [1, 1]), 'hi > lo', '[1, 1]');
    assert.equal(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.equal(niceTicks(-1, 1), [-1, -0.5, 0, 0.5, 1]);
    assert.equal(niceTicks(3, 117), [20, 40, 60, 80, 100]);
    assert.equal(niceDomain(3, 117), [0, 120]);
    assert.equal(niceDomain(-0.93, 0.41), [-1, 0.6]); // 1.34 / 5 = 0.268: step 0.2
  },
);

test('loader: a missing directory or file, a malformed or unknown line (file:line), an empty run list', () => {
  const root = mkdtempSync(join(tmpdir(), 'report-'));
  try {
    const missing = join(root, 'nope');
    throwsWith(() => loadRun(missing), missing, 'does not exist');
    throwsWith(() => writeReport([missing], join(root, 'r.html')), 'does not exist');
    throwsWith(() => writeReport([], join(root, 'r.html')), 'no run directories given');
    const dir = join(root, 'run');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), '{"method":"mmpareto"}');
    throwsWith(() => loadRun(dir), join(dir, 'metrics.jsonl'), 'is missing');
    const metrics = join(dir, 'metrics.jsonl');
    const good = JSON.stringify({ type: 'step', epoch: 1, step: 1, steps: 1, loss: { mm: 1 }, lr: 0.1, time_s: 1 });
    writeFileSync(metrics, `${good}\n\n{"type": "step", oops\n${good}\n`);
    throwsWith(() => loadRun(dir), `${metrics}:3:`, 'not a JSON record');
    writeFileSync(metrics, `${good}\n{"type":"checkpoint"}\n`);
    throwsWith(() => loadRun(dir), `${metrics}:2:`, 'unknown record type "checkpoint"', 'step, telemetry, eval, final');
    writeFileSync(
      metrics,
      `${good}\n{"type":"telemetry","step":1,"group":"gray","cos":"x","alpha":0,"norm_m":0,"norm_u":0}\n`,
    );
    throwsWith(() => loadRun(dir), `${metrics}:2:`, "field 'cos' must be a number");
    // A resumed run rewrites steps after its checkpoint: the later record of a step wins.
    writeFileSync(metrics, `${good}\n`);
    appendFileSync(
      metrics,
      `${JSON.stringify({ type: 'step', epoch: 1, step: 1, steps: 1, loss: { mm: 0.25 }, lr: 0.1, time_s: 2 })}\n`,
    );
    const run = loadRun(dir);
    assert.equal(
      run.steps.map((s) => s.loss.mm),
      [0.25],
    );
    assert.is(run.final, null);
    writeFileSync(join(dir, 'config.json'), '{"method":');
    throwsWith(() => loadRun(dir), join(dir, 'config.json'), 'not valid JSON');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('by-method summary: mean ± sample std of test metrics over runs of one method', () => {
  const root = mkdtempSync(join(tmpdir(), 'mmpareto-report-'));
  try {
    const [a] = makeRuns(root);
    const r1 = loadRun(a);
    const r2 = structuredClone(r1);
    r2.config.seed = 7;
    r2.final!.test.acc = { ...r2.final!.test.acc, mm: r1.final!.test.acc.mm! + 0.1 };
    const html = renderReport([r1, r2]);
    const row = html.split('<tr class="method">')[1]!.split('</tr>')[0]!;
    const m = r1.final!.test.acc.mm!;
    // mean m + 0.05, sample std of {m, m + 0.1} = 0.1/√2 ≈ 0.0707 → "7.07%".
    assert.ok(row.includes(`${(100 * (m + 0.05)).toFixed(2)}% ± 7.07%`), row);
    assert.ok(row.includes('<td>2</td>') && row.includes(`${r1.config.seed}, 7`), row);
    assert.is(sampleStd([1, 3]), Math.SQRT2);
    assert.is(sampleStd([5]), 0);
    assert.not.ok(renderReport([r1]).includes('By method'), 'no summary without repeated methods');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('loss curves: per-step losses averaged in groups of consecutive steps', () => {
  const pts = [
    [1, 1],
    [2, 3],
    [3, 5],
    [4, NaN],
    [5, 2],
  ] as const;
  assert.equal(binnedMeans(pts, 10), [
    [1, 1],
    [2, 3],
    [3, 5],
    [4, NaN],
    [5, 2],
  ]);
  const two = binnedMeans(pts, 2); // groups of 3: (1, 3, 5) → 3 at step 3; (NaN, 2) → a gap at step 5
  assert.equal(two[0], [3, 3]);
  assert.is(two[1]![0], 5);
  assert.ok(Number.isNaN(two[1]![1]));
});

test.run();
