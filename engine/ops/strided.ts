// Strided copies and views, without a graph: the one kernel behind permute, slice, concat and
// expand (shaders/copy.ts), and reshape's view on the same storage. The recorded ops and their
// rules are in shape.ts; reductions and rules of other ops use these directly.
import { EngineError } from '../errors.ts';
import { Tensor, sizeOf, type Shape } from '../tensor.ts';
import { stridedCopyKernel } from '../../shaders/copy.ts';
import { fmt, MAX_RANK, output, stridesOf } from './common.ts';

/** Copies the `shape`-sized window of src (offset/strides) into dst (offset/strides). */
export function stridedCopy(
  src: Tensor,
  dst: Tensor,
  shape: Shape,
  srcOff: number,
  ss: number[],
  dstOff: number,
  ds: number[],
): void {
  const n = sizeOf(shape);
  if (n === 0) return;
  if (shape.length > MAX_RANK) throw new EngineError(`copy: rank ${shape.length} above the supported ${MAX_RANK}`);
  src.device.dispatch({
    kernel: stridedCopyKernel,
    variant: { t: src.dtype === 'int32' ? 'i32' : 'f32' },
    params: { n, rank: shape.length, src_off: srcOff, dst_off: dstOff, shape, ss, ds },
    bindings: { xs: src.rawBuffer, ys: dst.rawBuffer },
  });
}

/** Same storage, new shape (one dimension may be -1); no graph. */
export function view(x: Tensor, shape: readonly number[]): Tensor {
  const neg = shape.filter((d) => d === -1).length;
  const known = shape.reduce((a, d) => (d === -1 ? a : a * d), 1);
  const full = shape.map((d) => (d === -1 ? x.size / known : d));
  if (neg > 1 || full.some((d) => !Number.isInteger(d) || d < 0) || sizeOf(full) !== x.size) {
    throw new EngineError(`reshape: cannot view ${fmt(x.shape)} (${x.size} elements) as ${fmt(shape)}`);
  }
  x.storage.retain();
  return new Tensor(full, x.dtype, x.storage);
}

/** Normalises a permutation of x's axes (negative axes count from the end); throws if it is none. */
export function permutation(x: Tensor, perm: readonly number[]): number[] {
  const p = perm.map((a) => (a < 0 ? a + x.rank : a));
  if (p.length !== x.rank || [...p].sort((a, b) => a - b).some((a, i) => a !== i)) {
    throw new EngineError(
      `permute: [${perm.join(', ')}] is not a permutation of the ${x.rank} axes of ${fmt(x.shape)}`,
    );
  }
  return p;
}

/** x with its axes reordered by the normalised permutation `p`, materialised; no graph. */
export function permuteKernel(x: Tensor, p: readonly number[]): Tensor {
  const st = stridesOf(x.shape);
  const shape = p.map((a) => x.shape[a]!);
  const y = output(x.device, shape, x.dtype);
  stridedCopy(
    x,
    y,
    shape,
    0,
    p.map((a) => st[a]!),
    0,
    stridesOf(shape),
  );
  return y;
}

/** Broadcasts x to `shape` (numpy rules), materialised; no graph. */
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
