// conv2d with the semantics of torch.nn.functional.conv2d (groups = 1): x NCHW, w OIHW
// (Cout, Cin, kh, kw), cross-correlation, zero padding, optional bias (Cout), per-axis stride,
// padding and dilation; out = ⌊(H + 2p − d·(k − 1) − 1) / s⌋ + 1 per axis.
// Three implicit-GEMM kernels (shaders/conv.ts, shaders/conv-backward.ts, planned in
// conv-kernels.ts): forward with the bias fused, input gradient, weight gradient with the bias
// gradient fused. The backward rule only runs the kernels whose input requires grad.
import { EngineError } from '../errors.ts';
import { record, type Rule, type StackedRule } from '../graph.ts';
import type { Tensor } from '../tensor.ts';
import { checkFloat, checkLive, checkSameDevice, fmt } from './common.ts';
import {
  CONV_SMALL_MAX_PIXELS,
  forwardKernel,
  inputGradKernel,
  weightGradKernel,
  type Geometry,
} from './conv-kernels.ts';
import { sum } from './reduce.ts';
import { concat, slice } from './shape.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    conv2d: { stride: [number, number]; padding: [number, number]; dilation: [number, number] };
  }
}

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

function pair(
  op: string,
  name: string,
  v: number | [number, number] | undefined,
  dflt: number,
  min: number,
  shapes: string,
): [number, number] {
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
  if (x.rank !== 4)
    throw new EngineError(`${op}: input must be 4-D (N, C, H, W), got ${fmt(x.shape)} (weight ${fmt(w.shape)})`);
  if (w.rank !== 4)
    throw new EngineError(`${op}: weight must be 4-D (Cout, Cin, kh, kw), got ${fmt(w.shape)} (input ${fmt(x.shape)})`);
  const [n, cin, h, wd] = x.shape as [number, number, number, number];
  const [cout, wcin, kh, kw] = w.shape as [number, number, number, number];
  if (wcin !== cin)
    throw new EngineError(
      `${op}: channel mismatch: input ${fmt(x.shape)} has ${cin} channels, weight ${fmt(w.shape)} expects ${wcin}`,
    );
  if (b && (b.rank !== 1 || b.shape[0] !== cout))
    throw new EngineError(`${op}: bias ${fmt(b.shape)} does not match weight ${fmt(w.shape)} (expected [${cout}])`);
  const [s, p, d] = [a.stride, a.padding, a.dilation];
  const ho = Math.floor((h + 2 * p[0] - d[0] * (kh - 1) - 1) / s[0]) + 1;
  const wo = Math.floor((wd + 2 * p[1] - d[1] * (kw - 1) - 1) / s[1]) + 1;
  if (n * cin * cout * kh * kw === 0) throw new EngineError(`${op}: empty ${shapes}`);
  if (ho < 1 || wo < 1) {
    throw new EngineError(
      `${op}: kernel ${kh}×${kw} (dilation ${d.join('×')}) is larger than the padded input ` +
        `${h + 2 * p[0]}×${wd + 2 * p[1]} (${shapes}, padding ${p.join('×')})`,
    );
  }
  return { n, cin, h, w: wd, cout, ho, wo, kh, kw, s, p, d };
}

function attrsOf(op: string, opts: Conv2dOptions, shapes: string): Conv2dAttrs {
  if ((opts.groups ?? 1) !== 1)
    throw new EngineError(`${op}: groups > 1 not supported (groups ${opts.groups}, ${shapes})`);
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
  return record(y, { op, inputs: ts, attrs });
}

const convBackward: Rule<'conv2d'> = ({ inputs: [x, w, b], attrs }, gy) => {
  const g = geometry(x!, w!, b ?? null, attrs);
  const dx = x!.requiresGrad ? inputGradKernel(x!.device, gy, w!, g) : null;
  const needW = w!.requiresGrad;
  const needB = !!b && b.requiresGrad;
  if (!needW) return [dx, null, needB ? sum(gy, [0, 2, 3]) : null]; // bias alone: one reduction
  const [dw, db] = weightGradKernel(x!.device, x!, gy, g, needB);
  return [dx, dw, db];
};

/**
 * conv2d backward for K upstream gradients (one per loss, see engine/backward.ts) as one
 * kernel call per gradient kind: the input gradients as one input-gradient pass over the K
 * gradients stacked along the batch (K·N images), the weight and bias gradients as one
 * weight-gradient GEMM with the K gradients stacked along the output channels (K·Cout rows).
 * Used only while the stacked maps still fit the tiny-map kernels (K·N·max(H·W, Ho·Wo) ≤ 16
 * pixels), where one pass per slot leaves the device idle. Stacking beyond that pushed
 * ResNet-18's small maps out of the tiny-map path and made per-loss gradients slower
 * (bench/README.md); larger maps run one pass per slot.
 */
const convStacked: StackedRule<'conv2d'> = (ctx, gys) => {
  const {
    inputs: [x, w, b],
    attrs,
  } = ctx;
  const g = geometry(x!, w!, b ?? null, attrs);
  if (gys.length * g.n * Math.max(g.ho * g.wo, g.h * g.w) > CONV_SMALL_MAX_PIXELS)
    return gys.map((gy) => convBackward(ctx, gy));
  const k = gys.length;
  const dev = x!.device;
  const out: (Tensor | null)[][] = gys.map(() => [null, null, null]);
  if (x!.requiresGrad) {
    const stacked = concat(gys, 0);
    const dxs = inputGradKernel(dev, stacked, w!, { ...g, n: k * g.n });
    stacked.dispose();
    gys.forEach((_, j) => {
      out[j]![0] = slice(dxs, [j * g.n, 0, 0, 0], [(j + 1) * g.n, g.cin, g.h, g.w]);
    });
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
  } else if (needB)
    gys.forEach((gy, j) => {
      out[j]![2] = sum(gy, [0, 2, 3]);
    });
  return out;
};

export const convRules = {
  conv2d: Object.assign(convBackward, { stacked: convStacked }),
} satisfies { conv2d: Rule<'conv2d'> };
