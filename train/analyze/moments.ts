// The statistics of `mmpareto analyze` (train/analyze/gradients.ts): shifted running moments of
// a gradient vector over batches on the GPU (the precision note in gradients.ts says why they are
// shifted), the trace of its covariance from them, sums and dot products over lists of tensors,
// and host quantiles, means and standard deviations of per-batch scalars.
import {
  add,
  concat,
  keep,
  mul,
  mulScalar,
  noGrad,
  reshape,
  square,
  sub,
  sum,
  tidy,
  type Tensor,
} from '../../engine/index.ts';

/** Bad input for analyze (no checkpoint, too few batches, a model without two modalities). */
export class AnalyzeError extends Error {}

/** Sorted-copy quantile (linear interpolation between order statistics, as numpy's default). */
export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(s.length - 1, lo + 1);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export const meanOf = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
export const sampleStdOf = (xs: readonly number[]) => {
  const m = meanOf(xs);
  return xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
};

/**
 * Running moments of one gradient vector (a list of tensors) over batches, on the GPU, shifted by
 * the first batch's gradient (see the precision note at the top): S1 = Σ_i (g_i − g_1) as a
 * vector and S2 = Σ_i (g_i − g_1)² elementwise (summed over the parameters only at the end).
 */
export class ShiftedMoments {
  private shift: Tensor[] | null = null;
  private s1: Tensor[] = [];
  private s2: Tensor[] = [];
  count = 0;

  add(g: readonly Tensor[]): void {
    noGrad(() => {
      if (!this.shift) {
        // Batch 1: d_1 = 0, so S1 and S2 start at zero; the shift is a copy of g_1.
        this.shift = g.map((t) => keep(mulScalar(t, 1)));
        this.s1 = g.map((t) => keep(mulScalar(t, 0)));
        this.s2 = g.map((t) => keep(mulScalar(t, 0)));
      } else {
        if (g.length !== this.shift.length)
          throw new AnalyzeError(`ShiftedMoments.add: ${g.length} tensors, expected ${this.shift.length}`);
        g.forEach((t, i) => {
          const [s1, s2] = tidy(() => {
            const d = sub(t, this.shift![i]!);
            return [add(this.s1[i]!, d), add(this.s2[i]!, square(d))];
          });
          this.s1[i]!.dispose();
          this.s2[i]!.dispose();
          this.s1[i] = keep(s1);
          this.s2[i] = keep(s2);
        });
      }
    });
    this.count++;
  }

  /** [S2, ‖S1‖², ‖ḡ‖²] with ḡ = g_1 + S1/N, as a [3] tensor on the GPU (nothing read back). */
  sums(): Tensor {
    if (!this.shift || this.count < 1) throw new AnalyzeError('ShiftedMoments.sums: no batch added');
    const n = this.count;
    return noGrad(() =>
      tidy(() =>
        concat(
          [
            total(this.s2),
            total(this.s1, square),
            total(
              this.shift!.map((s, i) => add(s, mulScalar(this.s1[i]!, 1 / n))),
              square,
            ),
          ],
          0,
        ),
      ),
    );
  }

  dispose(): void {
    for (const t of [...(this.shift ?? []), ...this.s1, ...this.s2]) t.dispose();
    this.shift = null;
    this.s1 = [];
    this.s2 = [];
  }
}

/** tr C = (S2 − ‖S1‖²/N) / (N − 1) and ‖ḡ‖ from ShiftedMoments.sums() read back (float64 on the host). */
export function traceFromSums(
  s2: number,
  s1sq: number,
  meanSq: number,
  n: number,
): { covTrace: number; normOfMean: number } {
  return { covTrace: Math.max(0, s2 - s1sq / n) / (n - 1), normOfMean: Math.sqrt(meanSq) };
}

/** Σ over the tensors of sum(f(t)) as a [1] tensor. */
export function total(ts: readonly Tensor[], f: (t: Tensor) => Tensor = (t) => t): Tensor {
  return tidy(() => {
    let acc: Tensor | null = null;
    for (const t of ts) {
      const s = reshape(sum(f(t)), [1]);
      acc = acc ? add(acc, s) : s;
    }
    return acc!;
  });
}

/** Σ over the tensors of sum(a_i · b_i) as a [1] tensor: the dot product of two gradient vectors. */
export function dot(a: readonly Tensor[], b: readonly Tensor[]): Tensor {
  return tidy(() => total(a.map((t, i) => mul(t, b[i]!))));
}
