// gradcheck: analytic gradients (reverse mode) against central finite differences,
// like torch.autograd.gradcheck but for a float32 engine.
//
// Tolerances. The check compares J^T v for a random cotangent v, i.e. the gradient of
// f(x) = Σ_i v_i·y_i(x), evaluated in float64 on the host from float32 outputs.
//  - Each float32 output carries a rounding error of at most k·u·|y_i| (u = 2^-24; k ULPs,
//    default 64: a few ULPs per elementary op plus reductions over hundreds of terms).
//    A central difference divides twice that by 2h, so its roundoff is ≤ k·u·S/h with
//    S = Σ|v_i·y_i|: that is `atol`, computed per input from the measured S.
//  - Truncation is h²/6·|f'''|; with h = 1e-2 and O(1) inputs away from kinks that is
//    ~1e-4 relative, and the analytic side's own rounding ~1e-6: `rtol` = 5e-3 covers both.
// The step is applied in float32, so the actual (x+h) − (x−h) is used as the denominator.
//
// NaN and ±Inf: outputs that are NaN at the point get a zero cotangent (the check covers the
// derivatives of the finite outputs), non-finite input elements are not perturbed (their
// derivative has no finite difference: test those against a reference), and a NaN anywhere else
// — analytic or numeric — fails the check instead of comparing false.
import { grad } from './backward.ts';
import { EngineError } from './errors.ts';
import { noGrad } from './graph.ts';
import { tensor } from './creation.ts';
import { Generator } from './random.ts';
import type { Tensor } from './tensor.ts';

export interface GradcheckOptions {
  /** Finite-difference step (default 1e-2). */
  eps?: number;
  /** Relative tolerance (default 5e-3). */
  rtol?: number;
  /** Absolute tolerance; default derived from float32 rounding as described above. */
  atol?: number;
  /** ULPs of float32 error allowed per output when deriving atol (default 64). */
  ulps?: number;
  /** Which inputs to check (default: every float32 input). */
  check?: readonly boolean[];
  /** Seed of the random cotangent. */
  seed?: number;
  /** Throw an EngineError describing the worst element on failure (default true). */
  raise?: boolean;
}

export interface GradcheckResult {
  ok: boolean;
  /** Per checked input: worst |analytic − numeric| and the tolerance it was held to there. */
  inputs: {
    index: number;
    maxAbsErr: number;
    tolAtWorst: number;
    worstElement: number;
    analytic: number;
    numeric: number;
  }[];
  evaluations: number;
}

const U = 2 ** -24;

async function evalF(
  fn: (...xs: Tensor[]) => Tensor,
  xs: Tensor[],
  v: Float32Array,
): Promise<{ f: number; s: number }> {
  const y = noGrad(() => fn(...xs));
  if (y.size !== v.length)
    throw new EngineError(`gradcheck: output size changed between evaluations (${y.size} vs ${v.length})`);
  const out = await y.toArray();
  y.dispose();
  let f = 0;
  let s = 0;
  for (let i = 0; i < v.length; i++) {
    if (v[i] === 0) continue; // NaN outputs at the point carry no cotangent (0·NaN would be NaN)
    f += v[i]! * out[i]!;
    s += Math.abs(v[i]! * out[i]!);
  }
  return { f, s };
}

/**
 * Checks the gradients of `fn` at `inputs` (which are not modified).
 * `fn` must be deterministic and differentiable at the point (no ReLU kinks, no max ties).
 */
export async function gradcheck(
  fn: (...xs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  opts: GradcheckOptions = {},
): Promise<GradcheckResult> {
  const eps = opts.eps ?? 1e-2;
  const rtol = opts.rtol ?? 5e-3;
  const ulps = opts.ulps ?? 64;
  const host = await Promise.all(inputs.map(async (t) => Float32Array.from(await t.toArray())));
  const upload = (i: number, data: Float32Array, requiresGrad = false) =>
    tensor(data, inputs[i]!.shape, { dtype: inputs[i]!.dtype, device: inputs[i]!.device, requiresGrad });
  const checked = inputs.map((t, i) => (opts.check?.[i] ?? true) && t.dtype === 'float32');

  // Analytic: J^T v through reverse mode.
  const leaves = host.map((h, i) => upload(i, h, checked[i]));
  const y = fn(...leaves);
  const y0 = await y.toArray();
  const gen = new Generator(opts.seed ?? 1234);
  const v = new Float32Array(y.size);
  for (let i = 0; i < v.length; i++) {
    const u = gen.uniform(); // drawn for every element, NaN outputs included, to keep the stream
    v[i] = Number.isNaN(y0[i]) ? 0 : u * 2 - 1;
  }
  const vt = tensor(v, y.shape, { device: y.device });
  const wrt = leaves.filter((_, i) => checked[i]);
  const grads = wrt.length ? grad([y], wrt, { gradOutputs: [vt], allowUnused: true }) : [];
  const analytic = await Promise.all(grads.map((g) => g.toArray()));
  for (const t of [y, vt, ...grads]) t.dispose();

  const result: GradcheckResult = { ok: true, inputs: [], evaluations: 0 };
  let k = 0;
  for (let i = 0; i < inputs.length; i++) {
    if (!checked[i]) continue;
    const a = analytic[k++]!;
    let worst = { index: i, maxAbsErr: 0, tolAtWorst: 0, worstElement: -1, analytic: 0, numeric: 0, excess: -Infinity };
    for (let j = 0; j < host[i]!.length; j++) {
      const x0 = host[i]![j]!;
      if (!Number.isFinite(x0)) continue;
      const plus = Float32Array.from(host[i]!);
      const minus = Float32Array.from(host[i]!);
      plus[j] = x0 + eps;
      minus[j] = x0 - eps;
      const h = plus[j]! - minus[j]!;
      const run = async (data: Float32Array) => {
        const xs = leaves.map((l, m) => (m === i ? upload(i, data) : l));
        const r = await evalF(fn, xs, v);
        xs[i]!.dispose();
        return r;
      };
      const [fp, fm] = [await run(plus), await run(minus)];
      result.evaluations += 2;
      const numeric = (fp.f - fm.f) / h;
      const atol = opts.atol ?? (ulps * U * Math.max(fp.s, fm.s)) / (h / 2);
      const tol = atol + rtol * Math.abs(numeric);
      const err = Math.abs(a[j]! - numeric);
      const excess = Number.isNaN(err - tol) ? Infinity : err - tol;
      if (excess > worst.excess)
        worst = { index: i, maxAbsErr: err, tolAtWorst: tol, worstElement: j, analytic: a[j]!, numeric, excess };
    }
    const { excess, ...rec } = worst;
    result.inputs.push(rec);
    if (excess > 0) result.ok = false;
  }
  for (const l of leaves) l.dispose();
  if (!result.ok && (opts.raise ?? true)) {
    const bad = result.inputs.filter((r) => !(r.maxAbsErr <= r.tolAtWorst));
    throw new EngineError(
      'gradcheck failed:\n' +
        bad
          .map(
            (r) =>
              `  input ${r.index} [${inputs[r.index]!.shape}], element ${r.worstElement}: analytic ${r.analytic}, ` +
              `numeric ${r.numeric}, |diff| ${r.maxAbsErr.toExponential(3)} > tol ` +
              `${r.tolAtWorst.toExponential(3)}`,
          )
          .join('\n'),
    );
  }
  return result;
}
