// A results directory's summaries: finding every summary JSON under it and checking that the
// runs of one (data set, budget, seed) are paired (same initial weights and training data).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readSummary, type RunSummary } from './summary.ts';

/** Every summary JSON under a results directory (not the analysis/ outputs). */
export function findSummaries(resultsDir: string): { path: string; summary: RunSummary }[] {
  const out: { path: string; summary: RunSummary }[] = [];
  const walk = (d: string) => {
    if (!existsSync(d)) return;
    for (const f of readdirSync(d).sort()) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) {
        if (f !== 'analysis') walk(p);
      } else if (f.endsWith('.json')) out.push({ path: p, summary: readSummary(p) });
    }
  };
  walk(resultsDir);
  return out;
}

/**
 * Pairing check: summaries of one (data set, budget, seed) must share the initial-weights and
 * data fingerprints. Returns one line per mismatch (empty when paired).
 */
export function pairingProblems(summaries: readonly { path: string; summary: RunSummary }[]): string[] {
  const groups = new Map<string, { path: string; summary: RunSummary }[]>();
  for (const s of summaries) {
    const key = `${s.summary.dataset}/${s.summary.budget.label}/seed${s.summary.seed}`;
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  const problems: string[] = [];
  for (const [key, g] of groups) {
    const [ref, ...rest] = g;
    for (const s of rest) {
      for (const what of ['init', 'data'] as const) {
        if (s.summary.pairing[what] !== ref!.summary.pairing[what]) {
          problems.push(
            `${key}: ${s.summary.method} and ${ref!.summary.method} differ in their ` +
              `${what === 'init' ? 'initial weights' : 'training data or order'} ` +
              `(${s.summary.pairing[what]} vs ${ref!.summary.pairing[what]})`,
          );
        }
      }
    }
  }
  return problems;
}
