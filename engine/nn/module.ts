// Modules: named parameters (leaf tensors with requiresGrad), buffers (state without
// gradients, e.g. batchnorm running statistics) and child modules, registered in order, so
// that names and order match PyTorch's state_dict: a module's own parameters, then its own
// buffers, then each child's entries under "child.".
import { EngineError } from '../errors.ts';
import type { Tensor } from '../tensor.ts';

export abstract class Module {
  /** Training mode (batchnorm uses batch statistics, dropout drops); `eval()` clears it. */
  training = true;
  private readonly params = new Map<string, Tensor>();
  private readonly buffers = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();

  /** Registers a parameter (marked requiresGrad) under `name`. */
  protected param(name: string, t: Tensor): Tensor {
    this.claim(name);
    t.requiresGrad = true;
    this.params.set(name, t);
    return t;
  }
  /** Registers a buffer (saved in the state dict, never trained) under `name`. */
  protected buffer(name: string, t: Tensor): Tensor {
    this.claim(name);
    this.buffers.set(name, t);
    return t;
  }
  /** Registers a child module under `name`. */
  protected child<M extends Module>(name: string, m: M): M {
    this.claim(name);
    this.children.set(name, m);
    return m;
  }
  private claim(name: string): void {
    if (!name || name.includes('.')) throw new EngineError(`Module: invalid name '${name}'`);
    if (this.params.has(name) || this.buffers.has(name) || this.children.has(name)) {
      throw new EngineError(`Module: '${name}' registered twice in ${this.constructor.name}`);
    }
  }

  /** Child modules in registration order, with their names. */
  namedChildren(): [string, Module][] {
    return [...this.children];
  }
  /** Every parameter of this module and its descendants, with dotted PyTorch-style names. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [...this.params].map(([n, t]) => [prefix + n, t]);
    for (const [n, m] of this.children) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }
  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [...this.buffers].map(([n, t]) => [prefix + n, t]);
    for (const [n, m] of this.children) out.push(...m.namedBuffers(`${prefix}${n}.`));
    return out;
  }
  /** Number of trainable scalars. */
  numParameters(): number {
    return this.parameters().reduce((s, t) => s + t.size, 0);
  }

  /** Parameters and buffers in PyTorch's state_dict order (the tensors themselves, not copies). */
  stateDict(prefix = ''): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [n, t] of this.params) out.set(prefix + n, t);
    for (const [n, t] of this.buffers) out.set(prefix + n, t);
    for (const [n, m] of this.children) for (const [k, t] of m.stateDict(`${prefix}${n}.`)) out.set(k, t);
    return out;
  }

  /**
   * Copies values into this module's parameters and buffers (uploads host arrays; GPU tensors
   * are copied on the queue). Every key must be known and every shape must match; with
   * `strict` (default) every entry of the module must be given, as torch's load_state_dict.
   * Nothing is written unless everything matches; the error lists every mismatch.
   */
  loadStateDict(entries: Map<string, Tensor | Float32Array | Int32Array>, strict = true): void {
    const own = this.ownedEntries();
    const problems: string[] = [];
    const unknown = [...entries.keys()].filter((k) => !own.has(k));
    const missing = strict ? [...own.keys()].filter((k) => !entries.has(k)) : [];
    if (unknown.length) problems.push(`unexpected keys ${unknown.join(', ')}`);
    if (missing.length) problems.push(`missing keys ${missing.join(', ')}`);
    for (const [k, v] of entries) {
      const dst = own.get(k)?.[2];
      if (!dst) continue;
      const host = v instanceof Float32Array || v instanceof Int32Array;
      const n = host ? v.length : v.size;
      if (n !== dst.size || (!host && v.shape.join() !== dst.shape.join())) {
        problems.push(
          `'${k}' has ${host ? `${n} values` : `shape [${v.shape.join(', ')}]`}, the module expects ` +
            `[${dst.shape.join(', ')}]`,
        );
      } else if (!host && v.dtype !== dst.dtype) problems.push(`'${k}' is ${v.dtype}, the module expects ${dst.dtype}`);
    }
    if (problems.length) throw new EngineError(`loadStateDict: ${problems.join('; ')}`);
    // Recorded work (e.g. the zero-fill of a fresh buffer) must run before the queue writes below.
    if (entries.size) own.values().next().value![2].device.batcher.flush();
    for (const [k, v] of entries) {
      const [module, name, dst] = own.get(k)!;
      if (v instanceof Float32Array || v instanceof Int32Array) {
        const arr = dst.dtype === 'int32' ? Int32Array.from(v) : Float32Array.from(v);
        dst.device.writeBuffer('loadStateDict', dst.buffer('loadStateDict'), arr);
        module.stateLoaded(name, arr);
      } else {
        dst.device.batcher.copy(
          v.buffer('loadStateDict'),
          0,
          dst.buffer('loadStateDict'),
          0,
          dst.size * 4,
          'loadStateDict',
        );
        module.stateLoaded(name, null);
      }
    }
  }

  /** Called after loadStateDict wrote entry `name` of this module (host values, or null for a GPU copy). */
  protected stateLoaded(_name: string, _value: Float32Array | Int32Array | null): void {}

  private ownedEntries(
    prefix = '',
    out = new Map<string, [Module, string, Tensor]>(),
  ): Map<string, [Module, string, Tensor]> {
    for (const [n, t] of this.params) out.set(prefix + n, [this, n, t]);
    for (const [n, t] of this.buffers) out.set(prefix + n, [this, n, t]);
    for (const [n, m] of this.children) m.ownedEntries(`${prefix}${n}.`, out);
    return out;
  }

  /** Sets training mode on this module and its descendants. */
  train(mode = true): this {
    this.training = mode;
    for (const m of this.children.values()) m.train(mode);
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  /** Disposes every parameter (and its .grad) and buffer. */
  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    for (const t of this.buffers.values()) t.dispose();
    for (const m of this.children.values()) m.dispose();
  }
}

/** A module with one input and one output: what Sequential chains. */
export abstract class Layer extends Module {
  abstract forward(x: Tensor): Tensor;
}

/** Chains layers; children are named "0", "1", ... as torch.nn.Sequential. */
export class Sequential extends Layer {
  readonly layers: readonly Layer[];
  constructor(...layers: Layer[]) {
    super();
    this.layers = layers;
    layers.forEach((l, i) => {
      this.child(String(i), l);
    });
  }
  /** Intermediate outputs are disposed as soon as the next layer ran (the graph keeps what backward needs). */
  forward(x: Tensor): Tensor {
    let h = x;
    for (const l of this.layers) {
      const next = l.forward(h);
      if (h !== x && next !== h) h.dispose();
      h = next;
    }
    return h;
  }
}

/** Children named "0", "1", ... in insertion order (torch.nn.ModuleList). */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[] = [];
  add(m: M): M {
    this.items.push(this.child(String(this.items.length), m));
    return m;
  }
}

/** Children under given names (torch.nn.ModuleDict). */
export class ModuleDict<M extends Module = Module> extends Module {
  readonly items = new Map<string, M>();
  set(name: string, m: M): M {
    this.items.set(name, this.child(name, m));
    return m;
  }
}
