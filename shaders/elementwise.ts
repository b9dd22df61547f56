// Elementwise kernels: unary maps, binary maps with numpy broadcasting, fill.
// The op's expression is a compile-time variant; sizes and strides come in Params.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { DIM, FLOAT_CLASS, flatKernel } from './common.ts';

/** WGSL expressions of x (input) and s (scalar parameter). */
export const UNARY = {
  neg: '-x',
  exp: 'exp(x)',
  log: 'log(x)',
  sqrt: 'sqrt(x)',
  relu: 'select(max(x, 0.0), x, is_nan(x))', // relu(NaN) = NaN, as torch.relu
  sigmoid: '1.0 / (1.0 + exp(-x))',
  // tanh via exp of a non-positive argument: no overflow for large |x|
  tanh: 'sign(x) * (1.0 - exp(-2.0 * abs(x))) / (1.0 + exp(-2.0 * abs(x)))',
  powScalar: 'pow_signed(x, s)',
  addScalar: 'x + s',
  mulScalar: 'x * s',
  rdivScalar: 's / x',
  copy: 'x',
} as const;
export type UnaryCode = keyof typeof UNARY;

/** WGSL expressions of a, b and the scalar s. The *Grad entries are fused backward kernels. */
export const BINARY = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  div: 'a / b',
  // max's backward mask: a = input, b = the maximum; a NaN maximum selects the NaN entries (torch.max()).
  maxMask: 'select(0.0, 1.0, a == b || (is_nan(a) && is_nan(b)))',
  // a = upstream gradient, b = relu input; NaN passes it (torch's threshold_backward)
  reluGrad: 'select(0.0, a, b > 0.0 || is_nan(b))',
  sigmoidGrad: 'a * b * (1.0 - b)', // b = sigmoid output
  tanhGrad: 'a * (1.0 - b * b)', // b = tanh output
  powGrad: 'a * s * pow_signed(b, s - 1.0)', // b = input
  rdivGrad: '-(a * s) / (b * b)', // d(s/x)/dx, b = input
} as const;
export type BinaryCode = keyof typeof BINARY;

// pow for negative bases: integer exponents keep the sign rules of real arithmetic,
// non-integer exponents of a negative base give NaN (passed in as bits: WGSL has no NaN literal).
const POW = /* wgsl */ `
fn pow_signed(x: f32, p: f32) -> f32 {
  if (p == 0.0) { return 1.0; }
  let r = pow(abs(x), p);
  if (x >= 0.0) { return r; }
  if (fract(p) != 0.0) { return bitcast<f32>(params.nan); }
  return select(r, -r, fract(p * 0.5) != 0.0);
}`;

/** y = f(x, s) per element. */
export const unaryKernel = flatKernel({
  name: 'unary',
  variant: { code: 'copy' as UnaryCode },
  params: { n: 'u32', nan: 'u32', s: 'f32' },
  bindings: { xs: { read: 'f32' }, ys: { write: 'f32' } },
  prelude: () => `${FLOAT_CLASS}\n${POW}`,
  main: ({ code }) => `  if (i >= params.n) { return; }
  let x = xs[i];
  let s = params.s;
  ys[i] = ${UNARY[code]};`,
  count: (p) => p.n,
});

/** y = f(a, b, s) per element. `broadcast` false: both inputs have the output's shape (no index arithmetic). */
export const binaryKernel = flatKernel({
  name: 'binary',
  variant: { code: 'add' as BinaryCode, broadcast: false },
  params: { n: 'u32', rank: 'u32', nan: 'u32', shape: 'dims8', sa: 'dims8', sb: 'dims8', s: 'f32' },
  bindings: { as_: { read: 'f32' }, bs: { read: 'f32' }, ys: { write: 'f32' } },
  prelude: () => `${DIM}\n${FLOAT_CLASS}\n${POW}`,
  main: ({ code, broadcast }) => wgsl`  if (i >= params.n) { return; }
#if ${broadcast}
  var rem = i;
  var ia = 0u;
  var ib = 0u;
  for (var d = i32(params.rank) - 1; d >= 0; d--) {
    let ext = dim(params.shape, u32(d));
    let c = rem % ext;
    rem = rem / ext;
    ia += c * dim(params.sa, u32(d));
    ib += c * dim(params.sb, u32(d));
  }
  let a = as_[ia];
  let b = bs[ib];
#else
  let a = as_[i];
  let b = bs[i];
#endif
  let s = params.s;
  ys[i] = ${BINARY[code]};`,
  count: (p) => p.n,
});

/** Every element set to one 32-bit pattern (f32 values, or int32 labels). */
export const fillKernel = flatKernel({
  name: 'fill',
  variant: { dtype: 'f32' as 'f32' | 'i32' },
  params: { n: 'u32', bits: 'u32' },
  bindings: { ys: { write: (v) => v.dtype } },
  main: ({ dtype }) => `  if (i >= params.n) { return; }
  ys[i] = bitcast<${dtype}>(params.bits);`,
  count: (p) => p.n,
});
