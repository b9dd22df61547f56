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
import { variants, vectorHelpers } from './common.ts';

export type SoftmaxKind = 'softmax' | 'logSoftmax';

/** Rows per workgroup (one invocation per row). */
export const SOFTMAX_ROW_WG = 64;

// n rows, dv = row length in V units, inner = stride between a row's elements (in V units).
const HEAD = (vec: boolean) => `struct Params { n: u32, dv: u32, inner: u32, ninf: u32 }
@group(0) @binding(0) var<uniform> params: Params;
${vectorHelpers(vec)}`;

/** Entry point: `row`, `dv`, `st` (element stride) and `base` (the row's first element) in scope. */
const ROW_ENTRY = `
@compute @workgroup_size(${SOFTMAX_ROW_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = gid.x + gid.y * nwg.x * ${SOFTMAX_ROW_WG}u;
  if (row >= params.n) { return; }
  let dv = params.dv;
  let st = params.inner;
  let base = (row / st) * dv * st + row % st;`;

function buildForward(kind: SoftmaxKind, vec: boolean): string {
  return wgsl`${HEAD(vec)}
@group(0) @binding(1) var<storage, read> xs: array<V>;
@group(0) @binding(2) var<storage, read_write> ys: array<V>;
${ROW_ENTRY}
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
#endif
}`;
}

function buildBackward(kind: SoftmaxKind, vec: boolean): string {
  return wgsl`${HEAD(vec)}
@group(0) @binding(1) var<storage, read> ys: array<V>;
@group(0) @binding(2) var<storage, read> gy: array<V>;
@group(0) @binding(3) var<storage, read_write> dx: array<V>;
${ROW_ENTRY}
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
#endif
}`;
}

export const softmaxForwardShader = variants(buildForward);
export const softmaxBackwardShader = variants(buildBackward);
