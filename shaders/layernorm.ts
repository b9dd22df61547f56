// LayerNorm over the last axis of an (N, D) view: y = (x − μ)·r·w + b, r = 1/√(σ² + eps).
//
// Layout, tuned for lavapipe (8-lane SIMD on a CPU, where a per-lane load is a gather whatever the
// addresses, and workgroup barriers are costly): one invocation per row, a serial reduction over
// the row with no workgroup memory and no barriers. The row's weight/bias loads are
// workgroup-uniform (same column for every lane). When D % 4 == 0 the rows are bound as
// array<vec4<f32>> (`vec` variant): one vec4 gather per 4 elements, and 4 partial sums per row.
//
// Kernels:
//  - forward: two-pass mean and variance (Σ(x − μ)², no E[x²] − μ² cancellation), computed on the
//    row shifted by its first element x₀: μ = x₀ + m with m = mean(x − x₀), and x − μ is formed as
//    (x − x₀) − m. For a row with a large mean (1000 ± 0.5) x − x₀ is exact (Sterbenz) and m is
//    small, so the centred values keep full precision instead of inheriting the rounding of μ
//    itself (ulp(1000)/2 = 3e-5). Writes stats[2i..2i+1] = (m, r); backward re-reads x₀ from x.
//  - backward dx (one invocation per row): with x̂ = (x − μ)·r and ĝ = g·w,
//      dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)).
//  - backward dweight/dbias (one kernel): dw = Σ_rows g·x̂, db = Σ_rows g. A 64-wide workgroup owns
//    8 column lanes (8 vec4 columns in the vec variant) × 8 row slices; each invocation sums its
//    slice's rows serially, then the 8 slices are added in workgroup memory (one barrier).
// Affine parameters, the vec4 layout and which gradients are wanted are compile-time variants;
// bindings are numbered in the order the launcher passes the buffers.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { vectorHelpers } from './common.ts';
import { kernel, spreadGroups } from './kernel.ts';

/** Rows per workgroup of the per-row kernels (one invocation per row). */
export const LN_ROW_WG = 64;
/** Column lanes and row slices of the dweight/dbias kernel (workgroup = LN_COLS × LN_SLICES). */
export const LN_COLS = 8;
const LN_SLICES = 8;

// n rows, dv = row length in V units, d = row length in elements.
const PARAMS = { n: 'u32', dv: 'u32', d: 'u32', eps: 'f32' } as const;

/** The per-row kernels: one invocation per row, rows past the grid's x continuing on y. */
const ROW_KERNEL = {
  params: PARAMS,
  workgroupSize: LN_ROW_WG,
  builtins: { gid: 'global_invocation_id', nwg: 'num_workgroups' },
  grid: (p: { n: number }) => spreadGroups(Math.ceil(p.n / LN_ROW_WG)),
} as const;

/** First lines of the per-row kernels: `row` and `base` (its first V) in scope. */
const ROW_ENTRY = `  let row = gid.x + gid.y * nwg.x * ${LN_ROW_WG}u;
  if (row >= params.n) { return; }
  let dv = params.dv;
  let base = row * dv;
  let d = f32(params.d);`;

export const layerNormForwardKernel = kernel({
  name: 'layerNorm',
  variant: { vec: false, weight: false, bias: false },
  ...ROW_KERNEL,
  bindings: {
    xs: { read: 'V' },
    ys: { write: 'V' },
    stats: { write: 'f32' },
    weight: { read: 'V', if: (v) => v.weight },
    bias: { read: 'V', if: (v) => v.bias },
  },
  prelude: (v) => vectorHelpers(v.vec),
  main: ({ weight, bias }) => wgsl`${ROW_ENTRY}
  let x0 = first(xs[base]);
  var s = V(0.0);
  for (var j = 0u; j < dv; j++) { s += xs[base + j] - x0; }
  let mean = hsum(s) / d; // of x − x₀
  var q = V(0.0);
  for (var j = 0u; j < dv; j++) {
    let c = (xs[base + j] - x0) - mean;
    q += c * c;
  }
  let rstd = inverseSqrt(hsum(q) / d + params.eps);
  for (var j = 0u; j < dv; j++) {
    var y = ((xs[base + j] - x0) - mean) * rstd;
#if ${weight}
    y *= weight[j];
#endif
#if ${bias}
    y += bias[j];
#endif
    ys[base + j] = y;
  }
  stats[2u * row] = mean;
  stats[2u * row + 1u] = rstd;`,
});

/** In the backward loops over j: x̂_j and the upstream gradient times the weight (if any), g_j. */
const normalisedAndGrad = (weight: boolean) => `    let xh = ((xs[base + j] - x0) - mean) * rstd;
    let g = gy[base + j]${weight ? ' * weight[j]' : ''};`;

export const layerNormBackwardInputKernel = kernel({
  name: 'layerNormGrad',
  variant: { vec: false, weight: false },
  ...ROW_KERNEL,
  bindings: {
    xs: { read: 'V' },
    gy: { read: 'V' },
    stats: { read: 'f32' },
    dx: { write: 'V' },
    weight: { read: 'V', if: (v) => v.weight },
  },
  prelude: (v) => vectorHelpers(v.vec),
  main: ({ weight }) => wgsl`${ROW_ENTRY}
  let x0 = first(xs[base]);
  let mean = stats[2u * row];
  let rstd = stats[2u * row + 1u];
  var sg = V(0.0);
  var sgx = V(0.0);
  for (var j = 0u; j < dv; j++) {
${normalisedAndGrad(weight)}
    sg += g;
    sgx += g * xh;
  }
  let mg = hsum(sg) / d;
  let mgx = hsum(sgx) / d;
  for (var j = 0u; j < dv; j++) {
${normalisedAndGrad(weight)}
    dx[base + j] = ((g - mg) - xh * mgx) * rstd;
  }`,
});

/** dweight (when `dw`) and dbias (when `db`) in one pass over the rows. */
export const layerNormBackwardParamsKernel = kernel({
  name: 'layerNormParamGrad',
  variant: { vec: false, dw: false, db: false },
  params: PARAMS,
  bindings: {
    gy: { read: 'V' },
    xs: { read: 'V', if: (v) => v.dw },
    stats: { read: 'f32', if: (v) => v.dw },
    dweight: { write: 'V', if: (v) => v.dw },
    dbias: { write: 'V', if: (v) => v.db },
  },
  workgroupSize: LN_COLS * LN_SLICES,
  builtins: { wid: 'workgroup_id', lid: 'local_invocation_index' },
  prelude: (v) => `${vectorHelpers(v.vec)}
var<workgroup> part_w: array<V, ${LN_COLS * LN_SLICES}>;
var<workgroup> part_b: array<V, ${LN_COLS * LN_SLICES}>;`,
  main: ({ dw, db }) => wgsl`  let dv = params.dv;
  let col = wid.x * ${LN_COLS}u + lid % ${LN_COLS}u;
  let c = min(col, dv - 1u); // clamped for loads; out-of-range columns are not stored
  var aw = V(0.0);
  var ab = V(0.0);
  for (var r = lid / ${LN_COLS}u; r < params.n; r += ${LN_SLICES}u) {
    let g = gy[r * dv + c];
    ab += g;
#if ${dw}
    aw += g * (((xs[r * dv + c] - first(xs[r * dv])) - stats[2u * r]) * stats[2u * r + 1u]);
#endif
  }
  part_w[lid] = aw;
  part_b[lid] = ab;
  workgroupBarrier();
  if (lid < ${LN_COLS}u && col < dv) {
    var tw = V(0.0);
    var tb = V(0.0);
    for (var s = 0u; s < ${LN_SLICES}u; s++) {
      tw += part_w[s * ${LN_COLS}u + lid];
      tb += part_b[s * ${LN_COLS}u + lid];
    }
#if ${dw}
    dweight[col] = tw;
#endif
#if ${db}
    dbias[col] = tb;
#endif
  }`,
  grid: (p) => [Math.ceil(p.dv / LN_COLS)],
});
