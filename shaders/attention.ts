// Fused scaled-dot-product attention, forward: out = softmax(Q·Kᵀ·scale + mask)·V per (batch, head),
// FlashAttention style: the (Lq × Lk) score matrix never reaches global memory; the kernel also
// writes the per-row logsumexp lse = m + log Σ exp(s − m) that backward uses to recompute P.
//
// Layout (tuned for lavapipe like shaders/matmul.ts: workgroup-uniform loads, vec4 FMAs, several
// outputs per invocation). A workgroup owns TM = 8 query rows of one (batch, head) and walks the
// keys in blocks of KB = 4·WG. Per block:
//  1. scores: invocation i computes s[r][4i..4i+3] for the TM rows (Q loads are workgroup-uniform,
//     each K row is a vec4 stream), scaled in registers, stored to workgroup memory, masked there
//     (a loop over the rows, see maskQuad); keys past Lk become −inf;
//  2. statistics: invocation r < TM (one SIMD batch on lavapipe) updates row r's running max and
//     sum (online softmax) and overwrites its scores with p = exp(s − m);
//  3. P·V: invocation i owns output columns 4i..4i+3 and accumulates Σ_j p[r][j]·V[j] with uniform
//     p loads and vec4 V loads, after rescaling its accumulators by exp(m_old − m_new).
// So WG = ceil(Dv / 4) (rounded to 8, 16, 32 or 64): head widths up to 256.
// `unroll` (4 reduction steps per iteration, vec4 loads when `vecD` / `vecDv`) is faster at D = 64
// but slow to compile on lavapipe (bench/README.md); the launcher uses it for Dv > 32 only.
// A row whose mask is −inf at every key gets out = 0 and lse = +inf (so backward sees P = 0 and
// gives zero gradients); PyTorch would give NaN there.
// Shapes, mask strides, the scale and ±inf bit patterns live in the uniform Params.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { kernel } from './kernel.ts';

/** Query (forward, dQ) or key (dK/dV) rows per workgroup: one 8-lane SIMD batch on lavapipe. */
export const ATTN_TM = 8;
/** The largest head width (D or Dv) the kernels take: 4 columns × 64 invocations. */
export const ATTN_MAX_WIDTH = 256;

/** Invocations per workgroup for `cols` output columns (4 per invocation). */
export function attentionWorkgroupSize(cols: number): number {
  const lanes = Math.ceil(cols / 4);
  return lanes <= 8 ? 8 : lanes <= 16 ? 16 : lanes <= 32 ? 32 : 64;
}

/** Shapes, mask strides over (B, H, Lq, Lk) (0 where broadcast), ±inf bits, TM, the scale and the batch. */
export const ATTN_PARAMS = {
  lq: 'u32',
  lk: 'u32',
  d: 'u32',
  dv: 'u32',
  heads: 'u32',
  mb: 'u32',
  mh: 'u32',
  mq: 'u32',
  mk: 'u32',
  ninf: 'u32',
  pinf: 'u32',
  tm: 'u32',
  scale: 'f32',
  batch: 'u32',
} as const;
export const ATTN_BUILTINS = { wid: 'workgroup_id', lid: 'local_invocation_index' } as const;

/** Grid: one workgroup per TM of `rows` rows of one (batch, head). */
export const attentionGrid = (rows: number, p: { heads: number; batch: number }): [number, number, number] => [
  Math.ceil(rows / ATTN_TM),
  p.heads,
  p.batch,
];

const R = [...Array(ATTN_TM).keys()];
const J = [0, 1, 2, 3];

/** The element type of a float buffer bound as vec4s (`vec`: every row length a multiple of 4) or scalars. */
export const floats = (vec: boolean): string => (vec ? 'vec4<f32>' : 'f32');
/** A scalar accessor `<name>_at` of a float buffer bound by `floats`. */
export function floatAccessor(name: string, vec: boolean): string {
  return `fn ${name}_at(i: u32) -> f32 { ${vec ? `return ${name}[i / 4u][i % 4u];` : `return ${name}[i];`} }`;
}

/**
 * acc<r>[j] += Σ_{d < len} A[<aRow><r> + d] · B[<bRow><j> + d]: rows r of A are workgroup-uniform, the
 * 4 rows j of B belong to this invocation. `vec`: both bound as vec4 and len % 4 == 0. `unroll`: 4
 * steps of d per iteration with vec4 loads (faster at D = 64, but lavapipe's LLVM then
 * takes seconds longer to compile the shader); otherwise one scalar step per iteration.
 */
export function dotRows(
  acc: string,
  A: string,
  aRow: string,
  B: string,
  bRow: string,
  len: string,
  vec: boolean,
  unroll = true,
): string {
  const L: string[] = [];
  for (const r of R) L.push(`  var ${acc}${r} = vec4<f32>(0.0);`);
  if (!unroll) {
    L.push(`  for (var d = 0u; d < ${len}; d++) {`);
    L.push(`    let b = vec4<f32>(${J.map((j) => `${B}_at(${bRow}${j} + d)`).join(', ')});`);
    for (const r of R) L.push(`    ${acc}${r} = fma(vec4<f32>(${A}_at(${aRow}${r} + d)), b, ${acc}${r});`);
    L.push(`  }`);
    return L.join('\n');
  }
  L.push(`  for (var d = 0u; d < (${len} & ~3u); d += 4u) {`);
  for (const r of R) {
    L.push(
      vec
        ? `    let a${r} = ${A}[(${aRow}${r} + d) / 4u];`
        : `    let a${r} = vec4<f32>(${J.map((t) => `${A}_at(${aRow}${r} + d + ${t}u)`).join(', ')});`,
    );
  }
  for (const j of J) {
    L.push(
      vec
        ? `    let t${j} = ${B}[(${bRow}${j} + d) / 4u];`
        : `    let t${j} = vec4<f32>(${J.map((t) => `${B}_at(${bRow}${j} + d + ${t}u)`).join(', ')});`,
    );
  }
  // Transposed: b<t> holds the 4 B rows at reduction index d + t (free on lavapipe's SoA vectors).
  for (const t of J) L.push(`    let b${t} = vec4<f32>(t0[${t}], t1[${t}], t2[${t}], t3[${t}]);`);
  for (const t of J) for (const r of R) L.push(`    ${acc}${r} = fma(vec4<f32>(a${r}[${t}]), b${t}, ${acc}${r});`);
  L.push(`  }`);
  if (!vec) {
    L.push(`  for (var d = ${len} & ~3u; d < ${len}; d++) {`);
    L.push(`    let b = vec4<f32>(${J.map((j) => `${B}_at(${bRow}${j} + d)`).join(', ')});`);
    for (const r of R) L.push(`    ${acc}${r} = fma(vec4<f32>(${A}_at(${aRow}${r} + d)), b, ${acc}${r});`);
    L.push(`  }`);
  }
  return L.join('\n');
}

/**
 * acc<r> += Σ_{j < n} W[r][j] · X[row(j) + 4 columns], W in workgroup memory (array of vec4, rows of
 * `kb` floats, uniform loads) and `row(j)` the offset of the X row paired with block index j; `xc`
 * (from columnOffsets) is this invocation's column offset, clamped into the row. `unroll` as in dotRows.
 */
export function accumulateRows(
  acc: string,
  W: string,
  kb: number,
  X: string,
  row: (j: string) => string,
  n: string,
  vec: boolean,
  unroll = true,
): string {
  const load = (j: string) =>
    vec ? `${X}[(${row(j)} + xc) / 4u]` : `vec4<f32>(${J.map((t) => `${X}_at(${row(j)} + xc${t})`).join(', ')})`;
  const L: string[] = [];
  if (unroll) {
    L.push(`  for (var j = 0u; j < (${n} & ~3u); j += 4u) {`);
    for (const r of R) L.push(`    let w${r} = ${W}[(${r * kb}u + j) / 4u];`);
    for (const t of J) L.push(`    let x${t} = ${load(`j + ${t}u`)};`);
    for (const t of J) for (const r of R) L.push(`    ${acc}${r} = fma(vec4<f32>(w${r}[${t}]), x${t}, ${acc}${r});`);
    L.push(`  }`);
  }
  L.push(`  for (var j = ${unroll ? `${n} & ~3u` : '0u'}; j < ${n}; j++) {`);
  L.push(`    let x = ${load('j')};`);
  for (const r of R) L.push(`    ${acc}${r} = fma(vec4<f32>(${W}[(${r * kb}u + j) / 4u][j % 4u]), x, ${acc}${r});`);
  L.push(`  }`);
  return L.join('\n');
}

/** Column offsets of this invocation's 4 output columns into rows of `width` (clamped): xc (vec) or xc0..xc3. */
export function columnOffsets(width: string, vec: boolean): string {
  return vec
    ? `  let xc = min(c, ${width} - 4u);`
    : J.map((t) => `  let xc${t} = min(c + ${t}u, ${width} - 1u);`).join('\n');
}

/**
 * The mask at query row `row` for this invocation's 4 keys `${k}0..3` (or with `transposed`, at key row
 * `row` for its 4 queries): a vec4 of gathered loads. Masked kernels apply it in a loop over the TM
 * rows whose trip count comes from Params (tm), so that LLVM does not unroll it: the 32 unrolled
 * gathers per block made lavapipe take up to a minute to compile a backward kernel.
 */
export function maskQuad(row: string, k: string, transposed = false): string {
  const at = (j: number) =>
    transposed ? `${k}${j} * params.mq + ${row} * params.mk` : `${row} * params.mq + ${k}${j} * params.mk`;
  return `vec4<f32>(${J.map((j) => `mask[mbase + ${at(j)}]`).join(', ')})`;
}

/** Stores acc<r> (4 columns from c) into rows of `width` at `base + row·width` for rows < `rows`. */
export function storeRows(acc: string, out: string, base: string, first: string, rows: string, width: string): string {
  const L: string[] = [];
  for (const r of R) {
    L.push(`  if (${first} + ${r}u < ${rows}) {`, `    let o = ${base} + (${first} + ${r}u) * ${width} + c;`);
    for (const j of J) L.push(`    if (c + ${j}u < ${width}) { ${out}[o + ${j}u] = ${acc}${r}[${j}]; }`);
    L.push(`  }`);
  }
  return L.join('\n');
}

function forwardMain(vecD: boolean, vecDv: boolean, masked: boolean, wg: number, unroll: boolean): string {
  const kb = 4 * wg;
  return wgsl`  let Lq = params.lq; let Lk = params.lk; let D = params.d; let Dv = params.dv;
  let bh = wid.z * params.heads + wid.y;
  let m0 = wid.x * ${ATTN_TM}u;
  let ninf = bitcast<f32>(params.ninf);
  let c = lid * 4u;
  let qbase = bh * Lq * D;
  let kbase = bh * Lk * D;
  let vbase = bh * Lk * Dv;
  let mbase = wid.z * params.mb + wid.y * params.mh;
${R.map((r) => `  let qi${r} = min(m0 + ${r}u, Lq - 1u);\n  let qr${r} = qbase + qi${r} * D;`).join('\n')}
${columnOffsets('Dv', vecDv)}
${R.map((r) => `  var o${r} = vec4<f32>(0.0);`).join('\n')}
  var m_run = ninf; // running max and sum of row lid (invocations lid < TM)
  var l_run = 0.0;
  for (var k0 = 0u; k0 < Lk; k0 += ${kb}u) {
${J.map((j) => `    let kj${j} = min(k0 + c + ${j}u, Lk - 1u);\n    let kr${j} = kbase + kj${j} * D;`).join('\n')}
    let valid = vec4<bool>(${J.map((j) => `k0 + c + ${j}u < Lk`).join(', ')});
${dotRows('s', 'q', 'qr', 'k', 'kr', 'D', vecD, unroll)}
${
  masked
    ? `${R.map((r) => `    sp[(${r * kb}u + c) / 4u] = s${r} * params.scale;`).join('\n')}
    for (var r = 0u; r < params.tm; r++) { // tm = TM from Params: a loop LLVM does not unroll
      let i = (r * ${kb}u + c) / 4u;
      sp[i] = select(vec4<f32>(ninf), sp[i] + ${maskQuad('min(m0 + r, Lq - 1u)', 'kj')}, valid);
    }`
    : R.map((r) => `    sp[(${r * kb}u + c) / 4u] = select(vec4<f32>(ninf), s${r} * params.scale, valid);`).join('\n')
}
    workgroupBarrier();
    let n = min(${kb}u, Lk - k0);
    if (lid < ${ATTN_TM}u) {
      let base = lid * ${kb / 4}u;
      let n4 = (n + 3u) / 4u;
      var bm = ninf;
      for (var j = 0u; j < n4; j++) { let x = sp[base + j]; bm = max(bm, max(max(x.x, x.y), max(x.z, x.w))); }
      let mn = max(m_run, bm);
      // While every score so far is −inf, keep p = 0 (−inf − −inf would be NaN).
      let live = mn > ninf;
      let a = select(1.0, exp(m_run - mn), live);
      var ls = vec4<f32>(0.0);
      for (var j = 0u; j < n4; j++) {
        let p = select(vec4<f32>(0.0), exp(sp[base + j] - vec4<f32>(mn)), live);
        sp[base + j] = p;
        ls += p;
      }
      l_run = l_run * a + (ls.x + ls.y) + (ls.z + ls.w);
      m_run = mn;
      alpha[lid] = a;
    }
    workgroupBarrier();
${R.map((r) => `    o${r} *= alpha[${r}];`).join('\n')}
${accumulateRows('o', 'sp', kb, 'v', (j) => `vbase + (k0 + ${j}) * Dv`, 'n', vecDv, unroll)}
    workgroupBarrier();
  }
  if (lid < ${ATTN_TM}u) {
    rowsum[lid] = l_run;
    if (m0 + lid < Lq) {
      lse[bh * Lq + m0 + lid] = select(bitcast<f32>(params.pinf), m_run + log(l_run), m_run > ninf);
    }
  }
  workgroupBarrier();
${R.map((r) => `  o${r} = o${r} * select(0.0, 1.0 / rowsum[${r}], rowsum[${r}] > 0.0);`).join('\n')}
  let obase = bh * Lq * Dv;
${storeRows('o', 'out', 'obase', 'm0', 'Lq', 'Dv')}`;
}

export const attentionForwardKernel = kernel({
  name: 'scaledDotProductAttention',
  variant: { vecD: false, vecDv: false, masked: false, wg: 64, unroll: false },
  params: ATTN_PARAMS,
  bindings: {
    q: { read: (v) => floats(v.vecD) },
    k: { read: (v) => floats(v.vecD) },
    v: { read: (v) => floats(v.vecDv) },
    out: { write: 'f32' },
    lse: { write: 'f32' },
    mask: { read: 'f32', if: (v) => v.masked },
  },
  workgroupSize: (v) => v.wg,
  builtins: ATTN_BUILTINS,
  prelude: ({ vecD, vecDv, wg }) => `${floatAccessor('q', vecD)}
${floatAccessor('k', vecD)}
${floatAccessor('v', vecDv)}
// Scores, then probabilities, of the current key block: TM rows of KB keys.
var<workgroup> sp: array<vec4<f32>, ${(ATTN_TM * 4 * wg) / 4}>;
var<workgroup> alpha: array<f32, ${ATTN_TM}>;
var<workgroup> rowsum: array<f32, ${ATTN_TM}>;`,
  main: ({ vecD, vecDv, masked, wg, unroll }) => forwardMain(vecD, vecDv, masked, wg, unroll),
  grid: (p) => attentionGrid(p.lq, p),
});
