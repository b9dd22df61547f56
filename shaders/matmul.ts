// Batched matmul C[b] = op(A[b]) · op(B[b]), op = optional transpose (compile-time variants).
//
// Tuned for Mesa's lavapipe (llvmpipe), which runs a workgroup 8 invocations at a time in SIMD
// lanes: any load whose address differs between lanes is a scalar loop (a "gather"), while a load
// whose address is the same for the whole workgroup is one scalar load. So the kernel is laid out
// so that the expensive gathered operand is reused as often as possible from registers:
//
// - A workgroup of WG invocations computes a TM × (4·WG) tile of C. All invocations share the same
//   TM rows, so every A load is workgroup-uniform; each invocation owns 4 adjacent columns and holds
//   TM vec4 accumulators (register blocking: every B vec4 it loads feeds TM vec4 FMAs, every A value
//   feeds 4 lanes of an FMA).
// - No workgroup memory and no barriers: operands stream from the storage buffers (L1/L2 resident),
//   which on a CPU is what workgroup memory would be anyway.
// - K is unrolled by 4. The "vec" variants bind A and/or B as array<vec4<f32>> and fetch 4
//   contiguous values in one load; they are chosen by the launcher when the contiguous dimension is
//   a multiple of 4. A scalar remainder loop handles K % 4.
// - Bounds: rows and columns are clamped (min) into range for loading, so the inner loop has no
//   branches; out-of-range results are simply not stored.
// Shapes, batch strides and the grid split live in the uniform Params.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { kernel } from './kernel.ts';

/** Rows of C per workgroup (each invocation holds this many vec4 accumulators). */
export const MATMUL_TM = 8;

/** Workgroup size for the tiled kernel: each invocation covers 4 columns; narrow outputs use fewer lanes. */
export function matmulWorkgroupSize(n: number): number {
  const lanes = Math.ceil(n / 4);
  return lanes <= 8 ? 8 : lanes <= 16 ? 16 : lanes <= 32 ? 32 : 64;
}

/** Shapes, batch strides (0: an operand shared by every batch), the grid split, and the batch. */
const PARAMS = { m: 'u32', n: 'u32', k: 'u32', sa: 'u32', sb: 'u32', gx: 'u32', fy: 'u32', batch: 'u32' } as const;

/**
 * Tiled kernel. `vecA`: A bound as vec4 (needs K % 4 == 0, or M % 4 == 0 when transA); `vecB`: B
 * bound as vec4 (needs N % 4 == 0, or K % 4 == 0 when transB). `wg`: invocations per workgroup; `tm`: rows
 * per workgroup (a multiple of 4). On lavapipe, tm 8 / wg 64 measured best (bench/README.md).
 * Grid: x = gx·fy, y = ceil(row groups / fy), z = batch, with gx = ceil(N / (4·wg)) column groups and fy
 * the split of row groups over x (fy > 1 only past 65535 row groups); gx and fy are in Params.
 */
function matmulMain(transA: boolean, transB: boolean, vecA: boolean, vecB: boolean, wg: number, tm: number): string {
  const L: string[] = [];
  const rows = [...Array(tm).keys()];
  const q4 = [0, 1, 2, 3];
  L.push(`  let M = params.m; let N = params.n; let K = params.k;
  let m0 = (wid.y * params.fy + wid.x / params.gx) * ${tm}u;
  let n = (wid.x % params.gx) * ${wg * 4}u + lid.x * 4u;
  let ab = wid.z * params.sa;
  let bb = wid.z * params.sb;`);
  for (const r of rows) L.push(`  var c${r} = vec4<f32>(0.0);`);
  // Row offsets into A (workgroup-uniform) and column offsets into B (per invocation), clamped in range.
  if (!transA) for (const r of rows) L.push(`  let ar${r} = ab + min(m0 + ${r}u, M - 1u) * K;`);
  else {
    if (vecA) for (let q = 0; q < tm / 4; q++) L.push(`  let aq${q} = ab + min(m0 + ${4 * q}u, M - 4u);`);
    for (const r of rows) L.push(`  let am${r} = ab + min(m0 + ${r}u, M - 1u);`);
  }
  if (!transB) {
    if (vecB) L.push(`  let bn = bb + min(n, N - 4u);`);
    for (const j of q4) L.push(`  let bn${j} = bb + min(n + ${j}u, N - 1u);`);
  } else for (const j of q4) L.push(`  let bn${j} = bb + min(n + ${j}u, N - 1u) * K;`);

  // One step over U (4 or 1) values of k: a<r> = A row r at k..k+3, b<kk> = B's 4 columns at k + kk.
  const step = (U: number, vec: boolean): string[] => {
    const S: string[] = [];
    const ks = q4.slice(0, U);
    const pad = (xs: string[]) => [...xs, ...Array(4 - xs.length).fill('0.0')].join(', ');
    if (!transA) {
      for (const r of rows) {
        S.push(
          vec && vecA
            ? `    let a${r} = A[(ar${r} + k) / 4u];`
            : `    let a${r} = vec4<f32>(${pad(ks.map((kk) => `la(ar${r} + k + ${kk}u)`))});`,
        );
      }
    } else if (vec && vecA) {
      for (const kk of ks)
        for (let q = 0; q < tm / 4; q++) S.push(`    let t${kk}_${q} = A[(aq${q} + (k + ${kk}u) * M) / 4u];`);
      for (const r of rows) S.push(`    let a${r} = vec4<f32>(${pad(ks.map((kk) => `t${kk}_${r >> 2}[${r & 3}]`))});`);
    } else {
      for (const r of rows)
        S.push(`    let a${r} = vec4<f32>(${pad(ks.map((kk) => `la(am${r} + (k + ${kk}u) * M)`))});`);
    }
    if (!transB) {
      for (const kk of ks) {
        S.push(
          vec && vecB
            ? `    let b${kk} = B[(bn + (k + ${kk}u) * N) / 4u];`
            : `    let b${kk} = vec4<f32>(${q4.map((j) => `lb(bn${j} + (k + ${kk}u) * N)`).join(', ')});`,
        );
      }
    } else if (vec && vecB) {
      for (const j of q4) S.push(`    let s${j} = B[(bn${j} + k) / 4u];`);
      for (const kk of ks) S.push(`    let b${kk} = vec4<f32>(s0[${kk}], s1[${kk}], s2[${kk}], s3[${kk}]);`);
    } else {
      for (const kk of ks)
        S.push(`    let b${kk} = vec4<f32>(${q4.map((j) => `lb(bn${j} + k + ${kk}u)`).join(', ')});`);
    }
    for (const kk of ks) for (const r of rows) S.push(`    c${r} = fma(vec4<f32>(a${r}[${kk}]), b${kk}, c${r});`);
    return S;
  };
  L.push(`  let K4 = K & ~3u;`);
  L.push(`  for (var k = 0u; k < K4; k += 4u) {`, ...step(4, true), `  }`);
  L.push(`  for (var k = K4; k < K; k++) {`, ...step(1, false), `  }`);
  L.push(`  let cb = wid.z * M * N;`);
  for (const r of rows) {
    L.push(`  if (m0 + ${r}u < M) {`, `    let o = cb + (m0 + ${r}u) * N + n;`);
    for (const j of q4) L.push(`    if (n + ${j}u < N) { C[o + ${j}u] = c${r}[${j}]; }`);
    L.push(`  }`);
  }
  return wgsl`${L.join('\n')}`;
}

export const matmulKernel = kernel({
  name: 'matmul',
  variant: { transA: false, transB: false, vecA: false, vecB: false, wg: 64, tm: MATMUL_TM },
  params: PARAMS,
  bindings: {
    A: { read: (v) => (v.vecA ? 'vec4<f32>' : 'f32') },
    B: { read: (v) => (v.vecB ? 'vec4<f32>' : 'f32') },
    C: { write: 'f32' },
  },
  workgroupSize: (v) => v.wg,
  builtins: { wid: 'workgroup_id', lid: 'local_invocation_id' },
  prelude: ({ vecA, vecB }) => `fn la(i: u32) -> f32 { ${vecA ? 'return A[i / 4u][i % 4u];' : 'return A[i];'} }
fn lb(i: u32) -> f32 { ${vecB ? 'return B[i / 4u][i % 4u];' : 'return B[i];'} }`,
  main: ({ transA, transB, vecA, vecB, wg, tm }) => matmulMain(transA, transB, vecA, vecB, wg, tm),
  grid: (p, v) => [p.gx * p.fy, Math.ceil(Math.ceil(p.m / v.tm) / p.fy), p.batch],
});

/** One invocation per output, a plain loop over K: the baseline that bench/ compares against. */
export const matmulNaiveKernel = kernel({
  name: 'matmulNaive',
  variant: {},
  params: PARAMS,
  bindings: { A: { read: 'f32' }, B: { read: 'f32' }, C: { write: 'f32' } },
  workgroupSize: [16, 16],
  builtins: { gid: 'global_invocation_id' },
  prelude: () => `fn a_at(base: u32, m: u32, k: u32) -> f32 {
  if (m >= params.m || k >= params.k) { return 0.0; }
  return A[base + m * params.k + k];
}
fn b_at(base: u32, k: u32, n: u32) -> f32 {
  if (k >= params.k || n >= params.n) { return 0.0; }
  return B[base + k * params.n + n];
}`,
  main: () => `  let m = gid.y;
  let n = gid.x;
  if (m >= params.m || n >= params.n) { return; }
  var acc = 0.0;
  for (var k = 0u; k < params.k; k++) { acc += a_at(gid.z * params.sa, m, k) * b_at(gid.z * params.sb, k, n); }
  C[gid.z * params.m * params.n + m * params.n + n] = acc;`,
  grid: (p) => [Math.ceil(p.n / 16), Math.ceil(p.m / 16), p.batch],
});
