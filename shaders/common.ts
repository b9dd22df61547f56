// Pieces shared by the 1-D elementwise kernels: a 256-wide workgroup and a 2-D grid, so
// that more than 65535 × 256 elements can be addressed.
export const WG = 256;

/** Entry point header; `i` is the flat element index. */
export const ENTRY_1D = /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;`;

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
