// Gradient integrators on the GPU: per parameter group (a modality encoder), K per-loss gradients
// g_0 … g_{K−1} (g_0 = the multimodal loss, g_1 = the group's unimodal loss) become one gradient
// h = Σ_j c_j·g_j, with the coefficients c_j derived from the group's Gram matrix G_ab = g_a·g_b.
// A step is: one Gram dispatch per tensor (workgroup partials, no atomics), one solve dispatch for
// all groups (a workgroup per group), then one combine — or fused combine+optimizer update —
// dispatch per tensor. Nothing is read back: the coefficients, decisions and telemetry stay on the
// GPU (IntegratorTelemetry.read() fetches them, one buffer map, when asked).
//
// Methods (shaders/integrate-solve.ts has the solvers):
//  - 'uniform': c = 1 (the paper's baseline: Σ_j g_j);  'one-joint-loss': c = (1, 0, …) (L_m only).
//  - 'mgda' (Sener & Koltun 2018): α = argmin |Σ α_j g_j| over the simplex (closed form for K = 2,
//    Frank–Wolfe with exact line search for K > 2, at most fwIters iterations, stopping when the
//    duality gap is ≤ 1e-6·|θ|²), c = K·α so the weights sum to K like uniform's.
//  - 'mmpareto' (Wei & Hu 2024, Algorithm 1, over the group as one vector, K = 2): g_m·g_u ≥ 0 →
//    h' = g_m + g_u; else α = clamp(((g_u − g_m)·g_u)/|g_m − g_u|², 0, 1), h' = 2α g_m + 2(1−α) g_u;
//    h = γ·|g_m + g_u|·h'/|h'|. |h'|² ≤ 1e-6·(|c_m g_m|² + |c_u g_u|²) (zero up to float32
//    cancellation) → h = 0, flagged zeroDirection; never NaN.
//  - 'mmpareto-official' (the authors' code): plain sum only when cos > 0 strictly; otherwise
//    MinNormSolver's 2-vector weights (α = 0.999 if g_m·g_u ≥ |g_m|², 0.001 if ≥ |g_u|², else the
//    closed form), h'_t = 2α g_m,t + 2(1−α) g_u,t; then PER PARAMETER TENSOR t:
//    h_t = γ·max(|g_m,t + g_u,t|, |h'_t|)·h'_t/|h'_t| (= γ·h'_t when h'_t = 0, where the code would
//    divide by zero).
//  - 'pcgrad' (Yu et al. 2020): g_i ← g_i − (g_i·g_j)/|g_j|²·g_j for each original g_j it conflicts
//    with (g_i·g_j < 0), in a seeded random order (pcgradOrder), h = Σ_i g_i.
//  - 'gradnorm' (Chen et al. 2018): h = Σ w_i g_i, then w_i ← w_i − lr_w·∂/∂w_i Σ_j |w_j|g_j| − Ḡ·r_j^α|
//    with Ḡ = mean_j w_j|g_j| and r_j = (L_j/L_j(0)) / mean(L/L(0)) held constant; w clamped ≥ 0 and
//    renormalised to Σ w = K. Norms are over the group (the paper uses one shared layer); weights
//    are per group; L(0) is the first finite step's loss; needs the loss values (GPU scalars).
//  - 'metabalance' (He et al. 2022): m_j ← β·m_j + (1−β)·|g_j| (from 0), c_0 = 1,
//    c_j = r·m_0/m_j + (1 − r) for the auxiliary losses j ≥ 1 (both directions: larger and smaller
//    auxiliary gradients are moved toward the main one).
// Non-finite gradients: the group's update is skipped (fused) or its gradient is zero (combine),
// and the step is counted in the telemetry buffer; IntegratorTelemetry.read() reports it. With a
// NonFiniteGuard (step(…, guard)), a bad group or a bad step elsewhere (a loss, another gradient)
// drops every group's update, and the integrator state is restored by the guard.
import { EngineError, type Device } from '../device.ts';
import { Tensor } from '../tensor.ts';
import { tensor, writeTensor } from '../creation.ts';
import { fill } from '../ops/elementwise.ts';
import { checkSameDevice, fmt, grid1d, launch, output } from '../ops/kernel.ts';
import type { FusedOptimizer } from '../optim.ts';
import {
  combineShader, fusedUpdateShader, gramPairs, gramShader, GRAM_CHUNK4, MAX_LOSSES, STATE, STATE_STRIDE, TELEMETRY_HEADER, TELEMETRY_RECORD,
} from '../../shaders/integrate.ts';
import { solveShader, type IntegratorMethod } from '../../shaders/integrate-solve.ts';
import { IntegratorTelemetry } from './telemetry.ts';
import type { NonFiniteGuard } from './guard.ts';

export type { IntegratorMethod };
export const INTEGRATOR_METHODS: readonly IntegratorMethod[] = ['uniform', 'one-joint-loss', 'mgda', 'mmpareto', 'mmpareto-official', 'pcgrad', 'gradnorm', 'metabalance'];

export interface IntegratorOptions {
  method: IntegratorMethod;
  /** K, the losses per group (1 … 8; exactly 2 for the mmpareto methods). Default 2. */
  losses?: number;
  /** MMPareto's magnitude factor γ (default 1.5). */
  gamma?: number;
  /** mgda, K > 2: most Frank–Wolfe iterations (default 250). */
  fwIters?: number;
  /** pcgrad: seed of the projection order (u32, default 0). */
  seed?: number;
  /** gradnorm: asymmetry α (default 1.5) and the loss weights' learning rate (default 0.025). */
  gradnormAlpha?: number;
  gradnormLr?: number;
  /** metabalance: relax factor r (default 0.7) and the norms' moving-average factor β (default 0.9). */
  relax?: number;
  beta?: number;
  /** Telemetry ring length in steps (default 0: off; non-finite counters are always kept). */
  telemetrySteps?: number;
}

/**
 * Per group: K lists (one per loss) of gradients aligned with the group's parameters: grads[k][t].
 * null = that loss does not reach the parameter (a zero gradient), as perLossGrads reports it.
 */
export type GroupGradients = readonly (readonly (Tensor | null)[])[];

interface TensorSlot {
  param: Tensor;
  group: number;
  index: number; // global tensor index (coefficient rows)
  n: number;
  rowBase: number;
  rows: number;
}

const METHOD_SET = new Set<string>(INTEGRATOR_METHODS);

/**
 * Usage (two encoders, K = 2: loss 0 = L_m, loss 1 = the encoder's unimodal loss):
 *   const integ = new GradientIntegrator([audioParams, visualParams], { method: 'mmpareto', telemetrySteps: 100 });
 *   const opt = new SGD([...audioParams, ...visualParams, ...headParams], { lr: 1e-3, momentum: 0.9 });
 *   // per step: g = perLossGrads({ mm, audio, visual }, params) (or grad() per loss), then
 *   integ.step(opt, [[gAudio_mm, gAudio_u], [gVisual_mm, gVisual_u]]); // fused combine + SGD, no readback
 *   // heads: p.grad = their (summed) gradients; opt.step() skips parameters without .grad
 *   const { records } = await integ.telemetry.read(); // every N steps: one buffer map
 */
export class GradientIntegrator {
  readonly method: IntegratorMethod;
  readonly k: number;
  readonly groups: readonly (readonly Tensor[])[];
  readonly telemetry: IntegratorTelemetry;
  private readonly device: Device;
  private readonly slots: TensorSlot[][] = [];
  private readonly work: Tensor;
  private readonly state: Tensor;
  private readonly tables: Tensor;
  private readonly telemetryBuffer: Tensor;
  private readonly solveU32: number[];
  private readonly solveF32: number[];
  private readonly lossBase: number;
  private readonly optimizerIndex = new WeakMap<FusedOptimizer, Map<Tensor, number>>();
  private disposed = false;
  /** Zeros as large as the largest parameter, bound for null gradients (created on first need). */
  private zeros: Tensor | null = null;

  constructor(groups: readonly (readonly Tensor[])[], opts: IntegratorOptions) {
    const op = 'GradientIntegrator';
    const method = opts?.method;
    if (!METHOD_SET.has(method)) throw new EngineError(`${op}: unknown method '${String(method)}' (expected one of ${INTEGRATOR_METHODS.join(', ')})`);
    const k = opts.losses ?? 2;
    if (!Number.isInteger(k) || k < 1 || k > MAX_LOSSES) throw new EngineError(`${op}: losses (K) must be an integer in [1, ${MAX_LOSSES}], got ${k}`);
    if (method.startsWith('mmpareto') && k !== 2) throw new EngineError(`${op}: method '${method}' integrates exactly 2 losses (g_m, g_u), got K = ${k}`);
    const { gamma = 1.5, fwIters = 250, seed = 0, gradnormAlpha = 1.5, gradnormLr = 0.025, relax = 0.7, beta = 0.9, telemetrySteps = 0 } = opts;
    const bad = (name: string, v: number, ok: boolean, want: string): void => {
      if (!ok) throw new EngineError(`${op}: ${name} must be ${want}, got ${v}`);
    };
    bad('gamma', gamma, gamma > 0 && Number.isFinite(gamma), 'a finite number > 0');
    bad('fwIters', fwIters, Number.isInteger(fwIters) && fwIters >= 1, 'an integer >= 1');
    bad('seed', seed, Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32, 'a u32 integer');
    bad('gradnormAlpha', gradnormAlpha, Number.isFinite(gradnormAlpha) && gradnormAlpha >= 0, 'finite and >= 0');
    bad('gradnormLr', gradnormLr, Number.isFinite(gradnormLr) && gradnormLr >= 0, 'finite and >= 0');
    bad('relax', relax, relax >= 0 && relax <= 1, 'in [0, 1]');
    bad('beta', beta, beta >= 0 && beta < 1, 'in [0, 1)');
    bad('telemetrySteps', telemetrySteps, Number.isInteger(telemetrySteps) && telemetrySteps >= 0, 'an integer >= 0');
    if (!Array.isArray(groups) || groups.length === 0) throw new EngineError(`${op}: no parameter groups given`);
    const owner = new Map<Tensor, number>();
    groups.forEach((group, g) => {
      if (!Array.isArray(group) || group.length === 0) throw new EngineError(`${op}: parameter group ${g} is empty`);
      group.forEach((p, t) => {
        if (!(p instanceof Tensor)) throw new EngineError(`${op}: group ${g}, parameter ${t} is not a Tensor`);
        p.buffer(op);
        if (p.dtype !== 'float32') throw new EngineError(`${op}: group ${g}, parameter ${t} ${p} is not float32`);
        const prev = owner.get(p);
        if (prev !== undefined) throw new EngineError(`${op}: parameter ${p} ${fmt(p.shape)} is in group ${prev} and group ${g}${prev === g ? ' (twice)' : ''}`);
        owner.set(p, g);
      });
    });
    const device = checkSameDevice(op, ...owner.keys());

    this.method = method;
    this.k = k;
    this.groups = groups.map((g) => [...g]);
    this.device = device;
    const P = gramPairs(k).length;
    let rows = 0;
    let index = 0;
    for (let g = 0; g < groups.length; g++) {
      this.slots.push(this.groups[g]!.map((param) => {
        const n = param.size;
        const r = Math.ceil(Math.ceil(n / 4) / GRAM_CHUNK4);
        const s = { param, group: g, index: index++, n, rowBase: rows, rows: r };
        rows += r;
        return s;
      }));
    }
    const G = groups.length;
    const T = index;
    const gramBase = rows * P;
    this.lossBase = gramBase + T * P;
    this.work = fill([this.lossBase + G * k], 0, device);
    const state = new Float32Array(G * STATE_STRIDE + T * k);
    for (let g = 0; g < G; g++) for (let j = 0; j < k; j++) state[g * STATE_STRIDE + STATE.weights + j] = 1;
    this.state = tensor(state, [state.length], { device });
    const tables = new Int32Array(2 * G + 2 * T);
    let t0 = 0;
    this.slots.forEach((list, g) => {
      tables[2 * g] = t0;
      tables[2 * g + 1] = list.length;
      for (const s of list) [tables[2 * G + 2 * s.index], tables[2 * G + 2 * s.index + 1]] = [s.rowBase, s.rows];
      t0 += list.length;
    });
    this.tables = tensor(tables, [tables.length], { device });
    this.telemetryBuffer = fill([G * TELEMETRY_HEADER + telemetrySteps * G * TELEMETRY_RECORD], 0, device, 'int32');
    this.telemetry = new IntegratorTelemetry(this.telemetryBuffer, G, k, telemetrySteps);
    this.solveU32 = [G, k, P, telemetrySteps, gramBase, this.lossBase, G * STATE_STRIDE, fwIters, seed];
    this.solveF32 = [gamma, gradnormAlpha, gradnormLr, relax, beta];
  }

  /**
   * Integrates one step into fresh gradient tensors: result[g][t] = h for group g's parameter t.
   * `losses[g][j]` (scalar tensors, loss j as seen by group g) is required by 'gradnorm' only.
   */
  combine(grads: readonly GroupGradients[], losses?: readonly (readonly Tensor[])[]): Tensor[][] {
    const op = 'GradientIntegrator.combine';
    this.check(op, grads, losses);
    this.reduceAndSolve(grads, losses);
    return this.slots.map((list, g) =>
      list.map((s, t) => {
        const out = output(this.device, s.param.shape);
        const n4 = Math.ceil(s.n / 4);
        if (n4 > 0) {
          launch(this.device, {
            op: 'integrateCombine', code: combineShader(this.k),
            buffers: [this.state.rawBuffer, out.rawBuffer, ...this.gradBuffers(grads, g, t)],
            u32: [n4, this.coefBase(s), g * STATE_STRIDE + STATE.valid, 0], groups: grid1d(n4),
          });
        }
        return out;
      }),
    );
  }

  /**
   * Integrates one step and applies `optimizer`'s update to every group parameter, one fused
   * kernel per tensor (the parameters' .grad is neither read nor written). Parameters outside the
   * groups (heads) are left to optimizer.step() with their own .grad. With a guard, the update of
   * every group is dropped when any group is not finite or the guard already dropped the step.
   */
  step(optimizer: FusedOptimizer, grads: readonly GroupGradients[], losses?: readonly (readonly Tensor[])[], guard?: NonFiniteGuard): void {
    const op = 'GradientIntegrator.step';
    this.check(op, grads, losses);
    const index = this.indexIn(op, optimizer);
    if (guard && !guard.isProtected(this.state)) guard.protect([this.state]);
    this.reduceAndSolve(grads, losses);
    guard?.foldGroups(this.state, this.groups.length, STATE_STRIDE, STATE.valid);
    this.slots.forEach((list, g) =>
      list.forEach((s, t) => {
        const f = optimizer.fusedUpdate(index.get(s.param)!);
        const n4 = Math.ceil(s.n / 4);
        if (n4 === 0) return;
        launch(this.device, {
          op: `integrate+${f.kind}`, code: fusedUpdateShader(f.kind, this.k),
          buffers: [this.state.rawBuffer, s.param.rawBuffer, ...f.state, ...this.gradBuffers(grads, g, t)],
          u32: [n4, this.coefBase(s), g * STATE_STRIDE + STATE.valid, ...f.u32], f32: f.f32, groups: grid1d(n4),
        });
      }),
    );
  }

  /**
   * The integrator's GPU state, read back (for checkpoints): 'state' (learned loss weights,
   * moving averages, gradnorm's initial losses) and 'telemetry' (step counters and the ring).
   */
  async stateDict(): Promise<Map<string, Float32Array | Int32Array>> {
    return new Map<string, Float32Array | Int32Array>([
      ['state', (await this.state.toArray()) as Float32Array],
      ['telemetry', (await this.telemetryBuffer.toArray()) as Int32Array],
    ]);
  }
  loadStateDict(entries: Map<string, Float32Array | Int32Array>): void {
    const op = 'GradientIntegrator.loadStateDict';
    const s = entries.get('state');
    const t = entries.get('telemetry');
    if (!(s instanceof Float32Array) || s.length !== this.state.size) throw new EngineError(`${op}: 'state' must hold ${this.state.size} float32 values (same method, groups and tensors), got ${s ? s.length : 'none'}`);
    if (!(t instanceof Int32Array) || t.length !== this.telemetryBuffer.size) throw new EngineError(`${op}: 'telemetry' must hold ${this.telemetryBuffer.size} int32 values (same groups and telemetrySteps), got ${t ? t.length : 'none'}`);
    writeTensor(this.state, s);
    writeTensor(this.telemetryBuffer, t);
    this.telemetry.markReported(t);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of [this.work, this.state, this.tables, this.telemetryBuffer]) t.dispose();
    this.zeros?.dispose();
  }

  private gradBuffers(grads: readonly GroupGradients[], g: number, t: number): GPUBuffer[] {
    return grads[g]!.map((list) => {
      const gr = list[t];
      if (gr) return gr.rawBuffer;
      this.zeros ??= fill([Math.max(...this.groups.flat().map((p) => p.size))], 0, this.device);
      return this.zeros.rawBuffer;
    });
  }

  private coefBase(s: TensorSlot): number {
    return this.groups.length * STATE_STRIDE + s.index * this.k;
  }

  private indexIn(op: string, optimizer: FusedOptimizer): Map<Tensor, number> {
    let index = this.optimizerIndex.get(optimizer);
    if (!index) {
      index = new Map(optimizer.params.map((p, i) => [p, i]));
      this.optimizerIndex.set(optimizer, index);
    }
    for (const list of this.slots) {
      for (const s of list) {
        if (!index.has(s.param)) throw new EngineError(`${op}: group ${s.group} parameter ${s.param} ${fmt(s.param.shape)} is not in the optimizer's parameter list`);
      }
    }
    return index;
  }

  /** Validates every input before any dispatch. */
  private check(op: string, grads: readonly GroupGradients[], losses: readonly (readonly Tensor[])[] | undefined): void {
    if (this.disposed) throw new EngineError(`${op}: the integrator was disposed`);
    const G = this.groups.length;
    const K = this.k;
    if (!Array.isArray(grads) || grads.length !== G) throw new EngineError(`${op}: expected gradients for ${G} group(s), got ${Array.isArray(grads) ? grads.length : typeof grads}`);
    grads.forEach((perLoss, g) => {
      const params = this.groups[g]!;
      if (!Array.isArray(perLoss) || perLoss.length !== K) {
        throw new EngineError(`${op}: group ${g}: expected K = ${K} per-loss gradient lists, got ${Array.isArray(perLoss) ? perLoss.length : typeof perLoss}`);
      }
      perLoss.forEach((list, j) => {
        if (!Array.isArray(list) || list.length !== params.length) {
          throw new EngineError(`${op}: group ${g}, loss ${j}: ${Array.isArray(list) ? list.length : 'no'} gradients for ${params.length} parameters`);
        }
        list.forEach((gr, t) => {
          const p = params[t]!;
          if (gr === null) return;
          if (!(gr instanceof Tensor)) throw new EngineError(`${op}: group ${g}, loss ${j}, parameter ${t}: gradient is not a Tensor`);
          gr.buffer(op);
          if (gr.dtype !== 'float32') throw new EngineError(`${op}: group ${g}, loss ${j}, parameter ${t}: gradient ${gr} is not float32`);
          if (gr.device !== this.device) throw new EngineError(`${op}: group ${g}, loss ${j}, parameter ${t}: gradient lives on another device`);
          if (gr.storage === p.storage) throw new EngineError(`${op}: group ${g}, loss ${j}, parameter ${t}: the gradient shares its storage with the parameter`);
          if (gr.shape.length !== p.shape.length || gr.shape.some((d, i) => d !== p.shape[i])) {
            throw new EngineError(`${op}: group ${g}, loss ${j}, parameter ${t}: gradient ${fmt(gr.shape)} does not match parameter ${fmt(p.shape)}`);
          }
        });
      });
    });
    if (this.method !== 'gradnorm') return;
    if (!Array.isArray(losses) || losses.length !== G) throw new EngineError(`${op}: method 'gradnorm' needs the loss values: losses[g][j] for ${G} group(s)`);
    losses.forEach((list, g) => {
      if (!Array.isArray(list) || list.length !== K) throw new EngineError(`${op}: group ${g}: expected K = ${K} loss values, got ${Array.isArray(list) ? list.length : typeof list}`);
      list.forEach((l, j) => {
        if (!(l instanceof Tensor) || l.size !== 1 || l.dtype !== 'float32') throw new EngineError(`${op}: group ${g}, loss ${j}: expected a float32 scalar tensor, got ${l instanceof Tensor ? `${l} ${fmt(l.shape)}` : typeof l}`);
        l.buffer(op);
        if (l.device !== this.device) throw new EngineError(`${op}: group ${g}, loss ${j}: loss lives on another device`);
      });
    });
  }

  /** Gram partials for every tensor, then the solve kernel (one workgroup per group). */
  private reduceAndSolve(grads: readonly GroupGradients[], losses: readonly (readonly Tensor[])[] | undefined): void {
    const dev = this.device;
    if (this.method === 'gradnorm') {
      losses!.forEach((list, g) => list.forEach((l, j) => dev.batcher.copy(l.rawBuffer, 0, this.work.rawBuffer, (this.lossBase + g * this.k + j) * 4, 4)));
    }
    const code = gramShader(this.k);
    this.slots.forEach((list, g) =>
      list.forEach((s, t) => {
        if (s.rows === 0) return;
        launch(dev, {
          op: 'integrateGram', code, buffers: [this.work.rawBuffer, ...this.gradBuffers(grads, g, t)],
          u32: [s.n, Math.ceil(s.n / 4), s.rowBase, GRAM_CHUNK4], groups: [s.rows],
        });
      }),
    );
    launch(dev, {
      op: 'integrateSolve', code: solveShader(this.method),
      buffers: [this.work.rawBuffer, this.state.rawBuffer, this.telemetryBuffer.rawBuffer, this.tables.rawBuffer],
      u32: this.solveU32, f32: this.solveF32, groups: [this.groups.length],
    });
  }
}
