// float64 references of the gradient integrators (engine/integrate), written from the papers and
// the method descriptions in engine/integrate/options.ts, independently of the WGSL solvers.
// A group's gradients are gs[j][t]: loss j, tensor t (flat Float64Arrays).
import { pcgradOrder, type IntegratorMethod, type IntegratorOptions } from '../../engine/index.ts';

export type Grads = Float64Array[][];

/** The integrator's numeric options (the reference takes the method and K separately). */
export type RefOptions = Omit<IntegratorOptions, 'method' | 'losses' | 'telemetrySteps'>;

/** Per-group state carried across steps (gradnorm weights and first losses, metabalance averages). */
export interface RefState {
  step: number;
  w: number[];
  l0: number[];
  avg: number[];
}
export const newState = (k: number): RefState => ({
  step: 0,
  w: new Array<number>(k).fill(1),
  l0: new Array<number>(k).fill(0),
  avg: new Array<number>(k).fill(0),
});

export interface RefResult {
  /** Coefficients per tensor: h_t = Σ_j coef[t][j]·g_j,t. */
  coef: number[][];
  cos: number;
  alpha: number;
  normH: number;
  conflict: boolean;
  zeroDirection: boolean;
}

export function dotT(a: Float64Array[], b: Float64Array[]): number {
  let s = 0;
  a.forEach((x, t) => {
    x.forEach((v, i) => {
      s += v * b[t]![i]!;
    });
  });
  return s;
}
const dot1 = (a: Float64Array, b: Float64Array): number => a.reduce((s, v, i) => s + v * b[i]!, 0);

/** Frank–Wolfe with exact line search on min |Σ α_j g_j|², α on the simplex (same rule as the kernel). */
export function frankWolfe(G: number[][], iters: number): number[] {
  const k = G.length;
  const al = new Array<number>(k).fill(1 / k);
  for (let it = 0; it < iters; it++) {
    const ga = G.map((row) => row.reduce((s, v, j) => s + v * al[j]!, 0));
    const a = ga.reduce((s, v, r) => s + v * al[r]!, 0);
    let t = 0;
    for (let r = 1; r < k; r++) if (ga[r]! < ga[t]!) t = r;
    const b = ga[t]!;
    const den = a - 2 * b + G[t]![t]!;
    if (a - b <= 1e-12 * a || den <= 0) break;
    const gam = Math.min(1, Math.max(0, (a - b) / den));
    for (let j = 0; j < k; j++) al[j]! *= 1 - gam;
    al[t]! += gam;
  }
  return al;
}

/** One step of `method` for one group. `losses` (gradnorm): this group's K loss values. */
export function reference(
  method: IntegratorMethod,
  gs: Grads,
  o: RefOptions,
  st: RefState,
  group: number,
  losses: number[] = [],
): RefResult {
  const k = gs.length;
  const T = gs[0]!.length;
  const G = gs.map((a) => gs.map((b) => dotT(a, b)));
  const perT = (t: number) => gs.map((a) => gs.map((b) => dot1(a[t]!, b[t]!)));
  const gamma = o.gamma ?? 1.5;
  let c = new Array<number>(k).fill(1);
  let alpha = NaN;
  let zeroDirection = false;
  let perTensorScale: number[] | null = null;
  const mm = G[0]![0]!;
  const mu = k > 1 ? G[0]![1]! : 0;
  const uu = k > 1 ? G[1]![1]! : 0;
  switch (method) {
    case 'uniform':
      break;
    case 'one-joint-loss':
      c = c.map((_, j) => (j === 0 ? 1 : 0));
      break;
    case 'mgda': {
      let al: number[];
      if (k === 2) {
        const d = mm - 2 * mu + uu;
        const a = d > 0 ? Math.min(1, Math.max(0, (uu - mu) / d)) : 0.5;
        al = [a, 1 - a];
      } else al = frankWolfe(G, o.fwIters ?? 250);
      alpha = al[0]!;
      c = al.map((a) => k * a);
      break;
    }
    case 'mmpareto': {
      const a = mu < 0 ? Math.min(1, Math.max(0, (uu - mu) / (mm - 2 * mu + uu))) : 0.5;
      alpha = a;
      const [c0, c1] = [2 * a, 2 * (1 - a)];
      const hp2 = c0 * c0 * mm + 2 * c0 * c1 * mu + c1 * c1 * uu;
      const gs2 = Math.max(0, mm + 2 * mu + uu);
      if (hp2 > 1e-6 * (c0 * c0 * mm + c1 * c1 * uu)) {
        const s = gamma * Math.sqrt(gs2 / hp2);
        c = [c0 * s, c1 * s];
      } else {
        c = [0, 0];
        zeroDirection = true;
      }
      break;
    }
    case 'mmpareto-official': {
      // official code: `if cos > 0: [0.5, 0.5] else MinNormSolver` (Sener's 2-vector rule), then
      // per tensor: new = 2α g_m + 2(1−α) g_u; diff = |g_m + g_u| / |new|; grad = γ·(diff > 1 ? diff·new : new)
      let a = 0.5;
      if (!(mu > 0)) a = mu >= mm ? 0.999 : mu >= uu ? 0.001 : (uu - mu) / (mm + uu - 2 * mu);
      alpha = a;
      c = [2 * a, 2 * (1 - a)];
      perTensorScale = Array.from({ length: T }, (_, t) => {
        const P = perT(t);
        const hp2 = c[0]! ** 2 * P[0]![0]! + 2 * c[0]! * c[1]! * P[0]![1]! + c[1]! ** 2 * P[1]![1]!;
        const diff = Math.sqrt(Math.max(0, P[0]![0]! + 2 * P[0]![1]! + P[1]![1]!) / hp2);
        return hp2 > 0 && diff > 1 ? gamma * diff : gamma;
      });
      break;
    }
    case 'pcgrad': {
      const A: number[][] = Array.from({ length: k }, (_, i) => Array.from({ length: k }, (_, j) => (i === j ? 1 : 0)));
      for (let i = 0; i < k; i++) {
        for (const j of pcgradOrder(o.seed ?? 0, st.step, group, i, k)) {
          const d = A[i]!.reduce((s, v, kk) => s + v * G[kk]![j]!, 0);
          if (d < 0 && G[j]![j]! > 0) A[i]![j]! -= d / G[j]![j]!;
        }
      }
      c = c.map((_, kk) => A.reduce((s, row) => s + row[kk]!, 0));
      break;
    }
    case 'gradnorm': {
      const n = G.map((row, j) => Math.sqrt(row[j]!));
      c = [...st.w];
      st.l0 = st.l0.map((l0, j) => (l0 === 0 ? losses[j]! : l0));
      const ratio = losses.map((l, j) => (st.l0[j] !== 0 ? l / st.l0[j]! : 1));
      const rbar = ratio.reduce((s, v) => s + v, 0) / k;
      const gbar = st.w.reduce((s, w, j) => s + w * n[j]!, 0) / k;
      const w = st.w.map((wj, j) => {
        const r = rbar > 0 ? ratio[j]! / rbar : 1;
        const goal = gbar * (r > 0 ? r ** (o.gradnormAlpha ?? 1.5) : 0);
        return Math.max(0, wj - (o.gradnormLr ?? 0.025) * Math.sign(wj * n[j]! - goal) * n[j]!);
      });
      const total = w.reduce((s, v) => s + v, 0);
      st.w = w.map((v) => (total > 0 ? (k * v) / total : 1));
      break;
    }
    case 'metabalance': {
      const beta = o.beta ?? 0.9;
      const r = o.relax ?? 0.7;
      st.avg = st.avg.map((m, j) => beta * m + (1 - beta) * Math.sqrt(G[j]![j]!));
      c = st.avg.map((m, j) => (j === 0 ? 1 : m > 0 ? (r * st.avg[0]!) / m + (1 - r) : 1));
      break;
    }
  }
  st.step++;
  const coef = Array.from({ length: T }, (_, t) => c.map((v) => v * (perTensorScale ? perTensorScale[t]! : 1)));
  let h2 = 0;
  for (let t = 0; t < T; t++) {
    const P = perT(t);
    for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) h2 += coef[t]![a]! * coef[t]![b]! * P[a]![b]!;
  }
  const csum = c.reduce((s, v) => s + v, 0);
  if (Number.isNaN(alpha)) alpha = csum !== 0 ? c[0]! / csum : 0;
  return {
    coef,
    cos: mm * uu > 0 ? mu / Math.sqrt(mm * uu) : 0,
    alpha,
    normH: Math.sqrt(h2),
    conflict: mu < 0,
    zeroDirection,
  };
}

/** h_t = Σ_j coef[t][j]·g_j,t for every tensor. */
export function applyCoef(gs: Grads, coef: number[][]): Float64Array[] {
  return gs[0]!.map((x, t) => x.map((_, i) => gs.reduce((s, gj, j) => s + coef[t]![j]! * gj[t]![i]!, 0)));
}
