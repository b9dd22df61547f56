// GPU time of every dispatch, measured where it runs (inside the real batched submits, with the
// caches as the step leaves them), from timestamp queries. While a timer is attached to the
// batcher, each dispatch gets a compute pass of its own whose beginning and end write timestamps;
// at each submit the used queries are resolved into one buffer that read() maps once.
// Profiling only: one pass per dispatch costs a little, and read() is a readback.
//
// Needs the 'timestamp-query' feature (Device.create({ timestamps: true }) asks for it). Dawn
// rounds timestamps to 65536 ns unless its 'timestamp_quantization' toggle is off, which
// Device.create does for the Node binding; a browser keeps its own rounding (Chrome: 100 µs
// without --disable-dawn-features=timestamp_quantization), which makes single short dispatches
// read as 0 or one tick.
import type { PassTimer } from './batcher.ts';
import type { Device } from './device.ts';
import { EngineError } from './errors.ts';

const QUERY_RESOLVE_COPY_SRC = 0x200 | 0x04; // GPUBufferUsage.QUERY_RESOLVE | COPY_SRC
/** Queries per query set: a submit holds at most 64 dispatches (Batcher), 2 queries each. */
const SET_QUERIES = 128;

export interface TimedDispatch {
  op: string;
  /** GPU time from the start to the end of the dispatch's pass, in milliseconds. */
  ms: number;
}

export class DispatchTimer implements PassTimer {
  private readonly sets: GPUQuerySet[] = [];
  private readonly resolved: GPUBuffer;
  private readonly ops: string[] = [];
  private readonly counts: number[] = []; // queries used in each resolved set
  private used = 0; // queries used in the set of the submit being recorded

  /** `capacity`: most submits (each up to 64 dispatches) timed between two read() calls. */
  constructor(
    private readonly device: Device,
    readonly capacity = 1024,
  ) {
    if (!device.gpu.features.has('timestamp-query')) {
      throw new EngineError(
        "DispatchTimer: the device lacks 'timestamp-query' (create it with Device.create({ timestamps: true }) or " +
          'request the feature)',
      );
    }
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new EngineError(`DispatchTimer: capacity must be an integer >= 1, got ${capacity}`);
    this.resolved = device.errors.guard('DispatchTimer', () =>
      device.gpu.createBuffer({
        label: 'dispatch-timer',
        size: capacity * SET_QUERIES * 8,
        usage: QUERY_RESOLVE_COPY_SRC,
      }),
    );
  }

  /** Timestamp writes for the pass of the next dispatch (called by the batcher). */
  writes(op: string): GPUComputePassTimestampWrites {
    if (this.counts.length >= this.capacity)
      throw new EngineError(
        `DispatchTimer: more than ${this.capacity} submits since the last read(); read() more often or give a ` +
          `larger capacity`,
      );
    if (this.used + 2 > SET_QUERIES)
      throw new EngineError(
        'DispatchTimer: a submit held more dispatches than one query set (the batcher flushes every 64)',
      );
    while (this.sets.length <= this.counts.length)
      this.sets.push(
        this.device.errors.guard('DispatchTimer', () =>
          this.device.gpu.createQuerySet({ label: 'dispatch-timer', type: 'timestamp', count: SET_QUERIES }),
        ),
      );
    this.ops.push(op);
    const w = {
      querySet: this.sets[this.counts.length]!,
      beginningOfPassWriteIndex: this.used,
      endOfPassWriteIndex: this.used + 1,
    };
    this.used += 2;
    return w;
  }

  /** Resolves the queries of the submit being finished into the result buffer (called by the batcher). */
  resolve(encoder: GPUCommandEncoder): void {
    if (this.used === 0) return;
    const s = this.counts.length;
    encoder.resolveQuerySet(this.sets[s]!, 0, this.used, this.resolved, s * SET_QUERIES * 8);
    this.counts.push(this.used);
    this.used = 0;
  }

  /** Every dispatch timed since the last read(), in submission order (one buffer map); then starts afresh. */
  async read(): Promise<TimedDispatch[]> {
    this.device.batcher.flush();
    const counts = this.counts.splice(0);
    const ops = this.ops.splice(0);
    if (counts.length === 0) return [];
    const t = new BigUint64Array(await this.device.batcher.read(this.resolved, counts.length * SET_QUERIES * 8));
    const out: TimedDispatch[] = [];
    let k = 0;
    counts.forEach((used, s) => {
      for (let q = 0; q < used; q += 2)
        out.push({ op: ops[k++]!, ms: Number(t[s * SET_QUERIES + q + 1]! - t[s * SET_QUERIES + q]!) / 1e6 });
    });
    if (k !== ops.length) throw new EngineError(`DispatchTimer: resolved ${k} timings for ${ops.length} dispatches`);
    return out;
  }

  dispose(): void {
    for (const s of this.sets) s.destroy();
    this.resolved.destroy();
  }
}
