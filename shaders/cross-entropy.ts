// Fused softmax cross-entropy over the rows of a (N, C) logits matrix. Per row i with label
// y = labels[i]:
//   m = max_c x_c,  ls = log Σ_c exp(x_c − m)   (every term ≤ 1, the sum ≥ 1: no overflow at any
//   magnitude), and −log p_c = (m − x_c) + ls, computed without forming lse = m + ls, so logits
//   of ±1000 lose nothing to cancellation.
// Forward writes loss[i], tw[i] = w_y (the target's class weight, the mean's denominator term)
// and stats[2i..2i+1] = (m, ls) for backward. Backward writes
//   dx_j = g_i · (p_j·A − (1−ε)·w_y·[j = y] − (ε/C)·w_j),   A = (1−ε)·w_y + (ε/C)·Σ_c w_c,
// the derivative of the per-row loss (1−ε)·w_y·(−log p_y) + (ε/C)·Σ_c w_c·(−log p_c).
// A label outside [0, C) makes loss, tw and the whole gradient row NaN (never a finite value).
//
// Two layouts, chosen by shape on the host (engine/ops/cross-entropy.ts), one source (`entry`):
//  - `rows` (the default, tuned for lavapipe as in shaders/layernorm.ts): one invocation per row,
//    serial reductions, no workgroup memory or barriers. The weight loads are workgroup-uniform
//    (same column in every lane).
//  - `wide`: one 64-invocation workgroup per row, each lane a strided share of the row, the lanes'
//    partials combined in workgroup memory (one barrier pair per reduction), for a few very long
//    rows, where one invocation per row would leave a real GPU nearly idle.
// When C % 4 == 0 (`vec`) logits, weights and dx are bound as array<vec4<f32>>: one vec4 load per
// 4 elements and 4 partial sums per lane. Backward writes the row without the label term, then
// the lane that wrote the label's V rewrites that entry with it.
// Weights are a compile-time variant: unweighted kernels use w = 1 and bind no weight buffer.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { vectorHelpers } from './common.ts';
import { kernel, spreadGroups, type Builtins } from './kernel.ts';

export type CrossEntropyLayout = 'rows' | 'wide';

/** Rows per workgroup of the `rows` layout (one invocation per row). */
export const CE_ROW_WG = 16;
/** Invocations per row (one workgroup) of the `wide` layout. */
const CE_WIDE_WG = 64;

/** n rows of c columns (cv in V units), NaN and −inf bit patterns, (1 − ε) and ε / C. */
const PARAMS = {
  n: 'u32',
  c: 'u32',
  cv: 'u32',
  nan: 'u32',
  ninf: 'u32',
  one_minus_eps: 'f32',
  eps_over_c: 'f32',
} as const;

/**
 * `V` (f32 or vec4<f32>) with its horizontal sum and max, and element access by flat index: x_at /
 * w_at (scalar), wv (a V of weights), and, for backward, dx_set.
 */
const HELPERS = (weighted: boolean, vec: boolean, backward: boolean) => `${vectorHelpers(vec)}
fn x_at(k: u32) -> f32 { return ${vec ? 'xs[k / 4u][k % 4u]' : 'xs[k]'}; }
${backward ? `fn dx_set(k: u32, v: f32) { ${vec ? 'dx[k / 4u][k % 4u]' : 'dx[k]'} = v; }` : ''}
${weighted ? '' : '// unweighted variant: w = 1'}
fn w_at(k: u32) -> f32 { return ${weighted ? (vec ? 'weights[k / 4u][k % 4u]' : 'weights[k]') : '1.0'}; }
fn wv(j: u32) -> V { return ${weighted ? 'weights[j]' : 'V(1.0)'}; }
`;

/** The row's label: `ok` when in [0, C), `y` clamped into range for loads, `nan` for bad rows. */
const LABEL = `
  let yl = labels[row];
  let ok = yl >= 0 && u32(yl) < c;
  let y = select(0u, u32(yl), ok);
  let nan = bitcast<f32>(params.nan);`;

/**
 * The entry: `row`, `c`, `cv`, `base` (the row's first V), `lane` and LANES in scope: lane
 * `lane` of the row's LANES invocations takes V columns lane, lane + LANES, …, and reduce_max /
 * reduce_sum combine the lanes' partials (every lane gets the result).
 *  - rows: LANES = 1, CE_ROW_WG rows per workgroup, the reductions are the identity.
 *  - wide: one workgroup of LANES invocations per row (rows past 65535 continue on grid y); the
 *    partials meet in workgroup memory, one barrier each way, and every lane adds them in the same
 *    order (uniform loads). Barriers sit in uniform control flow: `row` is per workgroup and the
 *    smoothing branch depends on a uniform.
 */
const ENTRY_DECLS = (layout: CrossEntropyLayout) =>
  layout === 'rows'
    ? `
const LANES = 1u;
fn reduce_max(v: V) -> V { return v; }
fn reduce_sum(v: V) -> V { return v; }`
    : `
const LANES = ${CE_WIDE_WG}u;
var<workgroup> part: array<V, LANES>;
var<private> lane: u32;
fn reduce_max(v: V) -> V {
  part[lane] = v;
  workgroupBarrier();
  var r = part[0];
  for (var i = 1u; i < LANES; i++) { r = max(r, part[i]); }
  workgroupBarrier();
  return r;
}
fn reduce_sum(v: V) -> V {
  part[lane] = v;
  workgroupBarrier();
  var r = part[0];
  for (var i = 1u; i < LANES; i++) { r += part[i]; }
  workgroupBarrier();
  return r;
}`;

const ENTRY_BODY = (layout: CrossEntropyLayout) =>
  layout === 'rows'
    ? `  let row = gid.x + gid.y * nwg.x * ${CE_ROW_WG}u;
  if (row >= params.n) { return; }
  let lane = 0u;
  let c = params.c;
  let cv = params.cv;
  let base = row * cv;`
    : `  let row = wid.x + wid.y * nwg.x;
  if (row >= params.n) { return; }
  lane = lid;
  let c = params.c;
  let cv = params.cv;
  let base = row * cv;
  let full = cv - cv % LANES;`;

/** Workgroup size, builtins and grid of both layouts. */
const LAYOUT = {
  params: PARAMS,
  workgroupSize: (v: { layout: CrossEntropyLayout }) => (v.layout === 'rows' ? CE_ROW_WG : CE_WIDE_WG),
  builtins: (v: { layout: CrossEntropyLayout }): Builtins =>
    v.layout === 'rows'
      ? { gid: 'global_invocation_id', nwg: 'num_workgroups' }
      : { wid: 'workgroup_id', nwg: 'num_workgroups', lid: 'local_invocation_index' },
  grid: (p: { n: number }, v: { layout: CrossEntropyLayout }) =>
    spreadGroups(v.layout === 'rows' ? Math.ceil(p.n / CE_ROW_WG) : p.n),
} as const;

/**
 * `body` for every V column j of this lane. The wide layout walks whole LANES-wide blocks with a
 * lane-independent loop counter (divergent loop control is costly on lavapipe's SIMD lanes), then
 * the tail block.
 */
const eachColumn = (layout: CrossEntropyLayout, body: string) =>
  layout === 'rows'
    ? `for (var j = 0u; j < cv; j++) { ${body} }`
    : `for (var k = 0u; k < full; k += LANES) { let j = k + lane; ${body} }
  if (full + lane < cv) { let j = full + lane; ${body} }`;

/** Per-row loss, the target's class weight and (m, ls) for backward; `vec` when C % 4 == 0. */
export const crossEntropyForwardKernel = kernel({
  name: 'crossEntropy',
  variant: { layout: 'rows' as CrossEntropyLayout, weighted: false, vec: false },
  ...LAYOUT,
  bindings: {
    xs: { read: 'V' },
    labels: { read: 'i32' },
    loss: { write: 'f32' },
    tw: { write: 'f32' },
    stats: { write: 'f32' },
    weights: { read: 'V', if: (v) => v.weighted },
  },
  prelude: ({ layout, weighted, vec }) => `${HELPERS(weighted, vec, false)}${ENTRY_DECLS(layout)}`,
  main: ({ layout }) => wgsl`${ENTRY_BODY(layout)}
  var mx = V(bitcast<f32>(params.ninf)); // -inf (no -inf literal in WGSL)
  ${eachColumn(layout, `mx = max(mx, xs[base + j]);`)}
  let m = hmax(reduce_max(mx));
  var se = V(0.0);
  ${eachColumn(layout, `se += exp(xs[base + j] - m);`)}
  let ls = log(hsum(reduce_sum(se)));${LABEL}
  let wy = select(nan, w_at(y), ok);
  var l = params.one_minus_eps * wy * ((m - x_at(row * c + y)) + ls);
  if (params.eps_over_c != 0.0) {
    // Σ_c w_c·(−log p_c) for label smoothing: a sum of non-negative terms.
    var sm = V(0.0);
    ${eachColumn(layout, `sm += wv(j) * ((m - xs[base + j]) + ls);`)}
    l += params.eps_over_c * hsum(reduce_sum(sm));
  }
  if (lane == 0u) {
    loss[row] = select(nan, l, ok);
    tw[row] = wy;
    stats[2u * row] = m;
    stats[2u * row + 1u] = ls;
  }`,
});

export const crossEntropyBackwardKernel = kernel({
  name: 'crossEntropyGrad',
  variant: { layout: 'rows' as CrossEntropyLayout, weighted: false, vec: false },
  ...LAYOUT,
  bindings: {
    xs: { read: 'V' },
    labels: { read: 'i32' },
    stats: { read: 'f32' },
    gy: { read: 'f32' },
    dx: { write: 'V' },
    weights: { read: 'V', if: (v) => v.weighted },
  },
  prelude: ({ layout, weighted, vec }) => `${HELPERS(weighted, vec, true)}${ENTRY_DECLS(layout)}`,
  main: ({ layout, weighted, vec }) => wgsl`${ENTRY_BODY(layout)}
  let m = stats[2u * row];
  let ls = stats[2u * row + 1u];${LABEL}
  let ty = params.one_minus_eps * w_at(y);
  var wsum = f32(c);
#if ${weighted}
  if (params.eps_over_c != 0.0) {
    var sw = V(0.0);
    ${eachColumn(layout, `sw += weights[j];`)}
    wsum = hsum(reduce_sum(sw));
  }
#endif
  let a = ty + params.eps_over_c * wsum;
  let g = select(nan, gy[row], ok);
  ${eachColumn(layout, 'dx[base + j] = g * (exp((xs[base + j] - m) - ls) * a - params.eps_over_c * wv(j));')}
  // The label's entry gets its (1−ε)·w_y term, written by the lane that wrote its V above.
  if (lane == (y / ${vec ? 4 : 1}u) % LANES) {
    let k = row * c + y;
    let py = exp((x_at(k) - m) - ls);
    dx_set(k, g * (py * a - (ty + params.eps_over_c * w_at(y))));
  }`,
});
