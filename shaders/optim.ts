// In-place optimizer updates, one dispatch per parameter tensor.
import { ENTRY_1D } from './common.ts';

/** SGD with momentum (PyTorch semantics, dampening 0): m = μm + (g + λp); p -= lr·(nesterov ? g + λp + μm : m). */
export const SGD_MOMENTUM = /* wgsl */ `
struct Params { n: u32, nesterov: u32, lr: f32, momentum: f32, wd: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
${ENTRY_1D}
  if (i >= params.n) { return; }
  let d = g[i] + params.wd * p[i];
  let mi = params.momentum * m[i] + d;
  m[i] = mi;
  p[i] -= params.lr * select(mi, d + params.momentum * mi, params.nesterov == 1u);
}`;
