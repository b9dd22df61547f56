// What a GradientIntegrator is given — the method, the parameter groups and their losses, the
// options — and the checks of it and of each step's inputs, all before any dispatch; errors name
// the group, parameter and loss.
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
import type { PerLossGradients } from '../backward.ts';
import type { Device } from '../device.ts';
import { EngineError } from '../errors.ts';
import { checkSameDevice, fmt } from '../ops/common.ts';
import { Tensor } from '../tensor.ts';
import { MAX_LOSSES } from '../../shaders/integrate.ts';
import type { IntegratorMethod } from '../../shaders/integrate-solve.ts';

export type { IntegratorMethod };
export const INTEGRATOR_METHODS: readonly IntegratorMethod[] = [
  'uniform',
  'one-joint-loss',
  'mgda',
  'mmpareto',
  'mmpareto-official',
  'pcgrad',
  'gradnorm',
  'metabalance',
];

export interface IntegratorOptions {
  method: IntegratorMethod;
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

/** One parameter group (a modality encoder) and the losses its gradient is integrated from. */
export interface IntegratorGroup {
  params: readonly Tensor[];
  /**
   * Its K losses by name, in order: losses[0] gives g_0 (the multimodal loss), losses[1] g_1 (the
   * group's unimodal loss), … (1 … 8 losses, the same K for every group; exactly 2 for the
   * mmpareto methods).
   */
  losses: readonly string[];
}

/** Scalar loss tensors by name ('gradnorm' weighs the gradients by them). */
export type LossValues = Readonly<Record<string, Tensor>>;

const METHOD_SET = new Set<string>(INTEGRATOR_METHODS);

/** The options with their defaults, checked, and what the groups give: K and the device. */
export function checkOptions(groups: readonly IntegratorGroup[], opts: IntegratorOptions) {
  const op = 'GradientIntegrator';
  const method = opts?.method;
  if (!METHOD_SET.has(method))
    throw new EngineError(
      `${op}: unknown method '${String(method)}' (expected one of ${INTEGRATOR_METHODS.join(', ')})`,
    );
  if (!Array.isArray(groups) || groups.length === 0) throw new EngineError(`${op}: no parameter groups given`);
  const k = groups[0]!.losses?.length ?? 0;
  if (!Number.isInteger(k) || k < 1 || k > MAX_LOSSES)
    throw new EngineError(`${op}: losses (K) must be an integer in [1, ${MAX_LOSSES}], got ${k}`);
  groups.forEach((g, i) => {
    const names = g.losses;
    if (!Array.isArray(names) || names.length !== k)
      throw new EngineError(
        `${op}: group ${i} has ${names?.length ?? 'no'} losses, group 0 has ${k} ` +
          '(K must be the same for every group)',
      );
    if (new Set(names).size !== k) throw new EngineError(`${op}: group ${i} names a loss twice (${names.join(', ')})`);
  });
  if (method.startsWith('mmpareto') && k !== 2)
    throw new EngineError(`${op}: method '${method}' integrates exactly 2 losses (g_m, g_u), got K = ${k}`);
  const {
    gamma = 1.5,
    fwIters = 250,
    seed = 0,
    gradnormAlpha = 1.5,
    gradnormLr = 0.025,
    relax = 0.7,
    beta = 0.9,
    telemetrySteps = 0,
  } = opts;
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
  const owner = new Map<Tensor, number>();
  groups.forEach(({ params: group }, g) => {
    if (!Array.isArray(group) || group.length === 0) throw new EngineError(`${op}: parameter group ${g} is empty`);
    group.forEach((p, t) => {
      if (!(p instanceof Tensor)) throw new EngineError(`${op}: group ${g}, parameter ${t} is not a Tensor`);
      p.buffer(op);
      if (p.dtype !== 'float32') throw new EngineError(`${op}: group ${g}, parameter ${t} ${p} is not float32`);
      const prev = owner.get(p);
      if (prev !== undefined)
        throw new EngineError(
          `${op}: parameter ${p} ${fmt(p.shape)} is in group ${prev} and group ${g}${prev === g ? ' (twice)' : ''}`,
        );
      owner.set(p, g);
    });
  });
  const device = checkSameDevice(op, ...owner.keys());
  return { method, k, device, gamma, fwIters, seed, gradnormAlpha, gradnormLr, relax, beta, telemetrySteps };
}

/** What checkStep needs to know of the integrator. */
interface StepContext {
  disposed: boolean;
  method: IntegratorMethod;
  device: Device;
  groups: readonly IntegratorGroup[];
  /** Per group, its tensors: the parameter and its global index. */
  slots: readonly (readonly { param: Tensor; group: number; index: number }[])[];
}

/** Checks a step's per-loss gradients (and, for 'gradnorm', the loss values). */
export function checkStep(
  op: string,
  it: StepContext,
  grads: PerLossGradients,
  lossValues: LossValues | undefined,
): void {
  if (it.disposed) throw new EngineError(`${op}: the integrator was disposed`);
  if (!(grads instanceof Map))
    throw new EngineError(
      `${op}: expected the per-loss gradients keyed by parameter (a Map, as perLossGrads returns), ` +
        `got ${typeof grads}`,
    );
  for (const s of it.slots.flat()) {
    const p = s.param;
    const byLoss = grads.get(p);
    const where = `group ${s.group}, parameter ${s.index - it.slots[s.group]![0]!.index}`;
    if (!byLoss) throw new EngineError(`${op}: ${where} ${fmt(p.shape)}: no gradients given for it`);
    for (const name of it.groups[s.group]!.losses) {
      const gr = byLoss[name];
      if (gr === undefined) continue; // that loss does not reach p: a zero gradient
      const at = `${where}, loss '${name}'`;
      if (!(gr instanceof Tensor)) throw new EngineError(`${op}: ${at}: gradient is not a Tensor`);
      gr.buffer(op);
      if (gr.dtype !== 'float32') throw new EngineError(`${op}: ${at}: gradient ${gr} is not float32`);
      if (gr.device !== it.device) throw new EngineError(`${op}: ${at}: gradient lives on another device`);
      if (gr.storage === p.storage)
        throw new EngineError(`${op}: ${at}: the gradient shares its storage with the parameter`);
      if (gr.shape.length !== p.shape.length || gr.shape.some((d, i) => d !== p.shape[i])) {
        throw new EngineError(`${op}: ${at}: gradient ${fmt(gr.shape)} does not match parameter ${fmt(p.shape)}`);
      }
    }
  }
  if (it.method !== 'gradnorm') return;
  const names = [...new Set(it.groups.flatMap((g) => g.losses))];
  if (!lossValues || typeof lossValues !== 'object')
    throw new EngineError(`${op}: method 'gradnorm' needs the loss values by name (${names.join(', ')})`);
  for (const name of names) {
    const l = lossValues[name];
    if (!(l instanceof Tensor) || l.size !== 1 || l.dtype !== 'float32') {
      throw new EngineError(
        `${op}: loss '${name}': expected a float32 scalar tensor, ` +
          `got ${l instanceof Tensor ? `${l} ${fmt(l.shape)}` : typeof l}`,
      );
    }
    l.buffer(op);
    if (l.device !== it.device) throw new EngineError(`${op}: loss '${name}' lives on another device`);
  }
}
