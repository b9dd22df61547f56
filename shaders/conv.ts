// conv2d as implicit GEMM (no im2col buffer). This file: shared pieces, the packing kernel and the
// forward kernels; conv-backward.ts: input- and weight-gradient kernels. Layouts: x NCHW, w OIHW.
//
// Every conv kernel is the matmul kernel of matmul.ts (read its header) with the B operand gathered
// from an image instead of read from a matrix:
// - A workgroup computes TM rows × (4·wg) columns. The rows are channels whose operand (weights, or
//   gy for the weight gradient) is the same for every invocation: it is first packed (one cheap
//   dispatch, convPackKernel) so that one reduction step's TM values are TM/4 contiguous
//   vec4s, read with workgroup-uniform vec4 loads. Each invocation owns 4 columns (pixels) and TM
//   vec4 accumulators, so each gathered image value feeds TM FMAs.
// - The reduction runs over (channel, kh, kw) as nested loops: per-pixel bases are computed once
//   per invocation, the row base once per kh, and the innermost loop adds one offset per kw.
// - Where the stride and dilation along w are 1, the "row-quad" variants give an invocation 4
//   neighbours of one row: they share the row test and base, and the 4 values of tap kw + 1 are
//   those of tap kw shifted by one, so a sliding vec4 window takes 1 new gathered value per tap
//   instead of 4.
// - Padding: coordinates are u32 and wrap below zero, so `coord < size` is the whole bounds test;
//   loads are clamped into range with min and zeroed with select (no branches around loads).
// - Shapes, strides, padding and dilation are all in the uniform Params; the only variants are the
//   tile (tm, wg), the bias and the column layout.
//
// Forward:  y[n, co, p] = b[co] + Σ_{ci,kh,kw} w[co, ci, kh, kw] · x[n, ci, oh·s − pad + kh·d, …].
// Input gradient (dx): dx[n, ci, ih, iw] = Σ_{co,kh,kw} w[co, ci, kh, kw] · gy[n, co, oh, ow] where
//   oh·s_h = ih + pad_h − kh·d_h (and likewise for w). With stride > 1 the input pixels are split
//   into s_h·s_w phase classes (ih mod s_h, iw mod s_w), one class per grid z slice: within a class
//   the taps (kh, kw) that hit an output pixel are the same for every pixel, so the loops step over
//   exactly those taps and no FMA is spent on taps that do not exist.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { flatKernel } from './common.ts';
import { kernel } from './kernel.ts';

/**
 * The uniform block every conv kernel shares (all u32): the geometry of the convolution, then
 * aux0 = vec4s per packed row (Mp / 4) and kernel-specific aux1..aux4 (documented at each kernel).
 * Filled by engine/ops/conv-kernels.ts.
 */
export const CONV_PARAMS = {
  n: 'u32',
  cin: 'u32',
  h: 'u32',
  w: 'u32',
  cout: 'u32',
  ho: 'u32',
  wo: 'u32',
  kh: 'u32',
  kw: 'u32',
  sh: 'u32',
  sw: 'u32',
  ph: 'u32',
  pw: 'u32',
  dh: 'u32',
  dw: 'u32',
  aux0: 'u32',
  aux1: 'u32',
  aux2: 'u32',
  aux3: 'u32',
  aux4: 'u32',
} as const;

/** Workgroup-level builtins of every conv GEMM kernel. */
export const CONV_BUILTINS = { wid: 'workgroup_id', lid: 'local_invocation_id' } as const;

export const Q4 = [0, 1, 2, 3];
export const rowsOf = (tm: number) => [...Array(tm).keys()];

/** Accumulator declarations and the TM·4 FMAs of one tap: a<r> (uniform) times vec4 b. */
export const accumulators = (tm: number) =>
  rowsOf(tm)
    .map((r) => `  var c${r} = vec4<f32>(0.0);`)
    .join('\n');
export const fmas = (tm: number, ind: string) =>
  rowsOf(tm)
    .map((r) => `${ind}c${r} = fma(vec4<f32>(a${r >> 2}[${r & 3}]), b, c${r});`)
    .join('\n');
/** The tap's tm row values a<q> (vec4s): tm / 4 workgroup-uniform loads from packed `arr` at vec4 index `at`. */
export const weightLoads = (tm: number, at: string, arr = 'Wp') =>
  `        let wi = ${at};\n` +
  rowsOf(tm / 4)
    .map((q) => `        let a${q} = ${arr}[wi + ${q}u];`)
    .join('\n');

/** First line of both forward variants (H, W, KH, KW in scope). */
const FORWARD_START = '  let H = params.h; let W = params.w; let KH = params.kh; let KW = params.kw;';

/**
 * Forward kernel. Grid: x = column workgroups over the N·Ho·Wo output pixels (the batch is folded
 * into the columns, so small late-layer images still fill whole workgroups), y = ⌈Cout / tm⌉.
 * Bias (one per output channel) is a variant.
 */
function forwardMain(bias: boolean, wg: number, tm: number): string {
  const R = rowsOf(tm);
  const tap = (j: number) => `select(0.0, X[rb${j} + min(x${j}, W - 1u)], rok${j} && x${j} < W)`;
  return wgsl`${FORWARD_START}
  let P = params.ho * params.wo;
  let NP = params.n * P;
  let HW = H * W;
  let p = wid.x * ${wg * 4}u + lid.x * 4u;
  let co0 = wid.y * ${tm}u;
  let KK = KH * KW;
${accumulators(tm)}
  // Per pixel: its image's base in x, its top-left input coordinate (wrapping below zero), and its
  // output offset without the channel term.
${Q4.map(
  (j) => `  let p${j} = min(p + ${j}u, NP - 1u);
  let n${j} = p${j} / P;
  let r${j} = p${j} % P;
  let xn${j} = n${j} * params.cin * HW;
  let ih${j} = (r${j} / params.wo) * params.sh - params.ph;
  let iw${j} = (r${j} % params.wo) * params.sw - params.pw;`,
).join('\n')}
  let mq = co0 / 4u; // first vec4 of this row tile in each packed tap row
  let Mp4 = params.aux0;
  var xc = 0u;
  var wc = 0u;
  for (var ci = 0u; ci < params.cin; ci++) {
    for (var kh = 0u; kh < KH; kh++) {
      let dy = kh * params.dh;
${Q4.map(
  (j) => `      let y${j} = ih${j} + dy;
      let rok${j} = y${j} < H;
      let rb${j} = xn${j} + xc + min(y${j}, H - 1u) * W;`,
).join('\n')}
      let wk = wc + kh * KW;
      for (var kw = 0u; kw < KW; kw++) {
        let dx = kw * params.dw;
${Q4.map((j) => `        let x${j} = iw${j} + dx;`).join('\n')}
        let b = vec4<f32>(${Q4.map(tap).join(',\n          ')});
${weightLoads(tm, '(wk + kw) * Mp4 + mq')}
${fmas(tm, '        ')}
      }
    }
    xc += HW;
    wc += KK;
  }
${Q4.map((j) => `  let o${j} = n${j} * params.cout * P + r${j};`).join('\n')}
${R.map(
  (r) => `  if (co0 + ${r}u < params.cout) {
    let co = (co0 + ${r}u) * P;
    ${bias ? `let bv = Bias[co0 + ${r}u];` : 'let bv = 0.0;'}
${Q4.map((j) => `    if (p + ${j}u < NP) { Y[o${j} + co] = c${r}[${j}] + bv; }`).join('\n')}
  }`,
).join('\n')}`;
}

/**
 * Forward kernel, row-quad variant for s_w = d_w = 1: an invocation's 4 pixels are 4 neighbours in
 * one output row (ow0 = 4·quad; each row padded to wq4 = ⌈Wo / 4⌉ quads, params.aux1), so they share
 * the row test and base, and along kw they slide over one input row: pixel j at tap kw + 1 reads
 * what pixel j + 1 read at tap kw. The vec4 b is a sliding window that takes one new gathered value
 * per tap instead of four. Grid: x = column workgroups over N·Ho·wq4 quads, y = ⌈Cout / tm⌉.
 */
function forwardRowsMain(bias: boolean, wg: number, tm: number): string {
  const R = rowsOf(tm);
  const ld = (x: string) => `select(0.0, X[rb + min(${x}, W - 1u)], rok && ${x} < W)`;
  return wgsl`${FORWARD_START}
  let Ho = params.ho; let Wo = params.wo;
  let P = Ho * Wo;
  let HW = H * W;
  let wq4 = params.aux1;
  let u = wid.x * ${wg}u + lid.x;
  let row = min(u / wq4, params.n * Ho - 1u);
  let ow0 = (u % wq4) * 4u;
  let n = row / Ho;
  let oh = row % Ho;
  let co0 = wid.y * ${tm}u;
  let KK = KH * KW;
${accumulators(tm)}
  let xn = n * params.cin * HW;
  let ih = oh * params.sh - params.ph; // wraps below zero
  let iw0 = ow0 - params.pw;
  let mq = co0 / 4u; // first vec4 of this row tile in each packed tap row
  let Mp4 = params.aux0;
  var xc = xn;
  var wc = 0u;
  for (var ci = 0u; ci < params.cin; ci++) {
    for (var kh = 0u; kh < KH; kh++) {
      let y = ih + kh * params.dh;
      let rok = y < H;
      let rb = xc + min(y, H - 1u) * W;
      var b = vec4<f32>(${Q4.map((j) => ld(`iw0 + ${j}u`)).join(', ')});
      let wk = wc + kh * KW;
      for (var kw = 0u; kw < KW; kw++) {
${weightLoads(tm, '(wk + kw) * Mp4 + mq')}
${fmas(tm, '        ')}
        let xr = iw0 + kw + 4u;
        b = vec4<f32>(b.yzw, ${ld('xr')});
      }
    }
    xc += HW;
    wc += KK;
  }
  let ok = u / wq4 < params.n * Ho;
  let o = n * params.cout * P + oh * Wo + ow0;
${R.map(
  (r) => `  if (ok && co0 + ${r}u < params.cout) {
    let oc = o + (co0 + ${r}u) * P;
    ${bias ? `let bv = Bias[co0 + ${r}u];` : 'let bv = 0.0;'}
${Q4.map((j) => `    if (ow0 + ${j}u < Wo) { Y[oc + ${j}u] = c${r}[${j}] + bv; }`).join('\n')}
  }`,
).join('\n')}`;
}

/**
 * Forward: y = conv(x, w) (+ bias). Grid: x = column workgroups of 4·wg columns over the N·Ho·Wo
 * pixels (or N·Ho·wq4 quads, rowQuads), y = ⌈Cout / tm⌉.
 */
export const convForwardKernel = kernel({
  name: 'conv2d',
  variant: { bias: false, wg: 64, tm: 16, rowQuads: false },
  params: CONV_PARAMS,
  bindings: {
    X: { read: 'f32' },
    Wp: { read: 'vec4<f32>' },
    Y: { write: 'f32' },
    Bias: { read: 'f32', if: (v) => v.bias },
  },
  workgroupSize: (v) => v.wg,
  builtins: CONV_BUILTINS,
  main: ({ bias, wg, tm, rowQuads }) => (rowQuads ? forwardRowsMain(bias, wg, tm) : forwardMain(bias, wg, tm)),
  grid: (p, v) => {
    const columns = v.rowQuads ? p.n * p.ho * p.aux1 * 4 : p.n * p.ho * p.wo;
    return [Math.ceil(columns / (4 * v.wg)), Math.ceil(p.cout / v.tm), 1];
  },
});

/**
 * Packs the GEMM's row operand so that one reduction step's values for a row tile are tm / 4
 * contiguous vec4s (uniform vec4 loads instead of tm scalar loads and address computations):
 * Wp[k·Mp + m] for rows m zero-padded to Mp (a multiple of the tile), read from source index
 * m·sm + ⌊k / KK⌋·sa + k mod KK. Used for the OIHW weights (forward: rows Cout, k = (ci, kh, kw);
 * dx: rows Cin, k = (co, kh, kw)) and for gy in the weight gradient (rows Cout, k = (n, oh, ow)).
 * One invocation writes one vec4 (4 rows of one k): u32 division is scalarised on lavapipe, and
 * the per-element version's four divisions cost more than the strided copy itself.
 */
export const convPackKernel = flatKernel({
  name: 'conv2dPack',
  variant: {},
  params: { m: 'u32', mp: 'u32', k: 'u32', kk: 'u32', sm: 'u32', sa: 'u32' },
  bindings: { Wt: { read: 'f32' }, Wp: { write: 'vec4<f32>' } },
  main: () => {
    const row = (j: number) => `select(0.0, Wt[min(m0 + ${j}u, last) * params.sm + base], m0 + ${j}u < params.m)`;
    return `  let mp4 = params.mp / 4u;
  if (i >= params.k * mp4) { return; }
  let k = i / mp4;
  let m0 = (i - k * mp4) * 4u;
  let kq = k / params.kk;
  let base = kq * params.sa + (k - kq * params.kk);
  let last = params.m - 1u;
  Wp[i] = vec4<f32>(${[0, 1, 2, 3].map(row).join(',\n    ')});`;
  },
  count: (p) => (p.k * p.mp) / 4, // one vec4 per invocation
});
