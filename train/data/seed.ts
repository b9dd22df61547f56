// Seeds and permutations for everything random in the data: a 32-bit seed derived from a base
// seed and salts (an epoch, a split's name), and Fisher–Yates shuffles drawn from a seeded
// generator. The loader's epoch orders, the data sets' splits and the analysis batches all come
// from here, so the same seed gives the same items everywhere.
import type { Generator as Random } from '../../engine/index.ts';

/**
 * A 32-bit seed derived from a base seed and salts (numbers or strings): FNV-1a over the parts
 * followed by a murmur3 finaliser, so nearby inputs give unrelated seeds.
 */
export function deriveSeed(seed: number, ...salts: (number | string)[]): number {
  let h = 0x811c9dc5;
  const mix = (byte: number) => {
    h = Math.imul(h ^ (byte & 0xff), 0x01000193) >>> 0;
  };
  const word = (v: number) => {
    for (let k = 0; k < 4; k++) mix(v >>> (8 * k));
  };
  const num = (v: number) => {
    if (!Number.isFinite(v)) throw new Error(`deriveSeed: ${v} is not a finite number`);
    word(v >>> 0);
    word(Math.floor(v / 4294967296) >>> 0);
  };
  num(seed);
  for (const s of salts) {
    if (typeof s === 'number') num(s);
    else {
      for (let i = 0; i < s.length; i++) word(s.charCodeAt(i));
      mix(0xff); // terminator: ('ab', 'c') differs from ('a', 'bc')
    }
  }
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** A uniformly random permutation of 0..n-1 (Fisher–Yates) drawn from `g`. */
export function permutation(n: number, g: Random): Int32Array {
  return shuffleInPlace(
    Int32Array.from({ length: n }, (_, i) => i),
    g,
  );
}

/** Fisher–Yates shuffle of `a` in place, drawn from `g`; returns `a`. */
export function shuffleInPlace(a: Int32Array, g: Random): Int32Array {
  for (let i = a.length - 1; i > 0; i--) {
    const j = g.int(i + 1);
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a;
}
