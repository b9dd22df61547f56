// One training step of the paper's setting: a multimodal loss L_m and one unimodal loss per
// modality encoder, from one forward. Encoder k's parameters are integrated from (g_m, g_u^k)
// by the chosen method; every other parameter (fusion, heads) takes the plain sum of the
// gradients that reach it (Algorithm 1: "update θ_other without gradient integration"). The
// update runs on the GPU with nothing read back.
//
// 'uniform' is the paper's baseline L_m + Σ_k L_u^k: one backward of the sum, no per-loss
// gradients. 'one-joint-loss' trains on L_m alone. Every other method takes per-loss gradients
// (engine/backward.ts) and the integrator's fused combine + update per encoder tensor.
// With a NonFiniteGuard, every method checks the losses and every gradient before any update (the
// encoders' through the integrator's Gram sums), and a bad step updates nothing (guard.ts).
import { perLossGrads } from '../backward.ts';
import { EngineError } from '../errors.ts';
import { noGrad, topoOrder } from '../graph.ts';
import { add } from '../ops/elementwise.ts';
import type { Tensor } from '../tensor.ts';
import type { Optimizer } from '../optim.ts';
import type { NonFiniteGuard } from './guard.ts';
import { GradientIntegrator } from './integrator.ts';
import type { IntegratorMethod, IntegratorOptions } from './options.ts';

export interface MultimodalStepOptions extends Omit<IntegratorOptions, 'method'> {
  method: IntegratorMethod;
  /** Encoder name → its parameters; the encoder's unimodal loss has the same name. */
  encoders: Readonly<Record<string, readonly Tensor[]>>;
  /** The optimizer over ALL trainable parameters (encoders and the rest). */
  optimizer: Optimizer;
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
    if (this.names.includes(this.main))
      throw new EngineError(`${op}: an encoder is named like the multimodal loss '${this.main}'`);
    this.encoderParams = new Set();
    const all = new Set(opts.optimizer.params);
    for (const n of this.names) {
      for (const p of opts.encoders[n]!) {
        if (this.encoderParams.has(p))
          throw new EngineError(`${op}: parameter ${p} [${p.shape.join(', ')}] is in two encoder groups`);
        if (!all.has(p))
          throw new EngineError(`${op}: encoder '${n}' parameter ${p} is not in the optimizer's parameters`);
        this.encoderParams.add(p);
      }
    }
    const { method, encoders: _e, optimizer: _o, mainLoss: _m, guard, ...integ } = opts;
    const groups = this.names.map((n) => ({ params: opts.encoders[n]!, losses: [this.main, n] }));
    const plain = method === 'uniform' || method === 'one-joint-loss';
    this.integrator = plain ? null : new GradientIntegrator(groups, { ...integ, method });
    if (guard && guard.device !== opts.optimizer.params[0]?.device)
      throw new EngineError(`${op}: the guard lives on another device`);
    guard?.trackOptimizer(opts.optimizer);
  }

  /** Gradients of `losses` ({ [mainLoss], ...one per encoder }) and one optimizer update; frees the graph. */
  step(losses: Readonly<Record<string, Tensor>>): void {
    const op = 'MultimodalStep.step';
    const expected = [this.main, ...this.names];
    for (const n of expected) {
      if (!losses[n]) throw new EngineError(`${op}: loss '${n}' is missing (expected ${expected.join(', ')})`);
    }
    this.opts.optimizer.params[0]?.device.assertUsable(op);
    for (const n of Object.keys(losses))
      if (n !== this.main && !this.opts.encoders[n]) throw new EngineError(`${op}: unknown loss '${n}'`);
    const reached = new Set(topoOrder(Object.values(losses)));
    for (const n of this.names) {
      if (!this.opts.encoders[n]!.some((p) => reached.has(p)))
        throw new EngineError(`${op}: encoder group '${n}' is reached by no loss`);
    }
    const opt = this.opts.optimizer;
    const guard = this.opts.guard;
    guard?.checkLosses(expected.map((n) => losses[n]!));
    if (!this.integrator) {
      const main = losses[this.main]!;
      const total = this.method === 'one-joint-loss' ? main : sumOf([main, ...this.names.map((n) => losses[n]!)]);
      total.backward();
      if (total !== main) total.dispose();
      guard?.checkTensors(opt.params.map((p) => p.grad));
      opt.step(guard);
      opt.zeroGrad();
      guard?.end();
      return;
    }
    // Per-loss gradients keyed by parameter: the integrator reads the encoders' (g_m, g_u) from
    // them as they are; every other parameter takes the plain sum of the gradients that reach it,
    // checked by the guard before any update runs.
    const grads = perLossGrads(losses, opt.params);
    const others = noGrad(() =>
      opt.params.map((p) => {
        const gs = Object.values(grads.get(p)!);
        return this.encoderParams.has(p) || gs.length === 0 ? null : sumOf(gs);
      }),
    );
    guard?.checkTensors(others);
    this.integrator.step(opt, grads, losses, guard); // gradnorm weighs by the loss values (they outlive the graph)
    opt.params.forEach((p, i) => {
      const g = others[i];
      if (!g) return;
      opt.update(p, g, guard);
      if (!Object.values(grads.get(p)!).includes(g)) g.dispose();
    });
    for (const byLoss of grads.values()) for (const g of Object.values(byLoss)) g.dispose();
    guard?.end();
  }

  /** The integrator's state (empty for 'uniform' / 'one-joint-loss'), for checkpoints. */
  async stateDict(): Promise<Map<string, Float32Array | Int32Array>> {
    return this.integrator ? this.integrator.stateDict() : new Map();
  }
  loadStateDict(entries: Map<string, Float32Array | Int32Array>): void {
    if (this.integrator) this.integrator.loadStateDict(entries);
    else if (entries.size)
      throw new EngineError(
        `MultimodalStep.loadStateDict: method '${this.method}' keeps no integrator state, got ` +
          `${[...entries.keys()].join(', ')}`,
      );
  }

  dispose(): void {
    this.integrator?.dispose();
  }
}

/** The sum of `terms` (at least one) in order: the first term itself when alone; partial sums freed. */
function sumOf(terms: readonly Tensor[]): Tensor {
  let acc = terms[0]!;
  for (const t of terms.slice(1)) {
    const s = add(acc, t);
    if (acc !== terms[0]) acc.dispose();
    acc = s;
  }
  return acc;
}
