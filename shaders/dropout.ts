// Dropout with a counter-based RNG: the mask bit of element i is a hash of (seed, i), so no mask
// buffer exists; backward runs this same kernel on the upstream gradient with the same seed
// (dx = mask·scale·g). Element i is kept when h(seed, i) >= threshold, threshold = ⌊p·2³²⌋, so
// P(keep) = 1 − p to within 2⁻³²; kept elements are scaled by 1/(1 − p) (passed as `scale`).
// `drop_all` (p = 1) writes zeros; a dropped element is exactly 0, even where x is inf or NaN.
// Four elements per invocation (vec4) when the size allows.
//
// h is two rounds of the PCG-style integer permutation (an LCG step followed by a
// state-dependent xorshift and a multiply), with the seed mixed in between:
//   k = pcg(seed),  h = pcg(pcg(i ^ k) ^ seed).
// Each round is a bijection on u32, so for a fixed seed distinct indices give distinct hashes.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { flatKernel } from './common.ts';

/** n = elements in F units (f32, or vec4<f32> when the size allows). */
export const dropoutKernel = flatKernel({
  name: 'dropout',
  variant: { vec: false },
  params: { n: 'u32', threshold: 'u32', drop_all: 'u32', seed: 'u32', scale: 'f32' },
  bindings: { xs: { read: 'F' }, ys: { write: 'F' } },
  prelude: ({ vec }) => `alias U = ${vec ? 'vec4<u32>' : 'u32'};
alias F = ${vec ? 'vec4<f32>' : 'f32'};

fn pcg(v: U) -> U {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> U(28u)) + U(4u))) ^ state) * 277803737u;
  return (word >> U(22u)) ^ word;
}`,
  main: ({ vec }) => wgsl`  if (i >= params.n) { return; }
#if ${vec}
  let idx = U(4u * i) + vec4<u32>(0u, 1u, 2u, 3u);
#else
  let idx = i;
#endif
  let k = pcg(U(params.seed));
  let h = pcg(pcg(idx ^ k) ^ U(params.seed));
  let keep = (h >= U(params.threshold)) & (U(params.drop_all) == U(0u));
  ys[i] = select(F(0.0), xs[i] * params.scale, keep); // dropped: exactly 0 (even for inf/NaN inputs)`,
  count: (p) => p.n,
});
