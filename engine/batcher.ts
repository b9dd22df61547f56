// Records dispatches into one command encoder and submits in chunks. Uniform parameters
// come from a slot pool: one uniform buffer, 256-byte slots, written once per submit.
// A dispatch names a declared kernel (shaders/kernel.ts), its variant, its params and its
// buffers by binding name; the batcher resolves the source, packs the params and takes the grid
// from the declaration.
import { EngineError } from './errors.ts';
import type { BufferPool } from './buffer-pool.ts';
import type { DeviceErrors } from './device-errors.ts';
import {
  PARAMS_MAX_BYTES,
  type BindingValues,
  type BindingsDecl,
  type Groups,
  type Kernel,
  type ParamDecl,
  type ParamValues,
  type Variant,
} from '../shaders/kernel.ts';

const SLOTS = 64; // dispatches per submit at most ("tens of dispatches per submit")
// Submits not yet seen to finish. Dawn's Node binding on lavapipe kills the process (SIGSEGV, no
// message) at about 1,000 of them, so past QUEUE_LIMIT the engine refuses to record more, with an
// error that says what to do. From QUEUE_MARK_FROM on, a completion marker every QUEUE_MARK_EVERY
// submits lets a program that yields to the event loop (but never reads back) drain the count;
// below it nothing is added, so a loop that reads back now and then pays nothing.
const QUEUE_LIMIT = 512;
const QUEUE_MARK_FROM = 128;
const QUEUE_MARK_EVERY = 16;
const UNIFORM = 0x40 | 0x08; // GPUBufferUsage.UNIFORM | COPY_DST
const MAP_READ_DST = 0x01 | 0x08; // GPUBufferUsage.MAP_READ | COPY_DST
const MAP_READ = 0x01; // GPUMapMode.READ
const COPY_SRC = 0x04; // GPUBufferUsage.COPY_SRC
const COPY_DST = 0x08; // GPUBufferUsage.COPY_DST

/** One launch of a declared kernel: which variant, its params, and its buffers by binding name. */
export type Dispatch<V extends Variant, P extends ParamDecl, B extends BindingsDecl<V>> = {
  kernel: Kernel<V, P, B>;
  params: ParamValues<NoInfer<P>>;
  bindings: BindingValues<NoInfer<B>>;
  /** Label in errors, traces and timers (default: the kernel's name). */
  op?: string;
} & (keyof V extends never ? { variant?: NoInfer<V> } : { variant: NoInfer<V> });

/** What the trace hook sees of a recorded dispatch (profiling: enough to replay it alone). */
export interface RecordedDispatch {
  op: string;
  pipeline: GPUComputePipeline;
  groups: Groups;
  /** The params by name, as given. */
  params: Readonly<Record<string, number | readonly number[]>>;
  /** The packed Params (empty when the kernel has none). */
  uniform: ArrayBuffer;
  /** The storage entries of the bind group (binding 1, 2, …). */
  storage: GPUBindGroupEntry[];
}

/** A GPU timer of every dispatch (DispatchTimer): timestamps for its pass, and a resolve per submit. */
export interface PassTimer {
  writes(op: string): GPUComputePassTimestampWrites;
  resolve(encoder: GPUCommandEncoder): void;
}

/** What the batcher needs of its device. */
export interface BatcherHost {
  readonly gpu: GPUDevice;
  readonly pool: BufferPool;
  /** Where WebGPU errors go: error scopes around the engine's calls on an app's device. */
  readonly errors: DeviceErrors;
  pipeline(op: string, code: string): GPUComputePipeline;
  wait<T>(p: Promise<T>, op?: string): Promise<T>;
  /** Throws (DeviceLostError) naming `op` if the device was destroyed or lost. */
  assertUsable(op: string): void;
}

export interface BatchStats {
  dispatches: number;
  submits: number;
  readbacks: number;
}

export class Batcher {
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly uniform: GPUBuffer;
  private readonly mirror = new ArrayBuffer(SLOTS * 256);
  private readonly words = new Uint32Array(this.mirror);
  private readonly floats = new Float32Array(this.mirror);
  private readonly slotStride: number;
  private slots = 0;
  private readonly staging: GPUBuffer[] = [];
  readonly stats: BatchStats = { dispatches: 0, submits: 0, readbacks: 0 };
  lastOp = '(none)';
  /** Submits known to have finished on the GPU (a readback, a sync or a completion marker resolved). */
  private confirmed = 0;
  /** Optional observer of every recorded dispatch (profiling, bench/steps/profile.ts); null: none. */
  trace: ((d: RecordedDispatch) => void) | null = null;
  /** Optional GPU timer of every dispatch (profiling: one pass per dispatch); null: none. */
  timer: PassTimer | null = null;

  constructor(private readonly host: BatcherHost) {
    this.slotStride = Math.max(256, host.gpu.limits.minUniformBufferOffsetAlignment);
    this.uniform = host.errors.guard('Batcher', () =>
      host.gpu.createBuffer({ label: 'params', size: SLOTS * this.slotStride, usage: UNIFORM }),
    );
  }

  private computePass(): GPUComputePassEncoder {
    this.encoder ??= this.host.gpu.createCommandEncoder();
    this.pass ??= this.encoder.beginComputePass();
    return this.pass;
  }

  dispatch<V extends Variant, P extends ParamDecl, B extends BindingsDecl<V>>(d: Dispatch<V, P, B>): void {
    const k = d.kernel;
    const op = d.op ?? k.name;
    this.host.assertUsable(op);
    const variant = d.variant ?? k.decl.variant;
    const compiled = k.variant(variant);
    const [x, y = 1, z = 1] = k.grid(d.params, variant);
    const maxGroups = this.host.gpu.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxGroups || y > maxGroups || z > maxGroups) {
      throw new EngineError(
        `${op}: dispatch of ${x}×${y}×${z} workgroups exceeds the device limit ${maxGroups} per dimension`,
      );
    }
    const entries: GPUBindGroupEntry[] = [];
    const given = d.bindings as Readonly<Record<string, GPUBuffer | readonly GPUBuffer[] | undefined>>;
    let binding = 1;
    for (const slot of compiled.slots) {
      const b = given[slot.name];
      const slotName = `binding '${slot.name}' of kernel ${k.name}`;
      if (b === undefined) throw new EngineError(`${op}: no buffer given for ${slotName}`);
      if (slot.count === null) entries.push({ binding: binding++, resource: { buffer: b as GPUBuffer } });
      else {
        const list = b as readonly GPUBuffer[];
        if (list.length !== slot.count) {
          throw new EngineError(`${op}: ${slotName} takes ${slot.count} buffers, got ${list.length}`);
        }
        for (const buffer of list) entries.push({ binding: binding++, resource: { buffer } });
      }
    }
    const pipeline = this.host.pipeline(op, compiled.source);
    if (this.slots === SLOTS) {
      this.checkQueue(op);
      this.flush();
    }
    const off = this.slots * this.slotStride;
    // On an app's device, the engine's calls run inside its own error scopes (engine/device-errors.ts).
    this.host.errors.guard(op, () => {
      if (k.paramBytes > 0) {
        k.pack(d.params, this.words, this.floats, off / 4);
        entries.unshift({ binding: 0, resource: { buffer: this.uniform, offset: off, size: PARAMS_MAX_BYTES } });
      }
      const bindGroup = this.host.gpu.createBindGroup({ label: op, layout: pipeline.getBindGroupLayout(0), entries });
      if (this.timer) {
        const timestampWrites = this.timer.writes(op); // may throw: nothing recorded yet
        this.pass?.end();
        this.encoder ??= this.host.gpu.createCommandEncoder();
        this.pass = this.encoder.beginComputePass({ timestampWrites });
      }
      const pass = this.computePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(x, y, z);
      if (this.timer) {
        pass.end();
        this.pass = null;
      }
    });
    if (this.trace) {
      const uniform = this.mirror.slice(off, off + k.paramBytes);
      this.trace({
        op,
        pipeline,
        groups: [x, y, z],
        params: d.params,
        uniform,
        storage: entries.filter((e) => e.binding > 0),
      });
    }
    this.slots++; // every dispatch takes a slot, so a submit never holds more than SLOTS dispatches
    this.stats.dispatches++;
    this.lastOp = op;
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number, op = 'copy'): void {
    // Pool buffers have both usages; an app's buffer (Tensor.fromGPUBuffer) may lack them.
    if (!(src.usage & COPY_SRC))
      throw new EngineError(
        `${op}: the source buffer lacks GPUBufferUsage.COPY_SRC (an app buffer wrapped by Tensor.fromGPUBuffer ` +
          `needs it to be copied or read back)`,
      );
    if (!(dst.usage & COPY_DST))
      throw new EngineError(
        `${op}: the destination buffer lacks GPUBufferUsage.COPY_DST (an app buffer wrapped by ` +
          `Tensor.fromGPUBuffer needs it to be written)`,
      );
    this.pass?.end();
    this.pass = null;
    this.encoder ??= this.host.gpu.createCommandEncoder();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /** Submits everything recorded so far (no wait). */
  flush(): void {
    if (!this.encoder) {
      this.host.pool.afterSubmit(); // nothing unsubmitted can still reference a released buffer
      return;
    }
    const encoder = this.encoder;
    this.host.errors.guard(`submit after '${this.lastOp}'`, () => {
      this.pass?.end();
      this.timer?.resolve(encoder);
      if (this.slots > 0)
        this.host.gpu.queue.writeBuffer(this.uniform, 0, this.mirror, 0, this.slots * this.slotStride);
      this.host.gpu.queue.submit([encoder.finish()]);
    });
    this.pass = null;
    this.encoder = null;
    this.slots = 0;
    this.stats.submits++;
    this.host.pool.afterSubmit();
    const n = this.stats.submits;
    if (n - this.confirmed >= QUEUE_MARK_FROM && n % QUEUE_MARK_EVERY === 0) {
      // A rejection means the device went away; the next call reports that.
      this.host.gpu.queue.onSubmittedWorkDone().then(
        () => this.confirm(n),
        () => {},
      );
    }
  }

  /** Records that the first `submits` submits have finished (after a readback or a sync). */
  confirm(submits: number): void {
    if (submits > this.confirmed) this.confirmed = submits;
  }

  /** Submits not yet seen to finish. */
  get queued(): number {
    return this.stats.submits - this.confirmed;
  }

  /** Refuses to record more work past QUEUE_LIMIT unfinished submits, instead of letting Dawn crash. */
  private checkQueue(op: string): void {
    if (this.queued < QUEUE_LIMIT) return;
    throw new EngineError(
      `${op}: ${this.queued} submits (about ${this.queued * SLOTS} dispatches) are queued on the GPU and not ` +
        `yet seen to finish: the program records work faster than it waits for it. Await device.throttle() ` +
        `once per step (or device.sync(), or read a value back); Dawn's Node binding crashes the process ` +
        `at about 1,000 queued submits.`,
    );
  }

  /**
   * Copies `bytes` of `src` into a reused staging buffer, submits, and resolves with a copy of the data; `op` names the
   * caller in errors.
   */
  async read(src: GPUBuffer, bytes: number, srcOffset = 0, op = 'read'): Promise<ArrayBuffer> {
    this.host.assertUsable(op);
    const size = Math.max(256, Math.ceil(bytes / 256) * 256);
    const i = this.staging.findIndex((b) => b.size >= size);
    const errors = this.host.errors;
    const stage =
      i >= 0
        ? this.staging.splice(i, 1)[0]!
        : errors.guard(op, () => this.host.gpu.createBuffer({ label: 'staging', size, usage: MAP_READ_DST }));
    try {
      this.copy(src, srcOffset, stage, 0, Math.ceil(bytes / 4) * 4, op);
    } catch (e) {
      this.staging.push(stage);
      throw e;
    }
    this.flush();
    this.stats.readbacks++;
    const submitted = this.stats.submits;
    try {
      await this.host.wait(
        errors.guard(op, () => stage.mapAsync(MAP_READ, 0, size)),
        op,
      );
      this.confirm(submitted);
      const out = stage.getMappedRange(0, size).slice(0, bytes);
      stage.unmap();
      return out;
    } finally {
      if (stage.mapState === 'mapped') stage.unmap();
      this.staging.push(stage);
    }
  }

  /** Destroys the buffers the batcher created (uniform slots, staging); called by Device.destroy. */
  destroy(): void {
    this.uniform.destroy();
    for (const b of this.staging.splice(0)) b.destroy();
  }
}
