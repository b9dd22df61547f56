// Shared helpers of the op implementations: argument checks, shapes, strides and broadcasting.
import type { Device } from '../device.ts';
import { EngineError } from '../errors.ts';
import { empty, type Shape, type Tensor } from '../tensor.ts';

/** A quiet NaN's bits (WGSL has no NaN literal: kernels bitcast this u32). */
export const NAN_BITS = 0x7fc00000;
/** −inf's bits. */
export const NINF_BITS = 0xff800000;
export const MAX_RANK = 8;

export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d]!;
  }
  return s;
}

export const fmt = (s: Shape) => `[${s.join(', ')}]`;

export function checkLive(op: string, ...ts: Tensor[]): void {
  for (const t of ts) t.buffer(op);
}

export function checkFloat(op: string, ...ts: Tensor[]): void {
  for (const t of ts)
    if (t.dtype !== 'float32')
      throw new EngineError(`${op}: expected a float32 tensor, got ${t.dtype} ${fmt(t.shape)}`);
}

export function checkSameDevice(op: string, ...ts: Tensor[]): Device {
  const d = ts[0]!.device;
  for (const t of ts) if (t.device !== d) throw new EngineError(`${op}: tensors live on different devices`);
  return d;
}

/** numpy broadcasting of two shapes; throws naming the op and both shapes. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const r = Math.max(a.length, b.length);
  const out = new Array<number>(r);
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1;
    const db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1)
      throw new EngineError(`${op}: shapes ${fmt(a)} and ${fmt(b)} cannot be broadcast together`);
    out[i] = da === 1 ? db : da;
  }
  if (r > MAX_RANK) throw new EngineError(`${op}: rank ${r} above the supported ${MAX_RANK}`);
  return out;
}

/** Strides of `shape` read as if broadcast to `out` (0 on broadcast dimensions). */
export function broadcastStrides(shape: Shape, out: Shape): number[] {
  const st = stridesOf(shape);
  const off = out.length - shape.length;
  return out.map((_, i) => (i < off || shape[i - off] === 1 ? 0 : st[i - off]!));
}

/** Normalises possibly negative axes; throws on out-of-range or repeated axes. */
export function normAxes(
  op: string,
  axes: number | readonly number[] | undefined,
  rank: number,
  shape: Shape,
): number[] {
  if (axes === undefined) return [...Array(rank).keys()];
  const list = typeof axes === 'number' ? [axes] : [...axes];
  const out = list.map((a) => {
    if (!Number.isInteger(a) || a < -rank || a >= rank)
      throw new EngineError(`${op}: axis ${a} out of range for shape ${fmt(shape)}`);
    return a < 0 ? a + rank : a;
  });
  if (new Set(out).size !== out.length) throw new EngineError(`${op}: repeated axis in [${list.join(', ')}]`);
  return out.sort((x, y) => x - y);
}

export function output(device: Device, shape: Shape, dtype: 'float32' | 'int32' = 'float32'): Tensor {
  return empty(shape, dtype, device);
}
