// conv2d with the semantics of torch.nn.functional.conv2d (groups = 1): x NCHW, w OIHW
// (Cout, Cin, kh, kw), cross-correlation, zero padding, optional bias (Cout), per-axis stride,
// padding and dilation; out = ⌊(H + 2p − d·(k − 1) − 1) / s⌋ + 1 per axis.
// Three implicit-GEMM kernels (shaders/conv.ts, shaders/conv-backward.ts): forward with the bias
// fused, input gradient, weight gradient with the bias gradient fused. The backward rule only runs
// the kernels whose input requires grad. Forward and input gradient of tiny images (≤ 16 result
// pixels in all: late ResNet layers at small inputs) take shaders/conv-small.ts instead (channels
// per invocation, split-K, taps that hit nothing skipped; measured 45× faster on 1×1 maps). The
// input gradient of a conv on ≤ 3 channels (an image's first conv) computes all channels of a run
// of neighbours per invocation instead of a 4-row tile that is mostly padding (CG-FMNIST's 5×5
// conv at batch 64, 28×28: 1 channel 2.5×, 3 channels 1.3× faster).
import { record } from '../autograd.ts';
import { EngineError, type Device } from '../device.ts';
import type { Rule, StackedRule } from '../rules.ts';
import type { Tensor } from '../tensor.ts';
import { convForwardShader, convPackWeightsShader, convTileRows, convWorkgroupSize } from '../../shaders/conv.ts';
import { CONV_RUN_ACCUMULATORS, convInputGradRunsShader, convInputGradShader, convWeightGradShader } from '../../shaders/conv-backward.ts';
import { CONV_SMALL_MAX_PIXELS, CONV_SMALL_ROWS, convSmallShader } from '../../shaders/conv-small.ts';
import { checkFloat, checkLive, checkSameDevice, fmt, grid1d, launch, output } from './kernel.ts';
import { sum } from './reduce.ts';
import { concat, slice } from './shape.ts';

export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
}

/** Per-axis geometry, as recorded in the op's attrs. */
interface Conv2dAttrs {
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
}

interface Geometry {
  n: number; cin: number; h: number; w: number;
  cout: number; ho: number; wo: number; kh: number; kw: number;
  s: [number, number]; p: [number, number]; d: [number, number];
}

/** The uniform Params of every conv kernel (see CONV_PARAMS); aux = kernel-specific fields. */
function params(g: Geometry, aux: number[]): number[] {
  const u = [g.n, g.cin, g.h, g.w, g.cout, g.ho, g.wo, g.kh, g.kw, g.s[0], g.s[1], g.p[0], g.p[1], g.d[0], g.d[1]];
  return [...u, ...aux, ...new Array<number>(5 - aux.length).fill(0)];
}

function pair(op: string, name: string, v: number | [number, number] | undefined, dflt: number, min: number, shapes: string): [number, number] {
  const p: [number, number] = v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) || p.length !== 2 || !p.every((x) => Number.isInteger(x) && x >= min)) {
    const what = min > 0 ? 'positive integers' : 'non-negative integers';
    throw new EngineError(`${op}: ${name} must be ${what}, got ${JSON.stringify(v)} (${shapes})`);
  }
  return p;
}

function geometry(x: Tensor, w: Tensor, b: Tensor | null, a: Conv2dAttrs): Geometry {
  const op = 'conv2d';
  const shapes = `input ${fmt(x.shape)}, weight ${fmt(w.shape)}`;
  if (x.rank !== 4) throw new EngineError(`${op}: input must be 4-D (N, C, H, W), got ${fmt(x.shape)} (weight ${fmt(w.shape)})`);
  if (w.rank !== 4) throw new EngineError(`${op}: weight must be 4-D (Cout, Cin, kh, kw), got ${fmt(w.shape)} (input ${fmt(x.shape)})`);
  const [n, cin, h, wd] = x.shape as [number, number, number, number];
  const [cout, wcin, kh, kw] = w.shape as [number, number, number, number];
  if (wcin !== cin) throw new EngineError(`${op}: channel mismatch: input ${fmt(x.shape)} has ${cin} channels, weight ${fmt(w.shape)} expects ${wcin}`);
  if (b && (b.rank !== 1 || b.shape[0] !== cout)) throw new EngineError(`${op}: bias ${fmt(b.shape)} does not match weight ${fmt(w.shape)} (expected [${cout}])`);
  const [s, p, d] = [a.stride, a.padding, a.dilation];
  const ho = Math.floor((h + 2 * p[0] - d[0] * (kh - 1) - 1) / s[0]) + 1;
  const wo = Math.floor((wd + 2 * p[1] - d[1] * (kw - 1) - 1) / s[1]) + 1;
  if (n * cin * cout * kh * kw === 0) throw new EngineError(`${op}: empty ${shapes}`);
  if (ho < 1 || wo < 1) {
    throw new EngineError(`${op}: kernel ${kh}×${kw} (dilation ${d.join('×')}) is larger than the padded input ${h + 2 * p[0]}×${wd + 2 * p[1]} (${shapes}, padding ${p.join('×')})`);
  }
  return { n, cin, h, w: wd, cout, ho, wo, kh, kw, s, p, d };
}

/** Column workgroups for `cols` columns of 4 per invocation; throws past the grid limit. */
function columnGrid(dev: Device, cols: number, what: string): [number, number] {
  const wg = convWorkgroupSize(cols);
  const gx = Math.ceil(cols / (4 * wg));
  if (gx > dev.limits.maxComputeWorkgroupsPerDimension) throw new EngineError(`conv2d: ${what} of ${cols} pixels too large for one dispatch`);
  return [wg, gx];
}

/**
 * Whether the row-quad kernels (4 neighbours of one row per invocation, shaders/conv.ts) apply to
 * rows of `width` pixels: unit stride and dilation along w, and at most 25 % padding to a multiple of 4.
 */
const rowQuadsFit = (g: Geometry, width: number): boolean => g.s[1] === 1 && g.d[1] === 1 && (width % 4 === 0 || width >= 7);

/**
 * Packs a GEMM row operand for a row tile of tm (see convPackWeightsShader): [k, Mp] with Mp = m
 * rounded up to tm, element (k, r) = src[r·sm + ⌊k / kk⌋·sa + k mod kk] (0 for padding rows).
 */
function packRows(dev: Device, src: Tensor, m: number, tm: number, k: number, kk: number, sm: number, sa: number): Tensor {
  const mp = Math.ceil(m / tm) * tm;
  const packed = output(dev, [k, mp]);
  launch(dev, {
    op: 'conv2dPack', code: convPackWeightsShader(), buffers: [src.rawBuffer, packed.rawBuffer],
    u32: [m, mp, k, kk, sm, sa, 0, 0], groups: grid1d(packed.size / 4), // one vec4 per invocation
  });
  return packed;
}

/** Weights for the forward (rows Cout, taps (Cin, kh, kw)) or for dx (rows Cin, taps (Cout, kh, kw)). */
function packWeights(dev: Device, w: Tensor, g: Geometry, tm: number, forInput: boolean): Tensor {
  const kk = g.kh * g.kw;
  return forInput ? packRows(dev, w, g.cin, tm, g.cout * kk, kk, kk, g.cin * kk) : packRows(dev, w, g.cout, tm, g.cin * kk, kk, g.cin * kk, kk);
}

/** Workgroups the tiny-image kernels aim for (split-K), like the weight gradient's. */
const SMALL_GROUPS = 48;
/** Fewest reduction channels per split-K slice of the tiny-image kernels. */
const SMALL_MIN_CHUNK = 8;

/**
 * The interval [k0, k1) of taps along one axis that hit at least one pixel, packed as k0 | k1 << 16:
 * forward, a tap k reaches source o·s − p + k·d of some output o < O inside [0, I); transposed
 * (dx), output pixel i reads source (i + p − k·d) / s when exact and inside [0, I).
 */
function tapRange(transposed: boolean, k: number, outLen: number, srcLen: number, s: number, p: number, d: number): number {
  const hits = (t: number): boolean => {
    for (let o = 0; o < outLen; o++) {
      const v = transposed ? o + p - t * d : o * s - p + t * d;
      const src = transposed ? v / s : v;
      if (v >= 0 && Number.isInteger(src) && src < srcLen) return true;
    }
    return false;
  };
  const valid = [...Array(k).keys()].filter(hits);
  return valid.length === 0 ? 0 : valid[0]! | ((valid[valid.length - 1]! + 1) << 16);
}

/**
 * Tiny images (shaders/conv-small.ts): the forward (transposed = false, src = x) or the input
 * gradient (src = gy) when the result has at most CONV_SMALL_MAX_PIXELS pixels in all.
 */
function smallKernel(dev: Device, src: Tensor, w: Tensor, b: Tensor | null, g: Geometry, transposed: boolean): Tensor {
  const [rows, chans, oh, ow, sh, sw] = transposed ? [g.cin, g.cout, g.h, g.w, g.ho, g.wo] : [g.cout, g.cin, g.ho, g.wo, g.h, g.w];
  const wg = rows <= 64 ? 16 : 32;
  const gx = Math.ceil(rows / (CONV_SMALL_ROWS * wg));
  const chunk = Math.max(SMALL_MIN_CHUNK, Math.ceil(chans / Math.ceil(SMALL_GROUPS / gx)));
  const slices = Math.ceil(chans / chunk);
  const taps = [tapRange(transposed, g.kh, oh, sh, g.s[0], g.p[0], g.d[0]), tapRange(transposed, g.kw, ow, sw, g.s[1], g.p[1], g.d[1])];
  const shape = [g.n, rows, oh, ow];
  const out = output(dev, slices > 1 ? [slices, ...shape] : shape);
  const cq = Math.ceil((g.n * oh * ow) / 4);
  launch(dev, {
    op: transposed ? 'conv2dBackwardInputSmall' : 'conv2dSmall', code: convSmallShader(transposed, !!b, wg, cq),
    buffers: [src.rawBuffer, w.rawBuffer, out.rawBuffer, ...(b ? [b.rawBuffer] : [])],
    u32: params(g, [chunk, ...taps]), groups: [gx, 1, slices],
  });
  if (slices === 1) return out;
  const summed = sum(out, 0);
  out.dispose();
  return summed;
}

/** Forward kernel: y = conv(x, w) + b. */
function forwardKernel(dev: Device, x: Tensor, w: Tensor, b: Tensor | null, g: Geometry): Tensor {
  if (g.n * g.ho * g.wo <= CONV_SMALL_MAX_PIXELS) return smallKernel(dev, x, w, b, g, false);
  const y = output(dev, [g.n, g.cout, g.ho, g.wo]);
  const rows = rowQuadsFit(g, g.wo);
  const wq4 = Math.ceil(g.wo / 4);
  const [wg, gx] = columnGrid(dev, rows ? g.n * g.ho * wq4 * 4 : g.n * g.ho * g.wo, 'output');
  const tm = convTileRows(g.cout);
  const wp = packWeights(dev, w, g, tm, false);
  const buffers = [x.rawBuffer, wp.rawBuffer, y.rawBuffer, ...(b ? [b.rawBuffer] : [])];
  launch(dev, {
    op: 'conv2d', code: convForwardShader(!!b, wg, tm, rows), buffers,
    u32: params(g, [wp.shape[1]! / 4, wq4]), groups: [gx, Math.ceil(g.cout / tm), 1],
  });
  wp.dispose(); // the batcher keeps the buffer until the dispatch ran
  return y;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** Input channels up to which the input gradient takes the run kernel (see convInputGradRunsShader). */
const CONV_RUN_MAX_CHANNELS = 3;

/**
 * Input gradient of a conv with at most CONV_RUN_MAX_CHANNELS input channels (shaders/conv-backward.ts,
 * row-quad geometry): all channels of a run of neighbours per invocation, runs of up to
 * CONV_RUN_ACCUMULATORS / Cin quads, the rows of the input split into equal runs; weights unpacked.
 */
function inputGradRuns(dev: Device, gy: Tensor, w: Tensor, g: Geometry, dx: Tensor, hq: number, stepH: number): Tensor {
  const quads = Math.ceil(g.w / 4);
  const runs = Math.ceil(quads / Math.floor(CONV_RUN_ACCUMULATORS / g.cin));
  const qn = Math.ceil(quads / runs);
  const [wg, gx] = columnGrid(dev, g.n * hq * runs * 4, 'input');
  launch(dev, {
    op: 'conv2dBackwardInput', code: convInputGradRunsShader(wg, qn, g.cin), buffers: [gy.rawBuffer, w.rawBuffer, dx.rawBuffer],
    u32: params(g, [0, runs, hq, stepH]), groups: [gx, 1, g.s[0]],
  });
  return dx;
}

/** Input gradient: dx = conv_transpose(gy, w), one phase class of the stride per grid z slice. */
function inputGradKernel(dev: Device, gy: Tensor, w: Tensor, g: Geometry): Tensor {
  if (g.n * g.h * g.w <= CONV_SMALL_MAX_PIXELS) return smallKernel(dev, gy, w, null, g, true);
  const dx = output(dev, [g.n, g.cin, g.h, g.w]);
  const hq = Math.ceil(g.h / g.s[0]);
  const wq = Math.ceil(g.w / g.s[1]);
  const steps = [g.s[0] / gcd(g.s[0], g.d[0]), g.s[1] / gcd(g.s[1], g.d[1])];
  const rows = rowQuadsFit(g, g.w); // quads along the input rows
  if (rows && g.cin <= CONV_RUN_MAX_CHANNELS) return inputGradRuns(dev, gy, w, g, dx, hq, steps[0]!);
  const wq4 = Math.ceil(g.w / 4);
  const [wg, gx] = columnGrid(dev, rows ? g.n * hq * wq4 * 4 : g.n * hq * wq, 'input');
  const tm = convTileRows(g.cin);
  const wp = packWeights(dev, w, g, tm, true);
  const mp4 = wp.shape[1]! / 4;
  launch(dev, {
    op: 'conv2dBackwardInput', code: convInputGradShader(wg, tm, rows), buffers: [gy.rawBuffer, wp.rawBuffer, dx.rawBuffer],
    u32: params(g, rows ? [mp4, wq4, hq, steps[0]!] : [mp4, wq, hq, ...steps]),
    groups: [gx, Math.ceil(g.cin / tm), rows ? g.s[0] : g.s[0] * g.s[1]],
  });
  wp.dispose();
  return dx;
}

/** Workgroups the weight gradient aims for: enough to keep every core of a CPU device busy. */
const WEIGHT_GRAD_GROUPS = 64;
/** Fewest output pixels one slice of the weight gradient's reduction sums (amortises the partials). */
const WEIGHT_GRAD_MIN_PIXELS = 1024;

/**
 * Workgroup size and column groups of the weight gradient for Cin·KH·KW columns (4 per lane): the
 * size in 8..32 (multiples of lavapipe's 8 SIMD lanes; 32 measured best of the powers of two) that
 * pads the columns least, the largest on ties. Powers of two alone padded 288 columns (3×3 convs
 * over 32 channels) to 384 and 75 (5×5 over 3) to 128: a quarter to 40 % of the FMAs wasted.
 */
function weightGradColumns(nc: number): [number, number] {
  const lanes = Math.ceil(nc / 4);
  let best: [number, number] = [32, Math.ceil(lanes / 32)];
  for (const wg of [24, 16, 8]) {
    const gx = Math.ceil(lanes / wg);
    if (gx * wg < best[0] * best[1]) best = [wg, gx];
  }
  return best;
}

/** Weight (and bias) gradient: [dW, db | null]. */
function weightGradKernel(dev: Device, x: Tensor, gy: Tensor, g: Geometry, withBias: boolean): [Tensor, Tensor | null] {
  const nc = g.cin * g.kh * g.kw;
  const [wg, gx] = weightGradColumns(nc);
  const tm = convTileRows(g.cout);
  const gyGroups = Math.ceil(g.cout / tm);
  const rows = g.n * g.ho;
  // Split the reduction over output rows until the grid is wide enough, keeping each slice long.
  const maxSlices = Math.max(1, Math.min(rows, Math.floor((rows * g.wo) / WEIGHT_GRAD_MIN_PIXELS), 65535));
  const want = Math.min(maxSlices, Math.ceil(WEIGHT_GRAD_GROUPS / (gx * gyGroups)));
  const chunk = Math.ceil(rows / want);
  const slices = Math.ceil(rows / chunk);
  const wShape = [g.cout, g.cin, g.kh, g.kw];
  const dwp = output(dev, slices > 1 ? [slices, ...wShape] : wShape);
  const dbp = withBias ? output(dev, slices > 1 ? [slices, g.cout] : [g.cout]) : null;
  const p = g.ho * g.wo;
  const gp = packRows(dev, gy, g.cout, tm, g.n * p, p, p, g.cout * p); // gy as [N·Ho·Wo, Cout padded]
  launch(dev, {
    op: 'conv2dBackwardWeight', code: convWeightGradShader(withBias, wg, tm),
    buffers: [x.rawBuffer, gp.rawBuffer, dwp.rawBuffer, ...(dbp ? [dbp.rawBuffer] : [])],
    u32: params(g, [gp.shape[1]! / 4, chunk]), groups: [gx, gyGroups, slices],
  });
  gp.dispose();
  if (slices === 1) return [dwp, dbp];
  const dw = sum(dwp, 0);
  dwp.dispose();
  const db = dbp ? sum(dbp, 0) : null;
  dbp?.dispose();
  return [dw, db];
}

function attrsOf(op: string, opts: Conv2dOptions, shapes: string): Conv2dAttrs {
  if ((opts.groups ?? 1) !== 1) throw new EngineError(`${op}: groups > 1 not supported (groups ${opts.groups}, ${shapes})`);
  return {
    stride: pair(op, 'stride', opts.stride, 1, 1, shapes),
    padding: pair(op, 'padding', opts.padding, 0, 0, shapes),
    dilation: pair(op, 'dilation', opts.dilation, 1, 1, shapes),
  };
}

/** The three kernels of one geometry without autograd (benchmarks). */
export interface Conv2dKernels {
  outShape: number[];
  forward(b?: Tensor | null): Tensor;
  inputGrad(gy: Tensor): Tensor;
  /** [dW, db | null]. */
  weightGrad(gy: Tensor, withBias?: boolean): [Tensor, Tensor | null];
}

export function conv2dKernels(x: Tensor, w: Tensor, opts: Conv2dOptions = {}): Conv2dKernels {
  const g = geometry(x, w, null, attrsOf('conv2d', opts, `input ${fmt(x.shape)}, weight ${fmt(w.shape)}`));
  return {
    outShape: [g.n, g.cout, g.ho, g.wo],
    forward: (b = null) => forwardKernel(x.device, x, w, b, g),
    inputGrad: (gy) => inputGradKernel(x.device, gy, w, g),
    weightGrad: (gy, withBias = false) => weightGradKernel(x.device, x, gy, g, withBias),
  };
}

/** y = conv2d(x, w) + b in PyTorch semantics (groups = 1 only). */
export function conv2d(x: Tensor, w: Tensor, b?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const op = 'conv2d';
  const bias = b ?? null;
  const ts = bias ? [x, w, bias] : [x, w];
  checkLive(op, ...ts);
  checkFloat(op, ...ts);
  const dev = checkSameDevice(op, ...ts);
  const attrs = attrsOf(op, opts, `input ${fmt(x.shape)}, weight ${fmt(w.shape)}`);
  const g = geometry(x, w, bias, attrs);
  const y = forwardKernel(dev, x, w, bias, g);
  return record(op, ts, y, attrs);
}

export const convRules = {
  conv2d: ({ inputs: [x, w, b], attrs }, gy) => {
    const g = geometry(x!, w!, b ?? null, attrs);
    const dx = x!.requiresGrad ? inputGradKernel(x!.device, gy, w!, g) : null;
    const needW = w!.requiresGrad;
    const needB = !!b && b.requiresGrad;
    if (!needW) return [dx, null, needB ? sum(gy, [0, 2, 3]) : null]; // bias alone: one reduction
    const [dw, db] = weightGradKernel(x!.device, x!, gy, g, needB);
    return [dx, dw, db];
  },
} satisfies { conv2d: Rule<'conv2d'> };

/**
 * conv2d backward for K upstream gradients (one per loss, see engine/per-loss.ts) as one
 * kernel call per gradient kind: the input gradients as one input-gradient pass over the K
 * gradients stacked along the batch (K·N images), the weight and bias gradients as one
 * weight-gradient GEMM with the K gradients stacked along the output channels (K·Cout rows).
 * Used only while the stacked maps still fit the tiny-map kernels (K·N·max(H·W, Ho·Wo) ≤ 16 pixels), where
 * one pass per slot leaves the device idle. Stacking beyond that pushed ResNet-18's small maps
 * out of the tiny-map path and made per-loss gradients 2.5× slower (bench/per-loss.ts at 64²:
 * 5030 ms stacked vs 2048 ms per slot); larger maps run one pass per slot.
 */
export const convStackedRule: StackedRule<'conv2d'> = (ctx, gys) => {
  const { inputs: [x, w, b], attrs } = ctx;
  const g = geometry(x!, w!, b ?? null, attrs);
  if (gys.length * g.n * Math.max(g.ho * g.wo, g.h * g.w) > CONV_SMALL_MAX_PIXELS) return gys.map((gy) => convRules.conv2d(ctx, gy));
  const k = gys.length;
  const dev = x!.device;
  const out: (Tensor | null)[][] = gys.map(() => [null, null, null]);
  if (x!.requiresGrad) {
    const stacked = concat(gys, 0);
    const dxs = inputGradKernel(dev, stacked, w!, { ...g, n: k * g.n });
    stacked.dispose();
    gys.forEach((_, j) => (out[j]![0] = slice(dxs, [j * g.n, 0, 0, 0], [(j + 1) * g.n, g.cin, g.h, g.w])));
    dxs.dispose();
  }
  const needB = !!b && b.requiresGrad;
  if (w!.requiresGrad) {
    const stacked = concat(gys, 1);
    const [dws, dbs] = weightGradKernel(dev, x!, stacked, { ...g, cout: k * g.cout }, needB);
    stacked.dispose();
    gys.forEach((_, j) => {
      out[j]![1] = slice(dws, [j * g.cout, 0, 0, 0], [(j + 1) * g.cout, g.cin, g.kh, g.kw]);
      if (dbs) out[j]![2] = slice(dbs, [j * g.cout], [(j + 1) * g.cout]);
    });
    dws.dispose();
    dbs?.dispose();
  } else if (needB) gys.forEach((gy, j) => (out[j]![2] = sum(gy, [0, 2, 3])));
  return out;
};
