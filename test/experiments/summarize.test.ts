// experiments/stats.ts and experiments/summarize.ts: Student's t against closed forms and
// SciPy's values, the paired comparison on hand-made numbers (known CI and p-value), and the
// results page regenerated from hand-made summaries — partial results included.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  incompleteBeta,
  logGamma,
  mean,
  pairedComparison,
  sampleStd,
  tCdf,
  tQuantile,
} from '../../experiments/stats.ts';
import { SWEEP_BUDGET, budgetLabel, summaryPath, type Budget } from '../../experiments/plan.ts';
import { writeSummary, SUMMARY_VERSION, type RunSummary } from '../../experiments/summary.ts';
import { collectAndRender, writeResults } from '../../experiments/summarize.ts';
import { lastFifthChange } from '../../experiments/results-tables.ts';
import { standaloneSvg } from '../../experiments/figures.ts';
import { hypothesisSection } from '../../experiments/results-hypothesis.ts';
import type { GradientAnalysis, LossGradientStats } from '../../train/analyze/gradients.ts';
import type { IntegratorMethod } from '../../engine/index.ts';

const test = suite('summarize');
const root = mkdtempSync(join(tmpdir(), 'mmpareto-summarize-'));

const close = (a: number, e: number, tol: number, what: string) =>
  assert.ok(Math.abs(a - e) <= tol, `${what}: ${a} vs ${e} (tol ${tol})`);

test('Student t CDF: closed forms for 1 and 2 degrees of freedom, SciPy values otherwise', () => {
  // df = 1 (Cauchy): 1/2 + atan(t)/π; df = 2: 1/2 + t / (2√(2 + t²)). Both exact in float64 to ~1e-16;
  // the continued fraction converges to 1e-15 relative, so 1e-13 absolute is a bound with margin.
  for (const t of [-30, -4, -1.3, -0.2, 0, 0.05, 0.7, 2, 9.5, 100]) {
    close(tCdf(t, 1), 0.5 + Math.atan(t) / Math.PI, 1e-13, `df 1, t ${t}`);
    close(tCdf(t, 2), 0.5 + t / (2 * Math.sqrt(2 + t * t)), 1e-13, `df 2, t ${t}`);
  }
  // scipy.stats.t.cdf (SciPy 1.17), printed to 16 digits.
  const scipy: [number, number, number][] = [
    [2.0, 5, 0.9490302605850708],
    [-1.5, 3, 0.11529193262241147],
    [0.7, 1, 0.6944001122142147],
    [3.2, 30, 0.9983806991440234],
    [1.0, 2.5, 0.7979694863608632],
  ];
  for (const [t, df, p] of scipy) close(tCdf(t, df), p, 1e-13, `t ${t}, df ${df}`);
  assert.is(tCdf(Infinity, 4), 1);
  assert.is(tCdf(-Infinity, 4), 0);
  // Γ(5) = 24, Γ(1/2) = √π; I_x(1, 1) = x; I_x(a, b) = 1 − I_{1−x}(b, a).
  close(logGamma(5), Math.log(24), 1e-14, 'lnΓ(5)');
  close(logGamma(0.5), 0.5 * Math.log(Math.PI), 1e-14, 'lnΓ(1/2)');
  close(incompleteBeta(0.3, 1, 1), 0.3, 1e-15, 'I_x(1,1)');
  close(incompleteBeta(0.2, 2.5, 4) + incompleteBeta(0.8, 4, 2.5), 1, 1e-14, 'symmetry');
});

test('t quantiles: scipy.stats.t.ppf(0.975, df) to 1e-9', () => {
  const ppf: [number, number][] = [
    [1, 12.706204736174694],
    [2, 4.302652729749462],
    [4, 2.7764451051977934],
    [9, 2.262157162798205],
    [29, 2.045229642132703],
  ];
  for (const [df, q] of ppf) close(tQuantile(0.975, df), q, 1e-9 * q, `df ${df}`);
  close(tQuantile(0.025, 4), -2.7764451051977934, 1e-9 * 2.78, 'lower tail');
  assert.is(tQuantile(0.5, 7), 0);
});

test('paired comparison on hand-made numbers: mean, 95% CI and one-sided p as scipy.stats.ttest_1samp', () => {
  // Differences 1.2, −0.4, 2.5, 0.9, 1.8: mean 1.2, sd 1.0839741694339402, t 2.475410991021104,
  // one-sided p 0.03427379526294072, CI 1.2 ∓ 2.7764451·sd/√5 = [−0.1459317011689507, 2.545931701168951] (SciPy 1.17).
  const b = [70, 71.5, 69, 72, 70.5];
  const a = b.map((x, i) => x + [1.2, -0.4, 2.5, 0.9, 1.8][i]!);
  const c = pairedComparison(a, b);
  assert.is(c.n, 5);
  assert.is(c.df, 4);
  close(c.meanDiff, 1.2, 1e-12, 'mean');
  close(c.sdDiff, 1.0839741694339402, 1e-12, 'sd');
  close(c.t, 2.475410991021104, 1e-10, 't');
  close(c.pGreater, 0.03427379526294072, 1e-10, 'p');
  close(c.ci95[0], -0.1459317011689507, 1e-9, 'CI low');
  close(c.ci95[1], 2.545931701168951, 1e-9, 'CI high');
  assert.is(c.wins, 4);
  assert.throws(() => pairedComparison([1, 2], [1]), /pairs must match/);
  assert.throws(() => pairedComparison([1], [1]), /at least 2 pairs/);
  close(mean([1, 2, 3, 4]), 2.5, 0, 'mean');
  close(sampleStd([1, 2, 3, 4]), Math.sqrt(5 / 3), 1e-15, 'sample std');
});

/** A hand-made summary: test accuracy `acc` (in [0, 1]) on every head, best = final = last epoch. */
function fake(
  method: string,
  seed: number,
  acc: number,
  budget: Budget = SWEEP_BUDGET,
  dataset = 'cg-fmnist',
): RunSummary {
  const heads = dataset === 'cg-fmnist' ? ['mm', 'gray', 'color'] : ['left', 'right'];
  const m = {
    loss: Object.fromEntries(heads.map((h) => [h, 1])),
    acc: Object.fromEntries(heads.map((h) => [h, acc])),
    macro_f1: Object.fromEntries(heads.map((h) => [h, acc - 0.01])),
  };
  const curve = Array.from({ length: budget.epochs }, (_, i) => ({
    epoch: i + 1,
    step: 200 * (i + 1),
    acc: Object.fromEntries(heads.map((h) => [h, acc - 0.02 * (budget.epochs - 1 - i)])),
    macro_f1: m.macro_f1,
    loss: m.loss,
  }));
  curve[curve.length - 1]!.acc = m.acc;
  const series: [number, number, number, number, number][] = [
    [100, 0.2, 0.3, 1, 2],
    [200, 0.1, 0.4, 0.5, 1.5],
  ];
  return {
    type: 'run-summary',
    version: SUMMARY_VERSION,
    dataset,
    model: 'cnn',
    method,
    seed,
    budget: { ...budget, label: budgetLabel(budget) },
    config: {} as RunSummary['config'],
    steps: 200 * budget.epochs,
    best: { epoch: budget.epochs, step: 200 * budget.epochs, val: m, test: m },
    final: { epoch: budget.epochs, step: 200 * budget.epochs, val: m, test: m },
    valCurve: curve,
    trainLoss: [],
    telemetry:
      method === 'uniform' || method === 'one-joint-loss' // as the trainer: they log none
        ? null
        : {
            gray: {
              steps: 10,
              cosMean: 0.1,
              conflictFraction: 0.25,
              normM: { mean: 1, median: 1 },
              normU: { mean: 2, median: 2 },
              normRatio: 2,
              alphaMean: 0.5,
              scaleMean: 1,
              nonFiniteSteps: 0,
              series,
            },
          },
    wall: { train_s: 100, segments: 1, steps_per_s: 20, note: '' },
    adapter: 'test adapter',
    commits: ['0123456789abcdef'],
    pairing: { init: `i${seed}`, data: `d${seed}` },
  };
}

test(
  'summarize: results page from hand-made summaries — ' + 'known CI and p, partial results listed, figures written',
  () => {
    const results = join(root, 'results');
    const uni = [0.7, 0.715, 0.69, 0.72, 0.705];
    const diffs = [0.012, -0.004, 0.025, 0.009, 0.018];
    uni.forEach((u, s) => {
      writeSummary(
        summaryPath(results, { dataset: 'cg-fmnist', method: 'uniform', seed: s, budget: SWEEP_BUDGET }),
        fake('uniform', s, u),
      );
      writeSummary(
        summaryPath(results, { dataset: 'cg-fmnist', method: 'mmpareto', seed: s, budget: SWEEP_BUDGET }),
        fake('mmpareto', s, u + diffs[s]!),
      );
    });
    writeSummary(
      summaryPath(results, { dataset: 'cg-fmnist', method: 'mgda', seed: 0, budget: SWEEP_BUDGET }),
      fake('mgda', 0, 0.6),
    );
    // One joint loss 10 and 12 points below uniform: t = −11 on 1 df, p = 1/2 + atan(11)/π.
    for (const [s, d] of [0.1, 0.12].entries())
      writeSummary(
        summaryPath(results, { dataset: 'cg-fmnist', method: 'one-joint-loss', seed: s, budget: SWEEP_BUDGET }),
        fake('one-joint-loss', s, uni[s]! - d),
      );
    const pilotBudget: Budget = { ...SWEEP_BUDGET, epochs: 12, lrSchedule: 'cosine' };
    writeSummary(join(results, 'pilot', 'cg-fmnist', 'x', 'uniform-seed0.json'), fake('uniform', 0, 0.5, pilotBudget));
    const page = collectAndRender(results);
    const md = page.markdown;
    // The hand-made differences (points) are those of the paired test above.
    assert.ok(md.includes('| MMPareto | mm | 5 (0, 1, 2, 3, 4) | +1.20 | [−0.15, +2.55] | 2.48 | 0.034 | 4/5 |'), md);
    assert.ok(
      md.includes(
        '**MMPareto vs uniform on CG-FMNIST (mm head, best epoch), 5 paired seeds:** mean difference +1.20 points, ' +
          '95% CI [−0.15, +2.55], one-sided paired t-test p = 0.034 — significant at the 5% level',
      ),
      md,
    );
    assert.ok(
      md.includes('| uniform (baseline) | 0, 1, 2, 3, 4 | 70.60 ± 1.19 |'),
      'mean ± sample std of the uniform runs',
    );
    assert.ok(md.includes('75.68 | 75.66 |'), "the paper's Table 3 beside uniform");
    assert.ok(md.includes('Fashion-MNIST'), 'the data set note');
    assert.ok(md.includes('| MGDA (conventional Pareto) | mm | 1 | — |'), 'one MGDA seed: no interval');
    assert.ok(
      md.includes('| one joint loss | mm | 2 (0, 1) | −11.00 | [−23.71, +1.71] | −11.00 | 0.971 | 0/2 |'),
      'a negative t has the same minus sign as the differences',
    );
    assert.ok(!md.includes('| one joint loss | gray |'), "one joint loss's untrained unimodal heads are not compared");
    assert.ok(md.includes('| one joint loss | 0, 1 | 59.75 ± 0.35 | 59.75 ± 0.35 † |'), 'and are marked');
    assert.ok(md.includes('† one joint loss trains on the fused loss L_m alone'), 'with the reason');
    assert.ok(md.includes('Runs: 13 of 31 planned; **missing**: cg-fmnist/mgda-seed1'), 'missing runs are listed');
    assert.ok(md.includes('## Multi-FMNIST\n\nNo runs yet.'), 'an empty data set says so');
    assert.ok(md.includes('No analysis yet'), 'no Hypothesis 1 analysis yet');
    assert.ok(
      md.includes(`| cg-fmnist uniform ${budgetLabel(pilotBudget)} | — | — | — | — | — | — | — | 6.00 |`),
      'the pilot table: a cosine run shows only its own E',
    );
    // Pairing problems are reported.
    assert.ok(md.includes('Pairing: every seed'), md);
    const out = writeResults(page, join(root, 'docs'));
    assert.ok(existsSync(out.markdown));
    const figs = readdirSync(join(root, 'docs', 'figures')).sort();
    for (const f of ['accuracy-cg-fmnist.svg', 'cos-cg-fmnist-gray.svg', 'pilot-val.svg', 'val-curves-cg-fmnist.svg'])
      assert.ok(figs.includes(f), `${f} in ${figs.join(', ')}`);
    const svg = readFileSync(join(root, 'docs', 'figures', 'accuracy-cg-fmnist.svg'), 'utf8');
    assert.ok(
      svg.startsWith('<?xml') && svg.includes('xmlns="http://www.w3.org/2000/svg"') && svg.includes('<style>'),
      'standalone SVG',
    );
    assert.ok((svg.match(/<circle/g) ?? []).length >= 11 * 3, 'every seed drawn as a dot');
    assert.throws(() => standaloneSvg('<div/>'), /not an <svg>/);
  },
);

test('summarize: a multitask set gets a verdict per task, best and last epoch', () => {
  const results = join(root, 'results-multi');
  // MMPareto 1, 2, 3 points above uniform on both tasks: mean 2, std 1, t = 2√3 on 2 df,
  // CI 2 ± t₀.₉₇₅(2)/√3, p = 1/2 − t/(2√(2 + t²)) = 0.0371.
  for (const [s, d] of [0.01, 0.02, 0.03].entries()) {
    const at = (method: IntegratorMethod) =>
      summaryPath(results, { dataset: 'multi-fmnist', method, seed: s, budget: SWEEP_BUDGET });
    writeSummary(at('uniform'), fake('uniform', s, 0.7, SWEEP_BUDGET, 'multi-fmnist'));
    writeSummary(at('mmpareto'), fake('mmpareto', s, 0.7 + d, SWEEP_BUDGET, 'multi-fmnist'));
  }
  const md = collectAndRender(results).markdown;
  for (const task of ['left', 'right']) {
    assert.ok(md.includes(`| MMPareto | ${task} | 3 (0, 1, 2) | +2.00 | [−0.48, +4.48] | 3.46 | 0.037 | 3/3 |`), md);
    for (const when of [`Multi-FMNIST (${task} head, best epoch)`, `${task} head, last epoch`])
      assert.ok(
        md.includes(
          `**MMPareto vs uniform on ${when}, 3 paired seeds:** mean difference +2.00 points, 95% CI [−0.48, +4.48], ` +
            'one-sided paired t-test p = 0.037 — significant at the 5% level',
        ),
        `the verdict on ${when}`,
      );
  }
  assert.ok(!md.includes('† '), 'no untrained-head note without one joint loss');
});

test('convergence criterion: largest change over the epochs of the last 20%', () => {
  const curve = [0.4, 0.5, 0.55, 0.58, 0.6, 0.61, 0.612, 0.615, 0.61, 0.618].map((a, i) => ({
    epoch: i + 1,
    acc: { mm: a },
  }));
  // E = 10: epochs 8..10 → max(|0.615 − 0.618|, |0.61 − 0.618|, 0) = 0.8 points.
  close(lastFifthChange(curve, 'mm', 10), 0.8, 1e-9, 'E = 10');
  // E = 5: epochs 4..5 → 2 points.
  close(lastFifthChange(curve, 'mm', 5), 2, 1e-9, 'E = 5');
  assert.ok(Number.isNaN(lastFifthChange(curve, 'mm', 11)), 'beyond the curve');
});

/** A hand-made analysis of one encoder: its k, |g_u|/|g_m| and conflict share are what the page aggregates. */
function fakeAnalysis(seed: number, epoch: number, k: number, normRatio: number, conflict: number): GradientAnalysis {
  const stats = (norms: number[]): LossGradientStats => ({
    norms,
    meanNorm: mean(norms),
    stdNorm: sampleStd(norms),
    quantiles: { min: norms[0]!, q25: norms[0]!, median: norms[1]!, q75: norms[2]!, max: norms[2]! },
    normOfMean: 0.5,
    covTrace: 1,
  });
  return {
    type: 'gradient-analysis',
    run: {
      dataset: 'cg-fmnist',
      model: 'cnn',
      method: 'mmpareto',
      seed,
      trainLimit: 9600,
      epochs: 10,
      lr: 0.01,
      batchSize: 64,
    },
    checkpoint: { which: `epoch-${epoch}`, epoch, step: 150 * epoch },
    batches: 3,
    batchSize: 64,
    mainLoss: 'mm',
    encoders: {
      gray: {
        parameters: 10,
        multimodal: stats([1, 2, 3]),
        unimodal: stats([2, 4, 6].map((x) => x * (normRatio / 2))),
        k,
        normRatio,
        cos: [0.5, -0.1, 0.2],
        conflictFraction: conflict,
      },
    },
    adapter: 'test',
    wall_s: 1,
  };
}

test('Hypothesis 1 section: per-checkpoint mean ± sample std over seeds, k range, k > 3 count', () => {
  const figures: Record<string, string> = {};
  const md = hypothesisSection(
    [fakeAnalysis(1, 10, 4, 3, 0.3), fakeAnalysis(0, 10, 2, 2, 0.1), fakeAnalysis(0, 1, 5, 1.5, 0)],
    figures,
  ).join('\n');
  // k = 2, 4: mean 3, sample std √2 = 1.41; ratio 2, 3: 2.5 ± 0.707; conflicts 10%, 30%: 20%.
  assert.ok(md.includes('| MMPareto | 10 | gray | 2 | 2.50 ± 0.707 | 3.00 ± 1.41 | 2.00–4.00 | 1/2 | 20.00% |'), md);
  assert.ok(md.includes('| MMPareto | 1 | gray | 1 | 1.50 | 5.00 | 5.00–5.00 | 1/1 | 0.00% |'), md);
  assert.ok(md.includes('k > 1 in 3 of 3 (checkpoint, encoder) cases and k > 3 in 2'), md);
  assert.ok(md.indexOf('| MMPareto | 1 | gray') < md.indexOf('| MMPareto | 10 | gray'), 'epochs in order');
  assert.ok(
    figures['k-by-checkpoint.svg'] && figures['grad-norms-mmpareto-seed0-epoch10-gray.svg'],
    Object.keys(figures).join(),
  );
});

test.run();
