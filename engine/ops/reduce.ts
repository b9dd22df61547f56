// sum / mean / max over any axes, with keepdim. Non-adjacent axes are first permuted
// to the end, so every reduction runs on an (outer, R, inner) view.
import { record } from '../autograd.ts';
import type { Rule } from '../rules.ts';
import type { Shape, Tensor } from '../tensor.ts';
import { reduceStridedShader, reduceTreeShader, type ReduceKind } from '../../shaders/reduce.ts';
import { checkFloat, checkLive, grid1d, launch, normAxes, output } from './kernel.ts';
import { expandKernel, permute, reshape } from './shape.ts';
import { binaryKernel, mulScalar } from './elementwise.ts';

const INIT = { sum: 0, max: 0xff800000 /* -inf */ } as const;
const TREE_CHUNK = 4096;

function prod(s: Shape, a = 0, b = s.length): number {
  let n = 1;
  for (let i = a; i < b; i++) n *= s[i]!;
  return n;
}

function keptShape(shape: Shape, axes: number[], keepdim: boolean): number[] {
  return keepdim ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : shape.filter((_, i) => !axes.includes(i));
}

/** Reduces x over sorted `axes` (no autograd). */
function reduceKernel(kind: ReduceKind, x: Tensor, axes: number[], keepdim: boolean): Tensor {
  const dev = x.device;
  const outShape = keptShape(x.shape, axes, keepdim);
  const contiguous = axes.every((a, i) => i === 0 || a === axes[i - 1]! + 1);
  let src = x;
  let outer: number, r: number, inner: number;
  if (axes.length === 0) {
    outer = x.size; r = 1; inner = 1;
  } else if (contiguous) {
    outer = prod(x.shape, 0, axes[0]);
    r = prod(x.shape, axes[0], axes[axes.length - 1]! + 1);
    inner = prod(x.shape, axes[axes.length - 1]! + 1);
  } else {
    const kept = [...x.shape.keys()].filter((d) => !axes.includes(d));
    src = permuteKernel(x, [...kept, ...axes]);
    outer = prod(kept.map((d) => x.shape[d]!)); r = prod(axes.map((d) => x.shape[d]!)); inner = 1;
  }
  // A long reduction with few outputs goes through the tree kernel on an inner = 1 view.
  if (inner > 1 && r >= 1024 && outer * inner < 16384) {
    const view = reshapeView(src, [outer, r, inner]);
    const moved = permuteKernel(view, [0, 2, 1]);
    view.dispose();
    if (src !== x) src.dispose();
    src = moved;
    outer *= inner; inner = 1;
  }
  const y = output(dev, outShape);
  if (inner === 1 && r >= 256 && outer <= 65535) {
    const nchunks = Math.ceil(r / TREE_CHUNK);
    const partial = nchunks > 1 ? output(dev, [outer, nchunks]) : y;
    launch(dev, { op: kind, code: reduceTreeShader(kind), buffers: [src.rawBuffer, partial.rawBuffer], u32: [r, TREE_CHUNK, nchunks, INIT[kind]], groups: [nchunks, outer] });
    if (nchunks > 1) {
      launch(dev, { op: kind, code: reduceTreeShader(kind), buffers: [partial.rawBuffer, y.rawBuffer], u32: [nchunks, nchunks, 1, INIT[kind]], groups: [1, outer] });
      partial.dispose();
    }
  } else {
    const n = outer * inner;
    launch(dev, { op: kind, code: reduceStridedShader(kind), buffers: [src.rawBuffer, y.rawBuffer], u32: [n, r, inner, INIT[kind]], groups: grid1d(n) });
  }
  if (src !== x) src.dispose();
  return y;
}

// Local no-grad helpers (avoid recording inside reductions).
function permuteKernel(x: Tensor, perm: number[]): Tensor {
  return permute(x, perm, false);
}
function reshapeView(x: Tensor, shape: number[]): Tensor {
  return reshape(x, shape, false);
}

export function sum(x: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  checkLive('sum', x);
  checkFloat('sum', x);
  const ax = normAxes('sum', axes, x.rank, x.shape);
  return record('sum', [x], reduceKernel('sum', x, ax, keepdim), { axes: ax, keepdim });
}

export function mean(x: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  checkLive('mean', x);
  checkFloat('mean', x);
  const ax = normAxes('mean', axes, x.rank, x.shape);
  const n = prod(ax.map((a) => x.shape[a]!));
  const s = sum(x, ax, keepdim);
  const m = mulScalar(s, 1 / n);
  s.dispose();
  return m;
}

/**
 * Maximum over axes. Backward splits the gradient evenly among tied maxima (like torch.amax). A set
 * holding a NaN has maximum NaN and its gradient is split among the NaN entries, as torch.max()
 * does (torch.amax would give the whole set a NaN gradient).
 */
export function max(x: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  checkLive('max', x);
  checkFloat('max', x);
  const ax = normAxes('max', axes, x.rank, x.shape);
  const y = reduceKernel('max', x, ax, keepdim);
  return record('max', [x], y, { axes: ax, keepdim }, [y]);
}

/** Sums a broadcast gradient back down to `shape` (no autograd). */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  const off = g.rank - shape.length;
  const axes = [...g.shape.keys()].filter((d) => d < off || (shape[d - off] === 1 && g.shape[d] !== 1));
  const r = reduceKernel('sum', g, axes, true);
  const v = reshape(r, [...shape], false);
  r.dispose();
  return v;
}

function keepdimShape(x: Shape, axes: number[]): number[] {
  return x.map((d, i) => (axes.includes(i) ? 1 : d));
}

export const reduceRules = {
  sum: ({ inputs: [x], attrs }, gy) => {
    const g = reshape(gy, keepdimShape(x!.shape, attrs.axes), false);
    const out = expandKernel(g, x!.shape);
    g.dispose();
    return [out];
  },
  max: ({ inputs: [x], saved: [y], attrs }, gy) => {
    const ks = keepdimShape(x!.shape, attrs.axes);
    const yk = reshape(y!, ks, false);
    const gk = reshape(gy, ks, false);
    const mask = binaryKernel('maxMask', x!, yk);
    const count = reduceKernel('sum', mask, attrs.axes, true);
    const share = binaryKernel('div', gk, count);
    const g = binaryKernel('mul', mask, share);
    for (const t of [mask, count, share]) t.dispose();
    yk.dispose();
    gk.dispose();
    return [g];
  },
} satisfies { [P in 'sum' | 'max']: Rule<P> };
