// layerNorm: torch.nn.functional.layer_norm with normalized_shape = [D] (the last axis), optional
// weight and bias (D). Fused forward (one kernel, saving per-row mean and 1/std) and a fused
// backward: one kernel for dx, one for dweight and dbias together (shaders/layernorm.ts).
// The variance is the biased one (divided by D), as in PyTorch. The saved row statistics are
// (mean of x − x₀, 1/std), x₀ the row's first element (see shaders/layernorm.ts for why).
import { EngineError } from '../errors.ts';
import { record, type Rule } from '../graph.ts';
import type { Tensor } from '../tensor.ts';
import {
  LN_COLS,
  layerNormBackwardInputKernel,
  layerNormBackwardParamsKernel,
  layerNormForwardKernel,
} from '../../shaders/layernorm.ts';
import { checkFloat, checkLive, checkSameDevice, fmt, output } from './common.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    layerNorm: { eps: number; weight: boolean; bias: boolean };
  }
}

export interface LayerNormOptions {
  /** Added to the variance before the square root (default 1e-5). */
  eps?: number;
}

/** Uniform Params: n rows, the row length in vector units and in elements, eps. */
function params(n: number, d: number, eps: number) {
  return { n, dv: d % 4 === 0 ? d / 4 : d, d, eps };
}

export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, opts: LayerNormOptions = {}): Tensor {
  const op = 'layerNorm';
  const affine = [weight, bias].filter((t): t is Tensor => t !== null && t !== undefined);
  checkLive(op, x, ...affine);
  checkFloat(op, x, ...affine);
  const dev = checkSameDevice(op, x, ...affine);
  if (x.rank < 1 || x.size === 0)
    throw new EngineError(`${op}: x ${fmt(x.shape)} is empty or a scalar; expected (..., D) with D > 0`);
  const d = x.shape[x.rank - 1]!;
  for (const [name, t] of [
    ['weight', weight],
    ['bias', bias],
  ] as const) {
    if (t && (t.rank !== 1 || t.shape[0] !== d)) {
      throw new EngineError(
        `${op}: ${name} ${fmt(t.shape)} does not match the last axis of x ${fmt(x.shape)} (expected [${d}])`,
      );
    }
  }
  const eps = opts.eps ?? 1e-5;
  if (typeof eps !== 'number' || !(eps >= 0) || !Number.isFinite(eps))
    throw new EngineError(`${op}: eps ${eps} must be a finite number >= 0 (x ${fmt(x.shape)})`);
  const n = x.size / d;
  if (Math.ceil(params(n, d, eps).dv / LN_COLS) > 65535)
    throw new EngineError(`${op}: last axis ${d} of x ${fmt(x.shape)} is too long for the dweight/dbias grid`);
  const y = output(dev, x.shape);
  const stats = output(dev, [n, 2]);
  dev.dispatch({
    kernel: layerNormForwardKernel,
    variant: { vec: d % 4 === 0, weight: !!weight, bias: !!bias },
    params: params(n, d, eps),
    bindings: {
      xs: x.rawBuffer,
      ys: y.rawBuffer,
      stats: stats.rawBuffer,
      ...(weight ? { weight: weight.rawBuffer } : {}),
      ...(bias ? { bias: bias.rawBuffer } : {}),
    },
  });
  const out = record(y, { op, inputs: [x, ...affine], attrs: { eps, weight: !!weight, bias: !!bias }, saved: [stats] });
  stats.dispose(); // the graph (if any) retains its storage
  return out;
}

export const layerNormRules = {
  layerNorm: ({ inputs, saved: [stats], attrs }, gy) => {
    const x = inputs[0]!;
    const w = attrs.weight ? inputs[1]! : null;
    const b = attrs.bias ? inputs[attrs.weight ? 2 : 1]! : null;
    const dev = x.device;
    const d = x.shape[x.rank - 1]!;
    const n = x.size / d;
    const vec = d % 4 === 0;
    const p = params(n, d, attrs.eps);
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      dx = output(dev, x.shape);
      dev.dispatch({
        kernel: layerNormBackwardInputKernel,
        variant: { vec, weight: !!w },
        params: p,
        bindings: {
          xs: x.rawBuffer,
          gy: gy.rawBuffer,
          stats: stats!.rawBuffer,
          dx: dx.rawBuffer,
          ...(w ? { weight: w.rawBuffer } : {}),
        },
      });
    }
    const dw = w?.requiresGrad ? output(dev, [d]) : null;
    const db = b?.requiresGrad ? output(dev, [d]) : null;
    if (dw || db) {
      dev.dispatch({
        kernel: layerNormBackwardParamsKernel,
        variant: { vec, dw: !!dw, db: !!db },
        params: p,
        bindings: {
          gy: gy.rawBuffer,
          ...(dw ? { xs: x.rawBuffer, stats: stats!.rawBuffer, dweight: dw.rawBuffer } : {}),
          ...(db ? { dbias: db.rawBuffer } : {}),
        },
      });
    }
    return [dx, ...(w ? [dw] : []), ...(b ? [db] : [])];
  },
} satisfies { layerNorm: Rule<'layerNorm'> };
