// conv2d's launch planning, in one place: for one geometry, which kernel (shaders/conv.ts,
// conv-backward.ts, conv-small.ts), which tile, workgroup size and grid split, the packing of the
// GEMM row operand, and the dispatches. No graph: engine/ops/conv.ts records the op and its rule.
//
// Forward and input gradient of tiny images (≤ CONV_SMALL_MAX_PIXELS result pixels in all: late
// ResNet layers at small inputs) take the tiny-image kernel (channels per invocation, split-K, taps
// that hit nothing skipped). The input gradient of a conv on ≤ CONV_RUN_MAX_CHANNELS channels (an
// image's first conv) computes all channels of a run of neighbours per invocation instead of a
// 4-row tile that is mostly padding. bench/README.md has the measurements behind each choice.
import type { Device } from '../device.ts';
import { EngineError } from '../errors.ts';
import type { Tensor } from '../tensor.ts';
import type { ParamValues } from '../../shaders/kernel.ts';
import { type CONV_PARAMS, convForwardKernel, convPackKernel } from '../../shaders/conv.ts';
import { convInputGradKernel, convInputGradRunsKernel, convWeightGradKernel } from '../../shaders/conv-backward.ts';
import { CONV_SMALL_ROWS, convSmallKernel } from '../../shaders/conv-small.ts';
import { output } from './common.ts';
import { sum } from './reduce.ts';

/** One conv's geometry: x (n, cin, h, w), w (cout, cin, kh, kw), y (n, cout, ho, wo); stride, padding, dilation. */
export interface Geometry {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  ho: number;
  wo: number;
  kh: number;
  kw: number;
  s: [number, number];
  p: [number, number];
  d: [number, number];
}

type ConvParams = ParamValues<typeof CONV_PARAMS>;

/** The uniform Params of every conv kernel (CONV_PARAMS); aux = the kernel-specific aux0..aux4. */
function params(g: Geometry, aux: readonly number[]): ConvParams {
  return {
    n: g.n,
    cin: g.cin,
    h: g.h,
    w: g.w,
    cout: g.cout,
    ho: g.ho,
    wo: g.wo,
    kh: g.kh,
    kw: g.kw,
    sh: g.s[0],
    sw: g.s[1],
    ph: g.p[0],
    pw: g.p[1],
    dh: g.d[0],
    dw: g.d[1],
    aux0: aux[0] ?? 0,
    aux1: aux[1] ?? 0,
    aux2: aux[2] ?? 0,
    aux3: aux[3] ?? 0,
    aux4: aux[4] ?? 0,
  };
}

/**
 * Rows (channels) per workgroup of the GEMM kernels: each invocation holds this many vec4
 * accumulators. 16 keeps each gathered value feeding 16 FMAs; fewer channels than that (an RGB
 * input's gradient) take a smaller tile.
 */
function tileRows(channels: number): number {
  return channels <= 4 ? 4 : channels <= 8 ? 8 : 16;
}

/** Invocations per workgroup of forward and dx: each covers 4 columns; narrow outputs use fewer lanes (at most 64). */
function workgroupSize(columns: number): number {
  const lanes = Math.ceil(columns / 4);
  return lanes <= 8 ? 8 : lanes <= 16 ? 16 : lanes <= 32 ? 32 : 64;
}

/** The workgroup size for `columns` columns of 4 per invocation; throws past the grid limit. */
function columnWorkgroup(dev: Device, columns: number, what: string): number {
  const wg = workgroupSize(columns);
  if (Math.ceil(columns / (4 * wg)) > dev.limits.maxComputeWorkgroupsPerDimension) {
    throw new EngineError(`conv2d: ${what} of ${columns} pixels too large for one dispatch`);
  }
  return wg;
}

/**
 * Whether the row-quad kernels (4 neighbours of one row per invocation) apply to rows of `width`
 * pixels: unit stride and dilation along w, and at most 25 % padding to a multiple of 4.
 */
const rowQuadsFit = (g: Geometry, width: number): boolean =>
  g.s[1] === 1 && g.d[1] === 1 && (width % 4 === 0 || width >= 7);

/**
 * Packs a GEMM row operand for a row tile of tm (see convPackKernel): [k, Mp] with Mp = m rounded
 * up to tm, element (k, r) = src[r·sm + ⌊k / kk⌋·sa + k mod kk] (0 for padding rows).
 */
function packRows(
  dev: Device,
  src: Tensor,
  m: number,
  tm: number,
  k: number,
  kk: number,
  sm: number,
  sa: number,
): Tensor {
  const mp = Math.ceil(m / tm) * tm;
  const packed = output(dev, [k, mp]);
  dev.dispatch({
    kernel: convPackKernel,
    params: { m, mp, k, kk, sm, sa },
    bindings: { Wt: src.rawBuffer, Wp: packed.rawBuffer },
  });
  return packed;
}

/** Weights for the forward (rows Cout, taps (Cin, kh, kw)) or for dx (rows Cin, taps (Cout, kh, kw)). */
function packWeights(dev: Device, w: Tensor, g: Geometry, tm: number, forInput: boolean): Tensor {
  const kk = g.kh * g.kw;
  return forInput
    ? packRows(dev, w, g.cin, tm, g.cout * kk, kk, kk, g.cin * kk)
    : packRows(dev, w, g.cout, tm, g.cin * kk, kk, g.cin * kk, kk);
}

/** Largest pixel count (N·H·W of the result) the tiny-image kernel takes: 4 vec4 accumulators per row. */
export const CONV_SMALL_MAX_PIXELS = 16;
/** Workgroups the tiny-image kernels aim for (split-K), like the weight gradient's. */
const SMALL_GROUPS = 48;
/** Fewest reduction channels per split-K slice of the tiny-image kernels. */
const SMALL_MIN_CHUNK = 8;

/**
 * The interval [k0, k1) of taps along one axis that hit at least one pixel, packed as k0 | k1 << 16:
 * forward, a tap k reaches source o·s − p + k·d of some output o < O inside [0, I); transposed
 * (dx), output pixel i reads source (i + p − k·d) / s when exact and inside [0, I).
 */
function tapRange(
  transposed: boolean,
  k: number,
  outLen: number,
  srcLen: number,
  s: number,
  p: number,
  d: number,
): number {
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
  const [rows, chans, oh, ow, sh, sw] = transposed
    ? [g.cin, g.cout, g.h, g.w, g.ho, g.wo]
    : [g.cout, g.cin, g.ho, g.wo, g.h, g.w];
  const wg = rows <= 64 ? 16 : 32;
  const gx = Math.ceil(rows / (CONV_SMALL_ROWS * wg));
  const chunk = Math.max(SMALL_MIN_CHUNK, Math.ceil(chans / Math.ceil(SMALL_GROUPS / gx)));
  const slices = Math.ceil(chans / chunk);
  const taps = [
    tapRange(transposed, g.kh, oh, sh, g.s[0], g.p[0], g.d[0]),
    tapRange(transposed, g.kw, ow, sw, g.s[1], g.p[1], g.d[1]),
  ];
  const shape = [g.n, rows, oh, ow];
  const out = output(dev, slices > 1 ? [slices, ...shape] : shape);
  const cq = Math.ceil((g.n * oh * ow) / 4);
  dev.dispatch({
    kernel: convSmallKernel,
    op: transposed ? 'conv2dBackwardInputSmall' : 'conv2dSmall',
    variant: { transposed, bias: !!b, wg, cq },
    params: params(g, [chunk, ...taps]),
    bindings: { S: src.rawBuffer, Wt: w.rawBuffer, Out: out.rawBuffer, ...(b ? { Bias: b.rawBuffer } : {}) },
  });
  if (slices === 1) return out;
  const summed = sum(out, 0);
  out.dispose();
  return summed;
}

/** Forward: y = conv(x, w) + b. */
export function forwardKernel(dev: Device, x: Tensor, w: Tensor, b: Tensor | null, g: Geometry): Tensor {
  if (g.n * g.ho * g.wo <= CONV_SMALL_MAX_PIXELS) return smallKernel(dev, x, w, b, g, false);
  const y = output(dev, [g.n, g.cout, g.ho, g.wo]);
  const rowQuads = rowQuadsFit(g, g.wo);
  const wq4 = Math.ceil(g.wo / 4);
  const wg = columnWorkgroup(dev, rowQuads ? g.n * g.ho * wq4 * 4 : g.n * g.ho * g.wo, 'output');
  const tm = tileRows(g.cout);
  const wp = packWeights(dev, w, g, tm, false);
  dev.dispatch({
    kernel: convForwardKernel,
    variant: { bias: !!b, wg, tm, rowQuads },
    params: params(g, [wp.shape[1]! / 4, wq4]),
    bindings: { X: x.rawBuffer, Wp: wp.rawBuffer, Y: y.rawBuffer, ...(b ? { Bias: b.rawBuffer } : {}) },
  });
  wp.dispose(); // the batcher keeps the buffer until the dispatch ran
  return y;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** Input channels up to which the input gradient takes the run kernel (convInputGradRunsKernel). */
const CONV_RUN_MAX_CHANNELS = 3;
/** Most vec4 accumulators (channels × quads) of the few-channel input gradient per invocation. */
const CONV_RUN_ACCUMULATORS = 8;

/**
 * Input gradient of a conv with at most CONV_RUN_MAX_CHANNELS input channels (row-quad geometry):
 * all channels of a run of neighbours per invocation, runs of up to CONV_RUN_ACCUMULATORS / Cin
 * quads, the rows of the input split into equal runs; weights unpacked.
 */
function inputGradRuns(dev: Device, gy: Tensor, w: Tensor, g: Geometry, dx: Tensor, hq: number, stepH: number): Tensor {
  const quads = Math.ceil(g.w / 4);
  const runs = Math.ceil(quads / Math.floor(CONV_RUN_ACCUMULATORS / g.cin));
  const qn = Math.ceil(quads / runs);
  const wg = columnWorkgroup(dev, g.n * hq * runs * 4, 'input');
  dev.dispatch({
    kernel: convInputGradRunsKernel,
    variant: { wg, qn, nc: g.cin },
    params: params(g, [0, runs, hq, stepH]),
    bindings: { GY: gy.rawBuffer, Wp: w.rawBuffer, DX: dx.rawBuffer },
  });
  return dx;
}

/** Input gradient: dx = conv_transpose(gy, w), one phase class of the stride per grid z slice. */
export function inputGradKernel(dev: Device, gy: Tensor, w: Tensor, g: Geometry): Tensor {
  if (g.n * g.h * g.w <= CONV_SMALL_MAX_PIXELS) return smallKernel(dev, gy, w, null, g, true);
  const dx = output(dev, [g.n, g.cin, g.h, g.w]);
  const hq = Math.ceil(g.h / g.s[0]);
  const wq = Math.ceil(g.w / g.s[1]);
  const steps = [g.s[0] / gcd(g.s[0], g.d[0]), g.s[1] / gcd(g.s[1], g.d[1])];
  const rowQuads = rowQuadsFit(g, g.w); // quads along the input rows
  if (rowQuads && g.cin <= CONV_RUN_MAX_CHANNELS) return inputGradRuns(dev, gy, w, g, dx, hq, steps[0]!);
  const wq4 = Math.ceil(g.w / 4);
  const wg = columnWorkgroup(dev, rowQuads ? g.n * hq * wq4 * 4 : g.n * hq * wq, 'input');
  const tm = tileRows(g.cin);
  const wp = packWeights(dev, w, g, tm, true);
  const mp4 = wp.shape[1]! / 4;
  dev.dispatch({
    kernel: convInputGradKernel,
    variant: { wg, tm, rowQuads },
    params: params(g, rowQuads ? [mp4, wq4, hq, steps[0]!] : [mp4, wq, hq, ...steps]),
    bindings: { GY: gy.rawBuffer, Wp: wp.rawBuffer, DX: dx.rawBuffer },
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
 * size in 8..32 (multiples of lavapipe's 8 SIMD lanes; 32 the best power of two, bench/README.md)
 * that pads the columns least, the largest on ties. Powers of two alone padded 288 columns (3×3
 * convs over 32 channels) to 384 and 75 (5×5 over 3) to 128: a quarter to 40 % of the FMAs wasted.
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
export function weightGradKernel(
  dev: Device,
  x: Tensor,
  gy: Tensor,
  g: Geometry,
  withBias: boolean,
): [Tensor, Tensor | null] {
  const nc = g.cin * g.kh * g.kw;
  const [wg, gx] = weightGradColumns(nc);
  const tm = tileRows(g.cout);
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
  dev.dispatch({
    kernel: convWeightGradKernel,
    variant: { bias: withBias, wg, tm },
    params: params(g, [gp.shape[1]! / 4, chunk]),
    bindings: { X: x.rawBuffer, Gp: gp.rawBuffer, DW: dwp.rawBuffer, ...(dbp ? { DB: dbp.rawBuffer } : {}) },
  });
  gp.dispose();
  if (slices === 1) return [dwp, dbp];
  const dw = sum(dwp, 0);
  dwp.dispose();
  const db = dbp ? sum(dbp, 0) : null;
  dbp?.dispose();
  return [dw, db];
}
