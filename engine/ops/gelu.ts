// gelu: torch.nn.functional.gelu, exact erf form (default) or the tanh approximation; one
// elementwise kernel forward and one fused kernel backward (shaders/gelu.ts, accuracy stated there).
import { record } from '../autograd.ts';
import { EngineError } from '../device.ts';
import type { Rule } from '../rules.ts';
import type { Tensor } from '../tensor.ts';
import { geluBackwardShader, geluForwardShader, type GeluApproximate } from '../../shaders/gelu.ts';
import { checkFloat, checkLive, fmt, grid1d, launch, output } from './kernel.ts';

export interface GeluOptions {
  /** 'none' (default): x·Φ(x) with the erf form of Φ; 'tanh': the tanh approximation. */
  approximate?: GeluApproximate;
}

/** vec4 variant when the size allows; returns the Params and grid for `size` elements. */
function layout(size: number): { vec: boolean; u32: number[]; groups: [number, number] } {
  const vec = size % 4 === 0;
  const n = vec ? size / 4 : size;
  return { vec, u32: [n], groups: grid1d(n) };
}

export function gelu(x: Tensor, opts: GeluOptions = {}): Tensor {
  const op = 'gelu';
  checkLive(op, x);
  checkFloat(op, x);
  const approximate = opts.approximate ?? 'none';
  if (approximate !== 'none' && approximate !== 'tanh') throw new EngineError(`${op}: unknown approximate '${String(approximate)}' (expected 'none' or 'tanh'; x ${fmt(x.shape)})`);
  const y = output(x.device, x.shape);
  if (x.size > 0) {
    const l = layout(x.size);
    launch(x.device, { op, code: geluForwardShader(approximate, l.vec), buffers: [x.rawBuffer, y.rawBuffer], u32: l.u32, groups: l.groups });
  }
  return record(op, [x], y, { approximate });
}

export const geluRules = {
  gelu: ({ inputs: [x], attrs }, gy) => {
    const dx = output(x!.device, x!.shape);
    if (x!.size === 0) return [dx];
    const l = layout(x!.size);
    launch(x!.device, { op: 'geluGrad', code: geluBackwardShader(attrs.approximate, l.vec), buffers: [x!.rawBuffer, gy.rawBuffer, dx.rawBuffer], u32: l.u32, groups: l.groups });
    return [dx];
  },
} satisfies { gelu: Rule<'gelu'> };
