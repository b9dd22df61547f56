// Storage buffers pooled by size class. A released buffer is reusable only after the
// submit that used it: a queue.writeBuffer into it would otherwise overtake the
// dispatches still sitting in the open command encoder.

import type { DeviceErrors } from './device-errors.ts';

const STORAGE = 0x80 | 0x04 | 0x08; // GPUBufferUsage.STORAGE | COPY_SRC | COPY_DST (constants, so no global is needed)

/** Rounds up to 1, 1.25, 1.5 or 1.75 × 2^k bytes (at most 25% slack), minimum 256. */
export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const p = 2 ** Math.floor(Math.log2(bytes));
  for (const f of [1, 1.25, 1.5, 1.75, 2]) if (p * f >= bytes) return Math.ceil((p * f) / 16) * 16;
  return 2 * p;
}

export interface PoolStats {
  /** Bytes of all GPU buffers the pool has created and not destroyed. */
  bytesAllocated: number;
  /** Bytes of buffers handed out and not yet released. */
  bytesInUse: number;
  /** Highest bytesInUse seen since the last resetPeak(). */
  peakBytesInUse: number;
  buffersAllocated: number;
}

export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private pending: GPUBuffer[] = [];
  readonly stats: PoolStats = { bytesAllocated: 0, bytesInUse: 0, peakBytesInUse: 0, buffersAllocated: 0 };

  constructor(
    private readonly device: GPUDevice,
    private readonly errors: DeviceErrors,
  ) {}

  acquire(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    const list = this.free.get(size);
    let buf = list?.pop();
    if (!buf) {
      buf = this.errors.guard('allocate', () => this.device.createBuffer({ size, usage: STORAGE }));
      this.stats.bytesAllocated += size;
      this.stats.buffersAllocated++;
    }
    this.stats.bytesInUse += size;
    if (this.stats.bytesInUse > this.stats.peakBytesInUse) this.stats.peakBytesInUse = this.stats.bytesInUse;
    return buf;
  }

  /** Returns a buffer; it becomes reusable after the next submit. */
  release(buf: GPUBuffer): void {
    this.stats.bytesInUse -= buf.size;
    this.pending.push(buf);
  }

  /** Called by the batcher right after queue.submit(). */
  afterSubmit(): void {
    for (const b of this.pending) {
      let list = this.free.get(b.size);
      if (!list) this.free.set(b.size, (list = []));
      list.push(b);
    }
    this.pending = [];
  }

  resetPeak(): void {
    this.stats.peakBytesInUse = this.stats.bytesInUse;
  }

  /** Destroys the idle buffers (e.g. after a large one-off computation). */
  trim(): void {
    for (const list of this.free.values())
      for (const b of list) {
        this.stats.bytesAllocated -= b.size;
        this.stats.buffersAllocated--;
        b.destroy();
      }
    this.free.clear();
  }

  destroyAll(): void {
    this.trim();
    for (const b of this.pending) b.destroy();
    this.pending = [];
  }
}
