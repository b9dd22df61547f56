// batchNorm2d with the semantics of torch.nn.functional.batch_norm on (N, C, H, W) or (N, C):
// training normalises with the batch statistics over N, H, W (biased variance) and, when running
// stats are given, updates them in place on the GPU (running_var with the unbiased variance);
// eval normalises with the running statistics. weight and bias (C) are optional.
// Forward: a statistics kernel + an apply kernel. Backward: a per-channel reduction kernel
// (giving dweight, dbias and the dx coefficients) + an apply kernel. See shaders/batchnorm.ts.
// The op 'batchNorm2d' has inputs [x, weight?, bias?]; the running stats are buffers outside the
// graph, and the per-channel stats tensor (C, 4) is saved for backward. A running-stat update
// that would not be finite (NaN or Inf in the batch) is skipped for that channel and counted in
// device.nonFiniteCounters (read by device.readNonFiniteCounts() and by NonFiniteGuard): running
// statistics never become NaN, where PyTorch would write it.
import type { Device } from '../device.ts';
import { EngineError } from '../errors.ts';
import { record, type Rule } from '../graph.ts';
import type { Tensor } from '../tensor.ts';
import {
  BATCHNORM_ROW_MIN,
  batchNormApplyKernel,
  batchNormBackwardReduceKernel,
  batchNormEvalStatsKernel,
  batchNormReduceLayout,
  batchNormStatsKernel,
} from '../../shaders/batchnorm.ts';
import { checkFloat, checkLive, checkSameDevice, fmt, output } from './common.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    batchNorm2d: { training: boolean; eps: number; hasWeight: boolean; hasBias: boolean };
  }
}

export interface BatchNormOptions {
  training: boolean;
  /** Weight of the new batch statistic in the running-stat update (default 0.1). */
  momentum?: number;
  /** Added to the variance before the square root (default 1e-5). */
  eps?: number;
}

/** Geometry of x as (N, C, S): S in vec4 units when S % 4 == 0. */
interface Layout {
  n: number;
  c: number;
  s: number;
  vec: boolean;
  su: number;
}

function layoutOf(x: Tensor): Layout {
  const [n, c, h = 1, w = 1] = x.shape as number[];
  const s = h * w;
  const vec = s % 4 === 0;
  return { n: n!, c: c!, s, vec, su: vec ? s / 4 : s };
}

/** Uniforms of the per-channel kernels (CHANNEL_PARAMS in the shader). */
function channelParams(l: Layout, training: boolean, eps: number, momentum: number) {
  const m = l.n * l.s;
  return {
    n: l.n,
    c: l.c,
    su: l.su,
    csu: l.c * l.su,
    count: m,
    training: training ? 1 : 0,
    eps,
    momentum,
    unbias: m > 1 ? m / (m - 1) : 0,
  };
}

function apply(
  dev: Device,
  op: string,
  l: Layout,
  backward: boolean,
  x: Tensor,
  coef: Tensor,
  out: Tensor,
  gy?: Tensor,
): void {
  const units = (l.n * l.c * l.s) / (l.vec ? 4 : 1);
  dev.dispatch({
    kernel: batchNormApplyKernel,
    op,
    variant: { vec: l.vec, backward, rows: l.su >= BATCHNORM_ROW_MIN },
    params: { units, su: l.su, c: l.c },
    bindings: { xs: x.rawBuffer, cs: coef.rawBuffer, out: out.rawBuffer, ...(gy ? { gy: gy.rawBuffer } : {}) },
  });
}

export function batchNorm2d(
  x: Tensor,
  weight: Tensor | null,
  bias: Tensor | null,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  opts: BatchNormOptions,
): Tensor {
  const op = 'batchNorm2d';
  const affineParams = [weight, bias].filter((t): t is Tensor => t !== null);
  const running = [runningMean, runningVar].filter((t): t is Tensor => t !== null);
  checkLive(op, x, ...affineParams, ...running);
  checkFloat(op, x, ...affineParams, ...running);
  const dev = checkSameDevice(op, x, ...affineParams, ...running);
  if (x.rank !== 4 && x.rank !== 2)
    throw new EngineError(`${op}: expected 4-D (N, C, H, W) or 2-D (N, C) input, got ${fmt(x.shape)}`);
  if (x.size === 0) throw new EngineError(`${op}: input ${fmt(x.shape)} is empty`);
  const l = layoutOf(x);
  for (const [name, t] of [
    ['weight', weight],
    ['bias', bias],
    ['runningMean', runningMean],
    ['runningVar', runningVar],
  ] as const) {
    if (t && (t.rank !== 1 || t.shape[0] !== l.c))
      throw new EngineError(`${op}: ${name} ${fmt(t.shape)} does not match input ${fmt(x.shape)} (expected [${l.c}])`);
  }
  if ((runningMean === null) !== (runningVar === null))
    throw new EngineError(`${op}: give both runningMean and runningVar, or neither (input ${fmt(x.shape)})`);
  const training = opts.training;
  const eps = opts.eps ?? 1e-5;
  const momentum = opts.momentum ?? 0.1;
  if (typeof training !== 'boolean') throw new EngineError(`${op}: opts.training must be a boolean`);
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new EngineError(`${op}: eps ${eps} must be a finite number >= 0`);
  if (!Number.isFinite(momentum)) throw new EngineError(`${op}: momentum ${momentum} must be a finite number`);
  if (training && l.n * l.s === 1)
    throw new EngineError(`${op}: Expected more than 1 value per channel when training, got input ${fmt(x.shape)}`);
  if (!training && !runningMean)
    throw new EngineError(
      `${op}: eval mode (training: false) needs runningMean and runningVar (input ${fmt(x.shape)})`,
    );

  const stats = output(dev, [l.c, 4]);
  const hasW = weight !== null;
  const hasB = bias !== null;
  const affine = { ...(weight ? { weight: weight.rawBuffer } : {}), ...(bias ? { bias: bias.rawBuffer } : {}) };
  const params = channelParams(l, training, eps, momentum);
  if (training) {
    const wg = batchNormReduceLayout(l.n * l.s, l.n * l.su);
    const stored =
      runningMean && runningVar
        ? { running_mean: runningMean.rawBuffer, running_var: runningVar.rawBuffer, nonfinite: dev.nonFiniteCounters }
        : {};
    dev.dispatch({
      kernel: batchNormStatsKernel,
      variant: { vec: l.vec, wg, hasWeight: hasW, hasBias: hasB, running: running.length > 0 },
      params,
      bindings: { xs: x.rawBuffer, stats: stats.rawBuffer, ...affine, ...stored },
    });
  } else {
    dev.dispatch({
      kernel: batchNormEvalStatsKernel,
      variant: { hasWeight: hasW, hasBias: hasB },
      params,
      bindings: {
        running_mean: runningMean!.rawBuffer,
        running_var: runningVar!.rawBuffer,
        stats: stats.rawBuffer,
        ...affine,
      },
    });
  }
  const y = output(dev, x.shape);
  apply(dev, op, l, false, x, stats, y);
  const out = record(y, {
    op,
    inputs: [x, ...affineParams],
    attrs: { training, eps, hasWeight: hasW, hasBias: hasB },
    saved: [stats],
  });
  stats.dispose(); // the graph (if any) retains its storage
  return out;
}

export const batchNormRules = {
  batchNorm2d: ({ inputs, saved: [stats], attrs }, gy) => {
    const x = inputs[0]!;
    const weight = attrs.hasWeight ? inputs[1]! : null;
    const dev = x.device;
    const l = layoutOf(x);
    const dweight = output(dev, [l.c]);
    const dbias = output(dev, [l.c]);
    const coef = output(dev, [l.c, 4]);
    dev.dispatch({
      kernel: batchNormBackwardReduceKernel,
      variant: { vec: l.vec, wg: batchNormReduceLayout(l.n * l.s, l.n * l.su), hasWeight: !!weight },
      params: channelParams(l, attrs.training, attrs.eps, 0),
      bindings: {
        xs: x.rawBuffer,
        gy: gy.rawBuffer,
        stats: stats!.rawBuffer,
        dweight: dweight.rawBuffer,
        dbias: dbias.rawBuffer,
        coef: coef.rawBuffer,
        ...(weight ? { weight: weight.rawBuffer } : {}),
      },
    });
    const dx = output(dev, x.shape);
    apply(dev, 'batchNorm2dGrad', l, true, x, coef, dx, gy);
    coef.dispose();
    const grads: Tensor[] = [dx];
    if (attrs.hasWeight) grads.push(dweight);
    else dweight.dispose();
    if (attrs.hasBias) grads.push(dbias);
    else dbias.dispose();
    return grads;
  },
} satisfies { batchNorm2d: Rule<'batchNorm2d'> };
