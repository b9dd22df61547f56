// conv2d backward as implicit GEMM: input gradient (two layouts, see conv.ts's header for dx and
// for the lavapipe layout all conv kernels share, plus runs of neighbours for ≤ 3 input channels)
// and weight gradient (with the bias gradient).
//
//   dW[co, ci, kh, kw] = Σ_{n,oh,ow} gy[n, co, oh, ow] · x[n, ci, oh·s_h − p_h + kh·d_h, ow·s_w − p_w + kw·d_w]
//   db[co]             = Σ_{n,oh,ow} gy[n, co, oh, ow]
//
// GEMM view: rows = Cout (gy values at one output pixel, packed by convPackKernel into
// [N·Ho·Wo, Cout padded] so a row tile's values are tm / 4 workgroup-uniform vec4 loads),
// columns = Cin·KH·KW (the OIHW weight layout, 4 per invocation, gathered from x), reduction
// over the N·Ho·Wo output pixels, walked as output rows (n, oh) and an inner loop over ow. The
// reduction is long and the output small, so it is split over grid z: each slice sums a contiguous
// range of output rows into its own partial [slice, Cout, Cin·KH·KW] (the host sums the slices
// when there is more than one).
// Bias is a variant: the workgroups of the first column group (a uniform branch) also sum gy.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { accumulators, CONV_BUILTINS, CONV_PARAMS, fmas, Q4, rowsOf, weightLoads } from './conv.ts';
import { kernel } from './kernel.ts';

/**
 * Grid: x = ⌈Cin·KH·KW / (4·wg)⌉, y = ⌈Cout / tm⌉, z = slices; params.aux1 = output rows (n, oh)
 * per slice; aux0 = vec4s per packed gy row. Writes DW[z] (Cout × Cin·KH·KW) and, with `bias`,
 * DB[z] (Cout). (Reading gy unpacked as one vec4 per row for 4 consecutive ow measured slower, bench/README.md:
 * its tm extra vec4 registers spill.)
 */
function weightGradMain(bias: boolean, wg: number, tm: number): string {
  const R = rowsOf(tm);
  const tap = (j: number) => `select(0.0, X[rb${j} + min(x${j}, W - 1u)], rok${j} && x${j} < W)`;
  /** One output pixel's taps: gathers b at column xs, FMAs with a<r> = `gyOf(r)`. */
  const pixel = (ind: string, gyOf: (r: number) => string) =>
    [
      ...Q4.map((j) => `${ind}let x${j} = xs + kx${j};`),
      `${ind}let b = vec4<f32>(${Q4.map((j) => tap(j)).join(`,\n${ind}  `)});`,
      ...R.map((r) => `${ind}c${r} = fma(vec4<f32>(${gyOf(r)}), b, c${r});`),
      ...(bias ? [`${ind}if (withBias) {`, ...R.map((r) => `${ind}  s${r} += ${gyOf(r)};`), `${ind}}`] : []),
      `${ind}xs += params.sw;`,
    ].join('\n');
  const inner = `    for (var ow = 0u; ow < Wo; ow++) {
${weightLoads(tm, '(gn + ow) * Mp4 + mq', 'Gp')}
${pixel('        ', (r) => `a${r >> 2}[${r & 3}]`)}
    }`;
  return wgsl`  let H = params.h; let W = params.w; let KH = params.kh; let KW = params.kw;
  let Ho = params.ho; let Wo = params.wo;
  let KK = KH * KW;
  let NC = params.cin * KK;
  let HW = H * W;
  let c = wid.x * ${wg * 4}u + lid.x * 4u;
  let co0 = wid.y * ${tm}u;
${accumulators(tm)}
${bias ? R.map((r) => `  var s${r} = 0.0;`).join('\n') : ''}
  // Each column's channel offset and top-left tap offset (wrapping below zero).
${Q4.map(
  (j) => `  let c${j}i = min(c + ${j}u, NC - 1u);
  let xo${j} = (c${j}i / KK) * HW;
  let ky${j} = ((c${j}i % KK) / KW) * params.dh - params.ph;
  let kx${j} = (c${j}i % KW) * params.dw - params.pw;`,
).join('\n')}
  let mq = co0 / 4u; // first vec4 of this row tile in each packed pixel row
  let Mp4 = params.aux0;
  let rows = params.n * Ho;
  let r0 = wid.z * params.aux1;
  let r1 = min(r0 + params.aux1, rows);
  let withBias = ${bias ? 'wid.x == 0u' : 'false'};
  for (var rr = r0; rr < r1; rr++) {
    let n = rr / Ho;
    let oh = rr % Ho;
    let xn = n * params.cin * HW;
    let gn = rr * Wo; // packed pixel index of (n, oh, 0)
${Q4.map(
  (j) => `    let y${j} = oh * params.sh + ky${j};
    let rok${j} = y${j} < H;
    let rb${j} = xn + xo${j} + min(y${j}, H - 1u) * W;`,
).join('\n')}
    var xs = 0u;
${inner}
  }
  let ob = wid.z * params.cout * NC;
${R.map(
  (r) => `  if (co0 + ${r}u < params.cout) {
    let o = ob + (co0 + ${r}u) * NC + c;
${Q4.map((j) => `    if (c + ${j}u < NC) { DW[o + ${j}u] = c${r}[${j}]; }`).join('\n')}
${bias ? `    if (withBias && lid.x == 0u) { DB[wid.z * params.cout + co0 + ${r}u] = s${r}; }` : ''}
  }`,
).join('\n')}`;
}

/**
 * WGSL: the first tap kh0 of input row i in row phase pa, its output-row offset
 * khoff = (pa + p_h − kh0·d_h) / s_h, the tap step and the matching dy row step (needs i, pa, iw0).
 */
const firstRowTap = `  var kh0 = KH;
  var khoff = 0u;
  for (var t = 0u; t < KH; t++) {
    let th = i32(pa + params.ph) - i32(t * params.dh);
    if (th % i32(params.sh) == 0) { kh0 = t; khoff = u32(th / i32(params.sh)); break; }
  }
  let stepH = params.aux3;
  let dyStep = stepH * params.dh / params.sh;
  let col0 = iw0 + params.pw;`;

/**
 * WGSL: the loop over output channels and the kernel rows that reach input row i (from
 * firstRowTap), with y, rok, rb (the dy row) and wk-base wc in scope for `body`; wc advances by
 * `wcStep` per output channel.
 */
const tapRowLoop = (body: string, wcStep: string) => `  var gc = n * params.cout * P;
  var wc = 0u;
  for (var co = 0u; co < params.cout; co++) {
    var oy = khoff;
    for (var kh = kh0; kh < KH; kh += stepH) {
      let y = i + oy;
      let rok = y < Ho;
      let rb = gc + min(y, Ho - 1u) * Wo;
${body}      oy -= dyStep;
    }
    gc += P;
    wc += ${wcStep};
  }`;

export const convWeightGradKernel = kernel({
  name: 'conv2dBackwardWeight',
  variant: { bias: false, wg: 32, tm: 16 },
  params: CONV_PARAMS,
  bindings: {
    X: { read: 'f32' },
    Gp: { read: 'vec4<f32>' },
    DW: { write: 'f32' },
    DB: { write: 'f32', if: (v) => v.bias },
  },
  workgroupSize: (v) => v.wg,
  builtins: CONV_BUILTINS,
  main: ({ bias, wg, tm }) => weightGradMain(bias, wg, tm),
  grid: (p, v) => [
    Math.ceil((p.cin * p.kh * p.kw) / (4 * v.wg)),
    Math.ceil(p.cout / v.tm),
    Math.ceil((p.n * p.ho) / p.aux1),
  ],
});

/** First lines of the input-gradient variants (H, W, KH, KW, Ho, Wo in scope). */
const INPUT_GRAD_START = `  let H = params.h; let W = params.w; let KH = params.kh; let KW = params.kw;
  let Ho = params.ho; let Wo = params.wo;`;

/**
 * Input-gradient kernel. Grid: x = column workgroups over N × one phase class, y = ⌈Cin / tm⌉,
 * z = s_h · s_w phases. A phase class (a, b) holds the input pixels (a + s_h·i, b + s_w·j) for
 * i < hq = ⌈H / s_h⌉, j < wq = ⌈W / s_w⌉ (params.aux1 = wq, aux2 = hq); pixels past the image edge
 * are computed on clamped data and not stored. The taps of a class are kh = kh0 + t·stepH with
 * stepH = s_h / gcd(s_h, d_h) (params.aux3; aux4 likewise for kw), found once per invocation; each
 * step moves the output row by −stepH·d_h / s_h, so the loops hold no division.
 */
function inputGradMain(wg: number, tm: number): string {
  const R = rowsOf(tm);
  // First tap hitting the class along one axis: kh0 and its output offset (pa + p − kh0·d) / s.
  const firstTap = (ax: string, ph: string, k: string, s: string, d: string) => `
  var ${ax}0 = ${k};
  var ${ax}off = 0u;
  for (var t = 0u; t < ${k}; t++) {
    let th = i32(${ph}) - i32(t * ${d});
    if (th % i32(${s}) == 0) { ${ax}0 = t; ${ax}off = u32(th / i32(${s})); break; }
  }`;
  const gyTap = (j: number) => `select(0.0, GY[rb${j} + min(x${j}, Wo - 1u)], rok${j} && x${j} < Wo)`;
  return wgsl`${INPUT_GRAD_START}
  let wq = params.aux1;
  let Q = params.aux2 * wq;
  let NQ = params.n * Q;
  let pa = wid.z / params.sw;
  let pb = wid.z % params.sw;
  let q = wid.x * ${wg * 4}u + lid.x * 4u;
  let ci0 = wid.y * ${tm}u;
  let KK = KH * KW;
  let P = Ho * Wo;
${accumulators(tm)}
${firstTap('kh', 'pa + params.ph', 'KH', 'params.sh', 'params.dh')}
${firstTap('kw', 'pb + params.pw', 'KW', 'params.sw', 'params.dw')}
  let stepH = params.aux3;
  let stepW = params.aux4;
  let dyStep = stepH * params.dh / params.sh;
  let dxStep = stepW * params.dw / params.sw;
  // Per pixel: image n, phase-grid coordinates (i, j), and the image's base in gy.
${Q4.map(
  (j) => `  let q${j} = min(q + ${j}u, NQ - 1u);
  let n${j} = q${j} / Q;
  let i${j} = (q${j} % Q) / wq;
  let j${j} = (q${j} % Q) % wq;
  let gn${j} = n${j} * params.cout * P;`,
).join('\n')}
  let mq = ci0 / 4u; // first vec4 of this row tile in each packed tap row
  let Mp4 = params.aux0;
  var gc = 0u;
  var wc = 0u;
  for (var co = 0u; co < params.cout; co++) {
    var oy = khoff;
    for (var kh = kh0; kh < KH; kh += stepH) {
${Q4.map(
  (j) => `      let y${j} = i${j} + oy;
      let rok${j} = y${j} < Ho;
      let rb${j} = gn${j} + gc + min(y${j}, Ho - 1u) * Wo;`,
).join('\n')}
      let wk = wc + kh * KW;
      var ox = kwoff;
      for (var kw = kw0; kw < KW; kw += stepW) {
${Q4.map((j) => `        let x${j} = j${j} + ox;`).join('\n')}
        let b = vec4<f32>(${Q4.map(gyTap).join(',\n          ')});
${weightLoads(tm, '(wk + kw) * Mp4 + mq')}
${fmas(tm, '        ')}
        ox -= dxStep;
      }
      oy -= dyStep;
    }
    gc += P;
    wc += KK;
  }
  let HW = H * W;
${Q4.map(
  (j) => `  let ih${j} = pa + i${j} * params.sh;
  let iw${j} = pb + j${j} * params.sw;
  let ok${j} = q + ${j}u < NQ && ih${j} < H && iw${j} < W;
  let off${j} = n${j} * params.cin * HW + ih${j} * W + iw${j};`,
).join('\n')}
${R.map(
  (r) => `  if (ci0 + ${r}u < params.cin) {
    let o = (ci0 + ${r}u) * HW;
${Q4.map((j) => `    if (ok${j}) { DX[o + off${j}] = c${r}[${j}]; }`).join('\n')}
  }`,
).join('\n')}`;
}

/**
 * Input-gradient kernel, row-quad variant for s_w = d_w = 1 (any s_h, d_h: rows still go by phase
 * class, params.aux2 = hq, aux3 = stepH; aux1 = wq4 = ⌈W / 4⌉ quads per input row): 4 neighbours of
 * one input row per invocation. Tap kw reads gy columns iw + p_w − kw, so from one tap to the next
 * the window slides one column left: one new gathered value per tap.
 * Grid: x = column workgroups over N·hq·wq4 quads, y = ⌈Cin / tm⌉, z = s_h phases.
 */
function inputGradRowsMain(wg: number, tm: number): string {
  const R = rowsOf(tm);
  const ld = (x: string) => `select(0.0, GY[rb + min(${x}, Wo - 1u)], rok && ${x} < Wo)`;
  return wgsl`${INPUT_GRAD_START}
  let P = Ho * Wo;
  let wq4 = params.aux1;
  let hq = params.aux2;
  let pa = wid.z;
  let u = wid.x * ${wg}u + lid.x;
  let row = min(u / wq4, params.n * hq - 1u);
  let iw0 = (u % wq4) * 4u;
  let n = row / hq;
  let i = row % hq;
  let ci0 = wid.y * ${tm}u;
  let KK = KH * KW;
${accumulators(tm)}
${firstRowTap}
  let mq = ci0 / 4u; // first vec4 of this row tile in each packed tap row
  let Mp4 = params.aux0;
${tapRowLoop(
  `      var b = vec4<f32>(${Q4.map((j) => ld(`col0 + ${j}u`)).join(', ')});
      let wk = wc + kh * KW;
      for (var kw = 0u; kw < KW; kw++) {
${weightLoads(tm, '(wk + kw) * Mp4 + mq')}
${fmas(tm, '        ')}
        let xl = col0 - kw - 1u;
        b = vec4<f32>(${ld('xl')}, b.xyz);
      }
`,
  'KK',
)}
  let ih = pa + i * params.sh;
  let ok = u / wq4 < params.n * hq && ih < H;
  let HW = H * W;
  let o = n * params.cin * HW + ih * W + iw0;
${R.map(
  (r) => `  if (ok && ci0 + ${r}u < params.cin) {
    let oc = o + (ci0 + ${r}u) * HW;
${Q4.map((j) => `    if (iw0 + ${j}u < W) { DX[oc + ${j}u] = c${r}[${j}]; }`).join('\n')}
  }`,
).join('\n')}`;
}

/**
 * Input-gradient kernel for an image's first conv (Cin ≤ 3: a 4-row tile would leave a quarter to
 * three quarters of its FMAs on zero padding), s_w = d_w = 1: every invocation computes all `nc` =
 * Cin channels of a run of 4·qn neighbours of one input row (nc·qn vec4 accumulators), sliding over
 * gy like the row-quad variant: each gathered value feeds nc·qn vec4 FMAs with workgroup-uniform
 * weights (read unpacked, OIHW). Rows go by phase class as there (aux2 = hq, aux3 = stepH);
 * aux1 = runs per input row. Grid: x = column workgroups over N·hq·runs, z = s_h phases.
 */
function inputGradRunsMain(wg: number, qn: number, nc: number): string {
  const Q = [...Array(qn).keys()];
  const C = [...Array(nc).keys()];
  const ld = (x: string) => `select(0.0, GY[rb + min(${x}, Wo - 1u)], rok && ${x} < Wo)`;
  const window = Q.flatMap((q) => Q4.map((j) => ld(`col0 + ${q * 4 + j}u`)));
  const store = (r: number, q: number, j: number) =>
    `    if (iw0 + ${q * 4 + j}u < W) { DX[o + ${r === 0 ? '' : `${r}u * HW + `}${q * 4 + j}u] = c${r}${q}[${j}]; }`;
  const stores = C.flatMap((r) => Q.flatMap((q) => Q4.map((j) => store(r, q, j)))).join('\n');
  return wgsl`${INPUT_GRAD_START}
  let P = Ho * Wo;
  let runs = params.aux1;
  let hq = params.aux2;
  let pa = wid.z;
  let u = wid.x * ${wg}u + lid.x;
  let row = min(u / runs, params.n * hq - 1u);
  let iw0 = (u % runs) * ${4 * qn}u;
  let n = row / hq;
  let i = row % hq;
  let KK = KH * KW;
${C.flatMap((r) => Q.map((q) => `  var c${r}${q} = vec4<f32>(0.0);`)).join('\n')}
${firstRowTap}
${tapRowLoop(
  `${Q.map((q) => `      var b${q} = vec4<f32>(${window.slice(4 * q, 4 * q + 4).join(', ')});`).join('\n')}
      let wk = wc + kh * KW;
      for (var kw = 0u; kw < KW; kw++) {
${C.map(
  (r) => `        let a${r} = vec4<f32>(Wp[wk + ${r === 0 ? '' : `${r}u * KK + `}kw]);
${Q.map((q) => `        c${r}${q} = fma(a${r}, b${q}, c${r}${q});`).join('\n')}`,
).join('\n')}
        let xl = col0 - kw - 1u;
${Q.slice()
  .reverse()
  .map((q) => `        b${q} = vec4<f32>(${q === 0 ? ld('xl') : `b${q - 1}.w`}, b${q}.xyz);`)
  .join('\n')}
      }
`,
  `${nc}u * KK`,
)}
  let ih = pa + i * params.sh;
  let ok = u / runs < params.n * hq && ih < H;
  let HW = H * W;
  let o = n * ${nc}u * HW + ih * W + iw0;
  if (ok) {
${stores}
  }`;
}

/**
 * Input gradient: dx = conv_transpose(gy, w). Grid: x = column workgroups of 4·wg columns over
 * N·hq·wq pixels (or N·hq·wq4 quads, rowQuads; aux1 = wq or wq4, aux2 = hq), y = ⌈Cin / tm⌉,
 * z = the stride's phase classes (s_h·s_w, or s_h for rowQuads).
 */
export const convInputGradKernel = kernel({
  name: 'conv2dBackwardInput',
  variant: { wg: 64, tm: 16, rowQuads: false },
  params: CONV_PARAMS,
  bindings: { GY: { read: 'f32' }, Wp: { read: 'vec4<f32>' }, DX: { write: 'f32' } },
  workgroupSize: (v) => v.wg,
  builtins: CONV_BUILTINS,
  main: ({ wg, tm, rowQuads }) => (rowQuads ? inputGradRowsMain(wg, tm) : inputGradMain(wg, tm)),
  grid: (p, v) => {
    const columns = p.n * p.aux2 * p.aux1 * (v.rowQuads ? 4 : 1);
    return [Math.ceil(columns / (4 * v.wg)), Math.ceil(p.cin / v.tm), v.rowQuads ? p.sh : p.sh * p.sw];
  },
});

/**
 * Input gradient of a conv on `nc` ≤ 3 channels, runs of 4·qn neighbours per invocation (weights
 * unpacked, OIHW). Grid: x = column workgroups over N·hq·runs (aux2 = hq, aux1 = runs), z = s_h.
 */
export const convInputGradRunsKernel = kernel({
  name: 'conv2dBackwardInput',
  variant: { wg: 64, qn: 1, nc: 1 },
  params: CONV_PARAMS,
  bindings: { GY: { read: 'f32' }, Wp: { read: 'f32' }, DX: { write: 'f32' } },
  workgroupSize: (v) => v.wg,
  builtins: CONV_BUILTINS,
  main: ({ wg, qn, nc }) => inputGradRunsMain(wg, qn, nc),
  grid: (p, v) => [Math.ceil((p.n * p.aux2 * p.aux1 * 4) / (4 * v.wg)), 1, p.sh],
});
