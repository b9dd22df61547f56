// Tensor creation: from host arrays (one queue.writeBuffer), constants, and random draws.
import { EngineError } from './errors.ts';
import { empty, getDevice, sizeOf, type DType, type Shape, type Tensor } from './tensor.ts';
import { defaultGenerator, type Generator } from './random.ts';
import { fill } from './ops/elementwise.ts';
import type { Device } from './device.ts';

export interface CreateOptions {
  dtype?: DType;
  requiresGrad?: boolean;
  device?: Device;
  /** tensor(): refuse NaN and ±Inf in the data (assertFinite) before uploading it. */
  checkFinite?: boolean;
}

type Nested = number | readonly Nested[];
function flatten(x: Nested, out: number[], shape: number[], depth: number): void {
  if (typeof x === 'number') {
    out.push(x);
    return;
  }
  if (shape.length === depth) shape.push(x.length);
  else if (shape[depth] !== x.length) throw new EngineError('tensor: ragged nested array');
  for (const v of x) flatten(v, out, shape, depth + 1);
}

/** A tensor from a flat typed array/array plus shape, or from a nested array. */
export function tensor(data: ArrayLike<number> | Nested, shape?: Shape, opts: CreateOptions = {}): Tensor {
  let flat: ArrayLike<number>;
  let shp: Shape;
  if (opts.checkFinite)
    assertFinite(
      typeof data === 'number'
        ? [data]
        : Array.isArray(data)
          ? (data.flat(Infinity) as number[])
          : (data as ArrayLike<number>),
      'tensor',
    );
  if (typeof data === 'number' || (Array.isArray(data) && shape === undefined)) {
    const out: number[] = [];
    const s: number[] = [];
    flatten(data as Nested, out, s, 0);
    flat = out;
    shp = shape ?? s;
  } else {
    flat = data as ArrayLike<number>;
    shp = shape ?? [flat.length];
  }
  if (sizeOf(shp) !== flat.length)
    throw new EngineError(`tensor: ${flat.length} values do not fill shape [${shp.join(', ')}]`);
  (opts.device ?? getDevice()).assertUsable('tensor');
  const dtype = opts.dtype ?? (flat instanceof Int32Array ? 'int32' : 'float32');
  let lo = Infinity;
  let hi = -Infinity;
  if (dtype === 'int32' && !(flat instanceof Int32Array)) {
    for (let i = 0; i < flat.length; i++) {
      const v = flat[i]!;
      if (!Number.isInteger(v)) throw new EngineError(`tensor: int32 tensor given non-integer value ${v} at ${i}`);
      // Int32Array.from would wrap it silently (2^33 → 0).
      if (v < INT32_MIN || v > INT32_MAX)
        throw new EngineError(`tensor: int32 tensor given ${v} at ${i}, outside [${INT32_MIN}, ${INT32_MAX}]`);
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  } else if (dtype === 'int32') {
    for (let i = 0; i < flat.length; i++) {
      const v = flat[i]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  const t = empty(shp, dtype, opts.device ?? getDevice());
  const arr = dtype === 'int32' ? Int32Array.from(flat) : Float32Array.from(flat);
  t.device.writeBuffer('tensor', t.rawBuffer, arr);
  t.requiresGrad = opts.requiresGrad ?? false;
  if (dtype === 'int32' && flat.length) t.valueRange = [lo, hi];
  return t;
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/**
 * Throws an EngineError naming `what`, the first offending index and its value if `data` holds a
 * NaN or ±Inf. For host data about to be uploaded: a NaN on the GPU only shows up later, as a NaN
 * loss or a skipped step. Cost: one pass over the data.
 */
export function assertFinite(data: ArrayLike<number>, what: string): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isFinite(v)) {
      let count = 0;
      for (let j = i; j < data.length; j++) if (!Number.isFinite(data[j]!)) count++;
      throw new EngineError(
        `${what}: value ${v} at index ${i} is not finite (${count} non-finite value${count > 1 ? 's' : ''} in ` +
          `${data.length})`,
      );
    }
  }
}

export function full(shape: Shape, value: number, opts: CreateOptions = {}): Tensor {
  const t = fill(shape, value, opts.device ?? getDevice(), opts.dtype ?? 'float32');
  t.requiresGrad = opts.requiresGrad ?? false;
  if (t.dtype === 'int32') t.valueRange = [value, value];
  return t;
}
export const zeros = (shape: Shape, opts?: CreateOptions): Tensor => full(shape, 0, opts);
export const ones = (shape: Shape, opts?: CreateOptions): Tensor => full(shape, 1, opts);

export interface RandomOptions extends CreateOptions {
  generator?: Generator;
}
/** Standard normal samples (times `std`, plus `mean`). */
export function randn(shape: Shape, opts: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  const g = opts.generator ?? defaultGenerator;
  const a = new Float32Array(sizeOf(shape));
  for (let i = 0; i < a.length; i++) a[i] = (opts.mean ?? 0) + (opts.std ?? 1) * g.normal();
  return tensor(a, shape, { ...opts, dtype: 'float32' });
}
/** Uniform samples in [low, high). */
export function rand(shape: Shape, opts: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  const g = opts.generator ?? defaultGenerator;
  const lo = opts.low ?? 0;
  const hi = opts.high ?? 1;
  const a = new Float32Array(sizeOf(shape));
  for (let i = 0; i < a.length; i++) a[i] = lo + (hi - lo) * g.uniform();
  return tensor(a, shape, { ...opts, dtype: 'float32' });
}

/**
 * Overwrites a tensor's values from host data. Work recorded but not yet submitted is submitted
 * first: a queue write would otherwise land before it (e.g. before the dispatch that zero-fills
 * a fresh buffer) and be overwritten.
 */
export function writeTensor(t: Tensor, data: Float32Array | Int32Array): void {
  const buf = t.buffer('writeTensor');
  if (data.length !== t.size)
    throw new EngineError(`writeTensor: ${data.length} values for ${t} [${t.shape.join(', ')}]`);
  if ((t.dtype === 'int32') !== data instanceof Int32Array)
    throw new EngineError(
      `writeTensor: ${data instanceof Int32Array ? 'int32' : 'float32'} data for a ${t.dtype} tensor`,
    );
  t.device.batcher.flush();
  t.device.writeBuffer('writeTensor', buf, data);
}
