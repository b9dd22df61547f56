// Pieces shared by the kernels: the 1-D element kernel (256-wide workgroups over a grid spread
// across x and y, so more than 65535 × 256 elements can be addressed), per-dimension uniforms, and
// the f32 / vec4 row helpers.
import {
  kernel,
  spreadGroups,
  type BindingsDecl,
  type Kernel,
  type ParamDecl,
  type ParamValues,
  type Variant,
} from './kernel.ts';

export const WG = 256;

/** Workgroups of a 1-D kernel over n elements, one per invocation. */
export const flatGrid = (n: number): [number, number] => spreadGroups(Math.ceil(n / WG));

/** A kernel with one invocation per element: `i` (the flat element index) is in scope in `main`. */
export interface FlatKernelDecl<V extends Variant, P extends ParamDecl, B extends BindingsDecl<V>> {
  name: string;
  variant: V;
  params: P;
  bindings: B;
  prelude?: (v: V) => string;
  main: (v: V) => string;
  /** Elements (invocations) of one dispatch. */
  count: (p: ParamValues<P>, v: V) => number;
}

export function flatKernel<V extends Variant, P extends ParamDecl, B extends BindingsDecl<V>>(
  d: FlatKernelDecl<V, P, B>,
): Kernel<V, P, B> {
  return kernel({
    name: d.name,
    variant: d.variant,
    params: d.params,
    bindings: d.bindings,
    workgroupSize: WG,
    builtins: { gid: 'global_invocation_id', nwg: 'num_workgroups' },
    ...(d.prelude ? { prelude: d.prelude } : {}),
    main: (v) => `  let i = gid.x + gid.y * nwg.x * ${WG}u;\n${d.main(v)}`,
    grid: (p, v) => flatGrid(d.count(p, v)),
  });
}

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
