// maxPool2d, avgPool2d and adaptiveAvgPool2d on (N, C, H, W), with the semantics of
// torch.nn.functional's max_pool2d / avg_pool2d (ceil_mode false, no dilation) and
// adaptive_avg_pool2d. Output size floor((H + 2p − k)/s) + 1; padding at most half the kernel.
// maxPool2d saves int32 argmax indices (y·W + x within the plane) for its backward; every backward
// is a gather kernel (see shaders/pool.ts); max-pool backward with strides ≤ POOL_BLOCK_MAX
// takes one block of s_h × s_w elements per invocation, and a global (1×1) adaptive average its
// own broadcast kernel.
import { EngineError } from '../errors.ts';
import { record, type Rule } from '../graph.ts';
import type { Tensor } from '../tensor.ts';
import {
  adaptiveAvgPoolBackwardKernel,
  adaptiveAvgPoolForwardKernel,
  avgPoolBackwardKernel,
  avgPoolForwardKernel,
  globalAvgPoolBackwardKernel,
  maxPoolBackwardBlocksKernel,
  maxPoolBackwardKernel,
  maxPoolForwardKernel,
  POOL_BLOCK_MAX,
  POOL_UNROLL_MAX,
  poolWorkgroupSize,
} from '../../shaders/pool.ts';
import { checkFloat, checkLive, fmt, output } from './common.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    maxPool2d: { kernel: [number, number]; stride: [number, number]; padding: [number, number] };
    avgPool2d: {
      kernel: [number, number];
      stride: [number, number];
      padding: [number, number];
      countIncludePad: boolean;
    };
    adaptiveAvgPool2d: object;
  }
}

export interface Pool2dOptions {
  kernelSize: number | [number, number];
  /** Default: kernelSize. */
  stride?: number | [number, number];
  /** Zero (avg) or −inf (max) padding on both sides, at most kernelSize / 2 (default 0). */
  padding?: number | [number, number];
}

interface Geometry {
  kernel: [number, number];
  stride: [number, number];
  padding: [number, number];
}

const PLANE_MAX = 2 ** 19;

const pair = (v: number | [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

function check4d(op: string, x: Tensor): [number, number, number, number] {
  checkLive(op, x);
  checkFloat(op, x);
  if (x.rank !== 4) throw new EngineError(`${op}: expected 4-D (N, C, H, W) input, got ${fmt(x.shape)}`);
  if (x.size === 0) throw new EngineError(`${op}: input ${fmt(x.shape)} is empty`);
  // The kernels divide plane coordinates in float, exact below 2^20 (shaders/pool.ts).
  if (x.shape[2]! * x.shape[3]! >= PLANE_MAX)
    throw new EngineError(`${op}: planes of ${fmt(x.shape)} exceed the supported ${PLANE_MAX} elements`);
  return x.shape as [number, number, number, number];
}

function geometry(op: string, x: Tensor, opts: Pool2dOptions): Geometry & { oh: number; ow: number } {
  const [, , h, w] = check4d(op, x);
  const kernel = pair(opts.kernelSize);
  const stride = pair(opts.stride ?? opts.kernelSize);
  const padding = pair(opts.padding ?? 0);
  const isInt = (v: [number, number], min: number) => v.every((d) => Number.isInteger(d) && d >= min);
  if (!isInt(kernel, 1))
    throw new EngineError(`${op}: kernelSize [${kernel}] must be positive integers (input ${fmt(x.shape)})`);
  if (!isInt(stride, 1))
    throw new EngineError(`${op}: stride [${stride}] must be positive integers (input ${fmt(x.shape)})`);
  if (!isInt(padding, 0))
    throw new EngineError(`${op}: padding [${padding}] must be non-negative integers (input ${fmt(x.shape)})`);
  if (padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2) {
    throw new EngineError(
      `${op}: padding [${padding}] should be at most half of kernelSize [${kernel}] (input ${fmt(x.shape)})`,
    );
  }
  if (h + 2 * padding[0] < kernel[0] || w + 2 * padding[1] < kernel[1]) {
    throw new EngineError(
      `${op}: kernelSize [${kernel}] is larger than the padded input ${fmt(x.shape)} with padding [${padding}]`,
    );
  }
  const oh = Math.floor((h + 2 * padding[0] - kernel[0]) / stride[0]) + 1;
  const ow = Math.floor((w + 2 * padding[1] - kernel[1]) / stride[1]) + 1;
  return { kernel, stride, padding, oh, ow };
}

/** The uniform Params of the pooling kernels (shaders/pool.ts). */
interface PoolParams {
  planes: number;
  h: number;
  w: number;
  oh: number;
  ow: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
  include_pad: number;
  ny: number;
  nx: number;
  nby: number;
  nbx: number;
}

/** Windows: ny, nx = ⌈k/s⌉ windows per axis can contain an input element. */
function windowParams(
  planes: number,
  x: readonly number[],
  oh: number,
  ow: number,
  g: Geometry,
  includePad = false,
): PoolParams {
  const [k, s, p] = [g.kernel, g.stride, g.padding];
  return {
    planes,
    h: x[2]!,
    w: x[3]!,
    oh,
    ow,
    kh: k[0],
    kw: k[1],
    sh: s[0],
    sw: s[1],
    ph: p[0],
    pw: p[1],
    include_pad: includePad ? 1 : 0,
    ny: Math.ceil(k[0] / s[0]),
    nx: Math.ceil(k[1] / s[1]),
    nby: 0,
    nbx: 0,
  };
}

/** Adaptive bins along L → O are at most ⌈L/O⌉ + 1 long (kh, kw); a position lies in at most ⌈O/L⌉ + 1 (ny, nx). */
function binParams(planes: number, x: readonly number[], oh: number, ow: number): PoolParams {
  const [h, w] = [x[2]!, x[3]!];
  const span = (l: number, o: number) => Math.ceil(l / o) + 1;
  return {
    planes,
    h,
    w,
    oh,
    ow,
    kh: span(h, oh),
    kw: span(w, ow),
    sh: 1,
    sw: 1,
    ph: 0,
    pw: 0,
    include_pad: 0,
    ny: span(oh, h),
    nx: span(ow, w),
    nby: 0,
    nbx: 0,
  };
}

export function maxPool2d(x: Tensor, opts: Pool2dOptions): Tensor {
  const op = 'maxPool2d';
  const g = geometry(op, x, opts);
  const [n, c] = x.shape as number[];
  const y = output(x.device, [n!, c!, g.oh, g.ow]);
  const argmax = output(x.device, y.shape, 'int32');
  x.device.dispatch({
    kernel: maxPoolForwardKernel,
    variant: { wg: poolWorkgroupSize(g.oh * g.ow) },
    params: windowParams(n! * c!, x.shape, g.oh, g.ow, g),
    bindings: { xs: x.rawBuffer, ys: y.rawBuffer, argmax: argmax.rawBuffer },
  });
  const out = record(y, {
    op,
    inputs: [x],
    attrs: { kernel: g.kernel, stride: g.stride, padding: g.padding },
    saved: [argmax],
  });
  argmax.dispose(); // the graph (if any) retains its storage
  return out;
}

export function avgPool2d(x: Tensor, opts: Pool2dOptions & { countIncludePad?: boolean }): Tensor {
  const op = 'avgPool2d';
  const g = geometry(op, x, opts);
  const countIncludePad = opts.countIncludePad ?? true;
  const [n, c] = x.shape as number[];
  const y = output(x.device, [n!, c!, g.oh, g.ow]);
  x.device.dispatch({
    kernel: avgPoolForwardKernel,
    variant: { wg: poolWorkgroupSize(g.oh * g.ow) },
    params: windowParams(n! * c!, x.shape, g.oh, g.ow, g, countIncludePad),
    bindings: { xs: x.rawBuffer, ys: y.rawBuffer },
  });
  return record(y, {
    op,
    inputs: [x],
    attrs: { kernel: g.kernel, stride: g.stride, padding: g.padding, countIncludePad },
  });
}

/** Average over PyTorch's adaptive bins: output (N, C, oh, ow) for any oh, ow ≥ 1. */
export function adaptiveAvgPool2d(x: Tensor, outputSize: number | [number, number]): Tensor {
  const op = 'adaptiveAvgPool2d';
  const [n, c] = check4d(op, x);
  const [oh, ow] = pair(outputSize);
  if (![oh, ow].every((d) => Number.isInteger(d) && d >= 1))
    throw new EngineError(`${op}: outputSize [${oh}, ${ow}] must be positive integers (input ${fmt(x.shape)})`);
  if ((x.shape[2]! + 1) * (oh + 1) >= PLANE_MAX || (x.shape[3]! + 1) * (ow + 1) >= PLANE_MAX || oh * ow >= PLANE_MAX) {
    throw new EngineError(
      `${op}: outputSize [${oh}, ` +
        `${ow}] for input ${fmt(x.shape)} exceeds the supported bin arithmetic (< ${PLANE_MAX})`,
    );
  }
  const y = output(x.device, [n, c, oh, ow]);
  x.device.dispatch({
    kernel: adaptiveAvgPoolForwardKernel,
    variant: { wg: poolWorkgroupSize(oh * ow) },
    params: binParams(n * c, x.shape, oh, ow),
    bindings: { xs: x.rawBuffer, ys: y.rawBuffer },
  });
  return record(y, { op, inputs: [x], attrs: {} });
}

/** The backward kernels' trip counts: ny, nx unrolled at compile time when small (0: from Params). */
function unrolled(p: PoolParams): { ny: number; nx: number } {
  const unroll = p.ny <= POOL_UNROLL_MAX && p.nx <= POOL_UNROLL_MAX;
  return { ny: unroll ? p.ny : 0, nx: unroll ? p.nx : 0 };
}

/**
 * Max-pool backward by blocks of s_h × s_w input elements that share their candidate windows
 * (shaders/pool.ts). False where the block variant does not apply (a stride above POOL_BLOCK_MAX,
 * a window count above POOL_UNROLL_MAX, or stride 1: blocks of one element).
 */
function maxPoolBackwardBlocks(x: Tensor, gy: Tensor, argmax: Tensor, dx: Tensor, p: PoolParams): boolean {
  const { sh, sw, ph, pw, ny, nx } = p;
  if (sh * sw === 1 || sh > POOL_BLOCK_MAX || sw > POOL_BLOCK_MAX || ny > POOL_UNROLL_MAX || nx > POOL_UNROLL_MAX)
    return false;
  const [nby, nbx] = [Math.ceil((p.h + ph) / sh), Math.ceil((p.w + pw) / sw)];
  x.device.dispatch({
    kernel: maxPoolBackwardBlocksKernel,
    variant: { wg: poolWorkgroupSize(nby * nbx), ny, nx, bh: sh, bw: sw },
    params: { ...p, nby, nbx },
    bindings: { gy: gy.rawBuffer, argmax: argmax.rawBuffer, dx: dx.rawBuffer },
  });
  return true;
}

export const poolRules = {
  maxPool2d: ({ inputs: [x], saved: [argmax], attrs }, gy) => {
    const dx = output(x!.device, x!.shape);
    const planes = x!.shape[0]! * x!.shape[1]!;
    const p = windowParams(planes, x!.shape, gy.shape[2]!, gy.shape[3]!, attrs);
    if (!maxPoolBackwardBlocks(x!, gy, argmax!, dx, p)) {
      x!.device.dispatch({
        kernel: maxPoolBackwardKernel,
        variant: { wg: poolWorkgroupSize(p.h * p.w), ...unrolled(p) },
        params: p,
        bindings: { gy: gy.rawBuffer, argmax: argmax!.rawBuffer, dx: dx.rawBuffer },
      });
    }
    return [dx];
  },
  avgPool2d: ({ inputs: [x], attrs }, gy) => {
    const dx = output(x!.device, x!.shape);
    const planes = x!.shape[0]! * x!.shape[1]!;
    const p = windowParams(planes, x!.shape, gy.shape[2]!, gy.shape[3]!, attrs, attrs.countIncludePad);
    x!.device.dispatch({
      kernel: avgPoolBackwardKernel,
      variant: { wg: poolWorkgroupSize(p.h * p.w), ...unrolled(p) },
      params: p,
      bindings: { gy: gy.rawBuffer, dx: dx.rawBuffer },
    });
    return [dx];
  },
  adaptiveAvgPool2d: ({ inputs: [x] }, gy) => {
    const dx = output(x!.device, x!.shape);
    const planes = x!.shape[0]! * x!.shape[1]!;
    const p = binParams(planes, x!.shape, gy.shape[2]!, gy.shape[3]!);
    const wg = poolWorkgroupSize(p.h * p.w);
    const bindings = { gy: gy.rawBuffer, dx: dx.rawBuffer };
    if (gy.shape[2] === 1 && gy.shape[3] === 1)
      x!.device.dispatch({ kernel: globalAvgPoolBackwardKernel, variant: { wg }, params: p, bindings });
    else
      x!.device.dispatch({
        kernel: adaptiveAvgPoolBackwardKernel,
        variant: { wg, ...unrolled(p) },
        params: p,
        bindings,
      });
    return [dx];
  },
} satisfies {
  maxPool2d: Rule<'maxPool2d'>;
  avgPool2d: Rule<'avgPool2d'>;
  adaptiveAvgPool2d: Rule<'adaptiveAvgPool2d'>;
};
