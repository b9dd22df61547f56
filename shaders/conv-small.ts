// conv2d forward and input gradient for tiny images (late ResNet layers at small inputs: 1×1 or
// 2×2 maps, so N·H·W is 4–16 pixels while the reduction Cin·KH·KW reaches 4608).
//
// The implicit-GEMM kernels of conv.ts give each invocation 4 pixels and share channel rows across
// the workgroup: with 4–16 pixels that is one or a few busy lanes in one column workgroup, and the
// packing of the weights (a strided transpose of up to 2.4 M values) costs as much as the conv.
// Here the roles swap: every invocation owns 4 output channels (rows) and ALL the pixels (≤ 16,
// CQ vec4 accumulators per row, CQ a variant); the pixels' gathered image values are the same for
// the whole workgroup (uniform loads, cheap on lavapipe), the weights are read unpacked, per lane.
// - Taps that hit no pixel at all (8 of 9 on a 1×1 map with padding 1) are skipped: the host
//   passes the interval of taps [kh0, kh1) × [kw0, kw1) that can hit.
// - The reduction channels are split over grid z (split-K) so that enough workgroups exist; each
//   slice writes a partial [N, rows, pixels] that the host sums (bias in slice 0 only).
// - Tap outer, channel inner: a slice's weights (rows × chunk × taps) stay cache resident while the
//   taps re-read them; each (tap, pixel) offset and mask is computed once per tap.
// Forward (transposed = false): rows = Cout, reduction channels = Cin, pixels = N·Ho·Wo, source x;
//   out[n, co, oh, ow] += w[co, ci, kh, kw] · x[n, ci, oh·s − p + kh·d, ow·s − p + kw·d].
// Input gradient (transposed = true): rows = Cin, reduction channels = Cout, pixels = N·H·W, source
//   gy; dx[n, ci, ih, iw] += w[co, ci, kh, kw] · gy[n, co, oh, ow] with oh·s = ih + p − kh·d (exact).
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { CONV_BUILTINS, CONV_PARAMS, Q4 } from './conv.ts';
import { kernel } from './kernel.ts';

/** Largest pixel count (N·H·W of the output) the tiny kernels take: 4 vec4 accumulators per row. */
export const CONV_SMALL_MAX_PIXELS = 16;
/** Rows (channels) per invocation. */
export const CONV_SMALL_ROWS = 4;

/**
 * Grid: x = ⌈rows / (4·wg)⌉, z = slices. Params: the conv geometry, aux0 = reduction channels per
 * slice, aux1 = kh0 | kh1 << 16, aux2 = kw0 | kw1 << 16 (the taps that can hit a pixel).
 * Writes Out[z] = [N, rows, pixels of one image]; with `bias` slice 0 adds Bias[row].
 */
function smallMain(transposed: boolean, bias: boolean, wg: number, cq: number): string {
  const R = [...Array(CONV_SMALL_ROWS).keys()];
  const Q = [...Array(cq).keys()];
  // Per pixel quad q: n, the pixel's coordinates (a, b) in the output image, its source offset and mask.
  const coord = (q: number) =>
    Q4.map(
      (j) => `  let pi${q}${j} = min(${q * 4 + j}u, NPIX - 1u);
  let pn${q}${j} = pi${q}${j} / OHW;
  let pa${q}${j} = (pi${q}${j} % OHW) / OW;
  let pb${q}${j} = pi${q}${j} % OW;`,
    ).join('\n');
  const tap = (q: number, j: number) =>
    transposed
      ? `      let ty${q}${j} = i32(pa${q}${j} + params.ph) - i32(kh * params.dh);
      let tx${q}${j} = i32(pb${q}${j} + params.pw) - i32(kw * params.dw);
      let sy${q}${j} = u32(ty${q}${j}) / params.sh;
      let sx${q}${j} = u32(tx${q}${j}) / params.sw;
      let ok${q}${j} = ${q * 4 + j}u < NPIX && ty${q}${j} >= 0 && tx${q}${j} >= 0 && ` +
        `u32(ty${q}${j}) % params.sh == 0u && u32(tx${q}${j}) % params.sw == 0u && sy${q}${j} < SH && sx${q}${j} < SW;`
      : `      let sy${q}${j} = pa${q}${j} * params.sh - params.ph + kh * params.dh;
      let sx${q}${j} = pb${q}${j} * params.sw - params.pw + kw * params.dw;
      let ok${q}${j} = ${q * 4 + j}u < NPIX && sy${q}${j} < SH && sx${q}${j} < SW;`;
  // Row r's weight offset and accumulators; its FMAs with the gathered b<q>; its stores.
  const rowStart = (r: number) =>
    [`  let wr${r} = min(row0 + ${r}u, M - 1u) * rs;`, ...Q.map((q) => `  var c${r}${q} = vec4<f32>(0.0);`)].join('\n');
  const rowFmas = (r: number) =>
    [
      `        let a${r} = vec4<f32>(Wt[wr${r} + wk]);`,
      ...Q.map((q) => `        c${r}${q} = fma(a${r}, b${q}, c${r}${q});`),
    ].join('\n');
  const store = (r: number, q: number, j: number) =>
    `    if (${q * 4 + j}u < NPIX) { ` +
    `Out[ob + (pn${q}${j} * M + row0 + ${r}u) * OHW + pi${q}${j} % OHW] = c${r}${q}[${j}] + bv; }`;
  /** Pixel (q, j)'s offset into the source channel c0 (0 where the tap is out of bounds). */
  const sourceOffset = (q: number, j: number) =>
    `      var so${q}${j} = select(0u, pn${q}${j} * C * SHW + sy${q}${j} * SW + sx${q}${j}, ok${q}${j}) + c0 * SHW;`;
  return wgsl`  let KK = params.kh * params.kw;
  ${
    transposed
      ? `let M = params.cin; let C = params.cout; let SH = params.ho; ` +
        `let SW = params.wo; let OH = params.h; let OW = params.w;
  let rs = KK; let cs = params.cin * KK;`
      : `let M = params.cout; let C = params.cin; let SH = params.h; ` +
        `let SW = params.w; let OH = params.ho; let OW = params.wo;
  let rs = params.cin * KK; let cs = KK;`
  }
  let OHW = OH * OW;
  let SHW = SH * SW;
  let NPIX = params.n * OHW;
  let row0 = (wid.x * ${wg}u + lid.x) * ${CONV_SMALL_ROWS}u;
${R.map(rowStart).join('\n')}
${Q.map(coord).join('\n')}
  let c0 = wid.z * params.aux0;
  let c1 = min(c0 + params.aux0, C);
  let kh1 = params.aux1 >> 16u;
  let kw1 = params.aux2 >> 16u;
  for (var kh = params.aux1 & 0xffffu; kh < kh1; kh++) {
    for (var kw = params.aux2 & 0xffffu; kw < kw1; kw++) {
${Q.map((q) => Q4.map((j) => tap(q, j)).join('\n')).join('\n')}
${Q.map(
  (q) => `      let m${q} = vec4<f32>(${Q4.map((j) => `select(0.0, 1.0, ok${q}${j})`).join(', ')});
${Q4.map((j) => sourceOffset(q, j)).join('\n')}`,
).join('\n')}
      var wk = c0 * cs + kh * params.kw + kw;
      for (var c = c0; c < c1; c++) {
${Q.map((q) => `        let b${q} = m${q} * vec4<f32>(${Q4.map((j) => `S[so${q}${j}]`).join(', ')});`).join('\n')}
${R.map(rowFmas).join('\n')}
${Q.map((q) => Q4.map((j) => `        so${q}${j} += SHW;`).join(' ')).join('\n')}
        wk += cs;
      }
    }
  }
  let ob = wid.z * params.n * M * OHW;
${R.map(
  (r) => `  if (row0 + ${r}u < M) {
    ${bias ? `let bv = select(0.0, Bias[row0 + ${r}u], wid.z == 0u);` : 'let bv = 0.0;'}
${Q.map((q) => Q4.map((j) => store(r, q, j)).join('\n')).join('\n')}
  }`,
).join('\n')}`;
}

/**
 * Forward (transposed false, rows = Cout) or input gradient (transposed, rows = Cin) of a tiny image.
 * Grid: x = ⌈rows / (CONV_SMALL_ROWS·wg)⌉, z = slices of aux0 reduction channels each.
 */
export const convSmallKernel = kernel({
  name: 'conv2dSmall',
  variant: { transposed: false, bias: false, wg: 16, cq: 1 },
  params: CONV_PARAMS,
  bindings: {
    S: { read: 'f32' },
    Wt: { read: 'f32' },
    Out: { write: 'f32' },
    Bias: { read: 'f32', if: (v) => v.bias },
  },
  workgroupSize: (v) => v.wg,
  builtins: CONV_BUILTINS,
  main: ({ transposed, bias, wg, cq }) => smallMain(transposed, bias, wg, cq),
  grid: (p, v) => {
    const [rows, channels] = v.transposed ? [p.cin, p.cout] : [p.cout, p.cin];
    return [Math.ceil(rows / (CONV_SMALL_ROWS * v.wg)), 1, Math.ceil(channels / p.aux0)];
  },
});
