// Elementwise ops: forward against float64 references, backward by gradcheck, bad input.
// Tolerances (u = 2^-24 ≈ 6e-8):
//  - add/sub/mul and the scalar maps are one correctly rounded float32 op: |err| ≤ u·|y|, so
//    rtol 1e-6 holds with margin; div is ≤ 2.5 ULP in WGSL: still under 1e-6.
//  - exp/sigmoid: WGSL allows 3 + 2|x| ULP (|x| ≤ 2 here: ≤ 7 ULP ≈ 4e-7 relative);
//    log: absolute 2^-21 near 1, tanh here is 1 − e^{-2|x|} over 1 + e^{-2|x|}, which near 0
//    inherits exp's absolute error (≈ 3u) — so rtol 1e-5 plus atol 1e-6 for the transcendental group.
//  - sqrt: inherited from inverseSqrt, 2.5 ULP: rtol 1e-6.
//  - pow = exp2(p·log2|x|): log2's absolute error 2^-21 is multiplied by p·ln2 in the result's
//    relative error (p ≤ 3 here: ≈ 1e-6), plus exp2's few ULP: rtol 1e-5.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, check, randArray, randTensor, rejects } from '../helpers.ts';
import {
  add,
  sub,
  mul,
  div,
  neg,
  exp,
  log,
  sqrt,
  relu,
  sigmoid,
  tanh,
  powScalar,
  addScalar,
  mulScalar,
  sum,
  tensor,
  tidy,
  liveTensors,
  type Tensor,
} from '../../engine/index.ts';

const test = suite('elementwise');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

type Shape = number[];
const size = (s: Shape) => s.reduce((a, b) => a * b, 1);

/** numpy-broadcast binary map in float64. */
function broadcastRef(
  a: Float64Array,
  sa: Shape,
  b: Float64Array,
  sb: Shape,
  f: (x: number, y: number) => number,
): [Float64Array, Shape] {
  const r = Math.max(sa.length, sb.length);
  const pa = [...Array(r - sa.length).fill(1), ...sa];
  const pb = [...Array(r - sb.length).fill(1), ...sb];
  const out = pa.map((d, i) => Math.max(d, pb[i]!));
  const y = new Float64Array(size(out));
  for (let i = 0; i < y.length; i++) {
    let rem = i;
    let ia = 0,
      ib = 0,
      stA = 1,
      stB = 1;
    for (let d = r - 1; d >= 0; d--) {
      const c = rem % out[d]!;
      rem = Math.floor(rem / out[d]!);
      if (pa[d] !== 1) ia += c * stA;
      if (pb[d] !== 1) ib += c * stB;
      stA *= pa[d]!;
      stB *= pb[d]!;
    }
    y[i] = f(a[ia]!, b[ib]!);
  }
  return [y, out];
}

/** n float32 values with |x| in [lo, hi) and random sign (for kinks / singularities at 0). */
function awayFromZero(n: number, seed: number, lo: number, hi: number): Float64Array {
  const m = randArray(n, seed, lo, hi);
  const s = randArray(n, seed + 1);
  return m.map((v, i) => (s[i]! < 0 ? -v : v));
}
const fromHost = (h: Float64Array, shape: Shape): Tensor => tensor(Float32Array.from(h), shape);

async function expectClose(
  y: Tensor,
  ref: ArrayLike<number>,
  shape: Shape,
  rtol: number,
  atol: number,
  what: string,
): Promise<void> {
  assert.equal([...y.shape], shape, `${what}: shape`);
  assertClose(await y.toArray(), ref, rtol, atol, what);
  y.dispose();
}

const BIN = {
  add: [add, (x: number, y: number) => x + y],
  sub: [sub, (x: number, y: number) => x - y],
  mul: [mul, (x: number, y: number) => x * y],
  div: [div, (x: number, y: number) => x / y],
} as const;
const PAIRS: [Shape, Shape][] = [
  [
    [3, 5],
    [3, 5],
  ],
  [[2, 3, 4], [4]],
  [
    [3, 1],
    [1, 4],
  ],
  [
    [2, 1, 3],
    [4, 1],
  ],
  [[], [2, 3]],
  [[5], [1]],
];

for (const [name, [op, f]] of Object.entries(BIN)) {
  test(`${name}: forward with broadcasting`, async () => {
    for (const [sa, sb] of PAIRS) {
      const [a, ha] = randTensor(sa, 11);
      // divisors bounded away from 0 so that the quotient stays O(1)
      const hb = name === 'div' ? awayFromZero(size(sb), 12, 0.5, 2) : randArray(size(sb), 12);
      const b = fromHost(hb, sb);
      const [ref, shape] = broadcastRef(ha, sa, hb, sb, f);
      await expectClose(op(a, b), ref, shape, 1e-6, 0, `${name} [${sa}] [${sb}]`);
      a.dispose();
      b.dispose();
    }
  });

  test(`${name}: scalar operands`, async () => {
    const [x, hx] = randTensor([2, 3], 21, 0.5, 2);
    const c = Math.fround(0.7); // the scalar reaches the kernel as a float32
    await expectClose(
      op(x, c),
      hx.map((v) => f(v, c)),
      [2, 3],
      1e-6,
      0,
      `${name}(x, c)`,
    );
    // c - x is neg then add (one rounding), c / x one division (a WGSL f32 division is within 2.5 ulp)
    await expectClose(
      op(c, x),
      hx.map((v) => f(c, v)),
      [2, 3],
      1e-6,
      0,
      `${name}(c, x)`,
    );
    await expectClose(
      op(x, 2),
      hx.map((v) => f(v, 2)),
      [2, 3],
      1e-6,
      0,
      `${name}(x, 2)`,
    );
    x.dispose();
  });

  test(`${name}: gradcheck (same shape, broadcast, scalar)`, async () => {
    const den = (shape: Shape, seed: number) => fromHost(awayFromZero(size(shape), seed, 0.5, 1.5), shape);
    const second = (shape: Shape, seed: number) => (name === 'div' ? den(shape, seed) : randTensor(shape, seed)[0]);
    await check((a, b) => op(a!, b!), [randTensor([3, 5], 31)[0], second([3, 5], 32)]);
    await check((a, b) => op(a!, b!), [randTensor([2, 3], 33)[0], second([3], 34)]);
    await check((a, b) => op(a!, b!), [randTensor([3, 1], 35)[0], second([1, 4], 36)]);
    await check((a, b) => op(a!, b!), [randTensor([2, 1, 3], 39)[0], second([], 40)]);
    await check((a) => op(a!, 1.5), [randTensor([2, 3], 37)[0]]);
    await check((a) => op(-1.5, a!), [den([2, 3], 38)]);
  });
}

test('binary: a tensor used twice (x * x, x - x)', async () => {
  const [x, hx] = randTensor([7], 41);
  await expectClose(
    mul(x, x),
    hx.map((v) => v * v),
    [7],
    1e-6,
    0,
    'x*x',
  );
  await expectClose(
    sub(x, x),
    hx.map(() => 0),
    [7],
    0,
    0,
    'x-x',
  );
  await check((a) => mul(a!, a!), [x]);
});

// Unary maps: [op, reference, input range, rtol, atol]
const UN: [string, (x: Tensor) => Tensor, (x: number) => number, Float64Array, number, number][] = [
  ['neg', neg, (v) => -v, randArray(15, 51), 0, 0],
  ['exp', exp, Math.exp, randArray(15, 52, -2, 2), 1e-5, 1e-6],
  ['log', log, Math.log, randArray(15, 53, 0.2, 3), 1e-5, 1e-6],
  ['sqrt', sqrt, Math.sqrt, randArray(15, 54, 0.1, 3), 1e-6, 0],
  ['relu', relu, (v) => Math.max(v, 0), awayFromZero(15, 55, 0.1, 2), 0, 0],
  ['sigmoid', sigmoid, (v) => 1 / (1 + Math.exp(-v)), randArray(15, 56, -3, 3), 1e-5, 1e-6],
  ['tanh', tanh, Math.tanh, randArray(15, 57, -2, 2), 1e-5, 1e-6],
  ['powScalar p=3 (negative bases)', (x) => powScalar(x, 3), (v) => v ** 3, awayFromZero(15, 58, 0.2, 2), 1e-5, 0],
  ['powScalar p=2 (negative bases)', (x) => powScalar(x, 2), (v) => v ** 2, awayFromZero(15, 59, 0.2, 2), 1e-5, 0],
  ['powScalar p=0.5', (x) => powScalar(x, 0.5), Math.sqrt, randArray(15, 60, 0.2, 3), 1e-5, 0],
  ['powScalar p=-2', (x) => powScalar(x, -2), (v) => v ** -2, awayFromZero(15, 61, 0.5, 2), 1e-5, 0],
  ['addScalar', (x) => addScalar(x, 0.3), (v) => v + Math.fround(0.3), randArray(15, 62), 1e-6, 1e-7],
  ['mulScalar', (x) => mulScalar(x, -1.7), (v) => v * Math.fround(-1.7), randArray(15, 63), 1e-6, 0],
];

for (const [name, op, f, h, rtol, atol] of UN) {
  test(`${name}: forward and gradcheck`, async () => {
    const x = fromHost(h, [3, 5]);
    await expectClose(op(x), h.map(f), [3, 5], rtol, atol, name);
    await check((a) => op(a!), [x]);
  });
}

test('exp/sigmoid/tanh: large |x| saturate without NaN', async () => {
  const h = Float64Array.from([-100, -30, 30, 100]);
  const x = fromHost(h, [4]);
  // exp is allowed 3 + 2|x| ULP: 63 ULP ≈ 3.8e-6 at |x| = 30; at |x| = 100 exp overflows float32,
  // so sigmoid(-100) is 0 (the true 3.7e-44 is below float32's normal range: atol 1e-30).
  await expectClose(
    sigmoid(x),
    h.map((v) => 1 / (1 + Math.exp(-v))),
    [4],
    1e-5,
    1e-30,
    'sigmoid',
  );
  await expectClose(tanh(x), h.map(Math.tanh), [4], 1e-6, 0, 'tanh');
  const e = exp(x);
  const ev = await e.toArray();
  e.dispose();
  assertClose(ev.slice(0, 3), [0, Math.exp(-30), Math.exp(30)], 1e-5, 1e-30, 'exp');
  assert.is(ev[3], Infinity);
  x.dispose();
});

test('powScalar: p=0 gives 1, non-integer p of a negative base gives NaN', async () => {
  const x = tensor([-2, -0.5, 0.5, 3], [4]);
  await expectClose(powScalar(x, 0), [1, 1, 1, 1], [4], 0, 0, 'p=0');
  const y = powScalar(x, 1.5);
  const v = await y.toArray();
  assert.ok(Number.isNaN(v[0]) && Number.isNaN(v[1]), `negative base: ${v}`);
  assertClose(v.slice(2), [0.5 ** 1.5, 3 ** 1.5], 1e-5, 0, 'positive base');
  y.dispose();
  x.dispose();
});

test('composite expression gradcheck: sum(sigmoid(a·b + c) / sqrt(d))', async () => {
  await check(
    (a, b, c, d) => tidy(() => sum(div(sigmoid(add(mul(a!, b!), c!)), sqrt(d!)), 1)),
    [randTensor([2, 3], 71)[0], randTensor([3], 72)[0], randTensor([2, 1], 73)[0], randTensor([2, 3], 74, 0.5, 2)[0]],
  );
});

test('bad input: shape mismatch, impossible broadcast', () => {
  const a = tensor(new Float32Array(6), [2, 3]);
  const b = tensor(new Float32Array(4), [4]);
  const c = tensor(new Float32Array(8), [2, 4]);
  rejects(() => add(a, b), 'add', '[2, 3]', '[4]', 'broadcast');
  rejects(() => mul(a, c), 'mul', '[2, 3]', '[2, 4]');
  rejects(() => div(c, a), 'div', '[2, 4]', '[2, 3]');
  rejects(() => sub(a, b), 'sub', '[2, 3]', '[4]');
  for (const t of [a, b, c]) t.dispose();
});

test('bad input: a disposed tensor', () => {
  const x = tensor([1, 2], [2]);
  const y = tensor([1, 2], [2]);
  x.dispose();
  rejects(() => add(x, x), 'add', 'disposed', '[2]');
  rejects(() => mul(y, x), 'mul', 'disposed');
  rejects(() => exp(x), 'exp', 'disposed');
  rejects(() => add(x, 2), 'add', 'disposed');
  rejects(() => sub(2, x), 'sub', 'disposed');
  rejects(() => div(2, x), 'div', 'disposed');
  rejects(() => powScalar(x, 2), 'powScalar', 'disposed');
  y.dispose();
});

test('bad input: int32 tensor in a float op', () => {
  const i = tensor([1, 2], [2], { dtype: 'int32' });
  const f = tensor([1, 2], [2]);
  rejects(() => add(i, f), 'add', 'int32', '[2]');
  rejects(() => mul(f, i), 'mul', 'int32');
  rejects(() => sub(3, i), 'sub', 'int32');
  rejects(() => div(i, 3), 'div', 'int32');
  rejects(() => relu(i), 'relu', 'int32');
  rejects(() => mulScalar(i, 2), 'mulScalar', 'int32');
  i.dispose();
  f.dispose();
});

test('bad input: two numbers', () => {
  rejects(() => add(1, 2), 'add', 'tensor');
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
