// Reductions over a (outer, R, inner) view of the input. Two kernels:
//  - strided: one invocation per output, a serial loop over R (good when inner is wide);
//  - tree: one 256-wide workgroup per (row, chunk) of a (rows, R) view, a shared-memory tree,
//    writing one partial per chunk; a second pass reduces the partials (DESIGN rule 6).
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { FLOAT_CLASS, flatKernel, WG } from './common.ts';
import { kernel } from './kernel.ts';

export type ReduceKind = 'sum' | 'max';
// max propagates NaN (a set with a NaN has maximum NaN, as torch.max / amax).
const COMBINE = { sum: 'acc + v', max: 'max_nan(acc, v)' } as const;

/** Output i = (o, j) of n = outer · inner: the reduction of x[o, 0..r, j]; init = the identity's bits. */
export const reduceStridedKernel = flatKernel({
  name: 'reduce',
  variant: { kind: 'sum' as ReduceKind },
  params: { n: 'u32', r: 'u32', inner: 'u32', init: 'u32' },
  bindings: { xs: { read: 'f32' }, ys: { write: 'f32' } },
  prelude: () => FLOAT_CLASS,
  main: ({ kind }) => wgsl`  if (i >= params.n) { return; }
  let o = i / params.inner;
  let j = i % params.inner;
  var acc = bitcast<f32>(params.init);
  var k = o * params.r * params.inner + j;
  for (var r = 0u; r < params.r; r++) {
    let v = xs[k];
    acc = ${COMBINE[kind]};
    k += params.inner;
  }
  ys[i] = acc;`,
  count: (p) => p.n,
});

/** Grid (nchunks, rows): chunk c of row `row` of a (rows, r) view → ys[row · nchunks + c]. */
export const reduceTreeKernel = kernel({
  name: 'reduce',
  variant: { kind: 'sum' as ReduceKind },
  params: { r: 'u32', chunk: 'u32', nchunks: 'u32', init: 'u32', rows: 'u32' },
  bindings: { xs: { read: 'f32' }, ys: { write: 'f32' } },
  workgroupSize: WG,
  builtins: { wid: 'workgroup_id', lid: 'local_invocation_index' },
  prelude: () => `var<workgroup> part: array<f32, ${WG}>;\n${FLOAT_CLASS}`,
  main: ({ kind }) => wgsl`  let row = wid.y;
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
  if (lid == 0u) { ys[row * params.nchunks + c] = part[0]; }`,
  grid: (p) => [p.nchunks, p.rows],
});
