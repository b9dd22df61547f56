// Shared setup for the integrator tests (integrate.test.ts, integrate-telemetry.test.ts): parameter
// groups with named losses, per-loss gradients keyed by parameter, random host gradients and the
// float32-vs-float64 check of a combined gradient.
// Tolerances (u = 2^-24 ≈ 6e-8): the kernels compute h = Σ_j c_j·g_j with c_j from the Gram sums
// g_a·g_b. A Gram sum over n ≤ 7·10^4 products is accumulated in 64 lanes × vec4 of ≤ 256 terms,
// a serial sum of the 64 lanes and of ≤ 2 partial rows, so its error is ≲ 322·u·Σ|a_i b_i|
// ≈ 2e-5·Σ|a_i b_i| (worst case; random rounding gives ~√ of that). The coefficients depend on
// the entries through well-conditioned ratios such as (|g_u|² − g_m·g_u)/|g_m − g_u|², whose
// denominators are ≥ the diagonal entries' scale Σ|a_i b_i|, so c_j is good to ~2e-5 relative.
// Each output element is then K float32 FMAs.
// We therefore check h with rtol 1e-4 and atol 1e-4·max|h| (the atol covers elements where the
// c_j·g_j cancel), and the telemetry scalars with rtol 1e-4.
import { assertClose, randArray } from '../helpers.ts';
import type { Grads } from './reference.ts';
import {
  GradientIntegrator,
  tensor,
  type IntegratorOptions,
  type PerLossGradients,
  type Tensor,
} from '../../engine/index.ts';

export interface Setup {
  params: Tensor[][];
  integrator: GradientIntegrator;
}
/** Group g's K losses are named g<g>l<j>: every group has its own loss values (gradnorm). */
export const lossName = (g: number, j: number) => `g${g}l${j}`;
export function setup(sizes: number[][], k: number, opts: IntegratorOptions): Setup {
  const params = sizes.map((group) => group.map((n) => tensor(new Float32Array(n), [n], { requiresGrad: true })));
  const groups = params.map((ps, g) => ({ params: ps, losses: Array.from({ length: k }, (_, j) => lossName(g, j)) }));
  return { params, integrator: new GradientIntegrator(groups, opts) };
}
export function teardown(s: Setup, ...more: (Tensor[] | Tensor[][])[]): void {
  s.integrator.dispose();
  for (const t of [...s.params.flat(), ...more.flat(2)]) t.dispose();
}

/** grads[g][j][t] (null: loss j does not reach tensor t) keyed by parameter, as perLossGrads gives them. */
export function keyed(
  params: Tensor[][],
  grads: readonly (readonly (readonly (Tensor | null)[])[])[],
): PerLossGradients {
  const out: PerLossGradients = new Map();
  params.forEach((ps, g) => {
    ps.forEach((p, t) => {
      const byLoss: Record<string, Tensor> = {};
      grads[g]!.forEach((list, j) => {
        const gr = list[t];
        if (gr) byLoss[lossName(g, j)] = gr;
      });
      out.set(p, byLoss);
    });
  });
  return out;
}
/** The integrator's result by parameter, as [group][tensor]. */
export const byGroup = (params: Tensor[][], h: Map<Tensor, Tensor>): Tensor[][] =>
  params.map((ps) => ps.map((p) => h.get(p)!));
/** Loss values lossVals[g][j] by name. */
export const lossRecord = (values: Tensor[][]): Record<string, Tensor> =>
  Object.fromEntries(values.flatMap((list, g) => list.map((l, j) => [lossName(g, j), l])));

/** Host gradients gs[j][t] for one group (float32-representable values) and their device copies. */
export function upload(gs: Grads): Tensor[][] {
  return gs.map((list) => list.map((x) => tensor(Float32Array.from(x), [x.length])));
}
export function randomGrads(
  k: number,
  sizes: number[],
  seed: number,
  f?: (j: number, x: Float64Array[], t: number, i: number) => number,
): Grads {
  const base = Array.from({ length: k }, (_, j) => sizes.map((n, t) => randArray(n, seed + 97 * j + t)));
  if (!f) return base;
  return base.map((list, j) =>
    list.map((x, t) =>
      Float64Array.from(
        Float32Array.from(x, (_, i) =>
          f(
            j,
            base.map((l) => l[t]!),
            t,
            i,
          ),
        ),
      ),
    ),
  );
}

export const maxAbs = (xs: Float64Array[]) => xs.reduce((m, x) => x.reduce((mm, v) => Math.max(mm, Math.abs(v)), m), 0);
export async function expectH(out: Tensor[], ref: Float64Array[], what: string): Promise<void> {
  const atol = 1e-4 * maxAbs(ref);
  for (let t = 0; t < out.length; t++)
    assertClose(await out[t]!.toArray(), ref[t]!, 1e-4, atol, `${what}, tensor ${t}`);
}
