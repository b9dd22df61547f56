// Gradient integrators, the solve kernel: one workgroup per parameter group turns the Gram
// partial rows of shaders/integrate.ts into the coefficients c_j of h = Σ_j c_j·g_j, and writes
// the step's telemetry record. Variants by method (structural: each compiles only its own
// solver); K, γ and the other hyper-parameters are uniforms.
//
// Phases (barriers between them):
//  1. all invocations: per-tensor Gram = Σ of that tensor's partial rows (fixed order, so
//     deterministic) → work[gramBase + t·P + e];
//  2. invocation 0: group Gram = Σ_t per-tensor Gram; finiteness check; the method's solver
//     (a K×K problem: K ≤ 8, so serial code is cheapest) → group coefficients;
//  3. all invocations: per-tensor coefficients s_t·c_j (s_t = 1 except 'mmpareto-official')
//     → state[coefBase + t·K + j], and the tensors' |h_t|²;
//  4. invocation 0: telemetry record, non-finite counters, step counter.
// Layout constants are shared with the host through shaders/integrate.ts.
import { kernel } from './kernel.ts';
import { STATE, STATE_STRIDE, TELEMETRY_HEADER, TELEMETRY_RECORD } from './integrate.ts';

export type IntegratorMethod =
  | 'uniform'
  | 'one-joint-loss'
  | 'mgda'
  | 'mmpareto'
  | 'mmpareto-official'
  | 'pcgrad'
  | 'gradnorm'
  | 'metabalance';

/** Telemetry flag bits (record word 1). */
export const FLAG = { nonFinite: 1, conflict: 2, zeroDirection: 4 } as const;
/** |h'|² at or below this fraction of |c_m·g_m|² + |c_u·g_u|²: h' is float32 cancellation noise; treated as 0. */
export const STATIONARY_RATIO = 1e-6;
/** Frank–Wolfe stops when its duality gap falls to this fraction of |θ|² (or after fwIters iterations). */
export const FW_GAP = 1e-6;
const SOLVE_WG = 64;

/** Each method fills coefW[0..K) (group coefficients) and returns its decisions (invocation 0 only). */
const METHODS: Record<IntegratorMethod, string> = {
  uniform: `
  for (var j = 0u; j < params.k; j++) { coefW[j] = 1.0; }
  return Decision(0.5, 1.0, 0u);`,
  'one-joint-loss': `
  coefW[0] = 1.0;
  return Decision(1.0, 1.0, 0u);`,
  // Sener & Koltun 2018: min-norm point of the convex hull, weights applied as K·α.
  mgda: `
  let kf = f32(params.k);
  if (params.k == 2u) {
    let d = G(0u, 0u) - 2.0 * G(0u, 1u) + G(1u, 1u);
    let a = select(vec2<f32>(0.5), minNorm2(G(0u, 0u), G(0u, 1u), G(1u, 1u)), d > 0.0);
    coefW[0] = 2.0 * a.x;
    coefW[1] = 2.0 * a.y;
    return Decision(a.x, 1.0, 0u);
  }
  if (params.k == 1u) {
    coefW[0] = 1.0;
    return Decision(1.0, 1.0, 0u);
  }
  var al: array<f32, 8>;
  for (var j = 0u; j < params.k; j++) { al[j] = 1.0 / kf; }
  for (var it = 0u; it < params.fwIters; it++) {
    // Frank–Wolfe on min_α |Σ α_j g_j|² over the simplex, exact line search toward vertex t.
    var ga: array<f32, 8>;
    var a = 0.0;
    var t = 0u;
    for (var r = 0u; r < params.k; r++) {
      var s = 0.0;
      for (var j = 0u; j < params.k; j++) { s += G(r, j) * al[j]; }
      ga[r] = s;
      a += al[r] * s;
      if (s < ga[t]) { t = r; }
    }
    let b = ga[t];
    let den = a - 2.0 * b + G(t, t);
    if (a - b <= ${FW_GAP} * a || den <= 0.0) { break; }
    let gam = clamp((a - b) / den, 0.0, 1.0);
    for (var j = 0u; j < params.k; j++) { al[j] *= 1.0 - gam; }
    al[t] += gam;
  }
  for (var j = 0u; j < params.k; j++) { coefW[j] = kf * al[j]; }
  return Decision(al[0], 1.0, 0u);`,
  // Paper Algorithm 1 over the group as one vector.
  mmpareto: `
  let mm = G(0u, 0u);
  let mu = G(0u, 1u);
  let uu = G(1u, 1u);
  var a = vec2<f32>(0.5);
  if (mu < 0.0) { a = minNorm2(mm, mu, uu); } // cos β < 0 ⇔ g_m·g_u < 0
  let c0 = 2.0 * a.x;
  let c1 = 2.0 * a.y;
  let hp2 = c0 * c0 * mm + 2.0 * c0 * c1 * mu + c1 * c1 * uu;
  let gs2 = max(mm + 2.0 * mu + uu, 0.0);
  if (!(hp2 > ${STATIONARY_RATIO} * (c0 * c0 * mm + c1 * c1 * uu))) {
    return Decision(a.x, 0.0, ${FLAG.zeroDirection}u);
  }
  let scale = params.gamma * sqrt(gs2 / hp2);
  coefW[0] = c0 * scale;
  coefW[1] = c1 * scale;
  return Decision(a.x, scale, 0u);`,
  // Official code: strict cos > 0 for the plain sum; else MinNormSolver's 2-vector rule (0.999 /
  // 0.001 at the degenerate ends); per-tensor magnitudes in phase 3.
  'mmpareto-official': `
  let mm = G(0u, 0u);
  let mu = G(0u, 1u);
  let uu = G(1u, 1u);
  var a = vec2<f32>(0.5);
  if (!(mu > 0.0)) {
    if (mu >= mm) {
      a = vec2<f32>(0.999, 0.001);
    } else if (mu >= uu) {
      a = vec2<f32>(0.001, 0.999);
    } else {
      a = minNorm2(mm, mu, uu);
    }
  }
  coefW[0] = 2.0 * a.x;
  coefW[1] = 2.0 * a.y;
  return Decision(a.x, params.gamma, 0u);`,
  // Yu et al. 2020: g_i projected off each original g_j it conflicts with, in a seeded random order.
  pcgrad: `
  var A: array<f32, 64>;
  for (var i = 0u; i < params.k; i++) { A[i * 8u + i] = 1.0; }
  for (var i = 0u; i < params.k; i++) {
    var ord: array<u32, 8>;
    var n = 0u;
    for (var j = 0u; j < params.k; j++) { if (j != i) { ord[n] = j; n++; } }
    for (var p = n; p > 1u; p--) {
      let r = orderHash(stepNo, g, i, p - 1u) % p;
      let tmp = ord[p - 1u];
      ord[p - 1u] = ord[r];
      ord[r] = tmp;
    }
    for (var q = 0u; q < n; q++) {
      let j = ord[q];
      var d = 0.0;
      for (var kk = 0u; kk < params.k; kk++) { d += A[i * 8u + kk] * G(kk, j); }
      if (d < 0.0 && G(j, j) > 0.0) { A[i * 8u + j] -= d / G(j, j); }
    }
  }
  for (var kk = 0u; kk < params.k; kk++) {
    var s = 0.0;
    for (var i = 0u; i < params.k; i++) { s += A[i * 8u + kk]; }
    coefW[kk] = s;
  }
  return Decision(0.0, 1.0, 0u);`,
  // Chen et al. 2018: h = Σ w_i·g_i with this step's weights, then one gradient step on
  // Σ_i |w_i·|g_i| − mean_j(w_j·|g_j|)·r_i^α| (target held constant), w ≥ 0, Σ w = K.
  gradnorm: `
  let kf = f32(params.k);
  let lb = params.lossBase + g * params.k;
  var n: array<f32, 8>;
  var w: array<f32, 8>;
  var ratio: array<f32, 8>;
  var gbar = 0.0;
  var rbar = 0.0;
  for (var j = 0u; j < params.k; j++) {
    n[j] = sqrt(G(j, j));
    w[j] = state[base + ${STATE.weights}u + j];
    coefW[j] = w[j];
    if (state[base + ${STATE.initialLoss}u + j] == 0.0) { state[base + ${STATE.initialLoss}u + j] = work[lb + j]; }
    let l0 = state[base + ${STATE.initialLoss}u + j];
    ratio[j] = select(1.0, work[lb + j] / l0, l0 != 0.0);
    gbar += w[j] * n[j] / kf;
    rbar += ratio[j] / kf;
  }
  var total = 0.0;
  for (var j = 0u; j < params.k; j++) {
    let r = select(1.0, ratio[j] / rbar, rbar > 0.0);
    let goal = gbar * select(0.0, pow(r, params.gnAlpha), r > 0.0);
    w[j] = max(w[j] - params.gnLr * sign(w[j] * n[j] - goal) * n[j], 0.0);
    total += w[j];
  }
  for (var j = 0u; j < params.k; j++) {
    state[base + ${STATE.weights}u + j] = select(1.0, kf * w[j] / total, total > 0.0);
  }
  return Decision(0.0, 1.0, 0u);`,
  // He et al. 2022: aux gradient j scaled by r·m_0/m_j + (1 − r), m = moving averages of the norms.
  metabalance: `
  var m: array<f32, 8>;
  for (var j = 0u; j < params.k; j++) {
    m[j] = params.beta * state[base + ${STATE.normAverage}u + j] + (1.0 - params.beta) * sqrt(G(j, j));
    state[base + ${STATE.normAverage}u + j] = m[j];
  }
  coefW[0] = 1.0;
  for (var j = 1u; j < params.k; j++) {
    coefW[j] = select(1.0, params.relax * m[0] / m[j] + (1.0 - params.relax), m[j] > 0.0);
  }
  return Decision(0.0, 1.0, 0u);`,
};

/** Turns every group's Gram partial rows into coefficients and telemetry: one workgroup per group. */
export const solveKernel = kernel({
  name: 'integrateSolve',
  variant: { method: 'uniform' as IntegratorMethod },
  params: {
    groups: 'u32',
    k: 'u32',
    np: 'u32',
    ring: 'u32',
    gramBase: 'u32',
    lossBase: 'u32',
    coefBase: 'u32',
    fwIters: 'u32',
    seed: 'u32',
    gamma: 'f32',
    gnAlpha: 'f32',
    gnLr: 'f32',
    relax: 'f32',
    beta: 'f32',
  },
  bindings: { work: { write: 'f32' }, state: { write: 'f32' }, telem: { write: 'u32' }, tables: { read: 'u32' } },
  workgroupSize: SOLVE_WG,
  builtins: { wid: 'workgroup_id', lid: 'local_invocation_index' },
  prelude: ({ method }) => `
struct Decision { alpha: f32, scale: f32, flags: u32 }
var<workgroup> gramW: array<f32, 64>;
var<workgroup> coefW: array<f32, 8>;
var<workgroup> decW: Decision;
var<workgroup> validW: u32;
var<workgroup> hsq: array<f32, ${SOLVE_WG}>;

fn G(a: u32, b: u32) -> f32 { return gramW[a * 8u + b]; }
/** Index of (a, b) in the packed upper triangle of a K×K Gram matrix. */
fn pid(a: u32, b: u32) -> u32 {
  let lo = min(a, b);
  let hi = max(a, b);
  return lo * (2u * params.k - lo + 1u) / 2u + (hi - lo);
}
/**
 * (α, 1 − α) minimising |α·g_0 + (1 − α)·g_1|² (needs |g_0 − g_1|² > 0), each as its own ratio:
 * 1 − α computed as a difference would lose all its digits when α ≈ 1 (very unequal norms).
 */
fn minNorm2(mm: f32, mu: f32, uu: f32) -> vec2<f32> {
  let d = mm - 2.0 * mu + uu;
  return clamp(vec2<f32>(uu - mu, mm - mu) / d, vec2<f32>(0.0), vec2<f32>(1.0));
}
fn finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
fn pcg(x: u32) -> u32 {
  let s = x * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}
/** PCGrad's random source (engine/integrate pcgradOrder reproduces it on the host). */
fn orderHash(stepNo: u32, g: u32, i: u32, p: u32) -> u32 {
  return pcg(pcg(pcg(pcg(params.seed) ^ stepNo) ^ g) ^ (i * 8u + p));
}

fn solveMethod(g: u32, base: u32, stepNo: u32) -> Decision {${METHODS[method]}
}`,
  main: ({ method }) => {
    const official = method === 'mmpareto-official';
    // The telemetry's α: the method's own (MGDA, MMPareto) or the first coefficient's share.
    const ownAlpha = method === 'mgda' || method.startsWith('mmpareto');
    return `  let g = wid.x;
  let P = params.np;
  let t0 = tables[2u * g];
  let nt = tables[2u * g + 1u];
  let base = g * ${STATE_STRIDE}u;
  let head = g * ${TELEMETRY_HEADER}u;
  for (var q = lid; q < nt * P; q += ${SOLVE_WG}u) {
    let tg = t0 + q / P;
    let e = q % P;
    let r0 = tables[2u * params.groups + 2u * tg];
    let nr = tables[2u * params.groups + 2u * tg + 1u];
    var s = 0.0;
    for (var r = 0u; r < nr; r++) { s += work[(r0 + r) * P + e]; }
    work[params.gramBase + tg * P + e] = s;
  }
  storageBarrier();
  workgroupBarrier();

  if (lid == 0u) {
    for (var e = 0u; e < 64u; e++) { gramW[e] = 0.0; }
    for (var e = 0u; e < 8u; e++) { coefW[e] = 0.0; }
    var ok = true;
    for (var t = 0u; t < nt; t++) {
      for (var a = 0u; a < params.k; a++) {
        for (var b = a; b < params.k; b++) { gramW[a * 8u + b] += work[params.gramBase + (t0 + t) * P + pid(a, b)]; }
      }
    }
    for (var a = 0u; a < params.k; a++) {
      for (var b = a; b < params.k; b++) {
        gramW[b * 8u + a] = gramW[a * 8u + b];
        ok = ok && finite(gramW[a * 8u + b]);
      }
      ${method === 'gradnorm' ? 'ok = ok && finite(work[params.lossBase + g * params.k + a]);' : ''}
    }
    var d = Decision(0.0, 0.0, ${FLAG.nonFinite}u);
    if (ok) { d = solveMethod(g, base, telem[head + 3u]); }
    for (var j = 0u; j < params.k; j++) { ok = ok && finite(coefW[j]); }
    if (!ok) {
      for (var j = 0u; j < 8u; j++) { coefW[j] = 0.0; }
      d.flags = ${FLAG.nonFinite}u;
    }
    if (params.k > 1u && G(0u, 1u) < 0.0) { d.flags |= ${FLAG.conflict}u; }
    decW = d;
    validW = select(0u, 1u, ok);
    for (var j = 0u; j < 8u; j++) { state[base + ${STATE.coef}u + j] = coefW[j]; }
    state[base + ${STATE.valid}u] = select(0.0, 1.0, ok);
  }
  workgroupBarrier();

  var acc = 0.0;
  for (var t = lid; t < nt; t += ${SOLVE_WG}u) {
    let tg = t0 + t;
    let gb = params.gramBase + tg * P;
    var hq = 0.0;
    for (var a = 0u; a < params.k; a++) {
      for (var b = 0u; b < params.k; b++) { hq += coefW[a] * coefW[b] * work[gb + pid(a, b)]; }
    }
    var s = 1.0;
    ${
      official
        ? `// magnitude matched per tensor: γ·max(|g_m + g_u|, |h'|)/|h'| (γ alone when h' = 0)
    let gs2 = work[gb + pid(0u, 0u)] + 2.0 * work[gb + pid(0u, 1u)] + work[gb + pid(1u, 1u)];
    s = params.gamma * select(1.0, max(1.0, sqrt(max(gs2, 0.0) / hq)), hq > 0.0);`
        : ''
    }
    for (var j = 0u; j < params.k; j++) { state[params.coefBase + tg * params.k + j] = s * coefW[j]; }
    acc += s * s * hq;
  }
  hsq[lid] = acc;
  workgroupBarrier();

  if (lid == 0u) {
    var hh = 0.0;
    for (var i = 0u; i < ${SOLVE_WG}u; i++) { hh += hsq[i]; }
    let stepNo = telem[head + 3u];
    let d = decW;
    if (validW == 0u) {
      telem[head] += 1u;
      if (telem[head + 1u] == 0u) { telem[head + 1u] = stepNo + 1u; }
      telem[head + 2u] = stepNo + 1u;
    }
    if (params.ring > 0u) {
      let nn = G(0u, 0u) * G(1u, 1u);
      var csum = 0.0;
      for (var j = 0u; j < params.k; j++) { csum += coefW[j]; }
      let r = params.groups * ${TELEMETRY_HEADER}u
        + ((stepNo % params.ring) * params.groups + g) * ${TELEMETRY_RECORD}u;
      telem[r] = stepNo + 1u;
      telem[r + 1u] = d.flags;
      telem[r + 2u] = bitcast<u32>(select(0.0, G(0u, 1u) / sqrt(nn), nn > 0.0));
      telem[r + 3u] = bitcast<u32>(select(select(0.0, coefW[0] / csum, csum != 0.0), d.alpha, ${ownAlpha}));
      telem[r + 4u] = bitcast<u32>(sqrt(G(0u, 0u)));
      telem[r + 5u] = bitcast<u32>(sqrt(G(1u, 1u)));
      telem[r + 6u] = bitcast<u32>(sqrt(max(hh, 0.0)));
      telem[r + 7u] = bitcast<u32>(d.scale);
      for (var j = 0u; j < 8u; j++) { telem[r + 8u + j] = bitcast<u32>(coefW[j]); }
    }
    telem[head + 3u] = stepNo + 1u;
  }`;
  },
  grid: (p) => [p.groups],
});

export const SOLVE_WORKGROUP = SOLVE_WG;
