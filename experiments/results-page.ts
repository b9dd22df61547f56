// docs/RESULTS.md and its figures from the committed summaries (pure: data in, text out;
// experiments/summarize.ts does the reading and writing). Works on partial results: every table
// shows what exists and the page lists the planned runs that are missing.
import type { GradientAnalysis } from '../train/analyze/gradients.ts';
import { lineChart } from '../train/report/svg.ts';
import { barChart } from './figures.ts';
import { budgetLabel, runName, type Budget, type PlannedRun } from './plan.ts';
import { mean } from './stats.ts';
import {
  accuracyTable,
  byOrder,
  fusedOnlyNote,
  headsOf,
  mainHeads,
  meanSeries,
  name,
  pairedTable,
  PAPER_TABLE3,
  PAPER_TABLE5,
  pct,
  verdict,
} from './results-tables.ts';
import { hypothesisSection } from './results-hypothesis.ts';
import { pilotSection } from './results-pilot.ts';
import type { RunSummary } from './summary.ts';

export interface ResultsInput {
  budget: Budget;
  plan: readonly PlannedRun[];
  /** Summaries at the plan's budget. */
  runs: readonly RunSummary[];
  analyses: readonly GradientAnalysis[];
  pilot: readonly RunSummary[];
  /** Pairing problems (empty: every seed's runs share weights and data). */
  pairing: readonly string[];
}

export interface ResultsPage {
  markdown: string;
  /** File name (under docs/figures) → standalone-able inline SVG. */
  figures: Record<string, string>;
}

function datasetSection(ds: string, runs: readonly RunSummary[], figures: Record<string, string>): string[] {
  const heads = headsOf(runs);
  const cg = ds === 'cg-fmnist';
  const out: string[] = [];
  out.push(`## ${cg ? 'CG-FMNIST' : 'Multi-FMNIST'}: test accuracy`, '');
  const beside = cg
    ? "Beside it, the paper's Table 3 on CG-MNIST — **a different data set**: ours is built from Fashion-MNIST " +
      '(harder items, the same colour shortcut), so only the orderings are comparable, not the numbers.'
    : "Beside it, the paper's Table 5 on MultiMNIST with 50% salt-and-pepper noise on the right half; ours pairs " +
      'Fashion-MNIST items, so only the orderings compare.';
  out.push(
    `Test accuracy (%) of the best epoch by validation, as mean ± sample standard deviation over the seeds. ${beside}`,
    '',
  );
  out.push(
    ...accuracyTable(
      runs,
      'best',
      cg ? PAPER_TABLE3 : PAPER_TABLE5,
      cg ? ['paper CG-MNIST acc', 'paper macro-F1'] : ['paper task 1 (left)', 'paper task 2 (right)'],
    ),
    '',
  );
  const note = fusedOnlyNote(runs);
  if (note) out.push(note, '');
  const paired = pairedTable(runs, heads, 'best');
  out.push(
    `Paired differences against uniform (same seed: same initial weights, data and order), test accuracy of the ` +
      `best epoch:`,
    '',
    ...paired.lines,
    '',
  );
  const main = mainHeads(runs);
  for (const h of main)
    out.push(verdict(paired.mmp.get(h), `${cg ? 'CG-FMNIST' : 'Multi-FMNIST'} (${h} head, best epoch)`), '');
  out.push(
    `The same at the last epoch (no selection on validation):`,
    '',
    ...accuracyTable(runs, 'final', null, []),
    '',
  );
  const pf = pairedTable(runs, main, 'final');
  for (const h of main) out.push(verdict(pf.mmp.get(h), `${h} head, last epoch`), '');
  const methods = [...new Set(runs.map((r) => r.method))].sort(byOrder);
  const fig = `accuracy-${ds}.svg`;
  figures[fig] = barChart(
    methods.map((m) => ({
      name: m,
      values: heads.map((h) => runs.filter((r) => r.method === m).map((r) => 100 * r.best.test.acc[h]!)),
    })),
    {
      title: `${ds}: test accuracy by method (best epoch)`,
      yLabel: 'test accuracy (%)',
      series: heads,
      reference: methods.map((m) => (cg ? [PAPER_TABLE3[m]?.[0]] : (PAPER_TABLE5[m] ?? []))),
    },
  );
  out.push(`![test accuracy by method](figures/${fig})`, '');
  const vfig = `val-curves-${ds}.svg`;
  figures[vfig] = lineChart(
    methods.map((m) => {
      const rs = runs.filter((r) => r.method === m);
      const epochs = rs[0]?.valCurve.map((c) => c.epoch) ?? [];
      return {
        name: m,
        points: epochs.map(
          (e) =>
            [e, mean(rs.map((r) => 100 * (r.valCurve.find((c) => c.epoch === e)?.acc[heads[0]!] ?? NaN)))] as const,
        ),
      };
    }),
    {
      title: `${ds}: validation accuracy '${heads[0]}' (mean over seeds)`,
      xLabel: 'epoch',
      yLabel: 'accuracy (%)',
      integerX: true,
    },
  );
  out.push(`![validation curves](figures/${vfig})`, '');
  // Telemetry: cos β over training (Fig. 1a) and conflict share.
  const withT = runs.filter((r) => r.telemetry);
  const groups = [...new Set(withT.flatMap((r) => Object.keys(r.telemetry!)))];
  if (groups.length) {
    out.push(
      `### Gradient conflicts during training (paper Fig. 1a)`,
      '',
      'From the integrator telemetry (every step; uniform and one-joint-loss log none): mean cos β between g_m and ' +
        'g_u, the share of steps with cos β < 0, and mean |g_u| / mean |g_m| over training, mean ' +
        'over seeds.',
      '',
    );
    out.push(
      '| method | encoder | seeds | mean cos β | steps with cos β < 0 | mean \\|g_u\\| / mean \\|g_m\\| |',
      '|---|---|---|---|---|---|',
    );
    for (const m of methods)
      for (const g of groups) {
        const rs = withT.filter((r) => r.method === m && r.telemetry![g]);
        if (!rs.length) continue;
        const t = rs.map((r) => r.telemetry![g]!);
        out.push(
          `| ${name(m)} | ${g} | ${rs.length} | ${mean(t.map((x) => x.cosMean)).toFixed(3)} | ` +
            `${pct(mean(t.map((x) => x.conflictFraction)))}% | ` +
            `${mean(t.map((x) => x.normRatio)).toFixed(2)} |`,
        );
      }
    out.push('');
    for (const g of groups) {
      const f = `cos-${ds}-${g}.svg`;
      figures[f] = lineChart(
        methods
          .map((m) => ({
            name: m,
            points: meanSeries(
              withT.filter((r) => r.method === m),
              g,
              1,
            ),
          }))
          .filter((s) => s.points.length),
        {
          title: `cos β(g_m, g_u), encoder '${g}' (mean over seeds, binned)`,
          xLabel: 'step',
          yLabel: 'cos β',
          yRange: [-1, 1],
          zeroLine: true,
        },
      );
      out.push(`![cos beta ${g}](figures/${f})`, '');
    }
  }
  return out;
}

export function renderResults(inp: ResultsInput): ResultsPage {
  const figures: Record<string, string> = {};
  const b = inp.budget;
  const have = new Set(inp.runs.map((r) => `${r.dataset}/${runName(r)}`));
  const missing = inp.plan.filter((r) => !have.has(`${r.dataset}/${runName(r)}`));
  const commits = [...new Set(inp.runs.flatMap((r) => r.commits))];
  const adapters = [...new Set(inp.runs.map((r) => r.adapter))];
  const missingList = missing.length
    ? `; **missing**: ${missing.map((r) => `${r.dataset}/${runName(r)}`).join(', ')}`
    : ' (complete)';
  const pairing = inp.pairing.length
    ? `**problems**: ${inp.pairing.join('; ')}`
    : "every seed's runs share initial weights and data.";
  const md: string[] = [
    '# Results: MMPareto against its peers, with statistics',
    '',
    '<!-- Generated by `npx tsx experiments/summarize.ts` from experiments/results; ' +
      'edit that script, not this file. -->',
    '',
    `Budget \`${budgetLabel(b)}\`: ${b.trainLimit.toLocaleString('en-US')} training items for ${b.epochs} epochs ` +
      `(${Math.floor(b.trainLimit / b.batchSize) * b.epochs} steps of ${b.batchSize}), SGD with ` +
      `momentum 0.9 and weight decay 1e-4 at lr ` +
      `${b.lr}${b.lrSchedule === 'cosine' ? ' decayed to 0 by a cosine schedule over the steps' : ' (constant)'} ` +
      `for every method (the paper: constant lr 1e-3; see the pilot below), γ = 1.5, the paper's ` +
      `CNN encoders, validation on ${b.valSize.toLocaleString('en-US')} held-out training items, ` +
      `test on the 10,000 t10k items. Seeds are paired: runs of one seed start from the same ` +
      `weights and see the same data in the same order (checked through each summary's ` +
      `fingerprints).`,
    '',
    `- Runs: ${inp.runs.length} of ${inp.plan.length} planned${missingList}.`,
    `- Pairing: ${pairing}`,
    `- Code: ${commits.length ? commits.map((c) => `\`${c.slice(0, 12)}\``).join(', ') : '—'}; adapter: ` +
      `${adapters.join(', ') || '—'}. Wall times in the summaries were measured on a shared ` +
      `machine and are not benchmarks.`,
    '',
  ];
  for (const ds of ['cg-fmnist', 'multi-fmnist']) {
    const runs = inp.runs.filter((r) => r.dataset === ds);
    if (runs.length) md.push(...datasetSection(ds, runs, figures));
    else md.push(`## ${ds === 'cg-fmnist' ? 'CG-FMNIST' : 'Multi-FMNIST'}`, '', 'No runs yet.', '');
  }
  md.push(...hypothesisSection(inp.analyses, figures));
  md.push(...pilotSection(inp.pilot, inp.runs, b, figures));
  return { markdown: md.join('\n'), figures };
}
