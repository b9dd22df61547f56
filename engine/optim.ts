// Optimizers as shaders: parameters and state are updated in place on the GPU, one dispatch per
// parameter. One base class: `update(p, gradient)` applies the rule to one parameter, from a
// gradient tensor or from a gradient integrator's combination (engine/integrate: the combine of the
// per-loss gradients runs inside the same kernel), and advances that parameter's own state (AdamW's
// step count) there and only there. `step()` is update() for every parameter with a .grad.
import { EngineError } from './errors.ts';
import { fill } from './ops/elementwise.ts';
import { Tensor } from './tensor.ts';
import { writeTensor } from './creation.ts';
import { adamwKernel, sgdKernel } from '../shaders/optim.ts';
import { fusedAdamwKernel, fusedSgdKernel } from '../shaders/integrate.ts';

/**
 * A gradient that a gradient integrator combines from K per-loss gradients inside the update
 * kernel (shaders/integrate.ts): h = Σ_j state[coefBase + j]·grads[j], or no update at all where
 * state[valid] is 0 (a group whose gradients were not finite).
 */
export interface CombinedGradient {
  readonly state: GPUBuffer;
  readonly coefBase: number;
  readonly valid: number;
  /** The parameter's K per-loss gradients (zeros where a loss does not reach it). */
  readonly grads: readonly GPUBuffer[];
}

/** What update() is given: a gradient shaped like the parameter, or an integrator's combination. */
export type Gradient = Tensor | CombinedGradient;

/** What an update needs of a NonFiniteGuard: its status buffer (engine/integrate/guard.ts). */
export interface StepGuard {
  readonly statusBuffer: GPUBuffer;
}

function checkParams(op: string, params: readonly Tensor[]): void {
  const seen = new Set<Tensor>();
  for (const p of params) {
    if (!p.requiresGrad || p.node) throw new EngineError(`${op}: ${p} is not a leaf tensor with requiresGrad`);
    if (p.dtype !== 'float32') throw new EngineError(`${op}: ${p} is not float32`);
    if (seen.has(p)) throw new EngineError(`${op}: ${p} appears twice in the parameter list`);
    seen.add(p);
  }
}

/** An optimizer's state as host arrays, torch-style keys '<param index>.<name>' (for checkpoints). */
export type OptimizerState = Map<string, Float32Array | Int32Array>;

async function readState(entries: [string, Tensor][]): Promise<OptimizerState> {
  const out: OptimizerState = new Map();
  for (const [k, t] of entries) out.set(k, (await t.toArray()) as Float32Array);
  return out;
}

function loadState(op: string, entries: [string, Tensor][], state: OptimizerState, extra: string[] = []): void {
  const known = new Map(entries);
  const problems: string[] = [];
  for (const k of state.keys()) if (!known.has(k) && !extra.includes(k)) problems.push(`unexpected key '${k}'`);
  for (const [k, t] of entries) {
    const v = state.get(k);
    if (!v) problems.push(`missing key '${k}'`);
    else if (v.length !== t.size || !(v instanceof Float32Array))
      problems.push(
        `'${k}' has ${v.length} ${v instanceof Float32Array ? 'float32' : 'int32'} values, expected ${t.size} float32`,
      );
  }
  for (const k of extra) if (!state.has(k)) problems.push(`missing key '${k}'`);
  if (problems.length) throw new EngineError(`${op}.loadStateDict: ${problems.join('; ')}`);
  for (const [k, t] of entries) writeTensor(t, state.get(k)!);
}

export interface SGDOptions {
  lr: number;
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/** The optimizers' common part: the parameter list, update() by parameter, step(), zeroGrad(). */
export abstract class Optimizer {
  readonly params: readonly Tensor[];
  private readonly slots = new Map<Tensor, number>();

  protected constructor(
    readonly name: string,
    params: readonly Tensor[],
  ) {
    checkParams(name, params);
    this.params = params;
    params.forEach((p, i) => {
      this.slots.set(p, i);
    });
  }

  /** The learning rate of the next updates (for schedules). */
  abstract lr: number;

  /**
   * Per-parameter step counts kept on the host (AdamW's bias correction), if the rule has any: a
   * NonFiniteGuard rewinds them for the steps it dropped on the GPU.
   */
  abstract readonly stepCounts: number[] | undefined;

  /** Whether `p` is one of this optimizer's parameters. */
  has(p: Tensor): boolean {
    return this.slots.has(p);
  }

  /**
   * Updates parameter `p` in place from `gradient` and advances p's own state; one dispatch. A
   * combined gradient's group that was not finite leaves p and its state as they were; with a
   * `guard`, so does a step the guard dropped (a combined gradient carries that verdict already).
   */
  update(p: Tensor, gradient: Gradient, guard?: StepGuard): void {
    const i = this.slots.get(p);
    if (i === undefined) {
      const what = `${p} [${p.shape.join(', ')}]`;
      throw new EngineError(`${this.name}.update: ${what} is not one of the optimizer's parameters`);
    }
    this.apply(i, p, gradient, Math.ceil(p.size / 4), guard);
  }

  /** The rule for parameter i (n4 = its size in vec4s): advance its state, dispatch its kernel. */
  protected abstract apply(i: number, p: Tensor, gradient: Gradient, n4: number, guard: StepGuard | undefined): void;

  /**
   * Applies one update from each parameter's .grad (parameters without a gradient are skipped);
   * with a NonFiniteGuard, nothing changes if the guard dropped this step.
   */
  step(guard?: StepGuard): void {
    for (const p of this.params) if (p.grad) this.update(p, p.grad, guard);
  }

  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** The optimizer's state, read back (checkpoints). */
  abstract stateDict(): Promise<OptimizerState>;
  abstract loadStateDict(state: OptimizerState): void;
  abstract dispose(): void;
}

/** torch.optim.SGD: momentum buffers start at zero, so the first step applies g (dampening 0). */
export class SGD extends Optimizer {
  private readonly buffers: Tensor[];
  readonly opts: SGDOptions;
  constructor(params: readonly Tensor[], opts: SGDOptions) {
    if (!(opts.lr > 0)) throw new EngineError(`SGD: lr must be > 0, got ${opts.lr}`);
    super('SGD', params);
    this.buffers = params.map((p) => fill(p.shape, 0, p.device));
    this.opts = { ...opts };
  }

  /** The learning rate of the next updates (for schedules). */
  get lr(): number {
    return this.opts.lr;
  }
  set lr(v: number) {
    if (!(v >= 0)) throw new EngineError(`SGD: lr must be >= 0, got ${v}`);
    this.opts.lr = v;
  }

  /** Momentum buffers, read back: keys '<i>.momentum_buffer'. */
  stateDict(): Promise<OptimizerState> {
    return readState(this.stateEntries());
  }
  loadStateDict(state: OptimizerState): void {
    loadState('SGD', this.stateEntries(), state);
  }
  private stateEntries(): [string, Tensor][] {
    return this.buffers.map((b, i) => [`${i}.momentum_buffer`, b]);
  }

  readonly stepCounts = undefined;

  protected apply(i: number, p: Tensor, gradient: Gradient, n4: number, guard: StepGuard | undefined): void {
    const { lr, momentum = 0, weightDecay = 0, nesterov = false } = this.opts;
    const rule = { nesterov: nesterov ? 1 : 0, lr, momentum, wd: weightDecay };
    const m = this.buffers[i]!.rawBuffer;
    if (gradient instanceof Tensor) {
      const guarded = guard ? { guard: guard.statusBuffer } : {};
      p.device.dispatch({
        kernel: sgdKernel,
        variant: { guarded: guard !== undefined },
        params: { n: n4, ...rule },
        bindings: { p: p.buffer('sgd'), m, grad: gradient.buffer('sgd'), ...guarded },
      });
    } else {
      const { state, coefBase, valid, grads } = gradient;
      p.device.dispatch({
        kernel: fusedSgdKernel,
        variant: { k: grads.length },
        params: { n4, coefBase, valid, ...rule },
        bindings: { state, p: p.rawBuffer, m, g: grads },
      });
    }
  }

  dispose(): void {
    for (const b of this.buffers) b.dispose();
  }
}

export interface AdamWOptions {
  /** Default 1e-3. */
  lr?: number;
  /** (β1, β2), default (0.9, 0.999). */
  betas?: readonly [number, number];
  /** Added to √v̂ (outside the square root), default 1e-8. */
  eps?: number;
  /** Decoupled weight decay λ: p ← p·(1 − lr·λ) before the Adam step. Default 1e-2 (as torch). */
  weightDecay?: number;
}

/**
 * torch.optim.AdamW (amsgrad off, maximize off): moments start at zero, bias correction uses
 * each parameter's own step count (a parameter without a gradient does not advance).
 */
export class AdamW extends Optimizer {
  private readonly m: Tensor[];
  private readonly v: Tensor[];
  private readonly steps: number[];
  private lrValue: number;
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly eps: number;
  private readonly weightDecay: number;

  constructor(params: readonly Tensor[], opts: AdamWOptions = {}) {
    const { lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 1e-2 } = opts;
    if (!(lr > 0)) throw new EngineError(`AdamW: lr must be > 0, got ${lr}`);
    for (const b of betas)
      if (!(b >= 0 && b < 1)) throw new EngineError(`AdamW: betas must lie in [0, 1), got [${betas.join(', ')}]`);
    if (!(eps >= 0)) throw new EngineError(`AdamW: eps must be >= 0, got ${eps}`);
    if (!(weightDecay >= 0)) throw new EngineError(`AdamW: weightDecay must be >= 0, got ${weightDecay}`);
    super('AdamW', params);
    [this.lrValue, this.beta1, this.beta2, this.eps, this.weightDecay] = [lr, betas[0], betas[1], eps, weightDecay];
    this.m = params.map((p) => fill(p.shape, 0, p.device));
    this.v = params.map((p) => fill(p.shape, 0, p.device));
    this.steps = params.map(() => 0);
  }

  /** The learning rate of the next updates (for schedules). */
  get lr(): number {
    return this.lrValue;
  }
  set lr(v: number) {
    if (!(v >= 0)) throw new EngineError(`AdamW: lr must be >= 0, got ${v}`);
    this.lrValue = v;
  }

  /** Moments and step counts, read back: keys '<i>.exp_avg', '<i>.exp_avg_sq', and 'step' (one count per parameter). */
  stateDict(): Promise<OptimizerState> {
    return readState(this.stateEntries()).then((m) => m.set('step', Int32Array.from(this.steps)));
  }
  loadStateDict(state: OptimizerState): void {
    const steps = state.get('step');
    if (steps && (!(steps instanceof Int32Array) || steps.length !== this.steps.length)) {
      throw new EngineError(`AdamW.loadStateDict: 'step' must hold ${this.steps.length} int32 counts`);
    }
    loadState('AdamW', this.stateEntries(), state, ['step']);
    this.steps.splice(0, this.steps.length, ...steps!);
  }
  private stateEntries(): [string, Tensor][] {
    return this.params.flatMap((_, i): [string, Tensor][] => [
      [`${i}.exp_avg`, this.m[i]!],
      [`${i}.exp_avg_sq`, this.v[i]!],
    ]);
  }

  /** Bias correction uses parameter i's own step count, advanced here by its update. */
  /** Per-parameter step counts (bias correction); a NonFiniteGuard rewinds the steps it dropped. */
  get stepCounts(): number[] {
    return this.steps;
  }

  protected apply(i: number, p: Tensor, gradient: Gradient, n4: number, guard: StepGuard | undefined): void {
    const t = ++this.steps[i]!;
    const bc1 = 1 - this.beta1 ** t;
    const bc2 = 1 - this.beta2 ** t;
    const rule = {
      decay: 1 - this.lrValue * this.weightDecay,
      beta1: this.beta1,
      beta2: this.beta2,
      eps: this.eps,
      stepSize: this.lrValue / bc1,
      bc2sqrt: Math.sqrt(bc2),
    };
    const [m, v] = [this.m[i]!.rawBuffer, this.v[i]!.rawBuffer];
    if (gradient instanceof Tensor) {
      const guarded = guard ? { guard: guard.statusBuffer } : {};
      p.device.dispatch({
        kernel: adamwKernel,
        variant: { guarded: guard !== undefined },
        params: { n: n4, ...rule },
        bindings: { p: p.buffer('adamw'), m, v, grad: gradient.buffer('adamw'), ...guarded },
      });
    } else {
      const { state, coefBase, valid, grads } = gradient;
      p.device.dispatch({
        kernel: fusedAdamwKernel,
        variant: { k: grads.length },
        params: { n4, coefBase, valid, ...rule },
        bindings: { state, p: p.rawBuffer, m, v, g: grads },
      });
    }
  }

  dispose(): void {
    for (const b of [...this.m, ...this.v]) b.dispose();
  }
}
