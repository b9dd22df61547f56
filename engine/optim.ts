// Optimizers as shaders: parameters and state are updated in place on the GPU.
// Both optimizers also expose `fusedUpdate(i)`, which the gradient integrators
// (engine/integrate) use to run "combine the per-loss gradients + update" as one kernel.
import { EngineError } from './device.ts';
import { fill } from './ops/elementwise.ts';
import { grid1d, launch } from './ops/kernel.ts';
import type { Tensor } from './tensor.ts';
import { writeTensor } from './creation.ts';
import { optimizerShader, type OptimizerKind } from '../shaders/optim.ts';

/**
 * What a fused combine+update kernel needs to update parameter i: the rule, its state buffers
 * (bound after the parameter) and its uniform fields (shaders/optim.ts OPTIMIZER_PARAMS order).
 */
export interface FusedUpdate {
  kind: OptimizerKind;
  state: GPUBuffer[];
  u32: number[];
  f32: number[];
}

/** An optimizer whose update can be fused with a gradient integrator's combine kernel. */
export interface FusedOptimizer {
  readonly params: readonly Tensor[];
  /** Advances parameter i's own step count (if any) and returns the fused-kernel inputs for one update. */
  fusedUpdate(i: number): FusedUpdate;
  /**
   * Per-parameter step counts kept on the host (AdamW's bias correction), if the rule has any. A
   * NonFiniteGuard rewinds them for the steps it dropped on the GPU.
   */
  readonly stepCounts?: number[];
}

/** What an optimizer's step() needs of a NonFiniteGuard: its status buffer (engine/integrate/guard.ts). */
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
    else if (v.length !== t.size || !(v instanceof Float32Array)) problems.push(`'${k}' has ${v.length} ${v instanceof Float32Array ? 'float32' : 'int32'} values, expected ${t.size} float32`);
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

/**
 * One in-place update kernel per parameter that has a .grad, from the optimizer's fused-update
 * inputs; with a guard, every kernel skips a step the guard dropped (parameters and state stay).
 */
function applyUpdates(opt: FusedOptimizer, guard: StepGuard | undefined): void {
  opt.params.forEach((p, i) => {
    if (!p.grad) return;
    const f = opt.fusedUpdate(i);
    const n4 = Math.ceil(p.size / 4);
    launch(p.device, {
      op: f.kind, code: optimizerShader(f.kind, guard !== undefined),
      buffers: [p.buffer(f.kind), ...f.state, p.grad.buffer(f.kind), ...(guard ? [guard.statusBuffer] : [])],
      u32: [n4, ...f.u32], f32: f.f32, groups: grid1d(n4),
    });
  });
}

/** torch.optim.SGD: momentum buffers start at zero, so the first step applies g (dampening 0). */
export class SGD implements FusedOptimizer {
  readonly params: readonly Tensor[];
  private readonly buffers: Tensor[];
  readonly opts: SGDOptions;
  constructor(params: readonly Tensor[], opts: SGDOptions) {
    if (!(opts.lr > 0)) throw new EngineError(`SGD: lr must be > 0, got ${opts.lr}`);
    checkParams('SGD', params);
    this.params = params;
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

  /**
   * Applies one update from each parameter's .grad (parameters without a gradient are skipped);
   * with a NonFiniteGuard, nothing changes if the guard dropped this step.
   */
  step(guard?: StepGuard): void {
    applyUpdates(this, guard);
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

  fusedUpdate(i: number): FusedUpdate {
    const { lr, momentum = 0, weightDecay = 0, nesterov = false } = this.opts;
    return { kind: 'sgd', state: [this.buffers[i]!.rawBuffer], u32: [nesterov ? 1 : 0], f32: [lr, momentum, weightDecay] };
  }

  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
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
export class AdamW implements FusedOptimizer {
  readonly params: readonly Tensor[];
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
    for (const b of betas) if (!(b >= 0 && b < 1)) throw new EngineError(`AdamW: betas must lie in [0, 1), got [${betas.join(', ')}]`);
    if (!(eps >= 0)) throw new EngineError(`AdamW: eps must be >= 0, got ${eps}`);
    if (!(weightDecay >= 0)) throw new EngineError(`AdamW: weightDecay must be >= 0, got ${weightDecay}`);
    checkParams('AdamW', params);
    this.params = params;
    [this.lrValue, this.beta1, this.beta2, this.eps, this.weightDecay] = [lr, betas[0], betas[1], eps, weightDecay];
    this.m = params.map((p) => fill(p.shape, 0, p.device));
    this.v = params.map((p) => fill(p.shape, 0, p.device));
    this.steps = params.map(() => 0);
  }

  /**
   * Applies one update from each parameter's .grad (parameters without a gradient are skipped);
   * with a NonFiniteGuard, nothing changes if the guard dropped this step.
   */
  step(guard?: StepGuard): void {
    applyUpdates(this, guard);
  }

  /** Per-parameter step counts (bias correction); a NonFiniteGuard rewinds the steps it dropped. */
  get stepCounts(): number[] {
    return this.steps;
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
    return this.params.flatMap((_, i): [string, Tensor][] => [[`${i}.exp_avg`, this.m[i]!], [`${i}.exp_avg_sq`, this.v[i]!]]);
  }

  fusedUpdate(i: number): FusedUpdate {
    const t = ++this.steps[i]!;
    const bc1 = 1 - this.beta1 ** t;
    const bc2 = 1 - this.beta2 ** t;
    return {
      kind: 'adamw',
      state: [this.m[i]!.rawBuffer, this.v[i]!.rawBuffer],
      u32: [0],
      f32: [1 - this.lrValue * this.weightDecay, this.beta1, this.beta2, this.eps, this.lrValue / bc1, Math.sqrt(bc2)],
    };
  }

  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  dispose(): void {
    for (const b of [...this.m, ...this.v]) b.dispose();
  }
}
