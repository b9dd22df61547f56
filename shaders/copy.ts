// Strided copy: out[dstOff + Σ c·dstStride] = in[srcOff + Σ c·srcStride] for every
// coordinate c of `shape`. One kernel serves permute, slice, expand (stride 0), concat
// and the scatter of slice/concat backward. int32 has its own variant: label bit patterns
// read as f32 are denormals, which a GPU may flush to zero.
import { DIM, ENTRY_1D, variants } from './common.ts';

export const stridedCopyShader = variants((t: 'f32' | 'i32'): string => /* wgsl */ `
struct Params { n: u32, rank: u32, src_off: u32, dst_off: u32,
                shape: array<vec4<u32>, 2>, ss: array<vec4<u32>, 2>, ds: array<vec4<u32>, 2> }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> xs: array<${t}>;
@group(0) @binding(2) var<storage, read_write> ys: array<${t}>;
${DIM}
${ENTRY_1D}
  if (i >= params.n) { return; }
  var rem = i;
  var si = params.src_off;
  var di = params.dst_off;
  for (var d = i32(params.rank) - 1; d >= 0; d--) {
    let ext = dim(params.shape, u32(d));
    let c = rem % ext;
    rem = rem / ext;
    si += c * dim(params.ss, u32(d));
    di += c * dim(params.ds, u32(d));
  }
  ys[di] = xs[si];
}`);
