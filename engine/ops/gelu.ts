// gelu: torch.nn.functional.gelu, exact erf form (default) or the tanh approximation; one
// elementwise kernel forward and one fused kernel backward (shaders/gelu.ts, accuracy stated there).
import { EngineError } from '../errors.ts';
import { record, type Rule } from '../graph.ts';
import type { Tensor } from '../tensor.ts';
import { geluBackwardKernel, geluForwardKernel, type GeluApproximate } from '../../shaders/gelu.ts';
import { checkFloat, checkLive, fmt, output } from './common.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    gelu: { approximate: GeluApproximate };
  }
}

export interface GeluOptions {
  /** 'none' (default): x·Φ(x) with the erf form of Φ; 'tanh': the tanh approximation. */
  approximate?: GeluApproximate;
}

/** vec4 variant when the size allows; n = elements in vector units. */
function layout(size: number): { vec: boolean; n: number } {
  const vec = size % 4 === 0;
  return { vec, n: vec ? size / 4 : size };
}

export function gelu(x: Tensor, opts: GeluOptions = {}): Tensor {
  const op = 'gelu';
  checkLive(op, x);
  checkFloat(op, x);
  const approximate = opts.approximate ?? 'none';
  if (approximate !== 'none' && approximate !== 'tanh')
    throw new EngineError(
      `${op}: unknown approximate '${String(approximate)}' (expected 'none' or 'tanh'; x ${fmt(x.shape)})`,
    );
  const y = output(x.device, x.shape);
  if (x.size > 0) {
    const l = layout(x.size);
    x.device.dispatch({
      kernel: geluForwardKernel,
      variant: { approximate, vec: l.vec },
      params: { n: l.n },
      bindings: { xs: x.rawBuffer, ys: y.rawBuffer },
    });
  }
  return record(y, { op, inputs: [x], attrs: { approximate } });
}

export const geluRules = {
  gelu: ({ inputs: [x], attrs }, gy) => {
    const dx = output(x!.device, x!.shape);
    if (x!.size === 0) return [dx];
    const l = layout(x!.size);
    x!.device.dispatch({
      kernel: geluBackwardKernel,
      variant: { approximate: attrs.approximate, vec: l.vec },
      params: { n: l.n },
      bindings: { xs: x!.rawBuffer, gy: gy.rawBuffer, dx: dx.rawBuffer },
    });
    return [dx];
  },
} satisfies { gelu: Rule<'gelu'> };
