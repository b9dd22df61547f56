// Seeded, stratified splits: within each class (clips sorted by name, then permuted by a
// generator seeded from (seed, class)), the first go to test, the next to val, the rest to
// train: test = max(1, round(testFraction·n)), val = max(1, round(valFraction·(n − test))), so
// every class reaches every split; a class with fewer than 3 clips cannot, and is an error.
import { Generator } from '../../../engine/index.ts';
import { deriveSeed, shuffleInPlace } from '../seed.ts';
import type { SplitName } from './sources.ts';

export class SplitError extends Error {}

/** Assigns each named clip of `byClass` (class → clip names) to a split; `parts` says which splits to carve off. */
export function stratifiedSplit(
  byClass: Map<string, string[]>,
  seed: number,
  fractions: { val: number; test: number },
  parts: readonly ('val' | 'test')[],
): Map<string, SplitName> {
  const out = new Map<string, SplitName>();
  for (const [cls, names] of [...byClass.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const sorted = [...names].sort();
    const need = parts.length + 1;
    if (sorted.length < need) {
      throw new SplitError(
        `class '${cls}' has ${sorted.length} clip(s); a stratified ${['train', ...parts].join('/')} split needs at ` +
          `least ${need} per class (fewer splits: give the official split lists)`,
      );
    }
    const order = shuffleInPlace(
      Int32Array.from(sorted, (_, i) => i),
      new Generator(deriveSeed(seed, 'av-split', cls)),
    );
    let at = 0;
    let left = sorted.length;
    for (const part of ['test', 'val'] as const) {
      if (!parts.includes(part)) continue;
      const k = Math.min(left - 1, Math.max(1, Math.round(fractions[part] * left)));
      for (let i = 0; i < k; i++) out.set(sorted[order[at++]!]!, part);
      left -= k;
    }
    while (at < sorted.length) out.set(sorted[order[at++]!]!, 'train');
  }
  return out;
}

/** Clips per class per split; throws naming the first class absent from a split. */
export function countsBySplit(
  items: readonly { className: string; split: SplitName }[],
  classes: readonly string[],
): Record<SplitName, Record<string, number>> {
  const counts = { train: {}, val: {}, test: {} } as Record<SplitName, Record<string, number>>;
  for (const s of ['train', 'val', 'test'] as const) for (const c of classes) counts[s][c] = 0;
  for (const it of items) counts[it.split][it.className]! += 1;
  return counts;
}

export function checkEveryClassInEverySplit(counts: Record<SplitName, Record<string, number>>, what: string): void {
  for (const s of ['train', 'val', 'test'] as const) {
    const missing = Object.entries(counts[s])
      .filter(([, n]) => n === 0)
      .map(([c]) => c);
    if (missing.length)
      throw new SplitError(
        `${what}: class${missing.length > 1 ? 'es' : ''} ${missing.map((c) => `'${c}'`).join(', ')} ` +
          `ha${missing.length > 1 ? 've' : 's'} no clip in the ${s} split`,
      );
  }
}
