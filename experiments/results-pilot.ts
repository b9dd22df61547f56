// The pilot section of docs/RESULTS.md (experiments/results-page.ts assembles the page): the
// seed-0 uniform pilot runs' validation curves and the budget criterion they were checked against.
import { lineChart } from '../train/report/svg.ts';
import { PILOT_DECISION, budgetLabel, type Budget } from './plan.ts';
import { headsOf, lastFifthChange, pct } from './results-tables.ts';
import type { RunSummary } from './summary.ts';

export function pilotSection(
  pilot: readonly RunSummary[],
  runs: readonly RunSummary[],
  budget: Budget,
  figures: Record<string, string>,
): string[] {
  const out = ['## Pilot: choosing the budget', ''];
  if (pilot.length) {
    out.push(
      'Seed-0 uniform runs on CG-FMNIST (and their curves as committed summaries in experiments/results/pilot). ' +
        "Criterion (issue 14): the multimodal head's validation accuracy changes by less than 1 " +
        'point over the last 20% of training, measured as the largest |acc(e) − acc(E)| over the ' +
        "epochs e ≥ ⌊0.8·E⌋. With a constant learning rate each epoch's order depends only on " +
        '(seed, epoch), so a run of E epochs is exactly the first E epochs of a longer one: a ' +
        "constant-lr pilot shows every shorter budget. A cosine schedule depends on the run's " +
        'length, so a cosine pilot shows only its own E.',
      '',
    );
    const head = (r: RunSummary) => headsOf([r])[0]!;
    const maxE = Math.max(...pilot.map((r) => r.valCurve.length));
    out.push(
      `| pilot run (val %, main head) | ${Array.from({ length: maxE }, (_, i) => `ep ${i + 1}`).join(' | ')} |`,
      `|---|${Array.from({ length: maxE }, () => '---|').join('')}`,
    );
    for (const r of pilot)
      out.push(
        `| ${r.dataset} ${r.method} ${r.budget.label} | ` +
          `${Array.from({ length: maxE }, (_, i) => (r.valCurve[i] ? pct(r.valCurve[i]!.acc[head(r)]!) : '')).join(
            ' | ',
          )} |`,
      );
    out.push(
      '',
      `Change over the last 20% (points) for a run of E epochs:`,
      '',
      `| pilot run | ${Array.from({ length: maxE - 4 }, (_, i) => `E = ${i + 5}`).join(' | ')} |`,
      `|---|${Array.from({ length: maxE - 4 }, () => '---|').join('')}`,
    );
    for (const r of pilot) {
      const cells = Array.from({ length: maxE - 4 }, (_, i) => {
        const E = i + 5;
        if (r.budget.lrSchedule === 'cosine' && E !== r.budget.epochs) return '—';
        const d = lastFifthChange(r.valCurve, head(r), E);
        return Number.isFinite(d) ? d.toFixed(2) : '—';
      });
      out.push(`| ${r.dataset} ${r.method} ${r.budget.label} | ${cells.join(' | ')} |`);
    }
    out.push(
      '',
      `Test accuracy (%) of the pilot runs (best epoch by validation):`,
      '',
      '| pilot run | best epoch | test acc per head |',
      '|---|---|---|',
    );
    for (const r of pilot)
      out.push(
        `| ${r.dataset} ${r.method} ${r.budget.label} | ${r.best.epoch} | ${Object.entries(r.best.test.acc)
          .map(([h, a]) => `${h} ${pct(a)}`)
          .join(', ')} |`,
      );
    out.push('', PILOT_DECISION, '');
    figures['pilot-val.svg'] = lineChart(
      pilot.map((r) => ({
        name:
          `lr ${r.budget.lr}${r.budget.lrSchedule === 'cosine' ? ' cos' : ''}, ` +
          `${r.budget.trainLimit / 1000}k×${r.budget.epochs}`,
        points: r.valCurve.map((c) => [c.epoch, 100 * c.acc[head(r)]!] as const),
      })),
      {
        title: 'pilot (uniform, seed 0): validation accuracy of the mm head',
        xLabel: 'epoch',
        yLabel: 'accuracy (%)',
        integerX: true,
        width: 720,
      },
    );
    out.push('![pilot validation curves](figures/pilot-val.svg)', '');
  }
  const uni = runs.filter((r) => r.method === 'uniform');
  if (uni.length) {
    out.push(
      `The criterion on the sweep's own uniform runs (${budgetLabel(budget)}):`,
      '',
      '| data set | seed | change over the last 20% (points) | holds (< 1) |',
      '|---|---|---|---|',
    );
    for (const r of uni.sort((a, b) => a.dataset.localeCompare(b.dataset) || a.seed - b.seed)) {
      const d = lastFifthChange(r.valCurve, headsOf([r])[0]!, r.budget.epochs);
      out.push(`| ${r.dataset} | ${r.seed} | ${d.toFixed(2)} | ${d < 1 ? 'yes' : 'no'} |`);
    }
    out.push('');
  }
  return out;
}
