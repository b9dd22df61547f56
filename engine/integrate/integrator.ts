// Gradient integrators on the GPU: per parameter group (a modality encoder), K per-loss gradients
// g_0 … g_{K−1} (g_0 = the multimodal loss, g_1 = the group's unimodal loss) become one gradient
// h = Σ_j c_j·g_j, with the coefficients c_j derived from the group's Gram matrix G_ab = g_a·g_b.
// A step is: one Gram dispatch per tensor (workgroup partials, no atomics), one solve dispatch for
// all groups (a workgroup per group), then one combine — or fused combine+optimizer update —
// dispatch per tensor. Nothing is read back: the coefficients, decisions and telemetry stay on the
// GPU (IntegratorTelemetry.read() fetches them, one buffer map, when asked).
//
// The methods, their maths and the checks of the input: ./options.ts; the solvers:
// shaders/integrate-solve.ts.
//
// Non-finite gradients: the group's update is skipped (fused) or its gradient is zero (combine),
// and the step is counted in the telemetry buffer; IntegratorTelemetry.read() reports it. With a
// NonFiniteGuard (step(…, guard)), a bad group or a bad step elsewhere (a loss, another gradient)
// drops every group's update, and the integrator state is restored by the guard.
import type { PerLossGradients } from '../backward.ts';
import type { Device } from '../device.ts';
import { EngineError } from '../errors.ts';
import type { Tensor } from '../tensor.ts';
import { tensor, writeTensor } from '../creation.ts';
import { fill } from '../ops/elementwise.ts';
import { fmt, output } from '../ops/common.ts';
import type { CombinedGradient, Optimizer } from '../optim.ts';
import {
  combineKernel,
  gramKernel,
  gramPairs,
  GRAM_CHUNK4,
  STATE,
  STATE_STRIDE,
  TELEMETRY_HEADER,
  TELEMETRY_RECORD,
} from '../../shaders/integrate.ts';
import { solveKernel, type IntegratorMethod } from '../../shaders/integrate-solve.ts';
import type { ParamValues } from '../../shaders/kernel.ts';
import type { NonFiniteGuard } from './guard.ts';
import { checkOptions, checkStep, type IntegratorGroup, type IntegratorOptions, type LossValues } from './options.ts';
import { IntegratorTelemetry } from './telemetry.ts';

interface TensorSlot {
  param: Tensor;
  group: number;
  index: number; // global tensor index (coefficient rows)
  n: number;
  rowBase: number;
  rows: number;
}

/**
 * Usage (two encoders, K = 2: loss 0 = L_m, loss 1 = the encoder's unimodal loss):
 *   const integ = new GradientIntegrator(
 *     [{ params: audioParams, losses: ['mm', 'audio'] }, { params: visualParams, losses: ['mm', 'visual'] }],
 *     { method: 'mmpareto', telemetrySteps: 100 });
 *   const opt = new SGD([...audioParams, ...visualParams, ...headParams], { lr: 1e-3, momentum: 0.9 });
 *   // per step: the per-loss gradients keyed by parameter, then the fused combine + SGD, no readback
 *   const grads = perLossGrads({ mm, audio, visual }, opt.params);
 *   integ.step(opt, grads); // the heads: opt.update(p, their summed gradient)
 *   const { records } = await integ.telemetry.read(); // every N steps: one buffer map
 */
export class GradientIntegrator {
  readonly method: IntegratorMethod;
  readonly k: number;
  readonly groups: readonly IntegratorGroup[];
  readonly telemetry: IntegratorTelemetry;
  private readonly device: Device;
  private readonly slots: TensorSlot[][] = [];
  private readonly work: Tensor;
  private readonly state: Tensor;
  private readonly tables: Tensor;
  private readonly telemetryBuffer: Tensor;
  private readonly solveParams: ParamValues<(typeof solveKernel)['decl']['params']>;
  private readonly lossBase: number;
  private disposed = false;
  /** Zeros as large as the largest parameter, bound where a loss does not reach a parameter (made on first need). */
  private zeros: Tensor | null = null;

  constructor(groups: readonly IntegratorGroup[], opts: IntegratorOptions) {
    const { method, k, device, gamma, fwIters, seed, gradnormAlpha, gradnormLr, relax, beta, telemetrySteps } =
      checkOptions(groups, opts);

    this.method = method;
    this.k = k;
    this.groups = groups.map((g) => ({ params: [...g.params], losses: [...g.losses] }));
    this.device = device;
    const P = gramPairs(k).length;
    let rows = 0;
    let index = 0;
    for (let g = 0; g < groups.length; g++) {
      this.slots.push(
        this.groups[g]!.params.map((param) => {
          const n = param.size;
          const r = Math.ceil(Math.ceil(n / 4) / GRAM_CHUNK4);
          const s = { param, group: g, index: index++, n, rowBase: rows, rows: r };
          rows += r;
          return s;
        }),
      );
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
    this.solveParams = {
      groups: G,
      k,
      np: P,
      ring: telemetrySteps,
      gramBase,
      lossBase: this.lossBase,
      coefBase: G * STATE_STRIDE,
      fwIters,
      seed,
      gamma,
      gnAlpha: gradnormAlpha,
      gnLr: gradnormLr,
      relax,
      beta,
    };
  }

  /**
   * Integrates one step into fresh gradient tensors, keyed by parameter: h for every group
   * parameter. `lossValues` (scalar tensors by loss name) is required by 'gradnorm' only.
   */
  combine(grads: PerLossGradients, lossValues?: LossValues): Map<Tensor, Tensor> {
    checkStep('GradientIntegrator.combine', this.context(), grads, lossValues);
    this.reduceAndSolve(grads, lossValues);
    const out = new Map<Tensor, Tensor>();
    for (const s of this.slots.flat()) {
      const h = output(this.device, s.param.shape);
      const { state, coefBase, valid, grads: g } = this.combined(s, grads);
      const n4 = Math.ceil(s.n / 4);
      if (n4 > 0)
        this.device.dispatch({
          kernel: combineKernel,
          variant: { k: this.k },
          params: { n4, coefBase, valid },
          bindings: { state, dst: h.rawBuffer, g },
        });
      out.set(s.param, h);
    }
    return out;
  }

  /**
   * Integrates one step and applies `optimizer`'s update to every group parameter, one fused
   * kernel per tensor (the parameters' .grad is neither read nor written). Parameters outside the
   * groups (heads) are the caller's: optimizer.update(p, gradient) or optimizer.step(). With a
   * guard, the update of every group is dropped when any group is not finite or the guard already
   * dropped the step.
   */
  step(optimizer: Optimizer, grads: PerLossGradients, lossValues?: LossValues, guard?: NonFiniteGuard): void {
    const op = 'GradientIntegrator.step';
    checkStep(op, this.context(), grads, lossValues);
    for (const s of this.slots.flat()) {
      if (optimizer.has(s.param)) continue;
      const which = `group ${s.group} parameter ${s.param} ${fmt(s.param.shape)}`;
      throw new EngineError(`${op}: ${which} is not in the optimizer's parameter list`);
    }
    if (guard && !guard.isProtected(this.state)) guard.protect([this.state]);
    this.reduceAndSolve(grads, lossValues);
    guard?.foldGroups(this.state, this.groups.length, STATE_STRIDE, STATE.valid);
    for (const s of this.slots.flat()) optimizer.update(s.param, this.combined(s, grads));
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
    if (!(s instanceof Float32Array) || s.length !== this.state.size)
      throw new EngineError(
        `${op}: 'state' must hold ${this.state.size} float32 values (same method, groups and tensors), got ` +
          `${s ? s.length : 'none'}`,
      );
    if (!(t instanceof Int32Array) || t.length !== this.telemetryBuffer.size)
      throw new EngineError(
        `${op}: 'telemetry' must hold ${this.telemetryBuffer.size} int32 values (same groups and telemetrySteps), ` +
          `got ${t ? t.length : 'none'}`,
      );
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

  private context() {
    return {
      disposed: this.disposed,
      method: this.method,
      device: this.device,
      groups: this.groups,
      slots: this.slots,
    };
  }

  /** Slot s's K per-loss gradients (zeros where a loss does not reach it) and where its coefficients are. */
  private combined(s: TensorSlot, grads: PerLossGradients): CombinedGradient {
    const byLoss = grads.get(s.param);
    return {
      state: this.state.rawBuffer,
      coefBase: this.groups.length * STATE_STRIDE + s.index * this.k,
      valid: s.group * STATE_STRIDE + STATE.valid,
      grads: this.groups[s.group]!.losses.map((name) => byLoss?.[name]?.rawBuffer ?? this.zerosBuffer()),
    };
  }

  private zerosBuffer(): GPUBuffer {
    this.zeros ??= fill([Math.max(...this.groups.flatMap((g) => g.params.map((p) => p.size)))], 0, this.device);
    return this.zeros.rawBuffer;
  }

  /** Gram partials for every tensor, then the solve kernel (one workgroup per group). */
  private reduceAndSolve(grads: PerLossGradients, lossValues: LossValues | undefined): void {
    const dev = this.device;
    if (this.method === 'gradnorm') {
      this.groups.forEach((group, g) => {
        group.losses.forEach((name, j) => {
          dev.batcher.copy(
            lossValues![name]!.rawBuffer,
            0,
            this.work.rawBuffer,
            (this.lossBase + g * this.k + j) * 4,
            4,
          );
        });
      });
    }
    for (const s of this.slots.flat()) {
      if (s.rows === 0) continue;
      dev.dispatch({
        kernel: gramKernel,
        variant: { k: this.k },
        params: { n: s.n, n4: Math.ceil(s.n / 4), rowBase: s.rowBase, chunk4: GRAM_CHUNK4 },
        bindings: { work: this.work.rawBuffer, g: this.combined(s, grads).grads },
      });
    }
    dev.dispatch({
      kernel: solveKernel,
      variant: { method: this.method },
      params: this.solveParams,
      bindings: {
        work: this.work.rawBuffer,
        state: this.state.rawBuffer,
        telem: this.telemetryBuffer.rawBuffer,
        tables: this.tables.rawBuffer,
      },
    });
  }
}
