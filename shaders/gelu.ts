// GELU, elementwise, with torch semantics, forward and fused backward (dgelu/dx · g):
//  - 'none' (exact):  gelu(x) = x·Φ(x),  Φ(x) = ½·erfc(−x/√2);  gelu'(x) = Φ(x) + x·φ(x), φ(x) = e^(−x²/2)/√(2π).
//  - 'tanh':          gelu(x) = ½x·(1 + tanh(a)), a = √(2/π)·(x + 0.044715x³), computed as x·σ(2a)
//                     (1 + tanh a = 2σ(2a));  gelu'(x) = σ(2a) + 2x·σ(2a)(1 − σ(2a))·a'.
//
// WGSL has no erf. erfc(z), z ≥ 0, is Abramowitz & Stegun 7.1.26:
//   erfc(z) ≈ t·(a1 + t·(a2 + t·(a3 + t·(a4 + t·a5))))·e^(−z²),  t = 1/(1 + p·z),
// absolute error ≤ 1.5e-7 (plus a few float32 roundings), so Φ is within 7.5e-8 + O(u) absolutely
// and gelu within |x|·7.5e-8 + O(u·|gelu|). Φ takes erfc of |x|/√2 and uses Φ = 1 − ½erfc for
// x ≥ 0: no 1 + erf(x) cancellation, so gelu → x exactly for large x and → −0 (never NaN) for
// large negative x, where e^(−z²) underflows. σ(2a) is formed from e^(−2|a|) ≤ 1 (no overflow).
// Four elements per invocation (vec4) when the size is a multiple of 4 (`vec` variant).
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { flatKernel } from './common.ts';

export type GeluApproximate = 'none' | 'tanh';

const FUNCS = /* wgsl */ `
const INV_SQRT2 = 0.70710678118654752;
const INV_SQRT_2PI = 0.39894228040143268;
const SQRT_2_OVER_PI = 0.79788456080286536;
const GELU_C = 0.044715;

// Abramowitz & Stegun 7.1.26 for z >= 0 (|error| <= 1.5e-7).
fn erfc_nonneg(z: V) -> V {
  let t = 1.0 / (1.0 + 0.3275911 * z);
  let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  return poly * exp(-z * z);
}
// Φ(x), the standard normal CDF.
fn phi_cdf(x: V) -> V {
  let h = 0.5 * erfc_nonneg(abs(x) * INV_SQRT2);
  return select(1.0 - h, h, x < V(0.0));
}
// σ(2a) and 1 − σ(2a) from e^(−2|a|) (no overflow at any a).
fn sig2(a: V) -> array<V, 2> {
  let e = exp(-2.0 * abs(a));
  let r = 1.0 / (1.0 + e);
  let hi = r;     // σ(2|a|)
  let lo = e * r; // 1 − σ(2|a|)
  let neg = a < V(0.0);
  return array<V, 2>(select(hi, lo, neg), select(lo, hi, neg));
}
fn tanh_arg(x: V) -> V { return SQRT_2_OVER_PI * (x + GELU_C * x * x * x); }
`;

const PRELUDE = (vec: boolean) => `alias V = ${vec ? 'vec4<f32>' : 'f32'};
${FUNCS}`;

/** n = elements in V units. */
export const geluForwardKernel = flatKernel({
  name: 'gelu',
  variant: { approximate: 'none' as GeluApproximate, vec: false },
  params: { n: 'u32' },
  bindings: { xs: { read: 'V' }, ys: { write: 'V' } },
  prelude: (v) => PRELUDE(v.vec),
  main: ({ approximate }) => wgsl`  if (i >= params.n) { return; }
  let x = xs[i];
#if ${approximate === 'tanh'}
  ys[i] = x * sig2(tanh_arg(x))[0];
#else
  ys[i] = x * phi_cdf(x);
#endif`,
  count: (p) => p.n,
});

export const geluBackwardKernel = flatKernel({
  name: 'geluGrad',
  variant: { approximate: 'none' as GeluApproximate, vec: false },
  params: { n: 'u32' },
  bindings: { xs: { read: 'V' }, gy: { read: 'V' }, dx: { write: 'V' } },
  prelude: (v) => PRELUDE(v.vec),
  main: ({ approximate }) => wgsl`  if (i >= params.n) { return; }
  let x = xs[i];
#if ${approximate === 'tanh'}
  let s = sig2(tanh_arg(x));
  let da = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x);
  dx[i] = gy[i] * (s[0] + 2.0 * x * s[0] * s[1] * da);
#else
  dx[i] = gy[i] * (phi_cdf(x) + x * exp(-0.5 * x * x) * INV_SQRT_2PI);
#endif`,
  count: (p) => p.n,
});
