// The op table's types. Every differentiable op is named in OpAttrs; the table of backward
// rules in ops/index.ts is typed { [P in OpName]: Rule<P> }, so an op without a backward
// rule is a compile error. This module imports nothing, so it is always initialised first.
import type { Tensor } from './tensor.ts';

export interface OpAttrs {
  add: object; sub: object; mul: object; div: object;
  neg: object; exp: object; log: object; sqrt: object; relu: object; sigmoid: object; tanh: object;
  powScalar: { p: number }; addScalar: { c: number }; mulScalar: { c: number }; rdivScalar: { c: number };
  sum: { axes: number[]; keepdim: boolean };
  max: { axes: number[]; keepdim: boolean };
  reshape: object;
  permute: { perm: number[] };
  slice: { starts: number[] };
  concat: { axis: number };
  expand: object;
  matmul: { transA: boolean; transB: boolean };
  crossEntropy: { labelSmoothing: number };
  // CNN
  conv2d: { stride: [number, number]; padding: [number, number]; dilation: [number, number] };
  batchNorm2d: { training: boolean; eps: number; hasWeight: boolean; hasBias: boolean };
  maxPool2d: { kernel: [number, number]; stride: [number, number]; padding: [number, number] };
  avgPool2d: { kernel: [number, number]; stride: [number, number]; padding: [number, number]; countIncludePad: boolean };
  adaptiveAvgPool2d: object;
  // transformer
  layerNorm: { eps: number; weight: boolean; bias: boolean };
  gelu: { approximate: 'none' | 'tanh' };
  softmax: { axis: number }; logSoftmax: { axis: number };
  dropout: { p: number; seed: number };
  attention: { scale: number };
  // signals
  frameSignal: { frameLength: number; hop: number; padLeft: number; reflect: boolean };
}
export type OpName = keyof OpAttrs;

export interface OpContext<P extends OpName> {
  inputs: readonly Tensor[];
  out: Tensor;
  saved: readonly Tensor[];
  attrs: OpAttrs[P];
}
/** Given the upstream gradient, returns one gradient per input (null where none is needed). */
export type Rule<P extends OpName> = (ctx: OpContext<P>, gy: Tensor) => (Tensor | null)[];
export type RuleTable = { [P in OpName]: Rule<P> };

// Built on first use: the op modules import each other, so the table is assembled lazily.
let build: (() => RuleTable) | null = null;
let table: RuleTable | null = null;
export function setRules(make: () => RuleTable): void {
  build = make;
}
export function ruleFor<P extends OpName>(op: P): Rule<P> {
  table ??= build?.() ?? null;
  if (!table) throw new Error('engine op table not initialised (import from engine/index.ts)');
  return table[op] as Rule<P>;
}

/**
 * Backward for several upstream gradients at once (one per loss reaching the node, see
 * per-loss.ts): per cotangent, one gradient per input. Optional, per op.
 */
export type StackedRule<P extends OpName> = (ctx: OpContext<P>, gys: readonly Tensor[]) => (Tensor | null)[][];
const stacked: { [P in OpName]?: StackedRule<P> } = {};
export function setStackedRule<P extends OpName>(op: P, rule: StackedRule<P>): void {
  (stacked as Record<string, unknown>)[op] = rule;
}
export function stackedRuleFor<P extends OpName>(op: P): StackedRule<P> | undefined {
  return stacked[op] as StackedRule<P> | undefined;
}
