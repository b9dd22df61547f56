// A compute kernel, declared once: its variants, its uniform params, its storage bindings, its
// workgroup size, its builtins, its WGSL body and its dispatch grid. From the declaration come the
// WGSL header (`struct Params`, the `@binding` lines, the entry point), the packing of the params
// into the uniform slot (offsets by WGSL's layout rules) and the grid of one dispatch, so the op
// that launches a kernel names its inputs instead of counting positions. In the spirit of a
// tfjs-webgpu program, which carries its uniforms, bindings and dispatch layout together.
//
// Variants are compile-time choices (a fused bias, a tile size, a vec4 layout): each distinct value
// of `variant` is one WGSL source, built once and memoised, so the pipeline cache (keyed by source)
// hashes the same string object on every dispatch. Everything that changes per call (shapes,
// strides, scalars) goes in `params`, so it never costs a compile.

/** Uniform field types: 4-byte scalars, or up to 8 u32 per-dimension values (array<vec4<u32>, 2>). */
export type ParamType = 'u32' | 'i32' | 'f32' | 'dims8';
export type ParamDecl = Readonly<Record<string, ParamType>>;
/** Values of the params: numbers, and number lists (≤ 8, zero-padded) for `dims8`. */
export type ParamValues<P extends ParamDecl> = {
  readonly [K in keyof P]: P[K] extends 'dims8' ? readonly number[] : number;
};

/**
 * A kernel's compile-time choices (strings, numbers, booleans), with their defaults (which also
 * fix the memo key's order). Typed `unknown` so that declared defaults widen (`false` → boolean).
 */
export type Variant = Readonly<Record<string, unknown>>;

type ElementType<V> = string | ((v: V) => string);
/**
 * One storage binding, `array<T>` of the element type given as `read` or `write` (read_write).
 * `if`: bound only in the variants where it holds. `count`: a list of that many bindings, named
 * `<name>0`, `<name>1`, … in WGSL and given as an array of buffers.
 */
export type BindingDecl<V> = ({ read: ElementType<V>; write?: never } | { write: ElementType<V>; read?: never }) & {
  if?: (v: V) => boolean;
  count?: (v: V) => number;
};
export type BindingsDecl<V> = Readonly<Record<string, BindingDecl<V>>>;

type BufferOf<D> = D extends { count: unknown } ? readonly GPUBuffer[] : GPUBuffer;
/** The buffers of one dispatch by binding name: required, optional (`if`) or a list (`count`). */
export type BindingValues<B> = {
  readonly [K in keyof B as B[K] extends { if: unknown } ? never : K]: BufferOf<B[K]>;
} & {
  readonly [K in keyof B as B[K] extends { if: unknown } ? K : never]?: BufferOf<B[K]>;
};

const BUILTIN_TYPES = {
  global_invocation_id: 'vec3<u32>',
  workgroup_id: 'vec3<u32>',
  local_invocation_id: 'vec3<u32>',
  num_workgroups: 'vec3<u32>',
  local_invocation_index: 'u32',
} as const;
/** Entry-point arguments: WGSL name → builtin. */
export type Builtins = Readonly<Record<string, keyof typeof BUILTIN_TYPES>>;

/** Workgroups along x, y, z. */
export type Groups = readonly [number, number?, number?];

export interface KernelDecl<V extends Variant, P extends ParamDecl, B extends BindingsDecl<V>> {
  /** Label of its pipelines and dispatches (errors, traces and timers name it). */
  name: string;
  variant: V;
  params: P;
  bindings: B;
  /** Invocations per workgroup along x (and y, z when a list). */
  workgroupSize: number | readonly number[] | ((v: V) => number);
  builtins: Builtins | ((v: V) => Builtins);
  /** Module-scope WGSL after the bindings: helper functions, aliases, workgroup memory. */
  prelude?: (v: V) => string;
  /** The body of `fn main`. */
  main: (v: V) => string;
  /** Workgroups of one dispatch. */
  grid: (p: ParamValues<P>, v: V) => Groups;
}

/** What the batcher needs of one variant: its source and its storage bindings in order. */
export interface CompiledVariant {
  readonly source: string;
  /** Each binding by name; `count` buffers for a list binding, null for a single one. */
  readonly slots: readonly { readonly name: string; readonly count: number | null }[];
}

interface Field {
  name: string;
  type: ParamType;
  word: number; // offset in 4-byte words
}

/** Bytes of one uniform slot (the batcher binds 256 bytes per dispatch). */
export const PARAMS_MAX_BYTES = 256;

export class Kernel<V extends Variant, P extends ParamDecl, B extends BindingsDecl<V>> {
  readonly name: string;
  /** Bytes of the Params struct (0: the kernel has no uniform binding). */
  readonly paramBytes: number;
  private readonly fields: Field[];
  private readonly keys: (keyof V)[];
  private readonly compiled = new Map<string, CompiledVariant>();

  constructor(readonly decl: KernelDecl<V, P, B>) {
    this.name = decl.name;
    this.keys = Object.keys(decl.variant);
    this.fields = [];
    let word = 0;
    for (const [name, type] of Object.entries(decl.params)) {
      if (type === 'dims8') word = Math.ceil(word / 4) * 4; // array<vec4<u32>, 2>: 16-byte aligned, 32 bytes
      this.fields.push({ name, type, word });
      word += type === 'dims8' ? 8 : 1;
    }
    this.paramBytes = word * 4;
    if (this.paramBytes > PARAMS_MAX_BYTES)
      throw new Error(`kernel ${decl.name}: params take ${this.paramBytes} bytes, above ${PARAMS_MAX_BYTES}`);
  }

  /** The WGSL source and binding order of variant `v` (built once per distinct variant). */
  variant(v: V): CompiledVariant {
    const key = this.keys.length === 0 ? '' : this.keys.map((k) => v[k]).join('|');
    let c = this.compiled.get(key);
    if (!c) this.compiled.set(key, (c = this.compile(v)));
    return c;
  }

  /** The WGSL source of variant `v` (default: the declared defaults). */
  source(v: V = this.decl.variant): string {
    return this.variant(v).source;
  }

  /** Writes `p` into a uniform slot that starts at word `at` of the two views of one buffer. */
  pack(p: ParamValues<P>, words: Uint32Array, floats: Float32Array, at: number): void {
    const values = p as Readonly<Record<string, number | readonly number[]>>;
    for (const f of this.fields) {
      const v = values[f.name];
      if (f.type === 'dims8') {
        const list = v as readonly number[];
        for (let i = 0; i < 8; i++) words[at + f.word + i] = list[i] ?? 0;
      } else if (f.type === 'f32') floats[at + f.word] = v as number;
      else words[at + f.word] = v as number; // i32: two's complement through Uint32Array's wrap-around
    }
  }

  /** The dispatch grid for `p` and `v`. */
  grid(p: ParamValues<P>, v: V): Groups {
    return this.decl.grid(p, v);
  }

  private compile(v: V): CompiledVariant {
    const d = this.decl;
    const lines: string[] = [];
    if (this.fields.length) {
      const wgslType = (t: ParamType) => (t === 'dims8' ? 'array<vec4<u32>, 2>' : t);
      lines.push(`struct Params { ${this.fields.map((f) => `${f.name}: ${wgslType(f.type)}`).join(', ')} }`);
      lines.push('@group(0) @binding(0) var<uniform> params: Params;');
    }
    const slots: { name: string; count: number | null }[] = [];
    let binding = 1;
    for (const [name, b] of Object.entries(d.bindings)) {
      if (b.if && !b.if(v)) continue;
      const type = b.read ?? b.write;
      const element = typeof type === 'function' ? type(v) : type;
      const access = b.read !== undefined ? 'read' : 'read_write';
      const count = b.count ? b.count(v) : null;
      const names = count === null ? [name] : Array.from({ length: count }, (_, j) => `${name}${j}`);
      for (const n of names)
        lines.push(`@group(0) @binding(${binding++}) var<storage, ${access}> ${n}: array<${element}>;`);
      slots.push({ name, count });
    }
    if (d.prelude) lines.push(d.prelude(v));
    const size = typeof d.workgroupSize === 'function' ? d.workgroupSize(v) : d.workgroupSize;
    const builtins = typeof d.builtins === 'function' ? d.builtins(v) : d.builtins;
    const args = Object.entries(builtins).map(([n, b]) => `@builtin(${b}) ${n}: ${BUILTIN_TYPES[b]}`);
    lines.push(
      `@compute @workgroup_size(${typeof size === 'number' ? size : size.join(', ')})`,
      `fn main(${args.join(', ')}) {`,
      d.main(v),
      '}',
    );
    return { source: lines.join('\n'), slots };
  }
}

/** Declares a kernel (see KernelDecl); list `variant` before the functions that read it. */
export function kernel<V extends Variant, P extends ParamDecl, B extends BindingsDecl<V>>(
  decl: KernelDecl<V, P, B>,
): Kernel<V, P, B> {
  return new Kernel(decl);
}

/** The most workgroups along one grid dimension that every WebGPU device accepts. */
export const MAX_GROUPS = 65535;

/**
 * `count` workgroups as an [x, y] grid: all along x up to MAX_GROUPS, past that split evenly over
 * y (the kernel recovers the flat index as x + y · nwg.x and skips the surplus).
 */
export function spreadGroups(count: number): [number, number] {
  const g = Math.max(1, count);
  if (g <= MAX_GROUPS) return [g, 1];
  const y = Math.ceil(g / MAX_GROUPS);
  return [Math.ceil(g / y), y];
}
