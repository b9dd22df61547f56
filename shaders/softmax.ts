// softmax / logSoftmax along one axis of an (outer, D, inner) view, forward and fused backward.
//
// A "row" is the D elements x[o, 0..D, i]: row r = o·inner + i starts at o·D·inner + i and its
// elements are `inner` apart, so any axis runs in place (no permute); for the last axis inner = 1.
// One invocation per row, serial reductions, no workgroup memory or barriers (the lavapipe
// layout explained in shaders/layernorm.ts). When inner = 1 and D % 4 == 0 the rows are bound as
// array<vec4<f32>> (`vec` variant).
//
// Forward, numerically safe at any magnitude: m = max x, s = Σ exp(x − m) ∈ [1, D];
//   softmax = exp(x − m) · (1/s),  logSoftmax = (x − m) − log s   (no m + log s is formed).
// Backward from the saved output y:
//   softmax:    dx = y·(g − Σ g·y)
//   logSoftmax: dx = g − exp(y)·Σ g
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { vectorHelpers } from './common.ts';
import { kernel, spreadGroups } from './kernel.ts';

export type SoftmaxKind = 'softmax' | 'logSoftmax';

/** Rows per workgroup (one invocation per row). */
export const SOFTMAX_ROW_WG = 64;

/** The per-row kernels: n rows, dv = row length in V units, inner = stride between a row's elements (in V units). */
const ROW_KERNEL = {
  params: { n: 'u32', dv: 'u32', inner: 'u32', ninf: 'u32' },
  workgroupSize: SOFTMAX_ROW_WG,
  builtins: { gid: 'global_invocation_id', nwg: 'num_workgroups' },
  prelude: (v: { vec: boolean }) => vectorHelpers(v.vec),
  grid: (p: { n: number }) => spreadGroups(Math.ceil(p.n / SOFTMAX_ROW_WG)),
} as const;

/** First lines: `row`, `dv`, `st` (element stride) and `base` (the row's first element) in scope. */
const ROW_ENTRY = `  let row = gid.x + gid.y * nwg.x * ${SOFTMAX_ROW_WG}u;
  if (row >= params.n) { return; }
  let dv = params.dv;
  let st = params.inner;
  let base = (row / st) * dv * st + row % st;`;

export const softmaxForwardKernel = kernel({
  name: 'softmax',
  variant: { kind: 'softmax' as SoftmaxKind, vec: false },
  ...ROW_KERNEL,
  bindings: { xs: { read: 'V' }, ys: { write: 'V' } },
  main: ({ kind }) => wgsl`${ROW_ENTRY}
  var mx = V(bitcast<f32>(params.ninf)); // -inf (no -inf literal in WGSL)
  for (var j = 0u; j < dv; j++) { mx = max(mx, xs[base + j * st]); }
  let m = hmax(mx);
  var s = V(0.0);
  for (var j = 0u; j < dv; j++) { s += exp(xs[base + j * st] - m); }
#if ${kind === 'softmax'}
  let inv = 1.0 / hsum(s);
  for (var j = 0u; j < dv; j++) { ys[base + j * st] = exp(xs[base + j * st] - m) * inv; }
#else
  let ls = log(hsum(s));
  for (var j = 0u; j < dv; j++) { ys[base + j * st] = (xs[base + j * st] - m) - ls; }
#endif`,
});

export const softmaxBackwardKernel = kernel({
  name: 'softmaxGrad',
  variant: { kind: 'softmax' as SoftmaxKind, vec: false },
  ...ROW_KERNEL,
  bindings: { ys: { read: 'V' }, gy: { read: 'V' }, dx: { write: 'V' } },
  main: ({ kind }) => wgsl`${ROW_ENTRY}
  var acc = V(0.0);
#if ${kind === 'softmax'}
  for (var j = 0u; j < dv; j++) { acc += gy[base + j * st] * ys[base + j * st]; }
  let dot = hsum(acc);
  for (var j = 0u; j < dv; j++) {
    let k = base + j * st;
    dx[k] = ys[k] * (gy[k] - dot);
  }
#else
  for (var j = 0u; j < dv; j++) { acc += gy[base + j * st]; }
  let sg = hsum(acc);
  for (var j = 0u; j < dv; j++) {
    let k = base + j * st;
    dx[k] = gy[k] - exp(ys[k]) * sg;
  }
#endif`,
});
