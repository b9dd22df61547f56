// One training step of the paper's setting: a multimodal loss L_m and one unimodal loss per
// modality encoder, from one forward. Encoder k's parameters are integrated from (g_m, g_u^k)
// by the chosen method; every other parameter (fusion, heads) takes the plain sum of the
// gradients that reach it (Algorithm 1: "update θ_other without gradient integration"). The
// update runs on the GPU with nothing read back.
//
// 'uniform' is the paper's baseline L_m + Σ_k L_u^k: one backward of the sum, no per-loss
// gradients. 'one-joint-loss' trains on L_m alone. Every other method takes per-loss gradients
// (engine/per-loss.ts) and the integrator's fused combine + update per encoder tensor.
// With a NonFiniteGuard, every method checks the losses and every gradient before any update (the
// encoders' through the integrator's Gram sums), and a bad step updates nothing (guard.ts).
import { EngineError } from '../device.ts';
import { add } from '../ops/index.ts';
import { perLossGrads } from '../per-loss.ts';
import { noGrad, topoOrder } from '../autograd.ts';
import type { Tensor } from '../tensor.ts';
import type { AdamW, SGD } from '../optim.ts';
import { GradientIntegrator, type IntegratorMethod, type IntegratorOptions } from './integrator.ts';
import type { NonFiniteGuard } from './guard.ts';

export interface MultimodalStepOptions extends Omit<IntegratorOptions, 'losses' | 'method'> {
  method: IntegratorMethod;
  /** Encoder name → its parameters; the encoder's unimodal loss has the same name. */
  encoders: Readonly<Record<string, readonly Tensor[]>>;
  /** The optimizer over ALL trainable parameters (encoders and the rest). */
  optimizer: SGD | AdamW;
  /** Name of the multimodal loss (default 'mm'). */
  mainLoss?: string;
  /**
   * Checks every step for NaN/±Inf losses and gradients on the GPU and drops a bad step (see
   * NonFiniteGuard; losses are reported by their index in [mainLoss, ...encoders], gradients by
   * the parameter's index in optimizer.params, groups by their index in `encoders`).
   */
  guard?: NonFiniteGuard;
}

export class MultimodalStep {
  readonly method: IntegratorMethod;
  readonly integrator: GradientIntegrator | null;
  private readonly names: string[];
  private readonly main: string;
  private readonly encoderParams: Set<Tensor>;

  constructor(readonly opts: MultimodalStepOptions) {
    const op = 'MultimodalStep';
    this.method = opts.method;
    this.main = opts.mainLoss ?? 'mm';
    this.names = Object.keys(opts.encoders);
    if (this.names.length === 0) throw new EngineError(`${op}: no encoder groups given`);
    if (this.names.includes(this.main)) throw new EngineError(`${op}: an encoder is named like the multimodal loss '${this.main}'`);
    this.encoderParams = new Set();
    const all = new Set(opts.optimizer.params);
    for (const n of this.names) {
      for (const p of opts.encoders[n]!) {
        if (this.encoderParams.has(p)) throw new EngineError(`${op}: parameter ${p} [${p.shape.join(', ')}] is in two encoder groups`);
        if (!all.has(p)) throw new EngineError(`${op}: encoder '${n}' parameter ${p} is not in the optimizer's parameters`);
        this.encoderParams.add(p);
      }
    }
    const { method, encoders: _e, optimizer: _o, mainLoss: _m, guard, ...integ } = opts;
    this.integrator = method === 'uniform' || method === 'one-joint-loss'
      ? null
      : new GradientIntegrator(this.names.map((n) => opts.encoders[n]!), { ...integ, method, losses: 2 });
    if (guard && guard.device !== opts.optimizer.params[0]?.device) throw new EngineError(`${op}: the guard lives on another device`);
    guard?.trackOptimizer(opts.optimizer);
  }

  /** Gradients of `losses` ({ [mainLoss], ...one per encoder }) and one optimizer update; frees the graph. */
  step(losses: Readonly<Record<string, Tensor>>): void {
    const op = 'MultimodalStep.step';
    for (const n of [this.main, ...this.names]) if (!losses[n]) throw new EngineError(`${op}: loss '${n}' is missing (expected ${[this.main, ...this.names].join(', ')})`);
    this.opts.optimizer.params[0]?.device.assertUsable(op);
    for (const n of Object.keys(losses)) if (n !== this.main && !this.opts.encoders[n]) throw new EngineError(`${op}: unknown loss '${n}'`);
    const reached = new Set(topoOrder(Object.values(losses)));
    for (const n of this.names) {
      if (!this.opts.encoders[n]!.some((p) => reached.has(p))) throw new EngineError(`${op}: encoder group '${n}' is reached by no loss`);
    }
    const opt = this.opts.optimizer;
    const guard = this.opts.guard;
    guard?.checkLosses([this.main, ...this.names].map((n) => losses[n]!));
    if (!this.integrator) {
      const total = this.method === 'one-joint-loss' ? losses[this.main]! : sumOf(this.names.map((n) => losses[n]!), losses[this.main]!);
      total.backward();
      if (total !== losses[this.main]) total.dispose();
      guard?.checkTensors(opt.params.map((p) => p.grad));
      opt.step(guard);
      opt.zeroGrad();
      guard?.end();
      return;
    }
    const params = opt.params;
    // gradnorm weighs the gradients by the loss values (the loss tensors outlive the graph).
    const lossValues = this.method === 'gradnorm' ? this.names.map((n) => [losses[this.main]!, losses[n]!]) : undefined;
    const grads = perLossGrads(losses, params);
    const index = new Map(params.map((p, i) => [p, i]));
    const groupGrads = this.names.map((n) => {
      const ps = this.opts.encoders[n]!;
      const gm = ps.map((p) => grads[this.main]![index.get(p)!]!);
      const gu = ps.map((p) => grads[n]![index.get(p)!]!);
      return [gm, gu];
    });
    // Parameters outside the encoders: the plain sum of every loss's gradient.
    noGrad(() => {
      params.forEach((p, i) => {
        if (this.encoderParams.has(p)) return;
        let acc: Tensor | null = null;
        for (const g of Object.values(grads)) {
          const gi = g[i];
          if (!gi) continue;
          if (!acc) acc = gi;
          else {
            const s: Tensor = add(acc, gi);
            acc.dispose();
            gi.dispose();
            acc = s;
          }
        }
        if (acc) p.grad = acc;
      });
    });
    guard?.checkTensors(params.map((p) => (this.encoderParams.has(p) ? null : p.grad)));
    this.integrator.step(opt, groupGrads, lossValues, guard);
    for (const gs of groupGrads) for (const list of gs) for (const g of list) g?.dispose();
    opt.step(guard); // the other parameters (encoder parameters have no .grad and are skipped)
    opt.zeroGrad();
    guard?.end();
  }

  /** The integrator's state (empty for 'uniform' / 'one-joint-loss'), for checkpoints. */
  async stateDict(): Promise<Map<string, Float32Array | Int32Array>> {
    return this.integrator ? this.integrator.stateDict() : new Map();
  }
  loadStateDict(entries: Map<string, Float32Array | Int32Array>): void {
    if (this.integrator) this.integrator.loadStateDict(entries);
    else if (entries.size) throw new EngineError(`MultimodalStep.loadStateDict: method '${this.method}' keeps no integrator state, got ${[...entries.keys()].join(', ')}`);
  }

  dispose(): void {
    this.integrator?.dispose();
  }
}

function sumOf(unimodal: Tensor[], main: Tensor): Tensor {
  let acc = main;
  for (const l of unimodal) {
    const s = add(acc, l);
    if (acc !== main) acc.dispose();
    acc = s;
  }
  return acc;
}
