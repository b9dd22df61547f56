// Fused softmax cross-entropy over the rows of a (N, C) logits matrix, one 256-wide workgroup
// per row (rows past 65535 continue on grid y). Per row i with label y = labels[i]:
//   m = max_c x_c,  ls = log Σ_c exp(x_c − m)   (every term ≤ 1, the sum ≥ 1: no overflow at any
//   magnitude), and −log p_c = (m − x_c) + ls, computed without forming lse = m + ls, so logits
//   of ±1000 lose nothing to cancellation.
// Forward writes loss[i], tw[i] = w_y (the target's class weight, the mean's denominator term)
// and stats[2i..2i+1] = (m, ls) for backward. Backward writes
//   dx_j = g_i · (p_j·A − (1−ε)·w_y·[j = y] − (ε/C)·w_j),   A = (1−ε)·w_y + (ε/C)·Σ_c w_c,
// the derivative of the per-row loss (1−ε)·w_y·(−log p_y) + (ε/C)·Σ_c w_c·(−log p_c).
// A label outside [0, C) makes loss, tw and the whole gradient row NaN (never a finite value).
// Weights are a compile-time variant: unweighted kernels use w = 1 and bind no weight buffer.
// All loads of labels happen outside the barrier loops' control flow (uniformity).
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { WG, variants } from './common.ts';

const HEAD = (weighted: boolean, bindings: string) => `
struct Params { n: u32, c: u32, nan: u32, ninf: u32, one_minus_eps: f32, eps_over_c: f32 }
@group(0) @binding(0) var<uniform> params: Params;
${bindings}
${weighted ? '' : '// unweighted variant: w = 1'}
var<workgroup> part: array<f32, ${WG}>;
fn weight_of(c: u32) -> f32 { ${weighted ? 'return weights[c];' : 'return 1.0;'} }
`;

/** Tree-reduces `part` (filled with each invocation's value) with `op`; leaves the result in `dst`. */
const tree = (dst: string, value: string, op: string) => `
  part[lid] = ${value};
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { part[lid] = ${op}(part[lid], part[lid + s]); }
    workgroupBarrier();
  }
  let ${dst} = part[0];
  workgroupBarrier();`;

/** Entry point: one workgroup per row; `row`, `c` and `base` (the row's first logit) in scope. */
const MAIN = `
fn add2(a: f32, b: f32) -> f32 { return a + b; }
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.n) { return; }
  let c = params.c;
  let base = row * c;`;

/** The row's label: `ok` when in [0, C), `y` clamped into range for loads, `nan` for bad rows. */
const LABEL = `
  let yl = labels[row];
  let ok = yl >= 0 && u32(yl) < c;
  let y = select(0u, u32(yl), ok);
  let nan = bitcast<f32>(params.nan);`;

/** Forward statistics: m = row max, ls = log Σ exp(x − m). */
const STATS = `
  var mx = bitcast<f32>(params.ninf); // -inf (no -inf literal in WGSL)
  for (var j = lid; j < c; j += ${WG}u) { mx = max(mx, xs[base + j]); }
  ${tree('m', 'mx', 'max')}
  var se = 0.0;
  for (var j = lid; j < c; j += ${WG}u) { se += exp(xs[base + j] - m); }
  ${tree('total', 'se', 'add2')}
  let ls = log(total);`;

function buildForward(weighted: boolean): string {
  return wgsl`${HEAD(
    weighted,
    `@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> tw: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
${weighted ? '@group(0) @binding(6) var<storage, read> weights: array<f32>;' : ''}`,
  )}${MAIN}${STATS}${LABEL}
  let wy = select(nan, weight_of(y), ok);
  // Σ_c w_c·(−log p_c) for label smoothing: a sum of non-negative terms.
  var sm = 0.0;
  for (var j = lid; j < c; j += ${WG}u) { sm += weight_of(j) * ((m - xs[base + j]) + ls); }
  ${tree('smooth_sum', 'sm', 'add2')}
  if (lid == 0u) {
    let nll = (m - xs[base + y]) + ls;
    var l = params.one_minus_eps * wy * nll;
    if (params.eps_over_c != 0.0) { l += params.eps_over_c * smooth_sum; }
    loss[row] = select(nan, l, ok);
    tw[row] = wy;
    stats[2u * row] = m;
    stats[2u * row + 1u] = ls;
  }
}`;
}

function buildBackward(weighted: boolean): string {
  return wgsl`${HEAD(
    weighted,
    `@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> gy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
${weighted ? '@group(0) @binding(6) var<storage, read> weights: array<f32>;' : ''}`,
  )}${MAIN}
  var sw = 0.0;
  for (var j = lid; j < c; j += ${WG}u) { sw += weight_of(j); }
  ${tree('wsum', 'sw', 'add2')}
  let m = stats[2u * row];
  let ls = stats[2u * row + 1u];${LABEL}
  let ty = params.one_minus_eps * weight_of(y);
  let a = ty + params.eps_over_c * wsum;
  let g = select(nan, gy[row], ok);
  for (var j = lid; j < c; j += ${WG}u) {
    let p = exp((xs[base + j] - m) - ls);
    let t = select(0.0, ty, j == y) + params.eps_over_c * weight_of(j);
    dx[base + j] = g * (p * a - t);
  }
}`;
}

export const crossEntropyForwardShader = variants(buildForward);
export const crossEntropyBackwardShader = variants(buildBackward);
