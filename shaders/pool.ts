// 2-D pooling over (P, H, W) planes (P = N·C): one invocation per output element (forward) or
// per input element (backward). Grid: x = position within the plane, y (then z) = plane, so the
// plane is workgroup-uniform. Window geometry lives in Params.
// Tuned for lavapipe, where u32 division is scalarised: a first version of these kernels, with
// 6–20 integer divisions per element and per-lane loop bounds, ran many times slower than a copy of
// the same tensor (figures in bench/README.md). So:
// - every quotient of a plane coordinate goes through qdiv (float division, exact below 2^20;
//   the host keeps plane sizes below 2^19);
// - every loop runs a Params-uniform number of steps (kh·kw taps forward, the ⌈k/s⌉ candidate
//   windows per axis backward, unrolled when small) and masks what falls outside, with clamped
//   loads and selects.
//
// - maxPool2d forward: the window [oy·sy − py, +ky) × [ox·sx − px, +kx); padding counts as −inf.
//   Writes the maximum and its plane index y·W + x as int32. Ties keep the FIRST maximum in
//   row-major window order (strict >); a NaN wins over numbers and a later NaN over an earlier
//   one, so the output is NaN and the index the window's last NaN, as PyTorch's kernels.
// - Backward kernels are gathers: each input element visits the windows that contain it and
//   sums their share of gy, so the result is deterministic and needs no atomics. Max pool: the
//   gy of the windows whose argmax is this element. Avg pool: gy / divisor of every window.
//   Along an axis, the windows containing p are o = ⌊(p + pad)/s⌋ − a for a < ⌈k/s⌉, kept when
//   0 ≤ o < O and p < o·s − pad + k.
// - maxPool2d backward, block variant (strides ≤ POOL_BLOCK_MAX): one invocation per block of
//   s_h × s_w input elements [t·s − pad, t·s − pad + s) per axis, which all share the same ⌈k/s⌉
//   candidate windows t, t − 1, …; each window's gy and argmax is loaded once per block instead of
//   once per element (gathers dominate on lavapipe: 3×3/2 pad 1 goes from 8 to 2 loads per
//   element). An element takes a window's gy when the window's argmax is that element (argmax
//   always lies inside its window, so no containment test is needed).
// - adaptiveAvgPool2d backward to a 1×1 output (global average): dx = gy[plane] / (H·W), a
//   workgroup-uniform load per element.
// - avgPool2d divisor: the window clipped to the padded input (countIncludePad) or to the input.
// - adaptiveAvgPool2d: bin i along an axis of length L → O is [⌊i·L/O⌋, ⌈(i+1)·L/O⌉), at most
//   ⌈L/O⌉ + 1 long; position p lies in bins ⌊p·O/L⌋ + a for a < ⌈O/L⌉ + 1 (checked against
//   the bin bounds). The host passes those maxima as kh/kw (forward) or ny/nx (backward).
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { FLOAT_CLASS } from './common.ts';
import { kernel, spreadGroups, type Groups, type ParamValues } from './kernel.ts';

/** Lanes per workgroup for planes of n elements (small planes would leave most of 256 idle). */
export function poolWorkgroupSize(n: number): number {
  return n <= 1024 ? 64 : 256;
}

/** Window geometry (ny, nx: candidate windows per axis, see below); nby, nbx: blocks, block variant only. */
const PARAMS = {
  planes: 'u32',
  h: 'u32',
  w: 'u32',
  oh: 'u32',
  ow: 'u32',
  kh: 'u32',
  kw: 'u32',
  sh: 'u32',
  sw: 'u32',
  ph: 'u32',
  pw: 'u32',
  include_pad: 'u32',
  ny: 'u32',
  nx: 'u32',
  nby: 'u32',
  nbx: 'u32',
} as const;
type PoolParams = ParamValues<typeof PARAMS>;
const BUILTINS = { gid: 'global_invocation_id', wid: 'workgroup_id', nwg: 'num_workgroups' } as const;

/** Grid: x over the `planeSize` positions of a plane (wg per workgroup), y (then z) over planes. */
const planeGrid = (p: PoolParams, planeSize: number, wg: number): Groups => [
  Math.ceil(planeSize / wg),
  ...spreadGroups(p.planes),
];

/**
 * ⌊a / d⌋ for a < 2^20: (a + ½)/d lies ≥ ½/d from an integer, and f32 division's 2.5 ULP error
 * is below 2.5·2^-23·(2^20/d + 1) < ½/d. Converts through i32: x86 has signed float conversions
 * only, so u32 ↔ f32 would be emulated.
 */
const QDIV = `fn qdiv(a: u32, d: u32) -> u32 { return u32(i32((f32(i32(a)) + 0.5) / f32(i32(d)))); }`;

/** First lines: `plane` (workgroup-uniform) and (`r`, `c`) = position within a rows × cols plane. */
const ENTRY = (rows: string, cols: string, r: string, c: string) => `  let plane = wid.y + wid.z * nwg.y;
  let pos = gid.x;
  if (plane >= params.planes || pos >= ${rows} * ${cols}) { return; }
  let ${r} = qdiv(pos, ${cols});
  let ${c} = pos - ${r} * ${cols};`;

/** Output element → its index `i`, its plane's input base (forward). */
const OUTPUT_ENTRY = `${ENTRY('params.oh', 'params.ow', 'oy', 'ox')}
  let i = plane * params.oh * params.ow + pos;
  let base = plane * params.h * params.w;`;

/** Input element → its index `i`, its plane's output base (backward). */
const INPUT_ENTRY = `${ENTRY('params.h', 'params.w', 'y', 'x')}
  let i = plane * params.h * params.w + pos;
  let obase = plane * params.oh * params.ow;`;

/** Window origin (x, y) (may be negative: padding) and divisor of output (oy, ox), max/avg pooling. */
const WINDOW_FN = `
fn origin(oy: u32, ox: u32) -> vec2<i32> {
  return vec2<i32>(i32(ox * params.sw) - i32(params.pw), i32(oy * params.sh) - i32(params.ph)); // (x, y)
}
fn divisor(o: vec2<i32>) -> f32 {
  let h = i32(params.h);
  let w = i32(params.w);
  let kh = i32(params.kh);
  let kw = i32(params.kw);
  if (params.include_pad != 0u) {
    return f32((min(o.y + kh, h + i32(params.ph)) - o.y) * (min(o.x + kw, w + i32(params.pw)) - o.x));
  }
  return f32((min(o.y + kh, h) - max(o.y, 0)) * (min(o.x + kw, w) - max(o.x, 0)));
}`;

/** Bin [lo, hi) of index o along an axis of length l pooled to n, adaptive pooling. */
const BIN_FN = `
fn bin(o: u32, l: u32, n: u32) -> vec2<u32> { return vec2<u32>(qdiv(o * l, n), qdiv((o + 1u) * l + n - 1u, n)); }`;

export const maxPoolForwardKernel = kernel({
  name: 'maxPool2d',
  variant: { wg: 64 },
  params: PARAMS,
  bindings: { xs: { read: 'f32' }, ys: { write: 'f32' }, argmax: { write: 'i32' } },
  workgroupSize: (v) => v.wg,
  builtins: BUILTINS,
  prelude: () => `${WINDOW_FN}
${FLOAT_CLASS}
${QDIV}`,
  main: () => `${OUTPUT_ENTRY}
  let o = origin(oy, ox);
  let h = i32(params.h);
  let w = i32(params.w);
  // Start from the first tap inside the input (padding is −inf, never above it); strict > below
  // keeps it on ties.
  var arg = max(o.y, 0) * w + max(o.x, 0);
  var best = xs[base + u32(arg)];
  for (var ky = 0; ky < i32(params.kh); ky++) {
    let y = o.y + ky;
    let row_ok = y >= 0 && y < h;
    for (var kx = 0; kx < i32(params.kw); kx++) {
      let x = o.x + kx;
      let at = clamp(y, 0, h - 1) * w + clamp(x, 0, w - 1);
      let v = xs[base + u32(at)];
      let take = row_ok && x >= 0 && x < w && (v > best || is_nan(v));
      best = select(best, v, take);
      arg = select(arg, at, take);
    }
  }
  ys[i] = best;
  argmax[i] = arg;`,
  grid: (p, v) => planeGrid(p, p.oh * p.ow, v.wg),
});

/**
 * Trip counts of the backward kernels' candidate loops: a compile-time unroll count when the
 * launcher passes one (ny, nx ≤ POOL_UNROLL_MAX: constant-trip loops are unrolled, which measured
 * faster on lavapipe), else the Params value. The geometry itself always comes from Params.
 */
export const POOL_UNROLL_MAX = 3;
const trips = (n: number, field: string, signed: boolean) =>
  n ? `${n}${signed ? '' : 'u'}` : signed ? `i32(params.${field})` : `params.${field}`;

/**
 * Sums over the windows containing input (y, x) (max/avg backward): `body` sees ok (the window
 * exists and contains (y, x)), cy, cx (its output position, clamped in range) and o (its index
 * in gy), and adds to acc, which is stored to dx[i].
 */
const windowsContaining = (ny: number, nx: number, body: string) => `
  let last_y = i32(qdiv(y + params.ph, params.sh));
  let last_x = i32(qdiv(x + params.pw, params.sw));
  var acc = 0.0;
  for (var a = 0; a < ${trips(ny, 'ny', true)}; a++) {
    let oy = last_y - a;
    let y_ok = oy >= 0 && oy < i32(params.oh) && i32(y) < oy * i32(params.sh) - i32(params.ph) + i32(params.kh);
    let cy = u32(clamp(oy, 0, i32(params.oh) - 1));
    for (var b = 0; b < ${trips(nx, 'nx', true)}; b++) {
      let ox = last_x - b;
      let ok = y_ok && ox >= 0 && ox < i32(params.ow) && i32(x) < ox * i32(params.sw) - i32(params.pw) + i32(params.kw);
      let cx = u32(clamp(ox, 0, i32(params.ow) - 1));
      let o = obase + cy * params.ow + cx;
      ${body}
    }
  }
  dx[i] = acc;`;

/** Max-pool backward, one invocation per input element; ny, nx: unrolled trip counts (0: from Params). */
export const maxPoolBackwardKernel = kernel({
  name: 'maxPool2dGrad',
  variant: { wg: 64, ny: 0, nx: 0 },
  params: PARAMS,
  bindings: { gy: { read: 'f32' }, argmax: { read: 'i32' }, dx: { write: 'f32' } },
  workgroupSize: (v) => v.wg,
  builtins: BUILTINS,
  prelude: () => QDIV,
  main: ({ ny, nx }) => wgsl`${INPUT_ENTRY}
  let me = i32(y * params.w + x);
  ${windowsContaining(ny, nx, 'acc += select(0.0, gy[o], ok && argmax[o] == me);')}`,
  grid: (p, v) => planeGrid(p, p.h * p.w, v.wg),
});

/** Largest stride (per axis) of the block variant of the max-pool backward (its block is s_h × s_w elements). */
export const POOL_BLOCK_MAX = 4;

/**
 * Max-pool backward, block variant (see the header). Params as PARAMS plus nby, nbx = blocks per
 * plane column / row (⌈(H + p_h) / s_h⌉, ⌈(W + p_w) / s_w⌉); bh, bw = s_h, s_w and ny, nx are
 * compile-time. Grid: x over the nby·nbx blocks of a plane, y (then z) over planes.
 */
function maxBackwardBlocksMain(ny: number, nx: number, bh: number, bw: number): string {
  const I = [...Array(ny).keys()];
  const J = [...Array(nx).keys()];
  const windows = I.flatMap((i) => J.map((j) => [i, j] as const));
  const pixels = [...Array(bh).keys()].flatMap((a) => [...Array(bw).keys()].map((b) => [a, b] as const));
  return wgsl`${ENTRY('params.nby', 'params.nbx', 'ty', 'tx')}
  let obase = plane * params.oh * params.ow;
  let base = plane * params.h * params.w;
  let oh = i32(params.oh);
  let ow = i32(params.ow);
  let h = i32(params.h);
  let w = i32(params.w);
  // The candidate windows (ty − i, tx − j): gy (0 where the window does not exist) and argmax.
${I.map(
  (i) => `  let oy${i} = i32(ty) - ${i};
  let vy${i} = oy${i} >= 0 && oy${i} < oh;
  let cy${i} = u32(clamp(oy${i}, 0, oh - 1)) * params.ow;`,
).join('\n')}
${J.map(
  (j) => `  let ox${j} = i32(tx) - ${j};
  let vx${j} = ox${j} >= 0 && ox${j} < ow;
  let cx${j} = u32(clamp(ox${j}, 0, ow - 1));`,
).join('\n')}
${windows
  .map(
    ([i, j]) => `  let g${i}${j} = select(0.0, gy[obase + cy${i} + cx${j}], vy${i} && vx${j});
  let m${i}${j} = argmax[obase + cy${i} + cx${j}];`,
  )
  .join('\n')}
  let y0 = i32(ty * ${bh}u) - i32(params.ph);
  let x0 = i32(tx * ${bw}u) - i32(params.pw);
${pixels
  .map(
    ([a, b]) => `  {
    let y = y0 + ${a};
    let x = x0 + ${b};
    let me = y * w + x;
    let acc = ${windows.map(([i, j]) => `select(0.0, g${i}${j}, m${i}${j} == me)`).join(' + ')};
    if (y >= 0 && y < h && x >= 0 && x < w) { dx[base + u32(me)] = acc; }
  }`,
  )
  .join('\n')}`;
}

export const maxPoolBackwardBlocksKernel = kernel({
  name: 'maxPool2dGrad',
  variant: { wg: 64, ny: 1, nx: 1, bh: 2, bw: 2 },
  params: PARAMS,
  bindings: { gy: { read: 'f32' }, argmax: { read: 'i32' }, dx: { write: 'f32' } },
  workgroupSize: (v) => v.wg,
  builtins: BUILTINS,
  prelude: () => QDIV,
  main: ({ ny, nx, bh, bw }) => maxBackwardBlocksMain(ny, nx, bh, bw),
  grid: (p, v) => planeGrid(p, p.nby * p.nbx, v.wg),
});

export const avgPoolForwardKernel = kernel({
  name: 'avgPool2d',
  variant: { wg: 64 },
  params: PARAMS,
  bindings: { xs: { read: 'f32' }, ys: { write: 'f32' } },
  workgroupSize: (v) => v.wg,
  builtins: BUILTINS,
  prelude: () => `${WINDOW_FN}\n${QDIV}`,
  main: () => `${OUTPUT_ENTRY}
  let o = origin(oy, ox);
  let h = i32(params.h);
  let w = i32(params.w);
  var acc = 0.0;
  for (var ky = 0; ky < i32(params.kh); ky++) {
    let y = o.y + ky;
    let row_ok = y >= 0 && y < h;
    for (var kx = 0; kx < i32(params.kw); kx++) {
      let x = o.x + kx;
      let v = xs[base + u32(clamp(y, 0, h - 1) * w + clamp(x, 0, w - 1))];
      acc += select(0.0, v, row_ok && x >= 0 && x < w);
    }
  }
  ys[i] = acc / divisor(o);`,
  grid: (p, v) => planeGrid(p, p.oh * p.ow, v.wg),
});

export const avgPoolBackwardKernel = kernel({
  name: 'avgPool2dGrad',
  variant: { wg: 64, ny: 0, nx: 0 },
  params: PARAMS,
  bindings: { gy: { read: 'f32' }, dx: { write: 'f32' } },
  workgroupSize: (v) => v.wg,
  builtins: BUILTINS,
  prelude: () => `${WINDOW_FN}\n${QDIV}`,
  main: ({ ny, nx }) => wgsl`${INPUT_ENTRY}
  ${windowsContaining(ny, nx, 'acc += select(0.0, gy[o] / divisor(origin(cy, cx)), ok);')}`,
  grid: (p, v) => planeGrid(p, p.h * p.w, v.wg),
});

export const adaptiveAvgPoolForwardKernel = kernel({
  name: 'adaptiveAvgPool2d',
  variant: { wg: 64 },
  params: PARAMS,
  bindings: { xs: { read: 'f32' }, ys: { write: 'f32' } },
  workgroupSize: (v) => v.wg,
  builtins: BUILTINS,
  prelude: () => `${BIN_FN}\n${QDIV}`,
  main: () => `${OUTPUT_ENTRY}
  let by = bin(oy, params.h, params.oh);
  let bx = bin(ox, params.w, params.ow);
  var acc = 0.0;
  for (var ky = 0u; ky < params.kh; ky++) {
    let y = by[0] + ky;
    for (var kx = 0u; kx < params.kw; kx++) {
      let x = bx[0] + kx;
      let v = xs[base + min(y, params.h - 1u) * params.w + min(x, params.w - 1u)];
      acc += select(0.0, v, y < by[1] && x < bx[1]);
    }
  }
  ys[i] = acc / f32((by[1] - by[0]) * (bx[1] - bx[0]));`,
  grid: (p, v) => planeGrid(p, p.oh * p.ow, v.wg),
});

/** adaptiveAvgPool2d backward to 1×1: every element gets its plane's gy / (H·W) (a workgroup-uniform load). */
export const globalAvgPoolBackwardKernel = kernel({
  name: 'adaptiveAvgPool2dGrad',
  variant: { wg: 64 },
  params: PARAMS,
  bindings: { gy: { read: 'f32' }, dx: { write: 'f32' } },
  workgroupSize: (v) => v.wg,
  builtins: BUILTINS,
  main: () => `  let plane = wid.y + wid.z * nwg.y;
  let hw = params.h * params.w;
  if (plane >= params.planes || gid.x >= hw) { return; }
  dx[plane * hw + gid.x] = gy[plane] / f32(hw);`,
  grid: (p, v) => planeGrid(p, p.h * p.w, v.wg),
});

function adaptiveBackwardMain(ny: number, nx: number): string {
  const NY = trips(ny, 'ny', false);
  const NX = trips(nx, 'nx', false);
  return wgsl`${INPUT_ENTRY}
  let first_y = qdiv(y * params.oh, params.h);
  let first_x = qdiv(x * params.ow, params.w);
  var acc = 0.0;
  for (var a = 0u; a < ${NY}; a++) {
    let oy = min(first_y + a, params.oh - 1u);
    let by = bin(oy, params.h, params.oh);
    let y_ok = first_y + a < params.oh && y >= by[0] && y < by[1];
    for (var b = 0u; b < ${NX}; b++) {
      let ox = min(first_x + b, params.ow - 1u);
      let bx = bin(ox, params.w, params.ow);
      let ok = y_ok && first_x + b < params.ow && x >= bx[0] && x < bx[1];
      acc += select(0.0, gy[obase + oy * params.ow + ox] / f32((by[1] - by[0]) * (bx[1] - bx[0])), ok);
    }
  }
  dx[i] = acc;`;
}

export const adaptiveAvgPoolBackwardKernel = kernel({
  name: 'adaptiveAvgPool2dGrad',
  variant: { wg: 64, ny: 0, nx: 0 },
  params: PARAMS,
  bindings: { gy: { read: 'f32' }, dx: { write: 'f32' } },
  workgroupSize: (v) => v.wg,
  builtins: BUILTINS,
  prelude: () => `${BIN_FN}\n${QDIV}`,
  main: ({ ny, nx }) => adaptiveBackwardMain(ny, nx),
  grid: (p, v) => planeGrid(p, p.h * p.w, v.wg),
});
