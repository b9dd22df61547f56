// Shape ops: reshape (a view on the same storage), permute/transpose, slice, concat, expand. All
// but reshape are one strided-copy kernel each (strided.ts).
import { EngineError } from '../errors.ts';
import { record, type Rule } from '../graph.ts';
import type { Tensor } from '../tensor.ts';
import { checkLive, checkSameDevice, fmt, normAxes, output, stridesOf } from './common.ts';
import { fill } from './elementwise.ts';
import { sumTo } from './reduce-kernel.ts';
import { expandKernel, permutation, permuteKernel, stridedCopy, view } from './strided.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    reshape: object;
    permute: { perm: number[] };
    slice: { starts: number[] };
    concat: { axis: number };
    expand: object;
  }
}

/** Same storage, new shape; one dimension may be -1. `grad` false: a plain view, no graph. */
export function reshape(x: Tensor, shape: readonly number[], grad = true): Tensor {
  checkLive('reshape', x);
  const y = view(x, shape);
  return grad ? record(y, { op: 'reshape', inputs: [x], attrs: {} }) : y;
}

export function permute(x: Tensor, perm: readonly number[], grad = true): Tensor {
  checkLive('permute', x);
  const p = permutation(x, perm);
  const y = permuteKernel(x, p);
  return grad ? record(y, { op: 'permute', inputs: [x], attrs: { perm: p } }) : y;
}

/** Swaps two axes (default: the last two). */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  checkLive('transpose', x);
  const [i, j] = [a, b].map((v) => normAxes('transpose', v, x.rank, x.shape)[0]!);
  const perm = [...x.shape.keys()];
  perm[i!] = j!;
  perm[j!] = i!;
  return permute(x, perm);
}

/** x[begin[0]:end[0], begin[1]:end[1], ...]; missing axes are taken whole; negative indices count from the end. */
export function slice(x: Tensor, begin: readonly number[], end: readonly number[] = []): Tensor {
  checkLive('slice', x);
  if (begin.length > x.rank || end.length > x.rank)
    throw new EngineError(`slice: more bounds than the ${x.rank} axes of ${fmt(x.shape)}`);
  const starts: number[] = [];
  const shape = x.shape.map((d, i) => {
    const norm = (v: number) => (v < 0 ? v + d : v);
    const s = norm(begin[i] ?? 0);
    const e = norm(end[i] ?? d);
    if (!Number.isInteger(s) || !Number.isInteger(e) || s < 0 || e > d || s > e) {
      throw new EngineError(
        `slice: bounds [${begin[i] ?? 0}, ${end[i] ?? d}) out of range for axis ${i} of ${fmt(x.shape)}`,
      );
    }
    starts.push(s);
    return e - s;
  });
  const st = stridesOf(x.shape);
  const y = output(x.device, shape, x.dtype);
  stridedCopy(
    x,
    y,
    shape,
    starts.reduce((a, s, i) => a + s * st[i]!, 0),
    st,
    0,
    stridesOf(shape),
  );
  return record(y, { op: 'slice', inputs: [x], attrs: { starts } });
}

/** Joins tensors along `axis`; all other dimensions must agree. */
export function concat(ts: readonly Tensor[], axis = 0): Tensor {
  if (ts.length === 0) throw new EngineError('concat: no tensors');
  checkLive('concat', ...ts);
  const dev = checkSameDevice('concat', ...ts);
  const first = ts[0]!;
  const ax = normAxes('concat', axis, first.rank, first.shape)[0]!;
  for (const t of ts) {
    if (t.dtype !== first.dtype)
      throw new EngineError(
        `concat: ${t.dtype} ${fmt(t.shape)} does not match ${first.dtype} ${fmt(first.shape)} (same dtype needed)`,
      );
    if (t.rank !== first.rank || t.shape.some((d, i) => i !== ax && d !== first.shape[i])) {
      throw new EngineError(`concat: ${fmt(t.shape)} does not match ${fmt(first.shape)} outside axis ${ax}`);
    }
  }
  const shape = [...first.shape];
  shape[ax] = ts.reduce((a, t) => a + t.shape[ax]!, 0);
  const y = output(dev, shape, first.dtype);
  const ys = stridesOf(shape);
  let off = 0;
  for (const t of ts) {
    stridedCopy(t, y, t.shape, 0, stridesOf(t.shape), off * ys[ax]!, ys);
    off += t.shape[ax]!;
  }
  return record(y, { op: 'concat', inputs: ts, attrs: { axis: ax } });
}

export function expand(x: Tensor, shape: readonly number[]): Tensor {
  checkLive('expand', x);
  return record(expandKernel(x, shape), { op: 'expand', inputs: [x], attrs: {} });
}

export const shapeRules = {
  reshape: ({ inputs: [x] }, gy) => [view(gy, x!.shape)],
  permute: ({ attrs }, gy) => {
    const inv = new Array<number>(attrs.perm.length);
    attrs.perm.forEach((p, i) => {
      inv[p] = i;
    });
    return [permuteKernel(gy, inv)];
  },
  slice: ({ inputs: [x], attrs }, gy) => {
    const g = fill(x!.shape, 0, x!.device);
    const st = stridesOf(x!.shape);
    stridedCopy(
      gy,
      g,
      gy.shape,
      0,
      stridesOf(gy.shape),
      attrs.starts.reduce((a, s, i) => a + s * st[i]!, 0),
      st,
    );
    return [g];
  },
  concat: ({ inputs, attrs }, gy) => {
    const gs = stridesOf(gy.shape);
    let off = 0;
    return inputs.map((t) => {
      const g = output(gy.device, t.shape);
      stridedCopy(gy, g, t.shape, off * gs[attrs.axis]!, gs, 0, stridesOf(t.shape));
      off += t.shape[attrs.axis]!;
      return g;
    });
  },
  expand: ({ inputs: [x] }, gy) => [sumTo(gy, x!.shape)],
} satisfies { [P in 'reshape' | 'permute' | 'slice' | 'concat' | 'expand']: Rule<P> };
