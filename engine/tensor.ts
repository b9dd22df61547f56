// Tensors: a shape, a dtype and a reference-counted GPU storage. Storage is shared by
// reshape and kept alive by the autograd graph after the user disposed the tensor.
// `loss.backward()` is installed by engine/backward.ts, which sits above the ops.
import { Device } from './device.ts';
import { EngineError } from './errors.ts';
import type { OpAttrs, OpName } from './op-attrs.ts';

export type DType = 'float32' | 'int32';
export type Shape = readonly number[];

export class Storage {
  private count = 1;
  constructor(readonly device: Device, public buffer: GPUBuffer | null, readonly bytes: number) {}
  retain(): void {
    this.count++;
  }
  release(): void {
    if (--this.count === 0 && this.buffer) {
      this.device.pool.release(this.buffer);
      this.buffer = null;
    }
  }
}

/** What a tensor remembers of the op that made it (engine/graph.ts records it), typed by op. */
export interface OpNode<P extends OpName> {
  readonly op: P;
  readonly inputs: readonly Tensor[];
  /** Tensors the backward rule needs besides the inputs (outputs, statistics, indices). */
  readonly saved: readonly Tensor[];
  readonly attrs: OpAttrs[P];
  /** True once backward freed the storage it retained. */
  released: boolean;
}
/** The node type of every op, by op name. */
export type NodeMap = { [P in OpName]: OpNode<P> };
/** A node of any op: a union discriminated by `op`. */
export type Node = NodeMap[OpName];

let defaultDevice: Device | null = null;
/** Sets the device used by tensor creation functions. */
export function setDevice(d: Device): void {
  defaultDevice = d;
}
export function getDevice(): Device {
  if (!defaultDevice) throw new EngineError('No device: call `await init()` (or setDevice(await Device.create())) first.');
  return defaultDevice;
}
/** Creates the default device (Dawn in Node, navigator.gpu in a browser) and makes it current. */
export async function init(opts?: Parameters<typeof Device.create>[0]): Promise<Device> {
  const d = await Device.create(opts);
  setDevice(d);
  return d;
}

// Scopes: tensors created inside tidy() are disposed at its end unless returned or kept.
const scopes: Set<Tensor>[] = [];
export const liveTensors = { count: 0 };
/** > 0 while backward rules run: they may read tensors the user disposed but the graph kept alive. */
export const backwardState = { depth: 0 };
let nextId = 1;

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function checkShape(op: string, shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new EngineError(`${op}: invalid shape [${shape.join(', ')}]`);
  }
}

export class Tensor {
  readonly id = nextId++;
  readonly size: number;
  /** Gradient accumulated by backward() (leaf tensors with requiresGrad). */
  grad: Tensor | null = null;
  /** The op that produced this tensor, while the graph is alive. */
  node: Node | null = null;
  /**
   * [min, max] of the values, when known on the host without a readback (int32 tensors made
   * from host data): lets ops such as crossEntropy refuse bad labels before any dispatch.
   */
  valueRange: readonly [number, number] | null = null;
  private _disposed = false;

  constructor(
    readonly shape: Shape,
    readonly dtype: DType,
    readonly storage: Storage,
    public requiresGrad = false,
  ) {
    this.size = sizeOf(shape);
    liveTensors.count++;
    scopes[scopes.length - 1]?.add(this);
  }

  get device(): Device {
    return this.storage.device;
  }
  get rank(): number {
    return this.shape.length;
  }
  get disposed(): boolean {
    return this._disposed;
  }
  /** The GPU buffer; throws if the tensor was disposed. `op` names the caller in the error. */
  buffer(op = 'use'): GPUBuffer {
    this.storage.device.assertUsable(op);
    const b = this.storage.buffer;
    if (!b || (this._disposed && backwardState.depth === 0)) {
      throw new EngineError(`${op}: tensor #${this.id} [${this.shape.join(', ')}] was disposed`);
    }
    return b;
  }
  /** The buffer, even after the user disposed the tensor (the graph keeps the storage alive). */
  get rawBuffer(): GPUBuffer {
    const b = this.storage.buffer;
    if (!b) throw new EngineError(`internal: storage of tensor #${this.id} already freed`);
    return b;
  }

  /** Marks this tensor as a leaf that accumulates .grad. */
  requireGrad(flag = true): this {
    this.requiresGrad = flag;
    return this;
  }

  /** Reads the values back to the CPU (one submit + one map of a reused staging buffer). */
  async toArray(op = 'toArray'): Promise<Float32Array | Int32Array> {
    const buf = this.buffer(op);
    const data = await this.device.batcher.read(buf, this.size * 4, 0, op);
    return this.dtype === 'int32' ? new Int32Array(data) : new Float32Array(data);
  }
  async item(): Promise<number> {
    if (this.size !== 1) throw new EngineError(`item: tensor has ${this.size} elements, expected 1`);
    return (await this.toArray('item'))[0]!;
  }

  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    liveTensors.count--;
    this.storage.release();
    this.grad?.dispose();
    this.grad = null;
  }

  toString(): string {
    return `Tensor#${this.id}(${this.dtype}, [${this.shape.join(', ')}])`;
  }
}

/** Allocates an uninitialised tensor on `device`. */
export function empty(shape: Shape, dtype: DType = 'float32', device: Device = getDevice()): Tensor {
  checkShape('empty', shape);
  device.assertUsable('empty');
  const bytes = Math.max(4, sizeOf(shape) * 4);
  const max = device.limits.maxStorageBufferBindingSize;
  if (bytes > max) {
    throw new EngineError(
      `tensor [${shape.join(', ')}] needs ${bytes} bytes, above this device's maxStorageBufferBindingSize (${max}); use a smaller batch`,
    );
  }
  return new Tensor(shape, dtype, new Storage(device, device.pool.acquire(bytes), bytes));
}

type Nested = Tensor | readonly Nested[] | { readonly [k: string]: Nested } | null | undefined | number | string | boolean;
function collect(x: Nested, into: Set<Tensor>): void {
  if (x instanceof Tensor) into.add(x);
  else if (Array.isArray(x)) for (const v of x) collect(v as Nested, into);
  else if (x && typeof x === 'object') for (const v of Object.values(x)) collect(v as Nested, into);
}

/** Runs fn; disposes every tensor created inside that is not in its result (arrays/objects searched). */
export function tidy<T extends Nested>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const keep = new Set<Tensor>();
  collect(result, keep);
  for (const t of scope) {
    if (keep.has(t)) scopes[scopes.length - 1]?.add(t);
    else t.dispose();
  }
  return result;
}

/** Exempts a tensor from the enclosing tidy() scopes. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}
