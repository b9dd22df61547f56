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
import { flatKernel } from './common.ts';
import { kernel, type ParamDecl } from './kernel.ts';
import { ADAMW_RULE, SGD_RULE, stateBindings, type OptimizerRule } from './optim.ts';

/** Most losses an integrator combines: K gradient bindings + the optimizer's ≤ 4 stay under 16. */
export const MAX_LOSSES = 8;
/**
 * Invocations per Gram workgroup, and vec4s each Gram workgroup reduces (65536 floats; 256 vec4s
 * per invocation). On lavapipe 16384 measured faster than 4096 (fewer workgroups and rows; bench/README.md).
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

/** The K gradients of one tensor, bound as g0 … g{K−1}. */
const GRADIENTS = { read: 'vec4<f32>', count: (v: { k: number }) => v.k } as const;

/** Σ_j c_j·g_j at vec4 index i with c read from state at params.coefBase (workgroup-uniform loads). */
const combineExpr = (k: number): string =>
  Array.from({ length: k }, (_, j) => `state[params.coefBase + ${j}u] * g${j}[i]`).join(' + ');

/**
 * Gram kernel: one workgroup reduces GRAM_CHUNK4 vec4s of each of the K gradients of one tensor
 * into the P sums g_a·g_b, each invocation keeping P vec4 accumulators, then a workgroup tree
 * (one barrier per level, after the streaming loop) and one row of P partials written at
 * work[(rowBase + workgroup) · P]. No atomics: the result does not depend on scheduling.
 */
export const gramKernel = kernel({
  name: 'integrateGram',
  variant: { k: 2 },
  params: { n: 'u32', n4: 'u32', rowBase: 'u32', chunk4: 'u32' },
  bindings: { work: { write: 'f32' }, g: GRADIENTS },
  workgroupSize: GRAM_WG,
  builtins: { wid: 'workgroup_id', lid: 'local_invocation_index' },
  prelude: ({ k }) => `var<workgroup> red: array<f32, ${GRAM_WG * gramPairs(k).length}>;`,
  main: ({ k }) => {
    const pairs = gramPairs(k);
    const P = pairs.length;
    const loads = Array.from({ length: k }, (_, j) => `let x${j} = select(vec4<f32>(), g${j}[q], keep);`).join(
      '\n      ',
    );
    return `  let start = wid.x * params.chunk4;
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
  }`;
  },
  grid: (p) => [Math.ceil(p.n4 / p.chunk4)],
});

/**
 * Combine kernel: out = Σ_j c_j·g_j for one tensor. A group whose gradients were not finite
 * (valid flag 0) gets a zero gradient, never NaN.
 */
export const combineKernel = flatKernel({
  name: 'integrateCombine',
  variant: { k: 2 },
  params: { n4: 'u32', coefBase: 'u32', valid: 'u32' },
  bindings: { state: { read: 'f32' }, dst: { write: 'vec4<f32>' }, g: GRADIENTS },
  main: ({ k }) => `  if (i >= params.n4) { return; }
  if (state[params.valid] == 0.0) {
    dst[i] = vec4<f32>();
    return;
  }
  dst[i] = ${combineExpr(k)};`,
  count: (p) => p.n4,
});

/**
 * Fused combine + optimizer update for one parameter tensor: g = Σ_j c_j·g_j, then the SGD or
 * AdamW rule in place. A group whose gradients were not finite leaves p and the state untouched.
 * Bindings: state, p, optimizer state (m[, v]), then the K gradients.
 */
function fusedKernel<P extends ParamDecl, S extends string>(rule: OptimizerRule<P, S>) {
  return flatKernel({
    name: `integrate+${rule.name}`,
    variant: { k: 2 },
    params: { n4: 'u32', coefBase: 'u32', valid: 'u32', ...rule.params } as {
      n4: 'u32';
      coefBase: 'u32';
      valid: 'u32';
    } & P,
    bindings: { state: { read: 'f32' }, p: { write: 'vec4<f32>' }, ...stateBindings(rule.state), g: GRADIENTS },
    prelude: () => rule.fn('vec4<f32>'),
    main: ({ k }) => `  if (i >= params.n4 || state[params.valid] == 0.0) { return; }
  let g = ${combineExpr(k)};
  ${rule.apply}`,
    count: (p) => Number(p.n4), // P is generic here, so n4's value type is not narrowed to number
  });
}

export const fusedSgdKernel = fusedKernel(SGD_RULE);
export const fusedAdamwKernel = fusedKernel(ADAMW_RULE);
