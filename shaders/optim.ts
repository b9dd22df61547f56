// In-place optimizer updates, one dispatch per parameter tensor. Each rule is a WGSL function
// over `V` (f32 or vec4<f32>) with its uniforms and state buffers, declared once (OptimizerRule),
// so that the plain kernels here and the fused combine+update kernels of shaders/integrate.ts
// share one definition of each rule.
import { flatKernel } from './common.ts';
import { GUARD_SKIP } from './guard.ts';
import type { ParamDecl } from './kernel.ts';

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
fn adamwUpdate(pv: ${V}, gv: ${V}, mv: ${V}, vv: ${V}, decay: f32, beta1: f32, beta2: f32, eps: f32,
               stepSize: f32, bc2sqrt: f32) -> AdamOut {
  let mi = beta1 * mv + (1.0 - beta1) * gv;
  let vi = beta2 * vv + (1.0 - beta2) * gv * gv;
  let denom = sqrt(vi) / bc2sqrt + eps;
  return AdamOut(pv * decay - stepSize * mi / denom, mi, vi);
}`;

/** An update rule: its uniforms, its per-parameter state buffers (after p), its function, its statement. */
export interface OptimizerRule<P extends ParamDecl, S extends string> {
  name: string;
  params: P;
  state: readonly S[];
  /** WGSL function(s) of the rule over V. */
  fn: (V: string) => string;
  /** Applies the rule to p[i] (and its state) with gradient `g`. */
  apply: string;
}

export const SGD_RULE = {
  name: 'sgd',
  params: { nesterov: 'u32', lr: 'f32', momentum: 'f32', wd: 'f32' },
  state: ['m'],
  fn: sgdUpdateFn,
  apply: `let r = sgdUpdate(p[i], g, m[i], params.lr, params.momentum, params.wd, params.nesterov == 1u);
  p[i] = r.p;
  m[i] = r.m;`,
} as const satisfies OptimizerRule<ParamDecl, string>;

export const ADAMW_RULE = {
  name: 'adamw',
  params: { decay: 'f32', beta1: 'f32', beta2: 'f32', eps: 'f32', stepSize: 'f32', bc2sqrt: 'f32' },
  state: ['m', 'v'],
  fn: adamwUpdateFn,
  apply: `let r = adamwUpdate(p[i], g, m[i], v[i], params.decay, params.beta1, params.beta2, params.eps,
                            params.stepSize, params.bc2sqrt);
  p[i] = r.p;
  m[i] = r.m;
  v[i] = r.v;`,
} as const satisfies OptimizerRule<ParamDecl, string>;

/** The state buffers of a rule as read_write vec4 bindings, named as in its WGSL. */
export function stateBindings<S extends string>(names: readonly S[]): Record<S, { write: string }> {
  return Object.fromEntries(names.map((n) => [n, { write: 'vec4<f32>' }])) as Record<S, { write: string }>;
}

/**
 * The plain update kernel of a rule: p (and its state) updated in place from `grad`. Both work on
 * vec4s: pooled buffers are padded to 16 bytes, so the last vec4 is addressable; its lanes past
 * the end only update padding. n = ceil(size / 4). The guarded variant binds a NonFiniteGuard's
 * status after the gradient and skips a step the guard dropped.
 */
export function optimizerKernel<P extends ParamDecl, S extends string>(rule: OptimizerRule<P, S>) {
  return flatKernel({
    name: rule.name,
    variant: { guarded: false },
    params: { n: 'u32', ...rule.params } as { n: 'u32' } & P,
    bindings: {
      p: { write: 'vec4<f32>' },
      ...stateBindings(rule.state),
      grad: { read: 'vec4<f32>' },
      guard: { read: 'u32', if: (v: { guarded: boolean }) => v.guarded },
    },
    prelude: () => rule.fn('vec4<f32>'),
    main: ({ guarded }) => `  if (i >= params.n) { return; }
  ${guarded ? GUARD_SKIP : ''}
  let g = grad[i];
  ${rule.apply}`,
    count: (p) => Number(p.n), // P is generic here, so n's value type is not narrowed to number
  });
}

export const sgdKernel = optimizerKernel(SGD_RULE);
export const adamwKernel = optimizerKernel(ADAMW_RULE);
