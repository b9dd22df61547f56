// dropout: zeroes each element with probability p and scales the kept ones by 1/(1 − p)
// (torch.nn.functional.dropout). The mask is a hash of (seed, element index) computed in the shader
// (shaders/dropout.ts); the seed is one u32 drawn on the host from the generator per call (no
// readback), so the same generator state gives the same mask, and backward recomputes the mask
// from the seed saved in the op's attrs instead of storing it.
//
// Identity cases (training false, or p = 0): the result is a cheap view of x — a new tensor
// sharing x's storage (no kernel, no copy), recorded like a reshape so gradients flow; dispose it
// like any other result (x stays alive until both are disposed). No random number is drawn then.
// p = 1 gives zeros (and a zero gradient).
import { EngineError } from '../errors.ts';
import { record, type Rule } from '../graph.ts';
import type { Tensor } from '../tensor.ts';
import { defaultGenerator, type Generator } from '../random.ts';
import { dropoutKernel } from '../../shaders/dropout.ts';
import { checkFloat, checkLive, fmt, output } from './common.ts';
import { reshape } from './shape.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    dropout: { p: number; seed: number };
  }
}

export interface DropoutOptions {
  /** false: identity (evaluation). */
  training: boolean;
  /** Source of the per-call seed (default: defaultGenerator from engine/random.ts). */
  generator?: Generator;
}

/** Applies the mask of `seed` to `x` (forward) or to an upstream gradient (backward). */
function applyMask(op: string, x: Tensor, p: number, seed: number): Tensor {
  const y = output(x.device, x.shape);
  if (x.size === 0) return y;
  const vec = x.size % 4 === 0;
  const n = vec ? x.size / 4 : x.size;
  const threshold = Math.min(0xffffffff, Math.floor(p * 2 ** 32));
  const scale = p < 1 ? 1 / (1 - p) : 0;
  x.device.dispatch({
    kernel: dropoutKernel,
    op,
    variant: { vec },
    params: { n, threshold, drop_all: p === 1 ? 1 : 0, seed, scale },
    bindings: { xs: x.rawBuffer, ys: y.rawBuffer },
  });
  return y;
}

export function dropout(x: Tensor, p: number, opts: DropoutOptions): Tensor {
  const op = 'dropout';
  checkLive(op, x);
  checkFloat(op, x);
  if (typeof p !== 'number' || !(p >= 0 && p <= 1))
    throw new EngineError(`${op}: p ${p} outside [0, 1] (x ${fmt(x.shape)})`);
  if (!opts || typeof opts.training !== 'boolean')
    throw new EngineError(`${op}: opts.training must be true or false (x ${fmt(x.shape)})`);
  if (!opts.training || p === 0) return reshape(x, x.shape);
  const seed = (opts.generator ?? defaultGenerator).nextU32();
  return record(applyMask(op, x, p, seed), { op, inputs: [x], attrs: { p, seed } });
}

export const dropoutRules = {
  dropout: ({ attrs }, gy) => [applyMask('dropoutGrad', gy, attrs.p, attrs.seed)],
} satisfies { dropout: Rule<'dropout'> };
