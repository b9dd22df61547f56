// sum / mean / max over any axes, with keepdim (kernels planned in reduce-kernel.ts).
import { record, type Rule } from '../graph.ts';
import type { Shape, Tensor } from '../tensor.ts';
import { checkFloat, checkLive, normAxes } from './common.ts';
import { mapBinary, mulScalar } from './elementwise.ts';
import { prod, reduceKernel } from './reduce-kernel.ts';
import { expandKernel, view } from './strided.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    sum: { axes: number[]; keepdim: boolean };
    max: { axes: number[]; keepdim: boolean };
  }
}

export function sum(x: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  checkLive('sum', x);
  checkFloat('sum', x);
  const ax = normAxes('sum', axes, x.rank, x.shape);
  return record(reduceKernel('sum', x, ax, keepdim), { op: 'sum', inputs: [x], attrs: { axes: ax, keepdim } });
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
  return record(y, { op: 'max', inputs: [x], attrs: { axes: ax, keepdim }, saved: [y] });
}

function keepdimShape(x: Shape, axes: number[]): number[] {
  return x.map((d, i) => (axes.includes(i) ? 1 : d));
}

export const reduceRules = {
  sum: ({ inputs: [x], attrs }, gy) => {
    const g = view(gy, keepdimShape(x!.shape, attrs.axes));
    const out = expandKernel(g, x!.shape);
    g.dispose();
    return [out];
  },
  max: ({ inputs: [x], saved: [y], attrs }, gy) => {
    const ks = keepdimShape(x!.shape, attrs.axes);
    const yk = view(y!, ks);
    const gk = view(gy, ks);
    const mask = mapBinary('maxMask', x!, yk);
    const count = reduceKernel('sum', mask, attrs.axes, true);
    const share = mapBinary('div', gk, count);
    const g = mapBinary('mul', mask, share);
    for (const t of [mask, count, share]) t.dispose();
    yk.dispose();
    gk.dispose();
    return [g];
  },
} satisfies { [P in 'sum' | 'max']: Rule<P> };
