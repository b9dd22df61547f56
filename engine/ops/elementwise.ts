// Elementwise ops: broadcasting binary arithmetic, unary maps, scalar maps, fill.
import { record } from '../autograd.ts';
import type { Rule } from '../rules.ts';
import { type Device } from '../device.ts';
import type { Shape, Tensor } from '../tensor.ts';
import { binaryShader, fillShader, unaryShader, type BinaryCode, type UnaryCode } from '../../shaders/elementwise.ts';
import { broadcastShapes, broadcastStrides, checkFloat, checkLive, checkSameDevice, dims8, grid1d, launch, NAN_BITS, output } from './kernel.ts';
import { sumTo } from './reduce.ts';

function unaryKernel(code: UnaryCode, x: Tensor, s = 0): Tensor {
  checkLive(code, x);
  checkFloat(code, x);
  const y = output(x.device, x.shape);
  launch(x.device, { op: code, code: unaryShader(code), buffers: [x.rawBuffer, y.rawBuffer], u32: [x.size, NAN_BITS], f32: [s], groups: grid1d(x.size) });
  return y;
}

/** Runs a binary kernel with numpy broadcasting (no autograd recording). */
export function binaryKernel(code: BinaryCode, a: Tensor, b: Tensor, s = 0): Tensor {
  checkLive(code, a, b);
  checkFloat(code, a, b);
  const dev = checkSameDevice(code, a, b);
  const shape = broadcastShapes(code, a.shape, b.shape);
  const y = output(dev, shape);
  const same = a.shape.join() === b.shape.join();
  const u32 = [y.size, shape.length, NAN_BITS, 0, ...dims8(shape), ...dims8(broadcastStrides(a.shape, shape)), ...dims8(broadcastStrides(b.shape, shape))];
  launch(dev, { op: code, code: binaryShader(code, !same), buffers: [a.rawBuffer, b.rawBuffer, y.rawBuffer], u32, f32: [s], groups: grid1d(y.size) });
  return y;
}

type Operand = Tensor | number;
function binary(code: 'add' | 'sub' | 'mul' | 'div', a: Operand, b: Operand): Tensor {
  if (typeof a === 'number' && typeof b === 'number') throw new TypeError(`${code}: at least one operand must be a tensor`);
  // Scalar operands: validate under this op's name, then map to the scalar kernels.
  const t = typeof a === 'number' ? (b as Tensor) : a;
  checkLive(code, t);
  checkFloat(code, t);
  if (typeof b === 'number') {
    if (code === 'add') return addScalar(t, b);
    if (code === 'sub') return addScalar(t, -b);
    if (code === 'mul') return mulScalar(t, b);
    return mulScalar(t, 1 / b);
  }
  if (typeof a === 'number') {
    if (code === 'add') return addScalar(t, a);
    if (code === 'mul') return mulScalar(t, a);
    if (code === 'div') return rdivScalar(t, a);
    // c - x: the intermediate is disposed here (the graph retains its storage).
    const inner = neg(t);
    const y = addScalar(inner, a);
    inner.dispose();
    return y;
  }
  return record(code, [a, b], binaryKernel(code, a, b), {});
}

export const add = (a: Operand, b: Operand): Tensor => binary('add', a, b);
export const sub = (a: Operand, b: Operand): Tensor => binary('sub', a, b);
export const mul = (a: Operand, b: Operand): Tensor => binary('mul', a, b);
export const div = (a: Operand, b: Operand): Tensor => binary('div', a, b);

export const neg = (x: Tensor): Tensor => record('neg', [x], unaryKernel('neg', x), {});
export const exp = (x: Tensor): Tensor => {
  const y = unaryKernel('exp', x);
  return record('exp', [x], y, {}, [y]);
};
export const log = (x: Tensor): Tensor => record('log', [x], unaryKernel('log', x), {});
export const sqrt = (x: Tensor): Tensor => {
  const y = unaryKernel('sqrt', x);
  return record('sqrt', [x], y, {}, [y]);
};
export const relu = (x: Tensor): Tensor => record('relu', [x], unaryKernel('relu', x), {});
export const sigmoid = (x: Tensor): Tensor => {
  const y = unaryKernel('sigmoid', x);
  return record('sigmoid', [x], y, {}, [y]);
};
export const tanh = (x: Tensor): Tensor => {
  const y = unaryKernel('tanh', x);
  return record('tanh', [x], y, {}, [y]);
};
/** x ** p for a scalar p (negative bases allowed for integer p; NaN otherwise, as in PyTorch). */
export const powScalar = (x: Tensor, p: number): Tensor => record('powScalar', [x], unaryKernel('powScalar', x, p), { p });
export const addScalar = (x: Tensor, c: number): Tensor => record('addScalar', [x], unaryKernel('addScalar', x, c), { c });
export const mulScalar = (x: Tensor, c: number): Tensor => record('mulScalar', [x], unaryKernel('mulScalar', x, c), { c });
/** c / x, one correctly rounded division per element. */
export const rdivScalar = (x: Tensor, c: number): Tensor => record('rdivScalar', [x], unaryKernel('rdivScalar', x, c), { c });
export const square = (x: Tensor): Tensor => powScalar(x, 2);

/** A fresh copy with the same values (no graph). */
export const copyOf = (x: Tensor): Tensor => unaryKernel('copy', x);

/** A new tensor filled with `value` (float32, or int32 bit patterns for labels). */
export function fill(shape: Shape, value: number, device: Device, dtype: 'float32' | 'int32' = 'float32'): Tensor {
  const y = output(device, shape, dtype);
  const bits = new Uint32Array(dtype === 'int32' ? new Int32Array([value]).buffer : new Float32Array([value]).buffer)[0]!;
  launch(device, { op: 'fill', code: fillShader(dtype === 'int32' ? 'i32' : 'f32'), buffers: [y.rawBuffer], u32: [y.size, bits], groups: grid1d(y.size) });
  return y;
}

// Backward rules. Broadcast operands get their gradient summed back to their own shape.
const reduceTo = (g: Tensor, shape: Shape): Tensor => (g.shape.join() === shape.join() ? g : sumTo(g, shape));
const binaryRule = <P extends 'add' | 'sub' | 'mul' | 'div'>(f: (a: Tensor, b: Tensor, gy: Tensor) => [Tensor, Tensor]): Rule<P> => ({ inputs: [a, b] }, gy) => {
  const [ga, gb] = f(a!, b!, gy);
  const ra = reduceTo(ga, a!.shape);
  const rb = reduceTo(gb, b!.shape);
  if (ra !== ga && ga !== gy) ga.dispose();
  if (rb !== gb && gb !== gy) gb.dispose();
  return [ra === gy ? copyOf(gy) : ra, rb === gy ? copyOf(gy) : rb];
};

export const elementwiseRules = {
  add: binaryRule((_a, _b, gy) => [gy, gy]),
  sub: binaryRule((_a, _b, gy) => [gy, unaryKernel('neg', gy)]),
  mul: binaryRule((a, b, gy) => [binaryKernel('mul', gy, b), binaryKernel('mul', gy, a)]),
  div: binaryRule((a, b, gy) => {
    const ga = binaryKernel('div', gy, b);
    const t = binaryKernel('div', ga, b);
    const gb = binaryKernel('mul', t, a);
    t.dispose();
    const ngb = unaryKernel('neg', gb);
    gb.dispose();
    return [ga, ngb];
  }),
  neg: (_c, gy) => [unaryKernel('neg', gy)],
  exp: ({ saved: [y] }, gy) => [binaryKernel('mul', gy, y!)],
  log: ({ inputs: [x] }, gy) => [binaryKernel('div', gy, x!)],
  sqrt: ({ saved: [y] }, gy) => {
    const t = binaryKernel('div', gy, y!);
    const g = unaryKernel('mulScalar', t, 0.5);
    t.dispose();
    return [g];
  },
  relu: ({ inputs: [x] }, gy) => [binaryKernel('reluGrad', gy, x!)],
  sigmoid: ({ saved: [y] }, gy) => [binaryKernel('sigmoidGrad', gy, y!)],
  tanh: ({ saved: [y] }, gy) => [binaryKernel('tanhGrad', gy, y!)],
  powScalar: ({ inputs: [x], attrs }, gy) => [binaryKernel('powGrad', gy, x!, attrs.p)],
  addScalar: (_c, gy) => [copyOf(gy)],
  mulScalar: ({ attrs }, gy) => [unaryKernel('mulScalar', gy, attrs.c)],
  rdivScalar: ({ inputs: [x], attrs }, gy) => [binaryKernel('rdivGrad', gy, x!, attrs.c)],
} satisfies { [P in 'add' | 'sub' | 'mul' | 'div' | 'neg' | 'exp' | 'log' | 'sqrt' | 'relu' | 'sigmoid' | 'tanh' | 'powScalar' | 'addScalar' | 'mulScalar' | 'rdivScalar']: Rule<P> };

