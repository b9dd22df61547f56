/// <reference types="@webgpu/types" preserve="true" />
// The GPU device, and the one place that creates pipelines and waits on the queue.
// Browser-safe: the engine knows only `navigator.gpu`, a `GPU` given to Device.create, or a
// default registered with setDefaultGPU (the package's Node entry registers Dawn there).
import { BufferPool } from './buffer-pool.ts';
import { Batcher, type BatcherHost, type Dispatch } from './batcher.ts';
import { DeviceErrors } from './device-errors.ts';
import { EngineError } from './errors.ts';
import { NONFINITE_BATCHNORM } from '../shaders/batchnorm.ts';
import type { BindingsDecl, ParamDecl, Variant } from '../shaders/kernel.ts';

export { EngineError };

/** Limits the engine needs; requested at creation and checked against the adapter. */
const REQUIRED = {
  maxStorageBuffersPerShaderStage: 8,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxStorageBufferBindingSize: 64 * 1024 * 1024,
} as const;
type LimitName = keyof typeof REQUIRED | 'maxBufferSize';

/**
 * The GPU device was destroyed or lost (driver reset, GPU removed, out of memory in the driver):
 * every pending and later operation fails with this error, naming itself and giving the reason
 * the browser or Dawn reported. Nothing on that device can be read back any more.
 */
export class DeviceLostError extends EngineError {
  override name = 'DeviceLostError';
  constructor(
    readonly op: string,
    /** GPUDeviceLostInfo.reason ('destroyed' or 'unknown'). */
    readonly reason: string,
    /** GPUDeviceLostInfo.message. */
    readonly detail: string,
  ) {
    super(
      `${op}: the GPU device was lost (${reason}: ${detail}); no further work can run on it or be read back from it`,
    );
  }
}

const STORAGE_COPY = 0x80 | 0x04 | 0x08; // GPUBufferUsage.STORAGE | COPY_SRC | COPY_DST
/** Words of Device.nonFiniteCounters (u32 each). */
export const NONFINITE_COUNTERS = { batchNorm: NONFINITE_BATCHNORM } as const;

export interface DeviceOptions {
  /** A `GPU` object (navigator.gpu or Dawn's). Defaults to the one set by setDefaultGPU, else navigator.gpu. */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /**
   * Request 'timestamp-query' (for DispatchTimer, profiling). With Dawn for Node this also turns
   * off Dawn's timestamp rounding (65536 ns); an error if the adapter lacks the feature.
   */
  timestamps?: boolean;
}

/** Makes a `GPU` for Device.create when none is given; `timestamps` as in DeviceOptions. */
export type GPUProvider = (opts: { timestamps: boolean }) => Promise<GPU>;
let defaultProvider: GPUProvider | null = null;

/**
 * Sets the `GPU` that Device.create / init use when none is given (null: back to navigator.gpu).
 * The package's Node entry calls it with Dawn, so that the engine itself never imports a Node module.
 */
export function setDefaultGPU(provider: GPUProvider | null): void {
  defaultProvider = provider;
}

let quietWaiters = 0;
let savedSetImmediate: ((cb: () => void) => unknown) | undefined;

export class Device implements BatcherHost {
  readonly gpu: GPUDevice;
  readonly adapterName: string;
  readonly pool: BufferPool;
  readonly batcher: Batcher;
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly pipelines = new Map<string, Map<string, GPUComputePipeline>>(); // source → entry point → pipeline
  private readonly compileChecks: Promise<void>[] = [];
  /** Collects WebGPU errors: a listener on the engine's own device, error scopes on an app's. */
  readonly errors: DeviceErrors;
  private lostInfo: { reason: string; message: string } | null = null;
  private counters: GPUBuffer | null = null;
  /** Whether the engine created the GPUDevice (Device.create); false for Device.fromGPUDevice. */
  readonly ownsDevice: boolean;

  // Dawn's Node instance must outlive its devices: if it is garbage collected, the process crashes.
  // biome-ignore lint/correctness/noUnusedPrivateClassMembers: written only, to hold the reference
  private instance: GPU | null = null;

  private constructor(gpu: GPUDevice, adapterName: string, owns: boolean) {
    this.gpu = gpu;
    this.adapterName = adapterName;
    this.ownsDevice = owns;
    this.errors = new DeviceErrors(gpu, !owns, () => this.batcher?.lastOp ?? '(none)');
    this.pool = new BufferPool(gpu, this.errors);
    this.batcher = new Batcher(this);
    // Reading `lost` changes nothing on an app's device; the engine never destroys one it does not own.
    void gpu.lost.then((info) => {
      this.lostInfo ??= { reason: info.reason ?? 'unknown', message: info.message || 'no message' };
    });
  }

  /** Creates a device on the best adapter: navigator.gpu in a browser, Dawn in Node. */
  static async create(opts: DeviceOptions = {}): Promise<Device> {
    const gpu = opts.gpu ?? (await defaultGPU(opts.timestamps ?? false));
    const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
    if (!adapter) {
      throw new EngineError(
        'No WebGPU adapter found. Install a GPU driver with Vulkan/Metal/D3D12 support, or on Linux the software ' +
          "Vulkan driver: 'npm run setup' (Debian: libvulkan1 + mesa-vulkan-drivers >= 23, from bookworm-backports " +
          'on Debian 12).',
      );
    }
    const requiredLimits: Record<string, number> = {};
    for (const [name, need] of Object.entries(REQUIRED)) {
      const have = adapter.limits[name as LimitName];
      if (have < need) throw new EngineError(`Adapter limit ${name} = ${have} is below the engine's minimum ${need}.`);
      requiredLimits[name] = have; // take all the adapter offers
    }
    requiredLimits.maxBufferSize = adapter.limits.maxBufferSize;
    const requiredFeatures: GPUFeatureName[] = [];
    if (opts.timestamps) {
      if (!adapter.features.has('timestamp-query'))
        throw new EngineError("The adapter does not support 'timestamp-query' (asked for by { timestamps: true }).");
      requiredFeatures.push('timestamp-query');
    }
    const dev = await adapter.requestDevice({ requiredLimits, requiredFeatures });
    const i = adapter.info;
    const name = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ') || 'unknown adapter';
    const d = new Device(dev, name, true);
    d.instance = gpu;
    return d;
  }

  /**
   * Wraps a GPUDevice that an application owns. The engine then never destroys or reconfigures it,
   * adds no event listener to it, and brackets its own calls in error scopes that it pops again
   * (the app's error-scope stack and its `uncapturederror` handling stay as they were). It shares
   * the queue: see `flush()` for ordering the app's submits after the engine's work.
   * Refuses a device that is already lost, or whose limits are below the engine's minimum.
   */
  static async fromGPUDevice(gpu: GPUDevice, name?: string): Promise<Device> {
    for (const [lim, need] of Object.entries(REQUIRED)) {
      const have = gpu.limits[lim as LimitName];
      if (have < need)
        throw new EngineError(
          `Device.fromGPUDevice: GPUDevice limit ${lim} = ${have} is below the engine's minimum ${need}; request ` +
            `it in requestDevice({ requiredLimits }).`,
        );
    }
    // A destroyed or lost device resolves `lost` before an (empty) queue reports its work done.
    const lost = await Promise.race([gpu.lost, gpu.queue.onSubmittedWorkDone().then(() => null)]);
    if (lost) {
      throw new EngineError(
        `Device.fromGPUDevice: the GPUDevice is lost (reason ` +
          `'${lost.reason}'${lost.message ? `: ${lost.message}` : ''}); request a new one with ` +
          `adapter.requestDevice().`,
      );
    }
    const info = (gpu as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
    const described = info
      ? [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ')
      : '';
    return new Device(gpu, name ?? (described || 'app device'), false);
  }

  get limits(): GPUSupportedLimits {
    return this.gpu.limits;
  }

  /** Records one kernel launch (see Dispatch); it runs at the next submit. */
  dispatch<V extends Variant, P extends ParamDecl, B extends BindingsDecl<V>>(d: Dispatch<V, P, B>): void {
    this.batcher.dispatch(d);
  }

  /** Throws a pending device/validation/compile error, if any. Called at every sync point (`op` names it). */
  checkErrors(op = 'sync'): void {
    const e = this.errors.take();
    if (e) throw e;
    this.assertUsable(op);
  }

  /** Whether the device was destroyed or lost (as far as the browser or Dawn has told us yet). */
  get isLost(): boolean {
    return this.lostInfo !== null;
  }

  /** Throws DeviceLostError naming `op` if the device was destroyed or lost. */
  assertUsable(op: string): void {
    if (this.lostInfo) throw new DeviceLostError(op, this.lostInfo.reason, this.lostInfo.message);
  }

  /**
   * Device-wide u32 counters that kernels increment when they refuse to write a non-finite value
   * (NONFINITE_COUNTERS: BatchNorm's running-stat updates). Created zeroed on first use.
   */
  get nonFiniteCounters(): GPUBuffer {
    this.counters ??= this.errors.guard('nonFiniteCounters', () =>
      this.gpu.createBuffer({ label: 'non-finite counters', size: 16, usage: STORAGE_COPY }),
    );
    return this.counters;
  }

  /** Reads the non-finite counters (one readback): how many BatchNorm channel updates were skipped so far. */
  async readNonFiniteCounts(): Promise<{ batchNorm: number }> {
    const u = new Uint32Array(await this.batcher.read(this.nonFiniteCounters, 4, 0, 'readNonFiniteCounts'));
    return { batchNorm: u[NONFINITE_COUNTERS.batchNorm]! };
  }

  /** Pipeline cache keyed by the final WGSL source; compile errors are reported with the op name and line. */
  pipeline(op: string, code: string, entryPoint = 'main'): GPUComputePipeline {
    const byEntry = this.pipelines.get(code);
    const p = byEntry?.get(entryPoint);
    if (p) return p;
    return this.errors.guard(op, () => this.compile(op, code, entryPoint, byEntry));
  }

  private compile(
    op: string,
    code: string,
    entryPoint: string,
    byEntry: Map<string, GPUComputePipeline> | undefined,
  ): GPUComputePipeline {
    // Most kernels fit the default 8 storage buffers; a few (attention's backward: up to 10) bind
    // more, and a device requested with default limits refuses them: say so before any dispatch.
    const storage = code.match(/var<storage\b/g)?.length ?? 0;
    const max = this.gpu.limits.maxStorageBuffersPerShaderStage;
    if (storage > max) {
      throw new EngineError(
        `${op}: its kernel binds ${storage} storage buffers, above this device's maxStorageBuffersPerShaderStage ` +
          `(${max}); ` +
          `request it in requestDevice({ requiredLimits: { maxStorageBuffersPerShaderStage: ${storage} } }) if ` +
          `adapter.limits allows, or use Device.create(), which takes the adapter's limits`,
      );
    }
    let mod = this.modules.get(code);
    if (!mod) {
      mod = this.gpu.createShaderModule({ label: op, code });
      this.modules.set(code, mod);
      const m = mod;
      this.compileChecks.push(
        m.getCompilationInfo().then((info) => {
          const errs = info.messages.filter((x) => x.type === 'error');
          if (errs.length === 0) return;
          const lines = code.split('\n');
          const text = errs
            .map((x) => `  line ${x.lineNum}: ${x.message}\n    ${lines[x.lineNum - 1]?.trim() ?? ''}`)
            .join('\n');
          this.errors.record(`WGSL compile error in op '${op}':\n${text}`);
        }),
      );
    }
    const p = this.gpu.createComputePipeline({ label: op, layout: 'auto', compute: { module: mod, entryPoint } });
    if (!byEntry) this.pipelines.set(code, (byEntry = new Map()));
    byEntry.set(entryPoint, p);
    this.pipelineCount++;
    return p;
  }

  /** Number of distinct compute pipelines compiled so far. */
  pipelineCount = 0;

  /**
   * Submits the work the engine has recorded but not yet submitted (it records dispatches into its
   * own command encoder and submits in chunks). Call it before submitting commands of your own that
   * read or write a tensor's buffer: the queue then runs the engine's work first.
   */
  flush(): void {
    this.batcher.flush();
  }

  /**
   * Writes host data into a buffer through the queue. The write runs before any work still recorded
   * and not submitted: flush() first where that matters. `op` names the caller in errors.
   */
  writeBuffer(op: string, buffer: GPUBuffer, data: Float32Array | Int32Array | Uint32Array, offset = 0): void {
    if (!(buffer.usage & COPY_DST))
      throw new EngineError(`${op}: the buffer lacks GPUBufferUsage.COPY_DST, so it cannot be written from the host`);
    if (data.length)
      this.errors.guard(op, () =>
        this.gpu.queue.writeBuffer(buffer, offset, data.buffer, data.byteOffset, data.byteLength),
      );
  }

  /** Submits pending work and waits until the GPU finished it. */
  async sync(): Promise<void> {
    this.assertUsable('sync');
    this.batcher.flush();
    const submitted = this.batcher.stats.submits;
    await this.wait(this.gpu.queue.onSubmittedWorkDone(), 'sync');
    this.batcher.confirm(submitted);
  }

  /**
   * Waits for the GPU when more than `maxQueued` submits are queued and not yet seen to finish
   * (then all of them: see sync()); otherwise returns at once. Call it once per step in a loop
   * that records work without reading anything back: the engine refuses to record past 512 such
   * submits, since Dawn's Node binding crashes at about 1,000.
   */
  async throttle(maxQueued = 256): Promise<void> {
    if (this.batcher.queued > maxQueued) await this.sync();
  }

  /**
   * Awaits a GPU promise on behalf of `op`. Dawn's Node binding polls by re-arming the global
   * setImmediate, which keeps a core busy; while we wait, setImmediate is swapped for a 1 ms timer so
   * a software GPU gets that core. A promise rejected because the device went away (Dawn rejects a
   * pending mapAsync with an AbortError that has no message) becomes a DeviceLostError naming `op`.
   */
  async wait<T>(p: Promise<T>, op = 'wait'): Promise<T> {
    const g = globalThis as { setImmediate?: (cb: () => void) => unknown };
    const quiet = this.quietWait && typeof g.setImmediate === 'function';
    if (quiet && quietWaiters++ === 0) {
      savedSetImmediate = g.setImmediate;
      g.setImmediate = (cb: () => void) => setTimeout(cb, 1);
    }
    try {
      let r: T;
      try {
        r = await p;
      } catch (e) {
        await this.settleLoss();
        this.assertUsable(op);
        throw e instanceof EngineError
          ? e
          : new EngineError(
              `${op}: ${(e as Error).name}: ${(e as Error).message || 'no message'} (near op '${this.batcher.lastOp}')`,
            );
      }
      if (this.compileChecks.length) await Promise.all(this.compileChecks.splice(0));
      await this.errors.settle();
      this.checkErrors(op);
      return r;
    } finally {
      if (quiet && --quietWaiters === 0) g.setImmediate = savedSetImmediate;
    }
  }

  /** After a failed GPU promise: gives the device-lost notification (which follows it) a moment to arrive. */
  private async settleLoss(): Promise<void> {
    if (this.lostInfo) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.gpu.lost, new Promise((r) => (timer = setTimeout(r, 500)))]);
    clearTimeout(timer);
    await Promise.resolve(); // let the lost handler above run
  }

  /** Whether waits use the quiet (timer-based) polling described in `wait`. */
  quietWait = true;

  /**
   * Frees what the engine created on the device (pooled buffers, uniform and staging buffers) and,
   * for a device the engine created, destroys it. An app's device (fromGPUDevice) stays alive and
   * untouched, as do buffers wrapped with Tensor.fromGPUBuffer. Dispose tensors first: buffers of
   * live tensors are not destroyed. Later operations throw DeviceLostError.
   */
  destroy(): void {
    if (!this.lostInfo) this.batcher.flush();
    this.batcher.destroy();
    this.pool.destroyAll();
    this.counters?.destroy();
    if (this.ownsDevice) this.gpu.destroy();
    this.lostInfo ??= { reason: 'destroyed', message: 'Device.destroy() was called' };
  }
}

const COPY_DST = 0x08; // GPUBufferUsage.COPY_DST (a constant, so no global is needed)

async function defaultGPU(timestamps: boolean): Promise<GPU> {
  if (defaultProvider) return defaultProvider({ timestamps });
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  const isWorkerOrPage =
    typeof (globalThis as { document?: unknown; importScripts?: unknown }).document !== 'undefined' ||
    typeof (globalThis as { importScripts?: unknown }).importScripts === 'function';
  throw new EngineError(
    isWorkerOrPage
      ? 'No WebGPU: navigator.gpu is undefined. Use a browser with WebGPU (Chrome or Edge 113+, Safari 26+, ' +
          'Firefox 141+ on Windows; on Linux Chrome needs --enable-unsafe-webgpu or ' +
          'chrome://flags/#enable-unsafe-webgpu), and serve the page from https:// or ' +
          'http://localhost (WebGPU needs a secure context).'
      : 'No WebGPU: navigator.gpu is undefined and no GPU was given. In Node, import the package as ' +
          "'mmpareto-webgpu' (its Node entry loads Dawn from the 'webgpu' package), or pass " +
          "Device.create({ gpu }) a GPU object, e.g. `create([])` from the 'webgpu' package.",
  );
}
