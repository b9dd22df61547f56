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
import { record } from '../autograd.ts';
import { EngineError, type Device } from '../device.ts';
import type { Rule } from '../rules.ts';
import type { Tensor } from '../tensor.ts';
import {
  BATCHNORM_ROW_MIN, batchNormApplyShader, batchNormBackwardReduceShader, batchNormEvalStatsShader, batchNormReduceLayout, batchNormStatsShader,
} from '../../shaders/batchnorm.ts';
import { checkFloat, checkLive, checkSameDevice, fmt, grid1d, launch, output } from './kernel.ts';

export interface BatchNormOptions {
  training: boolean;
  /** Weight of the new batch statistic in the running-stat update (default 0.1). */
  momentum?: number;
  /** Added to the variance before the square root (default 1e-5). */
  eps?: number;
}

/** Geometry of x as (N, C, S): S in vec4 units when S % 4 == 0. */
interface Layout {
  n: number; c: number; s: number; vec: boolean; su: number;
}

function layoutOf(x: Tensor): Layout {
  const [n, c, h = 1, w = 1] = x.shape as number[];
  const s = h * w;
  const vec = s % 4 === 0;
  return { n: n!, c: c!, s, vec, su: vec ? s / 4 : s };
}

/** Layout (see batchNormReduceLayout) and grid of the per-channel kernels. */
function channelLaunch(l: Layout): { wg: number; groups: [number, number] } {
  const wg = batchNormReduceLayout(l.n * l.s, l.n * l.su);
  return { wg, groups: wg === 0 ? [Math.ceil(l.c / 64), 1] : channelGrid(l.c) };
}

/** One workgroup per channel (or row), past 65535 continuing on grid y. */
function channelGrid(c: number): [number, number] {
  if (c <= 65535) return [c, 1];
  const y = Math.ceil(c / 65535);
  return [Math.ceil(c / y), y];
}

/** Uniforms of the per-channel kernels (CHANNEL_PARAMS in the shader). */
function channelParams(l: Layout, training: boolean, eps: number, momentum: number): { u32: number[]; f32: number[] } {
  const m = l.n * l.s;
  return { u32: [l.n, l.c, l.su, l.c * l.su, m, training ? 1 : 0], f32: [eps, momentum, m > 1 ? m / (m - 1) : 0] };
}

function apply(dev: Device, op: string, l: Layout, backward: boolean, x: Tensor, coef: Tensor, out: Tensor, gy?: Tensor): void {
  const units = (l.n * l.c * l.s) / (l.vec ? 4 : 1);
  const buffers = [x.rawBuffer, coef.rawBuffer, out.rawBuffer, ...(gy ? [gy.rawBuffer] : [])];
  const rows = l.su >= BATCHNORM_ROW_MIN;
  const groups = rows ? channelGrid(l.n * l.c) : grid1d(units);
  launch(dev, { op, code: batchNormApplyShader(l.vec, backward, rows), buffers, u32: [units, l.su, l.c], groups });
}

export function batchNorm2d(
  x: Tensor, weight: Tensor | null, bias: Tensor | null, runningMean: Tensor | null, runningVar: Tensor | null, opts: BatchNormOptions,
): Tensor {
  const op = 'batchNorm2d';
  const params = [weight, bias].filter((t): t is Tensor => t !== null);
  const running = [runningMean, runningVar].filter((t): t is Tensor => t !== null);
  checkLive(op, x, ...params, ...running);
  checkFloat(op, x, ...params, ...running);
  const dev = checkSameDevice(op, x, ...params, ...running);
  if (x.rank !== 4 && x.rank !== 2) throw new EngineError(`${op}: expected 4-D (N, C, H, W) or 2-D (N, C) input, got ${fmt(x.shape)}`);
  if (x.size === 0) throw new EngineError(`${op}: input ${fmt(x.shape)} is empty`);
  const l = layoutOf(x);
  for (const [name, t] of [['weight', weight], ['bias', bias], ['runningMean', runningMean], ['runningVar', runningVar]] as const) {
    if (t && (t.rank !== 1 || t.shape[0] !== l.c)) throw new EngineError(`${op}: ${name} ${fmt(t.shape)} does not match input ${fmt(x.shape)} (expected [${l.c}])`);
  }
  if ((runningMean === null) !== (runningVar === null)) throw new EngineError(`${op}: give both runningMean and runningVar, or neither (input ${fmt(x.shape)})`);
  const training = opts.training;
  const eps = opts.eps ?? 1e-5;
  const momentum = opts.momentum ?? 0.1;
  if (typeof training !== 'boolean') throw new EngineError(`${op}: opts.training must be a boolean`);
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new EngineError(`${op}: eps ${eps} must be a finite number >= 0`);
  if (!Number.isFinite(momentum)) throw new EngineError(`${op}: momentum ${momentum} must be a finite number`);
  if (training && l.n * l.s === 1) throw new EngineError(`${op}: Expected more than 1 value per channel when training, got input ${fmt(x.shape)}`);
  if (!training && !runningMean) throw new EngineError(`${op}: eval mode (training: false) needs runningMean and runningVar (input ${fmt(x.shape)})`);

  const stats = output(dev, [l.c, 4]);
  const hasW = weight !== null;
  const hasB = bias !== null;
  const affine = [...(weight ? [weight.rawBuffer] : []), ...(bias ? [bias.rawBuffer] : [])];
  const p = channelParams(l, training, eps, momentum);
  if (training) {
    const { wg, groups } = channelLaunch(l);
    const buffers = [x.rawBuffer, stats.rawBuffer, ...affine, ...running.map((t) => t.rawBuffer), ...(running.length ? [dev.nonFiniteCounters] : [])];
    launch(dev, { op: `${op}Stats`, code: batchNormStatsShader(l.vec, wg, hasW, hasB, running.length > 0), buffers, ...p, groups });
  } else {
    const buffers = [runningMean!.rawBuffer, runningVar!.rawBuffer, stats.rawBuffer, ...affine];
    launch(dev, { op: `${op}EvalStats`, code: batchNormEvalStatsShader(hasW, hasB), buffers, ...p, groups: grid1d(l.c) });
  }
  const y = output(dev, x.shape);
  apply(dev, op, l, false, x, stats, y);
  const out = record(op, [x, ...params], y, { training, eps, hasWeight: hasW, hasBias: hasB }, [stats]);
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
    const { wg, groups } = channelLaunch(l);
    const buffers = [x.rawBuffer, gy.rawBuffer, stats!.rawBuffer, dweight.rawBuffer, dbias.rawBuffer, coef.rawBuffer, ...(weight ? [weight.rawBuffer] : [])];
    launch(dev, {
      op: 'batchNorm2dGradReduce', code: batchNormBackwardReduceShader(l.vec, wg, !!weight), buffers,
      ...channelParams(l, attrs.training, attrs.eps, 0), groups,
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
