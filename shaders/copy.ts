// Strided copy: out[dstOff + Σ c·dstStride] = in[srcOff + Σ c·srcStride] for every
// coordinate c of `shape`. One kernel serves permute, slice, expand (stride 0), concat
// and the scatter of slice/concat backward. int32 has its own variant: label bit patterns
// read as f32 are denormals, which a GPU may flush to zero.
import { DIM, flatKernel } from './common.ts';

export const stridedCopyKernel = flatKernel({
  name: 'stridedCopy',
  variant: { t: 'f32' as 'f32' | 'i32' },
  params: { n: 'u32', rank: 'u32', src_off: 'u32', dst_off: 'u32', shape: 'dims8', ss: 'dims8', ds: 'dims8' },
  bindings: { xs: { read: (v) => v.t }, ys: { write: (v) => v.t } },
  prelude: () => DIM,
  main: () => `  if (i >= params.n) { return; }
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
  ys[di] = xs[si];`,
  count: (p) => p.n,
});
