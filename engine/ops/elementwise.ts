// Elementwise ops: broadcasting binary arithmetic, unary maps, scalar maps, fill.
import type { Device } from '../device.ts';
import { record, type Rule } from '../graph.ts';
import type { Shape, Tensor } from '../tensor.ts';
import { binaryKernel, fillKernel, unaryKernel, type BinaryCode, type UnaryCode } from '../../shaders/elementwise.ts';
import {
  broadcastShapes,
  broadcastStrides,
  checkFloat,
  checkLive,
  checkSameDevice,
  NAN_BITS,
  output,
} from './common.ts';
import { sumTo } from './reduce-kernel.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    add: object;
    sub: object;
    mul: object;
    div: object;
    neg: object;
    exp: object;
    log: object;
    sqrt: object;
    relu: object;
    sigmoid: object;
    tanh: object;
    powScalar: { p: number };
    addScalar: { c: number };
    mulScalar: { c: number };
    rdivScalar: { c: number };
  }
}

/** y = f(x, s) elementwise (no graph). */
export function mapUnary(code: UnaryCode, x: Tensor, s = 0): Tensor {
  checkLive(code, x);
  checkFloat(code, x);
  const y = output(x.device, x.shape);
  x.device.dispatch({
    kernel: unaryKernel,
    op: code,
    variant: { code },
    params: { n: x.size, nan: NAN_BITS, s },
    bindings: { xs: x.rawBuffer, ys: y.rawBuffer },
  });
  return y;
}

/** y = f(a, b, s) elementwise with numpy broadcasting (no graph). */
export function mapBinary(code: BinaryCode, a: Tensor, b: Tensor, s = 0): Tensor {
  checkLive(code, a, b);
  checkFloat(code, a, b);
  const dev = checkSameDevice(code, a, b);
  const shape = broadcastShapes(code, a.shape, b.shape);
  const y = output(dev, shape);
  const broadcast = a.shape.join() !== b.shape.join();
  dev.dispatch({
    kernel: binaryKernel,
    op: code,
    variant: { code, broadcast },
    params: {
      n: y.size,
      rank: shape.length,
      nan: NAN_BITS,
      shape,
      sa: broadcastStrides(a.shape, shape),
      sb: broadcastStrides(b.shape, shape),
      s,
    },
    bindings: { as_: a.rawBuffer, bs: b.rawBuffer, ys: y.rawBuffer },
  });
  return y;
}

type Operand = Tensor | number;
function arithmetic(code: 'add' | 'sub' | 'mul' | 'div', a: Operand, b: Operand): Tensor {
  if (typeof a === 'number' && typeof b === 'number')
    throw new TypeError(`${code}: at least one operand must be a tensor`);
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
  return record(mapBinary(code, a, b), { op: code, inputs: [a, b], attrs: {} });
}

export const add = (a: Operand, b: Operand): Tensor => arithmetic('add', a, b);
export const sub = (a: Operand, b: Operand): Tensor => arithmetic('sub', a, b);
export const mul = (a: Operand, b: Operand): Tensor => arithmetic('mul', a, b);
export const div = (a: Operand, b: Operand): Tensor => arithmetic('div', a, b);

export const neg = (x: Tensor): Tensor => record(mapUnary('neg', x), { op: 'neg', inputs: [x], attrs: {} });
export const exp = (x: Tensor): Tensor => {
  const y = mapUnary('exp', x);
  return record(y, { op: 'exp', inputs: [x], attrs: {}, saved: [y] });
};
export const log = (x: Tensor): Tensor => record(mapUnary('log', x), { op: 'log', inputs: [x], attrs: {} });
export const sqrt = (x: Tensor): Tensor => {
  const y = mapUnary('sqrt', x);
  return record(y, { op: 'sqrt', inputs: [x], attrs: {}, saved: [y] });
};
export const relu = (x: Tensor): Tensor => record(mapUnary('relu', x), { op: 'relu', inputs: [x], attrs: {} });
export const sigmoid = (x: Tensor): Tensor => {
  const y = mapUnary('sigmoid', x);
  return record(y, { op: 'sigmoid', inputs: [x], attrs: {}, saved: [y] });
};
export const tanh = (x: Tensor): Tensor => {
  const y = mapUnary('tanh', x);
  return record(y, { op: 'tanh', inputs: [x], attrs: {}, saved: [y] });
};
/** x ** p for a scalar p (negative bases allowed for integer p; NaN otherwise, as in PyTorch). */
export const powScalar = (x: Tensor, p: number): Tensor =>
  record(mapUnary('powScalar', x, p), { op: 'powScalar', inputs: [x], attrs: { p } });
export const addScalar = (x: Tensor, c: number): Tensor =>
  record(mapUnary('addScalar', x, c), { op: 'addScalar', inputs: [x], attrs: { c } });
export const mulScalar = (x: Tensor, c: number): Tensor =>
  record(mapUnary('mulScalar', x, c), { op: 'mulScalar', inputs: [x], attrs: { c } });
/** c / x, one correctly rounded division per element. */
export const rdivScalar = (x: Tensor, c: number): Tensor =>
  record(mapUnary('rdivScalar', x, c), { op: 'rdivScalar', inputs: [x], attrs: { c } });
export const square = (x: Tensor): Tensor => powScalar(x, 2);

/** A fresh copy with the same values (no graph). */
export const copyOf = (x: Tensor): Tensor => mapUnary('copy', x);

/** A new tensor filled with `value` (float32, or int32 bit patterns for labels). */
export function fill(shape: Shape, value: number, device: Device, dtype: 'float32' | 'int32' = 'float32'): Tensor {
  const y = output(device, shape, dtype);
  const bits = new Uint32Array(
    dtype === 'int32' ? new Int32Array([value]).buffer : new Float32Array([value]).buffer,
  )[0]!;
  device.dispatch({
    kernel: fillKernel,
    variant: { dtype: dtype === 'int32' ? 'i32' : 'f32' },
    params: { n: y.size, bits },
    bindings: { ys: y.rawBuffer },
  });
  return y;
}

// Backward rules. Broadcast operands get their gradient summed back to their own shape.
const reduceTo = (g: Tensor, shape: Shape): Tensor => (g.shape.join() === shape.join() ? g : sumTo(g, shape));
const binaryRule =
  <P extends 'add' | 'sub' | 'mul' | 'div'>(f: (a: Tensor, b: Tensor, gy: Tensor) => [Tensor, Tensor]): Rule<P> =>
  ({ inputs: [a, b] }, gy) => {
    const [ga, gb] = f(a!, b!, gy);
    const ra = reduceTo(ga, a!.shape);
    const rb = reduceTo(gb, b!.shape);
    if (ra !== ga && ga !== gy) ga.dispose();
    if (rb !== gb && gb !== gy) gb.dispose();
    return [ra === gy ? copyOf(gy) : ra, rb === gy ? copyOf(gy) : rb];
  };

export const elementwiseRules = {
  add: binaryRule((_a, _b, gy) => [gy, gy]),
  sub: binaryRule((_a, _b, gy) => [gy, mapUnary('neg', gy)]),
  mul: binaryRule((a, b, gy) => [mapBinary('mul', gy, b), mapBinary('mul', gy, a)]),
  div: binaryRule((a, b, gy) => {
    const ga = mapBinary('div', gy, b);
    const t = mapBinary('div', ga, b);
    const gb = mapBinary('mul', t, a);
    t.dispose();
    const ngb = mapUnary('neg', gb);
    gb.dispose();
    return [ga, ngb];
  }),
  neg: (_c, gy) => [mapUnary('neg', gy)],
  exp: ({ saved: [y] }, gy) => [mapBinary('mul', gy, y!)],
  log: ({ inputs: [x] }, gy) => [mapBinary('div', gy, x!)],
  sqrt: ({ saved: [y] }, gy) => {
    const t = mapBinary('div', gy, y!);
    const g = mapUnary('mulScalar', t, 0.5);
    t.dispose();
    return [g];
  },
  relu: ({ inputs: [x] }, gy) => [mapBinary('reluGrad', gy, x!)],
  sigmoid: ({ saved: [y] }, gy) => [mapBinary('sigmoidGrad', gy, y!)],
  tanh: ({ saved: [y] }, gy) => [mapBinary('tanhGrad', gy, y!)],
  powScalar: ({ inputs: [x], attrs }, gy) => [mapBinary('powGrad', gy, x!, attrs.p)],
  addScalar: (_c, gy) => [copyOf(gy)],
  mulScalar: ({ attrs }, gy) => [mapUnary('mulScalar', gy, attrs.c)],
  rdivScalar: ({ inputs: [x], attrs }, gy) => [mapBinary('rdivGrad', gy, x!, attrs.c)],
} satisfies {
  [P in
    | 'add'
    | 'sub'
    | 'mul'
    | 'div'
    | 'neg'
    | 'exp'
    | 'log'
    | 'sqrt'
    | 'relu'
    | 'sigmoid'
    | 'tanh'
    | 'powScalar'
    | 'addScalar'
    | 'mulScalar'
    | 'rdivScalar']: Rule<P>;
};
