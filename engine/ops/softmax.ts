// softmax and logSoftmax along any axis (default the last), numerically safe at any magnitude,
// with fused backward kernels from the saved output (shaders/softmax.ts). Any axis runs in place
// on an (outer, D, inner) view: no permute, no intermediate tensors.
import { record } from '../autograd.ts';
import { EngineError } from '../device.ts';
import type { Rule } from '../rules.ts';
import type { Tensor } from '../tensor.ts';
import { SOFTMAX_ROW_WG, softmaxBackwardShader, softmaxForwardShader, type SoftmaxKind } from '../../shaders/softmax.ts';
import { checkFloat, checkLive, fmt, launch, normAxes, output } from './kernel.ts';
import { rowGroups } from './layernorm.ts';

interface RowView {
  rows: number;
  u32: number[];
  vec: boolean;
}

/** The (outer, D, inner) view of `shape` around `axis` as kernel parameters. */
function rowView(shape: readonly number[], axis: number): RowView {
  const d = shape[axis]!;
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const size = shape.reduce((a, b) => a * b, 1);
  const vec = inner === 1 && d % 4 === 0;
  const rows = size / d;
  return { rows, vec, u32: [rows, vec ? d / 4 : d, inner, 0xff800000 /* -inf */] };
}

function softmaxOp(kind: SoftmaxKind, x: Tensor, axis: number): Tensor {
  checkLive(kind, x);
  checkFloat(kind, x);
  if (x.rank === 0) throw new EngineError(`${kind}: x is a scalar ${fmt(x.shape)}; expected at least one axis`);
  const a = normAxes(kind, axis, x.rank, x.shape)[0]!;
  const y = output(x.device, x.shape);
  if (x.size === 0) return record(kind, [x], y, { axis: a }, [y]);
  const v = rowView(x.shape, a);
  launch(x.device, { op: kind, code: softmaxForwardShader(kind, v.vec), buffers: [x.rawBuffer, y.rawBuffer], u32: v.u32, groups: rowGroups(v.rows, SOFTMAX_ROW_WG) });
  return record(kind, [x], y, { axis: a }, [y]);
}

/** exp(x − max) / Σ exp(x − max) along `axis` (default −1). */
export function softmax(x: Tensor, axis = -1): Tensor {
  return softmaxOp('softmax', x, axis);
}

/** (x − max) − log Σ exp(x − max) along `axis` (default −1). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return softmaxOp('logSoftmax', x, axis);
}

const backwardRule = <K extends SoftmaxKind>(kind: K): Rule<K> => ({ saved: [y], attrs }, gy) => {
  const dx = output(y!.device, y!.shape);
  if (y!.size === 0) return [dx];
  const v = rowView(y!.shape, attrs.axis);
  launch(y!.device, {
    op: `${kind}Grad`, code: softmaxBackwardShader(kind, v.vec), buffers: [y!.rawBuffer, gy.rawBuffer, dx.rawBuffer],
    u32: v.u32, groups: rowGroups(v.rows, SOFTMAX_ROW_WG),
  });
  return [dx];
};

export const softmaxRules = {
  softmax: backwardRule('softmax'),
  logSoftmax: backwardRule('logSoftmax'),
} satisfies { softmax: Rule<'softmax'>; logSoftmax: Rule<'logSoftmax'> };
