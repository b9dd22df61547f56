// Regenerates docs/RESULTS.md and docs/figures/*.svg from the committed summaries in
// experiments/results (the sweep's runs at the plan's budget, `analyze` outputs under
// <dataset>/<budget>/analysis, and the pilot under pilot/). Partial results are fine: the page
// says which planned runs are missing.
//   tsx experiments/summarize.ts [--results DIR] [--docs DIR]
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { GradientAnalysis } from '../train/analyze/gradients.ts';
import { standaloneSvg } from './figures.ts';
import { SWEEP_BUDGET, budgetLabel, sweepPlan, type Budget } from './plan.ts';
import { renderResults, type ResultsPage } from './results-page.ts';
import { findSummaries, pairingProblems } from './results-dir.ts';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

function readAnalyses(dir: string): GradientAnalysis[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => {
      const a = JSON.parse(readFileSync(join(dir, f), 'utf8')) as GradientAnalysis;
      if (a.type !== 'gradient-analysis') throw new Error(`${join(dir, f)}: not an analysis (type ${String(a.type)})`);
      return a;
    });
}

/** Reads the results for a budget and renders the page (no writing). */
export function collectAndRender(resultsDir: string, budget: Budget = SWEEP_BUDGET): ResultsPage {
  const label = budgetLabel(budget);
  const all = findSummaries(resultsDir);
  const pilotDir = join(resultsDir, 'pilot');
  const main = all.filter((s) => !s.path.startsWith(`${pilotDir}/`) && s.summary.budget.label === label);
  const pilot = all.filter((s) => s.path.startsWith(`${pilotDir}/`)).map((s) => s.summary);
  const analyses = ['cg-fmnist', 'multi-fmnist'].flatMap((ds) => readAnalyses(join(resultsDir, ds, label, 'analysis')));
  return renderResults({
    budget,
    plan: sweepPlan(budget),
    runs: main.map((s) => s.summary),
    analyses,
    pilot,
    pairing: pairingProblems(main),
  });
}

/** Writes RESULTS.md and the figures (the figures directory is regenerated whole). */
export function writeResults(page: ResultsPage, docsDir: string): { markdown: string; figures: string[] } {
  const figDir = join(docsDir, 'figures');
  rmSync(figDir, { recursive: true, force: true });
  mkdirSync(figDir, { recursive: true });
  for (const [f, svg] of Object.entries(page.figures)) writeFileSync(join(figDir, f), standaloneSvg(svg));
  const md = join(docsDir, 'RESULTS.md');
  writeFileSync(md, page.markdown);
  return { markdown: md, figures: Object.keys(page.figures).map((f) => join(figDir, f)) };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values: v } = parseArgs({
    args: process.argv.slice(2),
    options: { results: { type: 'string' }, docs: { type: 'string' } },
    strict: true,
  });
  const resultsDir = resolve(v.results ?? join(ROOT, 'experiments', 'results'));
  const docsDir = resolve(v.docs ?? join(ROOT, 'docs'));
  try {
    const w = writeResults(collectAndRender(resultsDir), docsDir);
    console.log(`wrote ${w.markdown} and ${w.figures.length} figure(s) in ${join(docsDir, 'figures')}`);
  } catch (e) {
    console.error(`summarize: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
