// In-place optimizer updates, one dispatch per parameter tensor. The update rules are WGSL
// functions over `V` (f32 or vec4<f32>) so that the plain kernels here and the fused
// combine+update kernels of shaders/integrate.ts share one definition of each rule.
import { ENTRY_1D, variants } from './common.ts';
import { guardSkip } from './guard.ts';

export type OptimizerKind = 'sgd' | 'adamw';

/** SGD with momentum (PyTorch semantics, dampening 0): m = μm + (g + λp); p -= lr·(nesterov ? g + λp + μm : m). */
export const sgdUpdateFn = (V: string): string => /* wgsl */ `
struct SgdOut { p: ${V}, m: ${V} }
fn sgdUpdate(pv: ${V}, gv: ${V}, mv: ${V}, lr: f32, momentum: f32, wd: f32, nesterov: bool) -> SgdOut {
  let d = gv + wd * pv;
  let mi = momentum * mv + d;
  return SgdOut(pv - lr * select(mi, d + momentum * mi, nesterov), mi);
}`;

/**
 * AdamW (torch.optim.AdamW, amsgrad off): p ← p·(1 − lr·λ); m ← β1·m + (1 − β1)·g;
 * v ← β2·v + (1 − β2)·g²; p ← p − (lr / bc1)·m / (√v / √bc2 + ε), bc_i = 1 − β_i^t.
 * `stepSize` = lr / bc1 and `bc2sqrt` = √bc2 come from the host (float64, per step).
 */
export const adamwUpdateFn = (V: string): string => /* wgsl */ `
struct AdamOut { p: ${V}, m: ${V}, v: ${V} }
fn adamwUpdate(pv: ${V}, gv: ${V}, mv: ${V}, vv: ${V}, decay: f32, beta1: f32, beta2: f32, eps: f32, stepSize: f32, bc2sqrt: f32) -> AdamOut {
  let mi = beta1 * mv + (1.0 - beta1) * gv;
  let vi = beta2 * vv + (1.0 - beta2) * gv * gv;
  let denom = sqrt(vi) / bc2sqrt + eps;
  return AdamOut(pv * decay - stepSize * mi / denom, mi, vi);
}`;

/** Uniform fields each rule needs after the kernel's own u32 fields (u32 first, then f32). */
export const OPTIMIZER_PARAMS: Record<OptimizerKind, { u32: string; f32: string }> = {
  sgd: { u32: 'nesterov: u32,', f32: 'lr: f32, momentum: f32, wd: f32,' },
  adamw: { u32: '_pad: u32,', f32: 'decay: f32, beta1: f32, beta2: f32, eps: f32, stepSize: f32, bc2sqrt: f32,' },
};

/** The statement applying the rule to `p[i]` (and its state) with gradient `g` (Params struct named params). */
export function optimizerApply(kind: OptimizerKind): string {
  return kind === 'sgd'
    ? `let r = sgdUpdate(p[i], g, m[i], params.lr, params.momentum, params.wd, params.nesterov == 1u);
  p[i] = r.p;
  m[i] = r.m;`
    : `let r = adamwUpdate(p[i], g, m[i], v[i], params.decay, params.beta1, params.beta2, params.eps, params.stepSize, params.bc2sqrt);
  p[i] = r.p;
  m[i] = r.m;
  v[i] = r.v;`;
}

/** Storage bindings of the optimizer state, starting at binding `first` (p, m[, v]). */
export function optimizerBindings(kind: OptimizerKind, first: number, V: string): string {
  const names = kind === 'sgd' ? ['p', 'm'] : ['p', 'm', 'v'];
  return names.map((n, j) => `@group(0) @binding(${first + j}) var<storage, read_write> ${n}: array<${V}>;`).join('\n');
}

// Both plain kernels work on vec4s: pooled buffers are padded to 16 bytes, so the last vec4 is
// addressable; its lanes past the end only update padding. n = ceil(size / 4). The guarded
// variants bind a NonFiniteGuard's status after the gradient and skip a dropped step.
function buildOptimizerShader(kind: OptimizerKind, guarded: boolean): string {
  const grad = kind === 'sgd' ? 3 : 4;
  const guard = guardSkip(grad + 1);
  return /* wgsl */ `
struct Params { n: u32, ${OPTIMIZER_PARAMS[kind].u32} ${OPTIMIZER_PARAMS[kind].f32} }
@group(0) @binding(0) var<uniform> params: Params;
${optimizerBindings(kind, 1, 'vec4<f32>')}
@group(0) @binding(${grad}) var<storage, read> grad: array<vec4<f32>>;
${guarded ? guard.binding : ''}
${kind === 'sgd' ? sgdUpdateFn('vec4<f32>') : adamwUpdateFn('vec4<f32>')}
${ENTRY_1D}
  if (i >= params.n) { return; }
  ${guarded ? guard.skip : ''}
  let g = grad[i];
  ${optimizerApply(kind)}
}`;
}

/** Memoised plain kernel by kind, guarded or not (the fused ones live in shaders/integrate.ts). */
export const optimizerShader = variants(buildOptimizerShader);
