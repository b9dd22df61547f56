// The tables of docs/RESULTS.md (experiments/results-page.ts puts them into sections): accuracy
// by method as mean ± sample std over seeds beside the paper's numbers, paired differences against
// uniform with their t-test, the verdict sentence, and the formatting they share.
import { mean, pairedComparison, sampleStd } from './stats.ts';
import type { RunSummary } from './summary.ts';

export const METHOD_NAMES: Record<string, string> = {
  mmpareto: 'MMPareto',
  uniform: 'uniform (baseline)',
  mgda: 'MGDA (conventional Pareto)',
  'one-joint-loss': 'one joint loss',
  pcgrad: 'PCGrad',
  'mmpareto-official': "MMPareto (authors' code)",
  gradnorm: 'GradNorm',
  metabalance: 'MetaBalance',
};
/** Paper Table 3, CG-MNIST: accuracy and macro-F1. */
export const PAPER_TABLE3: Record<string, [number, number]> = {
  'one-joint-loss': [60.5, 59.89],
  uniform: [75.68, 75.66],
  mgda: [62.0, 61.85],
  gradnorm: [76.16, 76.12],
  pcgrad: [79.35, 77.14],
  metabalance: [79.18, 77.87],
  mmpareto: [81.88, 81.69],
};
/** Paper Table 5, MultiMNIST with 50% salt-and-pepper noise on the right: task 1 (left), task 2 (right). */
export const PAPER_TABLE5: Record<string, [number, number]> = {
  uniform: [86.63, 78.42],
  mgda: [86.95, 77.04],
  gradnorm: [85.95, 79.52],
  pcgrad: [84.74, 76.44],
  metabalance: [87.07, 79.53],
  mmpareto: [87.72, 80.64],
};
export const ORDER = [
  'mmpareto',
  'mmpareto-official',
  'uniform',
  'pcgrad',
  'mgda',
  'one-joint-loss',
  'gradnorm',
  'metabalance',
];
export const byOrder = (a: string, b: string) =>
  ORDER.indexOf(a) + 99 * +(ORDER.indexOf(a) < 0) - (ORDER.indexOf(b) + 99 * +(ORDER.indexOf(b) < 0));
export const name = (m: string) => METHOD_NAMES[m] ?? m;
export const pct = (x: number) => (100 * x).toFixed(2);
export const pm = (xs: number[]) =>
  xs.length ? (xs.length > 1 ? `${pct(mean(xs))} ± ${pct(sampleStd(xs))}` : `${pct(xs[0]!)} (1 seed)`) : '—';
export const signed = (x: number, d = 2) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(d)}`;
/** A statistic with the same minus sign as `signed`, and no plus. */
const minus = (x: number, d = 2) => `${x < 0 ? '−' : ''}${Math.abs(x).toFixed(d)}`;
/** Methods that train on the fused loss L_m alone: their unimodal heads get no gradient. */
export const FUSED_ONLY: ReadonlySet<string> = new Set(['one-joint-loss']);
/** Whether `head` is a unimodal head that `method` never trains. */
const untrained = (method: string, head: string) => FUSED_ONLY.has(method) && head !== 'mm';
export const fmtP = (p: number) => (p < 0.001 ? p.toExponential(1) : p.toFixed(3));

/** Largest |acc(e) − acc(E)| over the epochs e ≥ ⌊0.8·E⌋ of a validation curve that ends at epoch E (points). */
export function lastFifthChange(
  curve: readonly { epoch: number; acc: Record<string, number> }[],
  head: string,
  epochs = curve.length,
): number {
  const pts = curve.filter((c) => c.epoch <= epochs);
  const end = pts.find((c) => c.epoch === epochs);
  if (!end) return NaN;
  const from = Math.floor(0.8 * epochs);
  return 100 * Math.max(...pts.filter((c) => c.epoch >= from).map((c) => Math.abs(c.acc[head]! - end.acc[head]!)));
}

/** The main head of a data set's runs: 'mm', or the tasks. */
export const headsOf = (runs: readonly RunSummary[]): string[] => {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r.best.test.acc)))];
  return keys.includes('mm') ? ['mm', ...keys.filter((k) => k !== 'mm')] : keys;
};

/** The heads a verdict is given for: the fused head, or every task of a multitask set. */
export const mainHeads = (runs: readonly RunSummary[]): string[] => {
  const heads = headsOf(runs);
  return heads.includes('mm') ? ['mm'] : heads;
};

export function accuracyTable(
  runs: readonly RunSummary[],
  which: 'best' | 'final',
  paper: Record<string, number[]> | null,
  paperCols: string[],
): string[] {
  const heads = headsOf(runs);
  const methods = [...new Set(runs.map((r) => r.method))].sort(byOrder);
  const extra = paperCols.map((c) => ` ${c} |`).join('');
  const lines = [
    `| method | seeds | ${heads.map((h) => `test acc ${h} (%)`).join(' | ')} | macro-F1 ${heads[0]} (%) |${extra}`,
    `|---|---|${heads.map(() => '---|').join('')}---|${paperCols.map(() => '---|').join('')}`,
  ];
  for (const m of methods) {
    const rs = runs.filter((r) => r.method === m).sort((a, b) => a.seed - b.seed);
    const cells = heads.map(
      (h) => pm(rs.map((r) => r[which].test.acc[h]!).filter((v) => v !== undefined)) + (untrained(m, h) ? ' †' : ''),
    );
    const f1 = pm(rs.map((r) => r[which].test.macro_f1[heads[0]!]!));
    const ref = paperCols.map((_, i) => paper?.[m]?.[i]?.toFixed(2) ?? '—');
    lines.push(
      `| ${name(m)} | ${rs.map((r) => r.seed).join(', ')} | ${cells.join(' | ')} | ${f1} ` +
        `|${ref.map((x) => ` ${x} |`).join('')}`,
    );
  }
  return lines;
}

/** The footnote to accuracyTable's † marks, or null where no run has them. */
export function fusedOnlyNote(runs: readonly RunSummary[]): string | null {
  const heads = headsOf(runs);
  const fused = [...new Set(runs.map((r) => r.method))].filter((m) => heads.some((h) => untrained(m, h)));
  if (!fused.length) return null;
  return (
    `† ${fused.map(name).join(', ')} trains on the fused loss L_m alone: its unimodal heads get no gradient (their ` +
    'encoders train only through the fused head), so their accuracy is that of an untrained classifier, and the ' +
    'paired table leaves them out.'
  );
}

export function pairedTable(
  runs: readonly RunSummary[],
  heads: string[],
  which: 'best' | 'final',
): { lines: string[]; mmp: Map<string, ReturnType<typeof pairedComparison>> } {
  const base = new Map(runs.filter((r) => r.method === 'uniform').map((r) => [r.seed, r]));
  const methods = [...new Set(runs.map((r) => r.method))].filter((m) => m !== 'uniform').sort(byOrder);
  const lines = [
    '| method − uniform | head | pairs (seeds) | mean difference (points) | 95% CI (t) | t | one-sided p (H1: ' +
      'method > uniform) | method wins |',
    '|---|---|---|---|---|---|---|---|',
  ];
  const mmp = new Map<string, ReturnType<typeof pairedComparison>>(); // MMPareto's, by head
  for (const m of methods) {
    const pairs = runs.filter((r) => r.method === m && base.has(r.seed)).sort((a, b) => a.seed - b.seed);
    for (const h of heads) {
      if (untrained(m, h)) continue; // nothing to compare
      if (pairs.length < 2) {
        lines.push(`| ${name(m)} | ${h} | ${pairs.length} | — | — | — | — | — |`);
        continue;
      }
      const c = pairedComparison(
        pairs.map((r) => 100 * r[which].test.acc[h]!),
        pairs.map((r) => 100 * base.get(r.seed)![which].test.acc[h]!),
      );
      if (m === 'mmpareto') mmp.set(h, c);
      lines.push(
        `| ${name(m)} | ${h} | ${c.n} (${pairs.map((r) => r.seed).join(', ')}) | ${signed(c.meanDiff)} | ` +
          `[${signed(c.ci95[0])}, ${signed(c.ci95[1])}] | ${minus(c.t)} | ${fmtP(c.pGreater)} | ` +
          `${c.wins}/${c.n} |`,
      );
    }
  }
  return { lines, mmp };
}

export function verdict(c: ReturnType<typeof pairedComparison> | undefined, what: string): string {
  if (!c) return `MMPareto vs uniform on ${what}: fewer than two paired seeds so far; no test yet.`;
  const sig = c.pGreater < 0.05;
  return (
    `**MMPareto vs uniform on ${what}, ${c.n} paired seeds:** mean difference ${signed(c.meanDiff)} points, ` +
    `95% CI [${signed(c.ci95[0])}, ${signed(c.ci95[1])}], one-sided paired t-test p = ` +
    `${fmtP(c.pGreater)} — ` +
    `${sig ? 'significant at the 5% level' : 'not significant at the 5% level'}; MMPareto is ` +
    `ahead on ${c.wins} of ${c.n} seeds.`
  );
}

/** Mean over runs of a binned telemetry column (bins align: same budget, same steps). */
export function meanSeries(runs: readonly RunSummary[], group: string, col: 1 | 2 | 3 | 4): [number, number][] {
  const series = runs.map((r) => r.telemetry?.[group]?.series).filter((s): s is NonNullable<typeof s> => !!s);
  if (!series.length) return [];
  const len = Math.min(...series.map((s) => s.length));
  return Array.from(
    { length: len },
    (_, i) => [series[0]![i]![0], mean(series.map((s) => s[i]![col]))] as [number, number],
  );
}
