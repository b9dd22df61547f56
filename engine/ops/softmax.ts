// softmax and logSoftmax along any axis (default the last), numerically safe at any magnitude,
// with fused backward kernels from the saved output (shaders/softmax.ts). Any axis runs in place
// on an (outer, D, inner) view: no permute, no intermediate tensors.
import { EngineError } from '../errors.ts';
import { record, type Rule } from '../graph.ts';
import type { Tensor } from '../tensor.ts';
import { softmaxBackwardKernel, softmaxForwardKernel, type SoftmaxKind } from '../../shaders/softmax.ts';
import { checkFloat, checkLive, fmt, NINF_BITS, normAxes, output } from './common.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    softmax: { axis: number };
    logSoftmax: { axis: number };
  }
}

/** The (outer, D, inner) view of `shape` around `axis` as kernel parameters, and the vec4 variant. */
function rowView(shape: readonly number[], axis: number) {
  const d = shape[axis]!;
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const size = shape.reduce((a, b) => a * b, 1);
  const vec = inner === 1 && d % 4 === 0;
  return { vec, params: { n: size / d, dv: vec ? d / 4 : d, inner, ninf: NINF_BITS } };
}

function softmaxOp(kind: SoftmaxKind, x: Tensor, axis: number): Tensor {
  checkLive(kind, x);
  checkFloat(kind, x);
  if (x.rank === 0) throw new EngineError(`${kind}: x is a scalar ${fmt(x.shape)}; expected at least one axis`);
  const a = normAxes(kind, axis, x.rank, x.shape)[0]!;
  const y = output(x.device, x.shape);
  if (x.size === 0) return record(y, { op: kind, inputs: [x], attrs: { axis: a }, saved: [y] });
  const v = rowView(x.shape, a);
  x.device.dispatch({
    kernel: softmaxForwardKernel,
    op: kind,
    variant: { kind, vec: v.vec },
    params: v.params,
    bindings: { xs: x.rawBuffer, ys: y.rawBuffer },
  });
  return record(y, { op: kind, inputs: [x], attrs: { axis: a }, saved: [y] });
}

/** exp(x − max) / Σ exp(x − max) along `axis` (default −1). */
export function softmax(x: Tensor, axis = -1): Tensor {
  return softmaxOp('softmax', x, axis);
}

/** (x − max) − log Σ exp(x − max) along `axis` (default −1). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return softmaxOp('logSoftmax', x, axis);
}

const backwardRule =
  <K extends SoftmaxKind>(kind: K): Rule<K> =>
  ({ saved: [y], attrs }, gy) => {
    const dx = output(y!.device, y!.shape);
    if (y!.size === 0) return [dx];
    const v = rowView(y!.shape, attrs.axis);
    y!.device.dispatch({
      kernel: softmaxBackwardKernel,
      op: `${kind}Grad`,
      variant: { kind, vec: v.vec },
      params: v.params,
      bindings: { ys: y!.rawBuffer, gy: gy.rawBuffer, dx: dx.rawBuffer },
    });
    return [dx];
  };

export const softmaxRules = {
  softmax: backwardRule('softmax'),
  logSoftmax: backwardRule('logSoftmax'),
} satisfies { softmax: Rule<'softmax'>; logSoftmax: Rule<'logSoftmax'> };
