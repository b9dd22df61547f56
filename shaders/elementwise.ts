// Elementwise kernels: unary maps, binary maps with numpy broadcasting, fill.
// The op's expression is a compile-time variant; sizes and strides come in Params.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { DIM, ENTRY_1D, FLOAT_CLASS, variants } from './common.ts';

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
  reluGrad: 'select(0.0, a, b > 0.0 || is_nan(b))', // a = upstream gradient, b = relu input; NaN passes it (torch's threshold_backward)
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

function buildUnaryShader(code: UnaryCode): string {
  return wgsl`
struct Params { n: u32, nan: u32, s: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read_write> ys: array<f32>;
${FLOAT_CLASS}
${POW}
${ENTRY_1D}
  if (i >= params.n) { return; }
  let x = xs[i];
  let s = params.s;
  ys[i] = ${UNARY[code]};
}`;
}

/** Binary map. `broadcast` false: both inputs have the output's shape (no index arithmetic). */
function buildBinaryShader(code: BinaryCode, broadcast: boolean): string {
  return wgsl`
struct Params { n: u32, rank: u32, nan: u32, _pad: u32, shape: array<vec4<u32>, 2>, sa: array<vec4<u32>, 2>, sb: array<vec4<u32>, 2>, s: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> as_: array<f32>;
@group(0) @binding(2) var<storage, read> bs: array<f32>;
@group(0) @binding(3) var<storage, read_write> ys: array<f32>;
${DIM}
${FLOAT_CLASS}
${POW}
${ENTRY_1D}
  if (i >= params.n) { return; }
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
  ys[i] = ${BINARY[code]};
}`;
}

function buildFillShader(dtype: 'f32' | 'i32'): string {
  return wgsl`
struct Params { n: u32, bits: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> ys: array<${dtype}>;
${ENTRY_1D}
  if (i >= params.n) { return; }
  ys[i] = bitcast<${dtype}>(params.bits);
}`;
}
export const unaryShader = variants(buildUnaryShader);
export const binaryShader = variants(buildBinaryShader);
export const fillShader = variants(buildFillShader);
