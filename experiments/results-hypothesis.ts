// The Hypothesis 1 section of docs/RESULTS.md: `mmpareto analyze` at the early, middle and final
// checkpoints of the MMPareto and uniform runs, over seeds and per run, with k by checkpoint and
// the |g_m| vs |g_u| histograms (the paper's Fig. 1d).
import type { GradientAnalysis } from '../train/analyze/gradients.ts';
import { histogram, histogramChart, lineChart, type LineSeries } from '../train/report/svg.ts';
import { byOrder, name, pct } from './results-tables.ts';
import { mean, sampleStd } from './stats.ts';

export function hypothesisSection(analyses: readonly GradientAnalysis[], figures: Record<string, string>): string[] {
  const out = ['## Hypothesis 1 at fixed weights (`mmpareto analyze`)', ''];
  if (!analyses.length)
    return [
      ...out,
      'No analysis yet: run `tsx experiments/sweep.ts --analyze` once the MMPareto and uniform runs have finished.',
      '',
    ];
  out.push(
    "At a checkpoint's weights (nothing updated), per encoder, g_m and g_u on the same training mini-batches: " +
      'mean |g|, the trace of the mini-batch gradient covariance tr C = Σ‖g_i − ḡ‖²/(N − 1), k = ' +
      'tr C^u / tr C^m, and the share of batches with cos(g_m, g_u) < 0. The paper: the unimodal ' +
      'gradient is larger with a larger covariance, k "often more than 3".',
    '',
  );
  const sorted = [...analyses].sort(
    (a, b) => byOrder(a.run.method, b.run.method) || a.run.seed - b.run.seed || a.checkpoint.epoch - b.checkpoint.epoch,
  );
  const f = (x: number) => x.toPrecision(3);
  const encoders = [...new Set(sorted.flatMap((a) => Object.keys(a.encoders)))];
  out.push(
    'Over seeds, per method, checkpoint and encoder: mean ± sample std of |g_u|/|g_m| and of k, the ' +
      'smallest and largest k, and the mean share of batches with cos < 0.',
    '',
    '| method | epoch | encoder | seeds | \\|g_u\\|/\\|g_m\\| | k | k min–max | k > 3 | cos < 0 |',
    '|---|---|---|---|---|---|---|---|---|',
  );
  const ms = (xs: number[]) => (xs.length > 1 ? `${f(mean(xs))} ± ${f(sampleStd(xs))}` : f(xs[0]!));
  for (const m of [...new Set(sorted.map((a) => a.run.method))])
    for (const ep of [...new Set(sorted.filter((a) => a.run.method === m).map((a) => a.checkpoint.epoch))].sort(
      (a, b) => a - b,
    ))
      for (const g of encoders) {
        const es = sorted
          .filter((a) => a.run.method === m && a.checkpoint.epoch === ep && a.encoders[g])
          .map((a) => a.encoders[g]!);
        if (!es.length) continue;
        const ks = es.map((e) => e.k);
        out.push(
          `| ${name(m)} | ${ep} | ${g} | ${es.length} | ${ms(es.map((e) => e.normRatio))} | ${ms(ks)} | ` +
            `${f(Math.min(...ks))}–${f(Math.max(...ks))} | ${ks.filter((k) => k > 3).length}/${ks.length} | ` +
            `${pct(mean(es.map((e) => e.conflictFraction)))}% |`,
        );
      }
  out.push('', 'Per run:', '');
  out.push(
    '| method | seed | epoch | encoder | batches | mean \\|g_m\\| | mean \\|g_u\\| | \\|g_u\\|/\\|g_m\\| | tr C^m ' +
      '| tr C^u | k | cos < 0 |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const a of sorted)
    for (const [g, e] of Object.entries(a.encoders)) {
      out.push(
        `| ${name(a.run.method)} | ${a.run.seed} | ${a.checkpoint.epoch} | ${g} | ${a.batches} | ` +
          `${f(e.multimodal.meanNorm)} | ${f(e.unimodal.meanNorm)} | ${f(e.normRatio)} | ` +
          `${f(e.multimodal.covTrace)} | ${f(e.unimodal.covTrace)} | ${f(e.k)} | ` +
          `${pct(e.conflictFraction)}% |`,
      );
    }
  const ks = sorted.flatMap((a) => Object.values(a.encoders).map((e) => e.k));
  const over3 = ks.filter((k) => k > 3).length;
  const over1 = ks.filter((k) => k > 1).length;
  out.push(
    '',
    `k > 1 in ${over1} of ${ks.length} (checkpoint, encoder) cases and k > 3 in ${over3}; k ranges from ` +
      `${f(Math.min(...ks))} to ${f(Math.max(...ks))}.`,
    '',
  );
  const series: LineSeries[] = [];
  for (const m of [...new Set(sorted.map((a) => a.run.method))]) {
    for (const g of [...new Set(sorted.flatMap((a) => Object.keys(a.encoders)))]) {
      const epochs = [...new Set(sorted.filter((a) => a.run.method === m).map((a) => a.checkpoint.epoch))].sort(
        (a, b) => a - b,
      );
      series.push({
        name: `${m} ${g}`,
        points: epochs.map(
          (ep) =>
            [
              ep,
              mean(
                sorted
                  .filter((a) => a.run.method === m && a.checkpoint.epoch === ep && a.encoders[g])
                  .map((a) => a.encoders[g]!.k),
              ),
            ] as const,
        ),
      });
    }
  }
  figures['k-by-checkpoint.svg'] = lineChart(series, {
    title: 'k = tr C^u / tr C^m by checkpoint (mean over seeds)',
    xLabel: 'epoch of the checkpoint',
    yLabel: 'k',
    integerX: true,
  });
  out.push('![k by checkpoint](figures/k-by-checkpoint.svg)', '');
  // Fig. 1d: per-batch |g_m| and |g_u| at the final checkpoint of the lowest seed, per method and encoder.
  for (const m of [...new Set(sorted.map((a) => a.run.method))]) {
    const ofM = sorted.filter((a) => a.run.method === m);
    const seed = Math.min(...ofM.map((a) => a.run.seed));
    const a = ofM.filter((x) => x.run.seed === seed).sort((x, y) => y.checkpoint.epoch - x.checkpoint.epoch)[0]!;
    for (const [g, e] of Object.entries(a.encoders)) {
      const lo = Math.min(...e.multimodal.norms, ...e.unimodal.norms);
      const hi = Math.max(...e.multimodal.norms, ...e.unimodal.norms);
      const bins = 20;
      const range: [number, number] = hi > lo ? [lo, hi] : [lo - 0.5, hi + 0.5];
      const edges = Array.from({ length: bins + 1 }, (_, k) => range[0] + ((range[1] - range[0]) * k) / bins);
      const file = `grad-norms-${m}-seed${seed}-epoch${a.checkpoint.epoch}-${g}.svg`;
      figures[file] = histogramChart(
        edges,
        [
          { name: '|g_m| multimodal', counts: histogram(e.multimodal.norms, bins, range) },
          { name: '|g_u| unimodal', counts: histogram(e.unimodal.norms, bins, range) },
        ],
        {
          title: `|g_m| vs |g_u| at fixed weights: ${m}, seed ${seed}, epoch ${a.checkpoint.epoch}, '${g}'`,
          xLabel: 'gradient norm over the encoder',
          yLabel: 'mini-batches',
        },
      );
      out.push(`![gradient norms ${m} ${g}](figures/${file})`);
    }
  }
  return [...out, ''];
}
