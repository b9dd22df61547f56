// crossEntropy: fused log-softmax + negative log-likelihood over the rows of (N, C) logits,
// with the semantics of torch.nn.functional.cross_entropy for class-index targets
// (ignore_index is not supported). With ε = labelSmoothing and w the class weights (1 if absent),
// the per-row loss is (PyTorch's cross_entropy_loss_label_smoothing):
//   ℓ_i = (1 − ε)·w_{y_i}·(−log p_{i,y_i}) + (ε/C)·Σ_c w_c·(−log p_{i,c})
// and the reductions are
//   'none': ℓ (N),  'sum': Σ_i ℓ_i,  'mean': Σ_i ℓ_i / Σ_i w_{y_i}  (= Σ ℓ_i / N without weights).
// Note PyTorch divides both the nll and the smoothing part of a weighted mean by Σ w_{y_i}, as here.
//
// The kernel produces the per-row losses (op 'crossEntropy', gradient to logits only); 'sum'
// and 'mean' compose with `sum` / `mulScalar` / `div`, so autograd flows through them.
// Labels get no gradient; class weights get none either, and a weight that requires grad is
// refused (PyTorch has no derivative for `weight` either).
// Labels outside [0, C): when the labels came from host data (`tensor(Int32Array…)`), their
// range is known without a readback and a bad label throws before any dispatch. Labels computed
// on the GPU are not read back to check (that would stall every call): the kernel writes a NaN
// loss for such a row (and a NaN weight term, so 'mean' and 'sum' are NaN, and a NaN gradient
// row), never a silently finite wrong value.
import { EngineError } from '../errors.ts';
import { isGradEnabled, record, type Rule } from '../graph.ts';
import type { Tensor } from '../tensor.ts';
import {
  crossEntropyBackwardKernel,
  crossEntropyForwardKernel,
  type CrossEntropyLayout,
} from '../../shaders/cross-entropy.ts';
import { checkFloat, checkLive, checkSameDevice, fmt, NAN_BITS, NINF_BITS, output } from './common.ts';
import { sum } from './reduce.ts';
import { div, mulScalar } from './elementwise.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    crossEntropy: { labelSmoothing: number };
  }
}

export interface CrossEntropyOptions {
  reduction?: 'mean' | 'sum' | 'none';
  /** ε in [0, 1): the target distribution is (1 − ε)·onehot + ε/C (default 0). */
  labelSmoothing?: number;
  /** float32 (C) class weights (no gradient). */
  weight?: Tensor;
}

/**
 * Kernel layout (shaders/cross-entropy.ts): one invocation per row (CE_ROW_WG rows per workgroup),
 * unless the rows are few and very long (C ≥ WIDE_RATIO·N and C ≥ WIDE_MIN_C), where that would
 * leave most of a real GPU idle; then one workgroup per row.
 */
const WIDE_RATIO = 64;
const WIDE_MIN_C = 4096;

function plan(n: number, c: number, eps: number, weighted: boolean) {
  const layout: CrossEntropyLayout = c >= WIDE_RATIO * n && c >= WIDE_MIN_C ? 'wide' : 'rows';
  const vec = c % 4 === 0;
  const params = {
    n,
    c,
    cv: vec ? c / 4 : c,
    nan: NAN_BITS,
    ninf: NINF_BITS,
    one_minus_eps: 1 - eps,
    eps_over_c: eps / c,
  };
  return { variant: { layout, weighted, vec }, params };
}

export function crossEntropy(logits: Tensor, labels: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const op = 'crossEntropy';
  const w = opts.weight;
  checkLive(op, logits, labels, ...(w ? [w] : []));
  checkFloat(op, logits);
  const dev = checkSameDevice(op, logits, labels, ...(w ? [w] : []));
  if (logits.rank !== 2) throw new EngineError(`${op}: logits must be 2-D (N, C), got ${fmt(logits.shape)}`);
  const [n, c] = logits.shape as [number, number];
  if (n === 0 || c === 0) throw new EngineError(`${op}: logits ${fmt(logits.shape)} are empty`);
  if (labels.dtype !== 'int32')
    throw new EngineError(`${op}: non-integer labels: expected int32 labels, got ${labels.dtype} ${fmt(labels.shape)}`);
  if (labels.rank !== 1 || labels.shape[0] !== n)
    throw new EngineError(
      `${op}: labels ${fmt(labels.shape)} do not match logits ${fmt(logits.shape)} (expected [${n}])`,
    );
  const r = labels.valueRange;
  if (r && (r[0] < 0 || r[1] >= c))
    throw new EngineError(
      `${op}: labels outside [0, ${c}): found ${r[0] < 0 ? r[0] : r[1]} for logits ${fmt(logits.shape)}`,
    );
  if (w) {
    checkFloat(op, w);
    if (w.rank !== 1 || w.shape[0] !== c)
      throw new EngineError(
        `${op}: weight ${fmt(w.shape)} does not match logits ${fmt(logits.shape)} (expected [${c}])`,
      );
    if (w.requiresGrad && isGradEnabled())
      throw new EngineError(`${op}: weight ${fmt(w.shape)} requires grad, but class weights get no gradient`);
  }
  const eps = opts.labelSmoothing ?? 0;
  if (typeof eps !== 'number' || !(eps >= 0 && eps < 1))
    throw new EngineError(`${op}: labelSmoothing ${eps} outside [0, 1) (logits ${fmt(logits.shape)})`);
  const reduction = opts.reduction ?? 'mean';
  if (reduction !== 'mean' && reduction !== 'sum' && reduction !== 'none')
    throw new EngineError(`${op}: unknown reduction '${String(reduction)}'`);

  const rows = output(dev, [n]);
  const tw = output(dev, [n]);
  const stats = output(dev, [n, 2]);
  dev.dispatch({
    kernel: crossEntropyForwardKernel,
    ...plan(n, c, eps, !!w),
    bindings: {
      xs: logits.rawBuffer,
      labels: labels.rawBuffer,
      loss: rows.rawBuffer,
      tw: tw.rawBuffer,
      stats: stats.rawBuffer,
      ...(w ? { weights: w.rawBuffer } : {}),
    },
  });
  const saved = [labels, stats, ...(w ? [w] : [])];
  const loss = record(rows, { op, inputs: [logits], attrs: { labelSmoothing: eps }, saved });
  stats.dispose(); // the graph (if any) retains its storage
  if (reduction === 'none') {
    tw.dispose();
    return loss;
  }
  const total = sum(loss);
  loss.dispose();
  if (reduction === 'sum') {
    tw.dispose();
    return total;
  }
  if (!w) {
    // Without weights, Σ_i w_{y_i} = N; tw still carries the NaN of an out-of-range label, but
    // that row's loss is NaN already.
    tw.dispose();
    const m = mulScalar(total, 1 / n);
    total.dispose();
    return m;
  }
  const denom = sum(tw); // no grad: tw is a plain tensor
  tw.dispose();
  const m = div(total, denom);
  total.dispose();
  denom.dispose();
  return m;
}

export const crossEntropyRules = {
  crossEntropy: ({ inputs: [x], saved: [labels, stats, w], attrs }, gy) => {
    const [n, c] = x!.shape as [number, number];
    const dx = output(x!.device, x!.shape);
    x!.device.dispatch({
      kernel: crossEntropyBackwardKernel,
      ...plan(n, c, attrs.labelSmoothing, !!w),
      bindings: {
        xs: x!.rawBuffer,
        labels: labels!.rawBuffer,
        stats: stats!.rawBuffer,
        gy: gy.rawBuffer,
        dx: dx.rawBuffer,
        ...(w ? { weights: w.rawBuffer } : {}),
      },
    });
    return [dx];
  },
} satisfies { crossEntropy: Rule<'crossEntropy'> };
