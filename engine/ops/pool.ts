// maxPool2d, avgPool2d and adaptiveAvgPool2d on (N, C, H, W), with the semantics of
// torch.nn.functional's max_pool2d / avg_pool2d (ceil_mode false, no dilation) and
// adaptive_avg_pool2d. Output size floor((H + 2p − k)/s) + 1; padding at most half the kernel.
// maxPool2d saves int32 argmax indices (y·W + x within the plane) for its backward; every backward
// is a gather kernel (see shaders/pool.ts); max-pool backward with strides ≤ POOL_BLOCK_MAX
// takes one block of s_h × s_w elements per invocation, and a global (1×1) adaptive average its
// own broadcast kernel.
import { record } from '../autograd.ts';
import { EngineError } from '../device.ts';
import type { Rule } from '../rules.ts';
import type { Tensor } from '../tensor.ts';
import {
  adaptiveAvgPoolBackwardShader, adaptiveAvgPoolForwardShader, avgPoolBackwardShader, avgPoolForwardShader, globalAvgPoolBackwardShader,
  maxPoolBackwardBlocksShader, maxPoolBackwardShader, maxPoolForwardShader, POOL_BLOCK_MAX, POOL_UNROLL_MAX, poolWorkgroupSize,
} from '../../shaders/pool.ts';
import { checkFloat, checkLive, fmt, launch, output } from './kernel.ts';

export interface Pool2dOptions {
  kernelSize: number | [number, number];
  /** Default: kernelSize. */
  stride?: number | [number, number];
  /** Zero (avg) or −inf (max) padding on both sides, at most kernelSize / 2 (default 0). */
  padding?: number | [number, number];
}

interface Geometry {
  kernel: [number, number]; stride: [number, number]; padding: [number, number];
}

const PLANE_MAX = 2 ** 19;

/** Grid of the pooling kernels: x over a plane of `planeSize` elements, y (then z) over planes. */
function planeGrid(planes: number, planeSize: number): { wg: number; groups: [number, number, number] } {
  const wg = poolWorkgroupSize(planeSize);
  const z = Math.ceil(planes / 65535);
  return { wg, groups: [Math.ceil(planeSize / wg), Math.ceil(planes / z), z] };
}

const pair = (v: number | [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

function check4d(op: string, x: Tensor): [number, number, number, number] {
  checkLive(op, x);
  checkFloat(op, x);
  if (x.rank !== 4) throw new EngineError(`${op}: expected 4-D (N, C, H, W) input, got ${fmt(x.shape)}`);
  if (x.size === 0) throw new EngineError(`${op}: input ${fmt(x.shape)} is empty`);
  // The kernels divide plane coordinates in float, exact below 2^20 (shaders/pool.ts).
  if (x.shape[2]! * x.shape[3]! >= PLANE_MAX) throw new EngineError(`${op}: planes of ${fmt(x.shape)} exceed the supported ${PLANE_MAX} elements`);
  return x.shape as [number, number, number, number];
}

function geometry(op: string, x: Tensor, opts: Pool2dOptions): Geometry & { oh: number; ow: number } {
  const [, , h, w] = check4d(op, x);
  const kernel = pair(opts.kernelSize);
  const stride = pair(opts.stride ?? opts.kernelSize);
  const padding = pair(opts.padding ?? 0);
  const isInt = (v: [number, number], min: number) => v.every((d) => Number.isInteger(d) && d >= min);
  if (!isInt(kernel, 1)) throw new EngineError(`${op}: kernelSize [${kernel}] must be positive integers (input ${fmt(x.shape)})`);
  if (!isInt(stride, 1)) throw new EngineError(`${op}: stride [${stride}] must be positive integers (input ${fmt(x.shape)})`);
  if (!isInt(padding, 0)) throw new EngineError(`${op}: padding [${padding}] must be non-negative integers (input ${fmt(x.shape)})`);
  if (padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2) {
    throw new EngineError(`${op}: padding [${padding}] should be at most half of kernelSize [${kernel}] (input ${fmt(x.shape)})`);
  }
  if (h + 2 * padding[0] < kernel[0] || w + 2 * padding[1] < kernel[1]) {
    throw new EngineError(`${op}: kernelSize [${kernel}] is larger than the padded input ${fmt(x.shape)} with padding [${padding}]`);
  }
  const oh = Math.floor((h + 2 * padding[0] - kernel[0]) / stride[0]) + 1;
  const ow = Math.floor((w + 2 * padding[1] - kernel[1]) / stride[1]) + 1;
  return { kernel, stride, padding, oh, ow };
}

/**
 * Params of shaders/pool.ts: planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, include_pad, ny, nx.
 * Windows: ny, nx = ⌈k/s⌉ windows per axis can contain an input element.
 */
function windowParams(planes: number, x: readonly number[], oh: number, ow: number, g: Geometry, includePad = false): number[] {
  const [k, s, p] = [g.kernel, g.stride, g.padding];
  return [planes, x[2]!, x[3]!, oh, ow, k[0], k[1], s[0], s[1], p[0], p[1], includePad ? 1 : 0, Math.ceil(k[0] / s[0]), Math.ceil(k[1] / s[1])];
}

/** Adaptive bins along L → O are at most ⌈L/O⌉ + 1 long (kh, kw); a position lies in at most ⌈O/L⌉ + 1 (ny, nx). */
function binParams(planes: number, x: readonly number[], oh: number, ow: number): number[] {
  const [h, w] = [x[2]!, x[3]!];
  const span = (l: number, o: number) => Math.ceil(l / o) + 1;
  return [planes, h, w, oh, ow, span(h, oh), span(w, ow), 1, 1, 0, 0, 0, span(oh, h), span(ow, w)];
}

export function maxPool2d(x: Tensor, opts: Pool2dOptions): Tensor {
  const op = 'maxPool2d';
  const g = geometry(op, x, opts);
  const [n, c] = x.shape as number[];
  const y = output(x.device, [n!, c!, g.oh, g.ow]);
  const argmax = output(x.device, y.shape, 'int32');
  const { wg, groups } = planeGrid(n! * c!, g.oh * g.ow);
  launch(x.device, {
    op, code: maxPoolForwardShader(wg), buffers: [x.rawBuffer, y.rawBuffer, argmax.rawBuffer],
    u32: windowParams(n! * c!, x.shape, g.oh, g.ow, g), groups,
  });
  const out = record(op, [x], y, { kernel: g.kernel, stride: g.stride, padding: g.padding }, [argmax]);
  argmax.dispose(); // the graph (if any) retains its storage
  return out;
}

export function avgPool2d(x: Tensor, opts: Pool2dOptions & { countIncludePad?: boolean }): Tensor {
  const op = 'avgPool2d';
  const g = geometry(op, x, opts);
  const countIncludePad = opts.countIncludePad ?? true;
  const [n, c] = x.shape as number[];
  const y = output(x.device, [n!, c!, g.oh, g.ow]);
  const { wg, groups } = planeGrid(n! * c!, g.oh * g.ow);
  launch(x.device, {
    op, code: avgPoolForwardShader(wg), buffers: [x.rawBuffer, y.rawBuffer],
    u32: windowParams(n! * c!, x.shape, g.oh, g.ow, g, countIncludePad), groups,
  });
  return record(op, [x], y, { kernel: g.kernel, stride: g.stride, padding: g.padding, countIncludePad });
}

/** Average over PyTorch's adaptive bins: output (N, C, oh, ow) for any oh, ow ≥ 1. */
export function adaptiveAvgPool2d(x: Tensor, outputSize: number | [number, number]): Tensor {
  const op = 'adaptiveAvgPool2d';
  const [n, c] = check4d(op, x);
  const [oh, ow] = pair(outputSize);
  if (![oh, ow].every((d) => Number.isInteger(d) && d >= 1)) throw new EngineError(`${op}: outputSize [${oh}, ${ow}] must be positive integers (input ${fmt(x.shape)})`);
  if ((x.shape[2]! + 1) * (oh + 1) >= PLANE_MAX || (x.shape[3]! + 1) * (ow + 1) >= PLANE_MAX || oh * ow >= PLANE_MAX) {
    throw new EngineError(`${op}: outputSize [${oh}, ${ow}] for input ${fmt(x.shape)} exceeds the supported bin arithmetic (< ${PLANE_MAX})`);
  }
  const y = output(x.device, [n, c, oh, ow]);
  const { wg, groups } = planeGrid(n * c, oh * ow);
  launch(x.device, {
    op, code: adaptiveAvgPoolForwardShader(wg), buffers: [x.rawBuffer, y.rawBuffer],
    u32: binParams(n * c, x.shape, oh, ow), groups,
  });
  return record(op, [x], y, {});
}

/** Launches a backward (gather) kernel: one invocation per input element; u32[12..13] = ny, nx. */
function poolBackward(op: string, shader: (wg: number, ny: number, nx: number) => string, x: Tensor, buffers: GPUBuffer[], u32: number[]): void {
  const [n, c, h, w] = x.shape as number[];
  const { wg, groups } = planeGrid(n! * c!, h! * w!);
  const [ny, nx] = [u32[12]!, u32[13]!];
  const unroll = ny <= POOL_UNROLL_MAX && nx <= POOL_UNROLL_MAX;
  launch(x.device, { op, code: shader(wg, unroll ? ny : 0, unroll ? nx : 0), buffers, u32, groups });
}

/**
 * Max-pool backward by blocks of s_h × s_w input elements that share their candidate windows
 * (shaders/pool.ts); u32 = windowParams. False where the block variant does not apply (a stride
 * above POOL_BLOCK_MAX, a window count above POOL_UNROLL_MAX, or stride 1: blocks of one element).
 */
function maxPoolBackwardBlocks(x: Tensor, buffers: GPUBuffer[], u32: number[]): boolean {
  const [n, c, h, w] = x.shape as number[];
  const [sh, sw, ph, pw, ny, nx] = [u32[7]!, u32[8]!, u32[9]!, u32[10]!, u32[12]!, u32[13]!];
  if (sh * sw === 1 || sh > POOL_BLOCK_MAX || sw > POOL_BLOCK_MAX || ny > POOL_UNROLL_MAX || nx > POOL_UNROLL_MAX) return false;
  const [nby, nbx] = [Math.ceil((h! + ph) / sh), Math.ceil((w! + pw) / sw)];
  const { wg, groups } = planeGrid(n! * c!, nby * nbx);
  launch(x.device, { op: 'maxPool2dGrad', code: maxPoolBackwardBlocksShader(wg, ny, nx, sh, sw), buffers, u32: [...u32, nby, nbx], groups });
  return true;
}

export const poolRules = {
  maxPool2d: ({ inputs: [x], saved: [argmax], attrs }, gy) => {
    const dx = output(x!.device, x!.shape);
    const planes = x!.shape[0]! * x!.shape[1]!;
    const buffers = [gy.rawBuffer, argmax!.rawBuffer, dx.rawBuffer];
    const u32 = windowParams(planes, x!.shape, gy.shape[2]!, gy.shape[3]!, attrs);
    if (!maxPoolBackwardBlocks(x!, buffers, u32)) poolBackward('maxPool2dGrad', maxPoolBackwardShader, x!, buffers, u32);
    return [dx];
  },
  avgPool2d: ({ inputs: [x], attrs }, gy) => {
    const dx = output(x!.device, x!.shape);
    const planes = x!.shape[0]! * x!.shape[1]!;
    poolBackward('avgPool2dGrad', avgPoolBackwardShader, x!, [gy.rawBuffer, dx.rawBuffer], windowParams(planes, x!.shape, gy.shape[2]!, gy.shape[3]!, attrs, attrs.countIncludePad));
    return [dx];
  },
  adaptiveAvgPool2d: ({ inputs: [x] }, gy) => {
    const dx = output(x!.device, x!.shape);
    const planes = x!.shape[0]! * x!.shape[1]!;
    const u32 = binParams(planes, x!.shape, gy.shape[2]!, gy.shape[3]!);
    if (gy.shape[2] === 1 && gy.shape[3] === 1) {
      const { wg, groups } = planeGrid(planes, x!.shape[2]! * x!.shape[3]!);
      launch(x!.device, { op: 'adaptiveAvgPool2dGrad', code: globalAvgPoolBackwardShader(wg), buffers: [gy.rawBuffer, dx.rawBuffer], u32, groups });
    } else poolBackward('adaptiveAvgPool2dGrad', adaptiveAvgPoolBackwardShader, x!, [gy.rawBuffer, dx.rawBuffer], u32);
    return [dx];
  },
} satisfies { maxPool2d: Rule<'maxPool2d'>; avgPool2d: Rule<'avgPool2d'>; adaptiveAvgPool2d: Rule<'adaptiveAvgPool2d'> };
