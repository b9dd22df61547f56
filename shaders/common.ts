// Pieces shared by the 1-D elementwise kernels: a 256-wide workgroup and a 2-D grid, so
// that more than 65535 × 256 elements can be addressed.
export const WG = 256;

/** Entry point header; `i` is the flat element index. */
export const ENTRY_1D = /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;`;

/**
 * NaN and ±Inf tested on the bits: WGSL lets an implementation assume that floats are finite, so
 * `x != x` or relying on max()'s NaN behaviour may fold away or differ between backends.
 */
export const FLOAT_CLASS = /* wgsl */ `
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn is_finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
/** max that propagates NaN (PyTorch's maximum / amax), where WGSL's max() may drop it. */
fn max_nan(a: f32, b: f32) -> f32 { return select(select(max(a, b), b, is_nan(b)), a, is_nan(a)); }`;

/** Reads element d of an array<vec4<u32>, 2> of up to 8 dims (shapes and strides in uniforms). */
export const DIM = /* wgsl */ `fn dim(v: array<vec4<u32>, 2>, d: u32) -> u32 { return v[d / 4u][d % 4u]; }`;

/**
 * Memoises a shader builder by its variant arguments, so each source string is built once and
 * the pipeline cache (keyed by source) hashes the same string object on every dispatch.
 */
export function variants<A extends (string | number | boolean)[]>(build: (...args: A) => string): (...args: A) => string {
  const cache = new Map<string, string>();
  return (...args: A) => {
    const key = args.join('|');
    let src = cache.get(key);
    if (src === undefined) cache.set(key, (src = build(...args)));
    return src;
  };
}

/**
 * `alias V` = vec4<f32> (rows whose length is a multiple of 4) or f32, with its horizontal sum,
 * max and first element: lets one row-kernel source serve both widths.
 */
export const vectorHelpers = (vec: boolean): string =>
  vec
    ? `alias V = vec4<f32>;
fn hsum(v: V) -> f32 { return (v.x + v.y) + (v.z + v.w); }
fn hmax(v: V) -> f32 { return max(max(v.x, v.y), max(v.z, v.w)); }
fn first(v: V) -> f32 { return v.x; }`
    : `alias V = f32;
fn hsum(v: V) -> f32 { return v; }
fn hmax(v: V) -> f32 { return v; }
fn first(v: V) -> f32 { return v; }`;
