// Fused scaled-dot-product attention, backward (FlashAttention-2 style, deterministic, no atomics).
// With s = Q·Kᵀ·scale + mask, P = exp(s − lse) recomputed from the forward's saved logsumexp,
// dP = dO·Vᵀ and Δ_i = Σ_c dO[i][c]·O[i][c] (= Σ_j P[i][j]·dP[i][j]):
//   dS = P ∘ (dP − Δ),  dQ = scale·dS·K,  dK = scale·dSᵀ·Q,  dV = Pᵀ·dO.
// Two kernels, the same building blocks as the forward (shaders/attention.ts):
//  - attentionBackwardQuery: a workgroup owns TM query rows, writes their Δ (for the second kernel)
//    and walks key blocks: scores and dP for 4 keys per invocation, dS to workgroup memory, then
//    dQ += dS·K with invocation i owning dQ columns 4i..4i+3. WG from D.
//  - attentionBackwardKey: a workgroup owns TM key rows and walks query blocks: Sᵀ and dPᵀ for 4
//    queries per invocation, Pᵀ and dSᵀ to workgroup memory, then dV += Pᵀ·dO and dK += dSᵀ·Q with
//    invocation i owning columns 4i..4i+3 of both. WG from max(D, Dv).
//  - attentionBackwardKeyScratch: when P and dS fit a scratch buffer (the launcher decides), the
//    query kernel also writes them there and this kernel replaces attentionBackwardKey, reading them
//    instead of recomputing Sᵀ and dPᵀ.
// The dot products and the dS·K / Pᵀ·dO / dSᵀ·Q accumulations are unrolled (vec4 loads) for WG ≥ 16,
// as in the forward: faster at D = 64, slower to compile (figures in bench/README.md).
// Rows whose mask is −inf everywhere have lse = +inf, so P = 0 there and every gradient is 0.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import {
  ATTN_BUILTINS,
  ATTN_PARAMS,
  ATTN_TM,
  accumulateRows,
  attentionGrid,
  columnOffsets,
  dotRows,
  floatAccessor,
  floats,
  maskQuad,
  storeRows,
} from './attention.ts';
import { kernel } from './kernel.ts';

const R = [...Array(ATTN_TM).keys()];
const J = [0, 1, 2, 3];
const lines = (f: (r: number) => string) => R.map(f).join('\n');
const quad = (f: (j: number) => string) => J.map(f).join('\n');

/** Sizes, the (batch, head) index, the block's first row `tile`, and the per-head base offsets. */
const bases = (tile: string) => `  let Lq = params.lq; let Lk = params.lk; let D = params.d; let Dv = params.dv;
  let bh = wid.z * params.heads + wid.y;
  let ${tile} = wid.x * ${ATTN_TM}u;
  let c = lid * 4u;
  let qbase = bh * Lq * D;
  let kbase = bh * Lk * D;
  let vbase = bh * Lk * Dv;
  let obase = bh * Lq * Dv;
  let mbase = wid.z * params.mb + wid.y * params.mh;`;

function queryMain(
  vecD: boolean,
  vecDv: boolean,
  masked: boolean,
  wg: number,
  unroll: boolean,
  scratch: boolean,
): string {
  const kb = 4 * wg;
  // Scratch P and dS, rows of lkp = Lk rounded up to 8 floats (see attentionBackwardKeyScratch).
  const keep = (r: string, p: string, d: string) =>
    scratch
      ? `    if (m0 + ${r} < Lq && k0 + c < lkp) { let si = ((bh * Lq + m0 + ${r}) * lkp + k0 + c) / 4u; ` +
        `pscr[si] = ${p}; dsscr[si] = ${d}; }`
      : '';
  // Masked variant: the scaled scores and dP of this tile to workgroup memory.
  const scores = lines((r) =>
    [`    ds[(${r * kb}u + c) / 4u] = s${r} * params.scale;`, `    dpb[(${r * kb}u + c) / 4u] = dp${r};`].join('\n'),
  );
  return wgsl`${bases('m0')}
  let lkp = (Lk + 7u) & ~7u;
${lines((r) =>
  [
    `  let qi${r} = min(m0 + ${r}u, Lq - 1u);`,
    `  let qr${r} = qbase + qi${r} * D;`,
    `  let gr${r} = obase + qi${r} * Dv;`,
    `  let lse${r} = vec4<f32>(lse[bh * Lq + qi${r}]);`,
  ].join('\n'),
)}
  // Δ of row lid: invocations lid < TM, one SIMD batch.
  if (lid < ${ATTN_TM}u) {
    let row = obase + min(m0 + lid, Lq - 1u) * Dv;
    var acc = 0.0;
    for (var t = 0u; t < Dv; t++) { acc = fma(go_at(row + t), o_at(row + t), acc); }
    rowdelta[lid] = acc;
    ${scratch ? '' : 'if (m0 + lid < Lq) { delta[bh * Lq + m0 + lid] = acc; }'}
  }
  workgroupBarrier();
${lines((r) => `  let delta${r} = vec4<f32>(rowdelta[${r}]);`)}
${columnOffsets('D', vecD)}
${lines((r) => `  var acc${r} = vec4<f32>(0.0);`)}
  for (var k0 = 0u; k0 < Lk; k0 += ${kb}u) {
${quad((j) =>
  [
    `    let kj${j} = min(k0 + c + ${j}u, Lk - 1u);`,
    `    let kr${j} = kbase + kj${j} * D;`,
    `    let vr${j} = vbase + kj${j} * Dv;`,
  ].join('\n'),
)}
    let valid = vec4<bool>(${J.map((j) => `k0 + c + ${j}u < Lk`).join(', ')});
${dotRows('s', 'q', 'qr', 'k', 'kr', 'D', vecD, unroll)}
${dotRows('dp', 'go', 'gr', 'v', 'vr', 'Dv', vecDv, unroll)}
${
  masked
    ? `${scores}
    for (var r = 0u; r < params.tm; r++) { // tm = TM from Params: a loop LLVM does not unroll
      let i = (r * ${kb}u + c) / 4u;
      let qi = min(m0 + r, Lq - 1u);
      let p = select(vec4<f32>(0.0), exp(ds[i] + ${maskQuad('qi', 'kj')} - vec4<f32>(lse[bh * Lq + qi])), valid);
      ds[i] = p * (dpb[i] - vec4<f32>(rowdelta[r])) * params.scale;
${keep('r', 'p', 'ds[i]')}
    }`
    : lines((r) =>
        [
          `    let p${r} = select(vec4<f32>(0.0), exp(s${r} * params.scale - lse${r}), valid);`,
          `    let g${r} = p${r} * (dp${r} - delta${r}) * params.scale;`,
          `    ds[(${r * kb}u + c) / 4u] = g${r};`,
          keep(`${r}u`, `p${r}`, `g${r}`),
        ].join('\n'),
      )
}
    workgroupBarrier();
    let n = min(${kb}u, Lk - k0);
${accumulateRows('acc', 'ds', kb, 'k', (j) => `kbase + (k0 + ${j}) * D`, 'n', vecD, unroll)}
    workgroupBarrier();
  }
${storeRows('acc', 'dq', 'qbase', 'm0', 'Lq', 'D')}`;
}

/** dQ (and Δ, or the scratch P and dS): a workgroup per TM query rows. */
export const attentionBackwardQueryKernel = kernel({
  name: 'attentionGradQuery',
  variant: { vecD: false, vecDv: false, masked: false, wg: 64, unroll: false, scratch: false },
  params: ATTN_PARAMS,
  bindings: {
    q: { read: (v) => floats(v.vecD) },
    k: { read: (v) => floats(v.vecD) },
    v: { read: (v) => floats(v.vecDv) },
    o: { read: (v) => floats(v.vecDv) },
    go: { read: (v) => floats(v.vecDv) },
    lse: { read: 'f32' },
    dq: { write: 'f32' },
    delta: { write: 'f32', if: (v) => !v.scratch }, // for attentionBackwardKey
    mask: { read: 'f32', if: (v) => v.masked },
    pscr: { write: 'vec4<f32>', if: (v) => v.scratch },
    dsscr: { write: 'vec4<f32>', if: (v) => v.scratch },
  },
  workgroupSize: (v) => v.wg,
  builtins: ATTN_BUILTINS,
  prelude: ({ vecD, vecDv, masked, wg }) => `${['q', 'k'].map((n) => floatAccessor(n, vecD)).join('\n')}
${['v', 'o', 'go'].map((n) => floatAccessor(n, vecDv)).join('\n')}
var<workgroup> ds: array<vec4<f32>, ${(ATTN_TM * 4 * wg) / 4}>;
${masked ? `var<workgroup> dpb: array<vec4<f32>, ${(ATTN_TM * 4 * wg) / 4}>; // dP, masked variant only` : ''}
var<workgroup> rowdelta: array<f32, ${ATTN_TM}>;`,
  main: ({ vecD, vecDv, masked, wg, unroll, scratch }) => queryMain(vecD, vecDv, masked, wg, unroll, scratch),
  grid: (p) => attentionGrid(p.lq, p),
});

function keyMain(vecD: boolean, vecDv: boolean, masked: boolean, wg: number, unroll: boolean): string {
  const qb = 4 * wg;
  // Masked variant: the scaled scores and dP of this tile to workgroup memory.
  const scores = lines((r) =>
    [`    pt[(${r * qb}u + c) / 4u] = s${r} * params.scale;`, `    dst[(${r * qb}u + c) / 4u] = dp${r};`].join('\n'),
  );
  return wgsl`${bases('n0')}
${lines((r) =>
  [
    `  let ki${r} = min(n0 + ${r}u, Lk - 1u);`,
    `  let kr${r} = kbase + ki${r} * D;`,
    `  let vr${r} = vbase + ki${r} * Dv;`,
  ].join('\n'),
)}
${lines((r) => `  var gk${r} = vec4<f32>(0.0);\n  var gv${r} = vec4<f32>(0.0);`)}
  for (var q0 = 0u; q0 < Lq; q0 += ${qb}u) {
${quad((j) =>
  [
    `    let qj${j} = min(q0 + c + ${j}u, Lq - 1u);`,
    `    let qr${j} = qbase + qj${j} * D;`,
    `    let gr${j} = obase + qj${j} * Dv;`,
  ].join('\n'),
)}
    let valid = vec4<bool>(${J.map((j) => `q0 + c + ${j}u < Lq`).join(', ')});
    let lseq = vec4<f32>(${J.map((j) => `lse[bh * Lq + qj${j}]`).join(', ')});
    let deltaq = vec4<f32>(${J.map((j) => `delta[bh * Lq + qj${j}]`).join(', ')});
${dotRows('s', 'k', 'kr', 'q', 'qr', 'D', vecD, unroll)}
${dotRows('dp', 'v', 'vr', 'go', 'gr', 'Dv', vecDv, unroll)}
${
  masked
    ? `${scores}
    for (var r = 0u; r < params.tm; r++) { // tm = TM from Params: a loop LLVM does not unroll
      let i = (r * ${qb}u + c) / 4u;
      let p = select(vec4<f32>(0.0), exp(pt[i] + ${maskQuad('min(n0 + r, Lk - 1u)', 'qj', true)} - lseq), valid);
      pt[i] = p;
      dst[i] = p * (dst[i] - deltaq) * params.scale;
    }`
    : lines((r) =>
        [
          `    let p${r} = select(vec4<f32>(0.0), exp(s${r} * params.scale - lseq), valid);`,
          `    pt[(${r * qb}u + c) / 4u] = p${r};`,
          `    dst[(${r * qb}u + c) / 4u] = p${r} * (dp${r} - deltaq) * params.scale;`,
        ].join('\n'),
      )
}
    workgroupBarrier();
    let n = min(${qb}u, Lq - q0);
    {
${columnOffsets('Dv', vecDv)}
${accumulateRows('gv', 'pt', qb, 'go', (j) => `obase + (q0 + ${j}) * Dv`, 'n', vecDv, unroll)}
    }
    {
${columnOffsets('D', vecD)}
${accumulateRows('gk', 'dst', qb, 'q', (j) => `qbase + (q0 + ${j}) * D`, 'n', vecD, unroll)}
    }
    workgroupBarrier();
  }
${storeRows('gk', 'dk', 'kbase', 'n0', 'Lk', 'D')}
${storeRows('gv', 'dv', 'vbase', 'n0', 'Lk', 'Dv')}`;
}

/** dK and dV, recomputing Sᵀ and dPᵀ: a workgroup per TM key rows. */
export const attentionBackwardKeyKernel = kernel({
  name: 'attentionGradKey',
  variant: { vecD: false, vecDv: false, masked: false, wg: 64, unroll: false },
  params: ATTN_PARAMS,
  bindings: {
    q: { read: (v) => floats(v.vecD) },
    k: { read: (v) => floats(v.vecD) },
    v: { read: (v) => floats(v.vecDv) },
    go: { read: (v) => floats(v.vecDv) },
    lse: { read: 'f32' },
    delta: { read: 'f32' },
    dk: { write: 'f32' },
    dv: { write: 'f32' },
    mask: { read: 'f32', if: (v) => v.masked },
  },
  workgroupSize: (v) => v.wg,
  builtins: ATTN_BUILTINS,
  prelude: ({ vecD, vecDv, wg }) => `${['q', 'k'].map((n) => floatAccessor(n, vecD)).join('\n')}
${['v', 'go'].map((n) => floatAccessor(n, vecDv)).join('\n')}
var<workgroup> pt: array<vec4<f32>, ${(ATTN_TM * 4 * wg) / 4}>;
var<workgroup> dst: array<vec4<f32>, ${(ATTN_TM * 4 * wg) / 4}>;`,
  main: ({ vecD, vecDv, masked, wg, unroll }) => keyMain(vecD, vecDv, masked, wg, unroll),
  grid: (p) => attentionGrid(p.lk, p),
});

/**
 * dV = Pᵀ·dO and dK = dSᵀ·Q from the P and dS that attentionBackwardQuery (scratch variant) left in
 * global memory as (B·H, Lq, lkp) rows: a workgroup owns TM key rows (two uniform vec4 loads of P and
 * of dS per query) and invocation i columns 4i..4i+3 of both; no score recomputation, no barriers.
 */
function keyScratchMain(vecD: boolean, vecDv: boolean): string {
  const half = (x: string, r: number) => `${x}${r >> 2}[${r & 3}]`;
  const gather = (prefix: string) => `vec4<f32>(${J.map((t) => `${prefix}${t}]`).join(', ')})`;
  const step = (j: string) => {
    const g = vecDv ? `go[(obase + (${j}) * Dv + xv) / 4u]` : gather(`go[obase + (${j}) * Dv + xv`);
    const x = vecD ? `q[(qbase + (${j}) * D + xk) / 4u]` : gather(`q[qbase + (${j}) * D + xk`);
    const fmas = lines((r) =>
      [
        `      gv${r} = fma(vec4<f32>(${half('p', r)}), g, gv${r});`,
        `      gk${r} = fma(vec4<f32>(${half('s', r)}), x, gk${r});`,
      ].join('\n'),
    );
    return `    {
      let si = (pbase + (${j}) * lkp) / 4u;
      let p0 = pscr[si]; let p1 = pscr[si + 1u];
      let s0 = dsscr[si]; let s1 = dsscr[si + 1u];
      let g = ${g};
      let x = ${x};
${fmas}
    }`;
  };
  return wgsl`${bases('n0')}
  let lkp = (Lk + 7u) & ~7u;
  let pbase = bh * Lq * lkp + n0;
${vecD ? '  let xk = min(c, D - 4u);' : J.map((t) => `  let xk${t} = min(c + ${t}u, D - 1u);`).join('\n')}
${vecDv ? '  let xv = min(c, Dv - 4u);' : J.map((t) => `  let xv${t} = min(c + ${t}u, Dv - 1u);`).join('\n')}
${lines((r) => `  var gk${r} = vec4<f32>(0.0);\n  var gv${r} = vec4<f32>(0.0);`)}
  for (var j = 0u; j < Lq; j++) {
${step('j')}
  }
${storeRows('gk', 'dk', 'bh * Lk * D', 'n0', 'Lk', 'D')}
${storeRows('gv', 'dv', 'bh * Lk * Dv', 'n0', 'Lk', 'Dv')}`;
}

export const attentionBackwardKeyScratchKernel = kernel({
  name: 'attentionGradKeyScratch',
  variant: { vecD: false, vecDv: false, wg: 64 },
  params: ATTN_PARAMS,
  bindings: {
    q: { read: (v) => floats(v.vecD) },
    go: { read: (v) => floats(v.vecDv) },
    pscr: { read: 'vec4<f32>' },
    dsscr: { read: 'vec4<f32>' },
    dk: { write: 'f32' },
    dv: { write: 'f32' },
  },
  workgroupSize: (v) => v.wg,
  builtins: ATTN_BUILTINS,
  prelude: ({ vecD, vecDv }) => `${floatAccessor('q', vecD)}\n${floatAccessor('go', vecDv)}`,
  main: ({ vecD, vecDv }) => keyScratchMain(vecD, vecDv),
  grid: (p) => attentionGrid(p.lk, p),
});
