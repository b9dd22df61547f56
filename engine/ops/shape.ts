// Shape ops: reshape (a view on the same storage), permute/transpose, slice, concat,
// expand. All but reshape are one strided-copy kernel each.
import { record } from '../autograd.ts';
import { EngineError } from '../device.ts';
import type { Rule } from '../rules.ts';
import { Tensor, sizeOf, type Shape } from '../tensor.ts';
import { stridedCopyShader } from '../../shaders/copy.ts';
import { checkLive, checkSameDevice, dims8, fmt, grid1d, launch, MAX_RANK, normAxes, output, stridesOf } from './kernel.ts';
import { fill } from './elementwise.ts';
import { sumTo } from './reduce.ts';

/** Copies the `shape`-sized window of src (offset/strides) into dst (offset/strides). */
function stridedCopy(src: Tensor, dst: Tensor, shape: Shape, srcOff: number, ss: number[], dstOff: number, ds: number[]): void {
  const n = sizeOf(shape);
  if (n === 0) return;
  if (shape.length > MAX_RANK) throw new EngineError(`copy: rank ${shape.length} above the supported ${MAX_RANK}`);
  launch(src.device, {
    op: 'stridedCopy', code: stridedCopyShader(src.dtype === 'int32' ? 'i32' : 'f32'), buffers: [src.rawBuffer, dst.rawBuffer],
    u32: [n, shape.length, srcOff, dstOff, ...dims8(shape), ...dims8(ss), ...dims8(ds)], groups: grid1d(n),
  });
}

/** Same storage, new shape; one dimension may be -1. */
export function reshape(x: Tensor, shape: readonly number[], grad = true): Tensor {
  checkLive('reshape', x);
  const neg = shape.filter((d) => d === -1).length;
  const known = shape.reduce((a, d) => (d === -1 ? a : a * d), 1);
  const full = shape.map((d) => (d === -1 ? x.size / known : d));
  if (neg > 1 || full.some((d) => !Number.isInteger(d) || d < 0) || sizeOf(full) !== x.size) {
    throw new EngineError(`reshape: cannot view ${fmt(x.shape)} (${x.size} elements) as ${fmt(shape)}`);
  }
  x.storage.retain();
  const y = new Tensor(full, x.dtype, x.storage);
  return grad ? record('reshape', [x], y, {}) : y;
}

export function permute(x: Tensor, perm: readonly number[], grad = true): Tensor {
  checkLive('permute', x);
  const p = perm.map((a) => (a < 0 ? a + x.rank : a));
  if (p.length !== x.rank || [...p].sort((a, b) => a - b).some((a, i) => a !== i)) {
    throw new EngineError(`permute: [${perm.join(', ')}] is not a permutation of the ${x.rank} axes of ${fmt(x.shape)}`);
  }
  const st = stridesOf(x.shape);
  const shape = p.map((a) => x.shape[a]!);
  const y = output(x.device, shape, x.dtype);
  stridedCopy(x, y, shape, 0, p.map((a) => st[a]!), 0, stridesOf(shape));
  return grad ? record('permute', [x], y, { perm: p }) : y;
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
  if (begin.length > x.rank || end.length > x.rank) throw new EngineError(`slice: more bounds than the ${x.rank} axes of ${fmt(x.shape)}`);
  const starts: number[] = [];
  const shape = x.shape.map((d, i) => {
    const norm = (v: number) => (v < 0 ? v + d : v);
    const s = norm(begin[i] ?? 0);
    const e = norm(end[i] ?? d);
    if (!Number.isInteger(s) || !Number.isInteger(e) || s < 0 || e > d || s > e) {
      throw new EngineError(`slice: bounds [${begin[i] ?? 0}, ${end[i] ?? d}) out of range for axis ${i} of ${fmt(x.shape)}`);
    }
    starts.push(s);
    return e - s;
  });
  const st = stridesOf(x.shape);
  const y = output(x.device, shape, x.dtype);
  stridedCopy(x, y, shape, starts.reduce((a, s, i) => a + s * st[i]!, 0), st, 0, stridesOf(shape));
  return record('slice', [x], y, { starts });
}

/** Joins tensors along `axis`; all other dimensions must agree. */
export function concat(ts: readonly Tensor[], axis = 0): Tensor {
  if (ts.length === 0) throw new EngineError('concat: no tensors');
  checkLive('concat', ...ts);
  const dev = checkSameDevice('concat', ...ts);
  const first = ts[0]!;
  const ax = normAxes('concat', axis, first.rank, first.shape)[0]!;
  for (const t of ts) {
    if (t.dtype !== first.dtype) throw new EngineError(`concat: ${t.dtype} ${fmt(t.shape)} does not match ${first.dtype} ${fmt(first.shape)} (same dtype needed)`);
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
  return record('concat', ts, y, { axis: ax });
}

/** Broadcasts x to `shape` (numpy rules), materialised (no autograd). */
export function expandKernel(x: Tensor, shape: Shape): Tensor {
  const off = shape.length - x.rank;
  if (off < 0 || x.shape.some((d, i) => d !== 1 && d !== shape[i + off])) {
    throw new EngineError(`expand: cannot broadcast ${fmt(x.shape)} to ${fmt(shape)}`);
  }
  const st = stridesOf(x.shape);
  const ss = shape.map((_, i) => (i < off || x.shape[i - off] === 1 ? 0 : st[i - off]!));
  const y = output(x.device, shape, x.dtype);
  stridedCopy(x, y, shape, 0, ss, 0, stridesOf(shape));
  return y;
}

export function expand(x: Tensor, shape: readonly number[]): Tensor {
  checkLive('expand', x);
  return record('expand', [x], expandKernel(x, shape), {});
}

export const shapeRules = {
  reshape: ({ inputs: [x] }, gy) => [reshape(gy, x!.shape, false)],
  permute: ({ attrs }, gy) => {
    const inv = new Array<number>(attrs.perm.length);
    attrs.perm.forEach((p, i) => (inv[p] = i));
    return [permute(gy, inv, false)];
  },
  slice: ({ inputs: [x], attrs }, gy) => {
    const g = fill(x!.shape, 0, x!.device);
    const st = stridesOf(x!.shape);
    stridedCopy(gy, g, gy.shape, 0, stridesOf(gy.shape), attrs.starts.reduce((a, s, i) => a + s * st[i]!, 0), st);
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
