// Records dispatches into one command encoder and submits in chunks. Uniform parameters
// come from a slot pool: one uniform buffer, 256-byte slots, written once per submit.
import type { Device } from './device.ts';
import type { DispatchTimer } from './dispatch-timer.ts';
import { EngineError } from './errors.ts';

const SLOTS = 64; // dispatches per submit at most ("tens of dispatches per submit")
const UNIFORM = 0x40 | 0x08; // GPUBufferUsage.UNIFORM | COPY_DST
const MAP_READ_DST = 0x01 | 0x08; // GPUBufferUsage.MAP_READ | COPY_DST
const MAP_READ = 0x01; // GPUMapMode.READ
const COPY_SRC = 0x04; // GPUBufferUsage.COPY_SRC
const COPY_DST = 0x08; // GPUBufferUsage.COPY_DST

export interface Dispatch {
  op: string;
  pipeline: GPUComputePipeline;
  /** Storage buffers bound at @binding(1), (2), ... in order. */
  buffers: GPUBuffer[];
  /** Uniform Params at @binding(0): u32 fields, then f32 fields (each 4 bytes, WGSL struct order). */
  u32?: readonly number[];
  f32?: readonly number[];
  groups: readonly [number, number?, number?];
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
  private readonly slotStride: number;
  private slots = 0;
  private readonly staging: GPUBuffer[] = [];
  readonly stats: BatchStats = { dispatches: 0, submits: 0, readbacks: 0 };
  lastOp = '(none)';
  /** Optional observer of every recorded dispatch (profiling, bench/profile.ts); null: none. */
  trace: ((d: Dispatch, bindGroup: GPUBindGroup) => void) | null = null;
  /** Optional GPU timer of every dispatch (profiling: one pass per dispatch); null: none. */
  timer: DispatchTimer | null = null;

  constructor(private readonly device: Device) {
    this.slotStride = Math.max(256, device.limits.minUniformBufferOffsetAlignment);
    this.uniform = device.errors.guard('Batcher', () => device.gpu.createBuffer({ label: 'params', size: SLOTS * this.slotStride, usage: UNIFORM }));
  }

  private computePass(): GPUComputePassEncoder {
    this.encoder ??= this.device.gpu.createCommandEncoder();
    this.pass ??= this.encoder.beginComputePass();
    return this.pass;
  }

  dispatch(d: Dispatch): void {
    this.device.assertUsable(d.op);
    if (this.slots === SLOTS) this.flush();
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    const [x, y = 1, z = 1] = d.groups;
    if (x > maxGroups || y > maxGroups || z > maxGroups) {
      throw new Error(`${d.op}: dispatch of ${x}×${y}×${z} workgroups exceeds the device limit ${maxGroups} per dimension`);
    }
    this.device.errors.guard(d.op, () => this.record(d, x, y, z));
  }

  private record(d: Dispatch, x: number, y: number, z: number): void {
    const entries: GPUBindGroupEntry[] = [];
    const hasParams = (d.u32?.length ?? 0) + (d.f32?.length ?? 0) > 0;
    if (hasParams) {
      const off = this.slots * this.slotStride;
      const nu = d.u32?.length ?? 0;
      new Uint32Array(this.mirror, off, nu).set(d.u32 ?? []);
      if (d.f32) new Float32Array(this.mirror, off + nu * 4, d.f32.length).set(d.f32);
      entries.push({ binding: 0, resource: { buffer: this.uniform, offset: off, size: 256 } });
    }
    d.buffers.forEach((buffer, i) => entries.push({ binding: i + 1, resource: { buffer } }));
    const bindGroup = this.device.gpu.createBindGroup({ label: d.op, layout: d.pipeline.getBindGroupLayout(0), entries });
    if (this.timer) {
      const timestampWrites = this.timer.writes(d.op); // may throw: nothing recorded yet
      this.pass?.end();
      this.encoder ??= this.device.gpu.createCommandEncoder();
      this.pass = this.encoder.beginComputePass({ timestampWrites });
    }
    const pass = this.computePass();
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    if (this.timer) {
      pass.end();
      this.pass = null;
    }
    this.trace?.(d, bindGroup);
    this.slots++; // every dispatch takes a slot, so a submit never holds more than SLOTS dispatches
    this.stats.dispatches++;
    this.lastOp = d.op;
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number, op = 'copy'): void {
    // Pool buffers have both usages; an app's buffer (Tensor.fromGPUBuffer) may lack them.
    if (!(src.usage & COPY_SRC)) throw new EngineError(`${op}: the source buffer lacks GPUBufferUsage.COPY_SRC (an app buffer wrapped by Tensor.fromGPUBuffer needs it to be copied or read back)`);
    if (!(dst.usage & COPY_DST)) throw new EngineError(`${op}: the destination buffer lacks GPUBufferUsage.COPY_DST (an app buffer wrapped by Tensor.fromGPUBuffer needs it to be written)`);
    this.pass?.end();
    this.pass = null;
    this.encoder ??= this.device.gpu.createCommandEncoder();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /** Submits everything recorded so far (no wait). */
  flush(): void {
    if (!this.encoder) {
      this.device.pool.afterSubmit(); // nothing unsubmitted can still reference a released buffer
      return;
    }
    const encoder = this.encoder;
    this.device.errors.guard(`submit after '${this.lastOp}'`, () => {
      this.pass?.end();
      this.timer?.resolve(encoder);
      if (this.slots > 0) this.device.gpu.queue.writeBuffer(this.uniform, 0, this.mirror, 0, this.slots * this.slotStride);
      this.device.gpu.queue.submit([encoder.finish()]);
    });
    this.pass = null;
    this.encoder = null;
    this.slots = 0;
    this.stats.submits++;
    this.device.pool.afterSubmit();
  }

  /** Copies `bytes` of `src` into a reused staging buffer, submits, and resolves with a copy of the data; `op` names the caller in errors. */
  async read(src: GPUBuffer, bytes: number, srcOffset = 0, op = 'read'): Promise<ArrayBuffer> {
    this.device.assertUsable(op);
    const size = Math.max(256, Math.ceil(bytes / 256) * 256);
    const i = this.staging.findIndex((b) => b.size >= size);
    const errors = this.device.errors;
    const stage = i >= 0 ? this.staging.splice(i, 1)[0]! : errors.guard(op, () => this.device.gpu.createBuffer({ label: 'staging', size, usage: MAP_READ_DST }));
    try {
      this.copy(src, srcOffset, stage, 0, Math.ceil(bytes / 4) * 4, op);
    } catch (e) {
      this.staging.push(stage);
      throw e;
    }
    this.flush();
    this.stats.readbacks++;
    try {
      await this.device.wait(errors.guard(op, () => stage.mapAsync(MAP_READ, 0, size)), op);
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
