// Batched matmul C[b] = op(A[b]) · op(B[b]), op = optional transpose (compile-time variants).
// Tiled: a 16×16 workgroup computes a 64×64 tile of C, each invocation a 4×4 block held in
// four vec4 registers; 64×16 slices of A and 16×64 of B are staged in workgroup memory as
// vec4 rows, so the inner loop is four vec4 FMAs per k.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';

function header(transA: boolean, transB: boolean): string {
  return wgsl`
struct Params { m: u32, n: u32, k: u32, sa: u32, sb: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;

fn a_at(base: u32, m: u32, k: u32) -> f32 {
  if (m >= params.m || k >= params.k) { return 0.0; }
#if ${transA}
  return A[base + k * params.m + m];
#else
  return A[base + m * params.k + k];
#endif
}
fn b_at(base: u32, k: u32, n: u32) -> f32 {
  if (k >= params.k || n >= params.n) { return 0.0; }
#if ${transB}
  return B[base + n * params.k + k];
#else
  return B[base + k * params.n + n];
#endif
}`;
}

export function matmulShader(transA: boolean, transB: boolean): string {
  return wgsl`${header(transA, transB)}
var<workgroup> As: array<vec4<f32>, 256>; // [k][m/4], 16 × 16
var<workgroup> Bs: array<vec4<f32>, 256>; // [k][n/4], 16 × 16

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
  let m0 = wid.y * 64u;
  let n0 = wid.x * 64u;
  let abase = wid.z * params.sa;
  let bbase = wid.z * params.sb;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < params.k; k0 += 16u) {
    // Stage A: each invocation loads 4 values along the axis that is contiguous in memory.
#if ${transA}
    { let k = t / 16u; let mq = t % 16u; let m = m0 + mq * 4u;
      As[k * 16u + mq] = vec4<f32>(a_at(abase, m, k0 + k), a_at(abase, m + 1u, k0 + k), a_at(abase, m + 2u, k0 + k), a_at(abase, m + 3u, k0 + k)); }
#else
    { let ml = t / 4u; let kq = (t % 4u) * 4u;
      for (var j = 0u; j < 4u; j++) { As[(kq + j) * 16u + ml / 4u][ml % 4u] = a_at(abase, m0 + ml, k0 + kq + j); } }
#endif
#if ${transB}
    { let nl = t / 4u; let kq = (t % 4u) * 4u;
      for (var j = 0u; j < 4u; j++) { Bs[(kq + j) * 16u + nl / 4u][nl % 4u] = b_at(bbase, k0 + kq + j, n0 + nl); } }
#else
    { let k = t / 16u; let nq = t % 16u; let n = n0 + nq * 4u;
      Bs[k * 16u + nq] = vec4<f32>(b_at(bbase, k0 + k, n), b_at(bbase, k0 + k, n + 1u), b_at(bbase, k0 + k, n + 2u), b_at(bbase, k0 + k, n + 3u)); }
#endif
    workgroupBarrier();
    for (var k = 0u; k < 16u; k++) {
      let a = As[k * 16u + lid.y];
      let b = Bs[k * 16u + lid.x];
      acc0 = fma(vec4<f32>(a.x), b, acc0);
      acc1 = fma(vec4<f32>(a.y), b, acc1);
      acc2 = fma(vec4<f32>(a.z), b, acc2);
      acc3 = fma(vec4<f32>(a.w), b, acc3);
    }
    workgroupBarrier();
  }
  let cbase = wid.z * params.m * params.n;
  let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y * 4u + i;
    if (m >= params.m) { break; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + lid.x * 4u + j;
      if (n < params.n) { C[cbase + m * params.n + n] = acc[i][j]; }
    }
  }
}`;
}

/** One invocation per output, a plain loop over K: the baseline that bench/ compares against. */
export function matmulNaiveShader(): string {
  return wgsl`${header(false, false)}
@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let m = gid.y;
  let n = gid.x;
  if (m >= params.m || n >= params.n) { return; }
  var acc = 0.0;
  for (var k = 0u; k < params.k; k++) { acc += a_at(gid.z * params.sa, m, k) * b_at(gid.z * params.sb, k, n); }
  C[gid.z * params.m * params.n + m * params.n + n] = acc;
}`;
}
