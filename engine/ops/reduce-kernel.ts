// The reduction kernels' launch planning, without a graph: sum or max over any axes (non-adjacent
// axes are first permuted to the end, so every reduction runs on an (outer, R, inner) view), and
// sumTo, which sums a broadcast gradient back to its operand's shape. The recorded ops sum, mean
// and max and their rules are in reduce.ts.
import type { Shape, Tensor } from '../tensor.ts';
import { reduceStridedKernel, reduceTreeKernel, type ReduceKind } from '../../shaders/reduce.ts';
import { NINF_BITS, output } from './common.ts';
import { permuteKernel, view } from './strided.ts';

const INIT = { sum: 0, max: NINF_BITS } as const;
const TREE_CHUNK = 4096;

export function prod(s: Shape, a = 0, b = s.length): number {
  let n = 1;
  for (let i = a; i < b; i++) n *= s[i]!;
  return n;
}

function keptShape(shape: Shape, axes: number[], keepdim: boolean): number[] {
  return keepdim ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : shape.filter((_, i) => !axes.includes(i));
}

/** Reduces x over sorted `axes`. */
export function reduceKernel(kind: ReduceKind, x: Tensor, axes: number[], keepdim: boolean): Tensor {
  const dev = x.device;
  const outShape = keptShape(x.shape, axes, keepdim);
  const contiguous = axes.every((a, i) => i === 0 || a === axes[i - 1]! + 1);
  let src = x;
  let outer: number, r: number, inner: number;
  if (axes.length === 0) {
    outer = x.size;
    r = 1;
    inner = 1;
  } else if (contiguous) {
    outer = prod(x.shape, 0, axes[0]);
    r = prod(x.shape, axes[0], axes[axes.length - 1]! + 1);
    inner = prod(x.shape, axes[axes.length - 1]! + 1);
  } else {
    const kept = [...x.shape.keys()].filter((d) => !axes.includes(d));
    src = permuteKernel(x, [...kept, ...axes]);
    outer = prod(kept.map((d) => x.shape[d]!));
    r = prod(axes.map((d) => x.shape[d]!));
    inner = 1;
  }
  // A long reduction with few outputs goes through the tree kernel on an inner = 1 view.
  if (inner > 1 && r >= 1024 && outer * inner < 16384) {
    const v = view(src, [outer, r, inner]);
    const moved = permuteKernel(v, [0, 2, 1]);
    v.dispose();
    if (src !== x) src.dispose();
    src = moved;
    outer *= inner;
    inner = 1;
  }
  const y = output(dev, outShape);
  if (inner === 1 && r >= 256 && outer <= 65535) {
    const nchunks = Math.ceil(r / TREE_CHUNK);
    const partial = nchunks > 1 ? output(dev, [outer, nchunks]) : y;
    dev.dispatch({
      kernel: reduceTreeKernel,
      op: kind,
      variant: { kind },
      params: { r, chunk: TREE_CHUNK, nchunks, init: INIT[kind], rows: outer },
      bindings: { xs: src.rawBuffer, ys: partial.rawBuffer },
    });
    if (nchunks > 1) {
      dev.dispatch({
        kernel: reduceTreeKernel,
        op: kind,
        variant: { kind },
        params: { r: nchunks, chunk: nchunks, nchunks: 1, init: INIT[kind], rows: outer },
        bindings: { xs: partial.rawBuffer, ys: y.rawBuffer },
      });
      partial.dispose();
    }
  } else {
    dev.dispatch({
      kernel: reduceStridedKernel,
      op: kind,
      variant: { kind },
      params: { n: outer * inner, r, inner, init: INIT[kind] },
      bindings: { xs: src.rawBuffer, ys: y.rawBuffer },
    });
  }
  if (src !== x) src.dispose();
  return y;
}

/** Sums a broadcast gradient back down to `shape`. */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  const off = g.rank - shape.length;
  const axes = [...g.shape.keys()].filter((d) => d < off || (shape[d - off] === 1 && g.shape[d] !== 1));
  const r = reduceKernel('sum', g, axes, true);
  const v = view(r, [...shape]);
  r.dispose();
  return v;
}
