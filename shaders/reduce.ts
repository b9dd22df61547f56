// Reductions over a (outer, R, inner) view of the input. Two kernels:
//  - strided: one invocation per output, a serial loop over R (good when inner is wide);
//  - tree: one 256-wide workgroup per (row, chunk) of a (rows, R) view, a shared-memory tree,
//    writing one partial per chunk; a second pass reduces the partials (DESIGN rule 6).
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { ENTRY_1D, FLOAT_CLASS, WG, variants } from './common.ts';

export type ReduceKind = 'sum' | 'max';
// max propagates NaN (a set with a NaN has maximum NaN, as torch.max / amax).
const COMBINE = { sum: 'acc + v', max: 'max_nan(acc, v)' } as const;

function buildReduceStridedShader(kind: ReduceKind): string {
  return wgsl`
struct Params { n: u32, r: u32, inner: u32, init: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read_write> ys: array<f32>;
${FLOAT_CLASS}
${ENTRY_1D}
  if (i >= params.n) { return; }
  let o = i / params.inner;
  let j = i % params.inner;
  var acc = bitcast<f32>(params.init);
  var k = o * params.r * params.inner + j;
  for (var r = 0u; r < params.r; r++) {
    let v = xs[k];
    acc = ${COMBINE[kind]};
    k += params.inner;
  }
  ys[i] = acc;
}`;
}

function buildReduceTreeShader(kind: ReduceKind): string {
  return wgsl`
struct Params { r: u32, chunk: u32, nchunks: u32, init: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read_write> ys: array<f32>;
var<workgroup> part: array<f32, ${WG}>;
${FLOAT_CLASS}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.y;
  let c = wid.x;
  let start = c * params.chunk;
  let end = min(start + params.chunk, params.r);
  var acc = bitcast<f32>(params.init);
  for (var k = start + lid; k < end; k += ${WG}u) {
    let v = xs[row * params.r + k];
    acc = ${COMBINE[kind]};
  }
  part[lid] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      let v = part[lid + s];
      let acc = part[lid];
      part[lid] = ${COMBINE[kind]};
    }
    workgroupBarrier();
  }
  if (lid == 0u) { ys[row * params.nchunks + c] = part[0]; }
}`;
}
export const reduceStridedShader = variants(buildReduceStridedShader);
export const reduceTreeShader = variants(buildReduceTreeShader);
