// Gradient integrators, per-tensor kernels: (1) the multi-output Gram reduction, (2) the combine
// h = Σ_j c_j·g_j into a gradient tensor, (3) the same combine fused with an optimizer update.
// The one-workgroup solve kernel that turns Gram sums into coefficients is in integrate-solve.ts.
//
// Buffers shared by the kernels of one integrator (engine/integrate/integrator.ts lays them out):
// - work (f32): Gram partial rows (one row of P = K(K+1)/2 sums per Gram workgroup), then the
//   per-tensor Gram matrices the solve kernel sums them into, then the loss values (gradnorm).
// - state (f32): per group STATE_STRIDE floats (coefficients, learned weights, moving averages,
//   step counter, valid flag), then K coefficients per tensor (what the combine kernels read).
// Gram entries are the upper triangle of G_ab = g_a·g_b in row-major order: (0,0), (0,1), …,
// (0,K−1), (1,1), …; gramPairs() gives that order.
//
// All per-element kernels read gradients as vec4: pooled buffers are padded to 16 bytes, so the
// last vec4 is readable; the Gram kernel masks lanes past n (padding may hold anything), the
// combine kernels compute garbage into padding lanes only.
import { ENTRY_1D, variants } from './common.ts';
import { adamwUpdateFn, optimizerApply, optimizerBindings, OPTIMIZER_PARAMS, sgdUpdateFn, type OptimizerKind } from './optim.ts';

/** Most losses an integrator combines: K gradient bindings + the optimizer's ≤ 4 stay under 16. */
export const MAX_LOSSES = 8;
/**
 * Invocations per Gram workgroup, and vec4s each Gram workgroup reduces (65536 floats; 256 vec4s
 * per invocation). On lavapipe 16384 measured ~15% faster than 4096 (fewer workgroups and rows).
 */
export const GRAM_WG = 64;
export const GRAM_CHUNK4 = 16384;
/** Floats of state per group, and where each field lives inside it. */
export const STATE_STRIDE = 64;
export const STATE = { coef: 0, weights: 8, initialLoss: 16, normAverage: 24, step: 32, valid: 33 } as const;
/** Telemetry buffer (u32 words): per group a header of HEADER words, then the ring of RECORD-word records. */
export const TELEMETRY_HEADER = 4;
export const TELEMETRY_RECORD = 16;

export function gramPairs(k: number): [number, number][] {
  const out: [number, number][] = [];
  for (let a = 0; a < k; a++) for (let b = a; b < k; b++) out.push([a, b]);
  return out;
}

const gradBindings = (k: number, first: number): string =>
  Array.from({ length: k }, (_, j) => `@group(0) @binding(${first + j}) var<storage, read> g${j}: array<vec4<f32>>;`).join('\n');

/** Σ_j c_j·g_j at vec4 index i with c read from state at params.coefBase (workgroup-uniform loads). */
const combineExpr = (k: number): string =>
  Array.from({ length: k }, (_, j) => `state[params.coefBase + ${j}u] * g${j}[i]`).join(' + ');

/**
 * Gram kernel: one workgroup reduces GRAM_CHUNK4 vec4s of each of the K gradients of one tensor
 * into the P sums g_a·g_b, each invocation keeping P vec4 accumulators, then a workgroup tree
 * (one barrier per level, after the streaming loop) and one row of P partials written at
 * work[(rowBase + workgroup) · P]. No atomics: the result does not depend on scheduling.
 */
function buildGramShader(k: number): string {
  const pairs = gramPairs(k);
  const P = pairs.length;
  const loads = Array.from({ length: k }, (_, j) => `let x${j} = select(vec4<f32>(), g${j}[q], keep);`).join('\n      ');
  return /* wgsl */ `
struct Params { n: u32, n4: u32, rowBase: u32, chunk4: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> work: array<f32>;
${gradBindings(k, 2)}
var<workgroup> red: array<f32, ${GRAM_WG * P}>;
@compute @workgroup_size(${GRAM_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let start = wid.x * params.chunk4;
  let end = min(start + params.chunk4, params.n4);
  ${pairs.map((_, e) => `var a${e} = vec4<f32>();`).join('\n  ')}
  for (var q = start + lid; q < end; q += ${GRAM_WG}u) {
    let keep = vec4<u32>(q * 4u) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(params.n);
      ${loads}
    ${pairs.map(([a, b], e) => `a${e} = fma(x${a}, x${b}, a${e});`).join('\n    ')}
  }
  ${pairs.map((_, e) => `red[lid * ${P}u + ${e}u] = (a${e}.x + a${e}.y) + (a${e}.z + a${e}.w);`).join('\n  ')}
  workgroupBarrier();
  if (lid < ${P}u) {
    var s = 0.0;
    for (var l = 0u; l < ${GRAM_WG}u; l++) { s += red[l * ${P}u + lid]; }
    work[(params.rowBase + wid.x) * ${P}u + lid] = s;
  }
}`;
}

/**
 * Combine kernel: out = Σ_j c_j·g_j for one tensor. A group whose gradients were not finite
 * (valid flag 0) gets a zero gradient, never NaN.
 */
function buildCombineShader(k: number): string {
  return /* wgsl */ `
struct Params { n4: u32, coefBase: u32, valid: u32, _pad: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> state: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;
${gradBindings(k, 3)}
${ENTRY_1D}
  if (i >= params.n4) { return; }
  if (state[params.valid] == 0.0) {
    dst[i] = vec4<f32>();
    return;
  }
  dst[i] = ${combineExpr(k)};
}`;
}

/**
 * Fused combine + optimizer update for one parameter tensor: g = Σ_j c_j·g_j, then the SGD or
 * AdamW rule in place. A group whose gradients were not finite leaves p and the state untouched.
 * Bindings: state, p, optimizer state (m[, v]), then the K gradients.
 */
function buildFusedShader(kind: OptimizerKind, k: number): string {
  const nState = kind === 'sgd' ? 2 : 3; // p + state buffers
  const o = OPTIMIZER_PARAMS[kind];
  return /* wgsl */ `
struct Params { n4: u32, coefBase: u32, valid: u32, ${o.u32} ${o.f32} }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> state: array<f32>;
${optimizerBindings(kind, 2, 'vec4<f32>')}
${gradBindings(k, 2 + nState)}
${kind === 'sgd' ? sgdUpdateFn('vec4<f32>') : adamwUpdateFn('vec4<f32>')}
${ENTRY_1D}
  if (i >= params.n4 || state[params.valid] == 0.0) { return; }
  let g = ${combineExpr(k)};
  ${optimizerApply(kind)}
}`;
}

export const gramShader = variants(buildGramShader);
export const combineShader = variants(buildCombineShader);
export const fusedUpdateShader = variants(buildFusedShader);
