// sum / mean / max: forward against float64 references, backward by gradcheck, bad input.
// Tolerances (u = 2^-24 ≈ 6e-8):
//  - max is exact (it selects an input): atol 0.
//  - a float32 sum of n terms, in any order, is within γ_n·Σ|x| ≈ n·u·Σ|x| of the exact sum
//    (Higham): atol = n·u·max Σ|x| over the outputs.
//  - long reductions (≥ 1024 terms) use dyadic inputs k/8 with |k| ≤ 8: every partial sum is
//    a multiple of 1/8 below 2^21 in magnitude, exactly representable, so any summation order
//    gives the exact sum: atol 0, and a wrong index or a dropped chunk cannot hide in a tolerance.
//  - mean = sum · fl(1/n): two more roundings, rtol 3u on top of the sum's atol / n.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, check, randArray, randTensor, rejects } from '../helpers.ts';
import { sum, mean, max, grad, tensor, liveTensors, Generator } from '../../engine/index.ts';

const test = suite('reduce');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

const U = 2 ** -24;
type Shape = number[];
type Kind = 'sum' | 'max' | 'mean';
const OPS = { sum, max, mean } as const;

/** Reference reduction of x (shape) over axes (undefined: all), with keepdim. Also Σ|x| per output. */
function reduceRef(kind: Kind, x: Float64Array, shape: Shape, axes: number | number[] | undefined, keepdim: boolean) {
  const r = shape.length;
  const ax =
    axes === undefined ? [...shape.keys()] : (typeof axes === 'number' ? [axes] : axes).map((a) => (a < 0 ? a + r : a));
  const outKeep = shape.map((d, i) => (ax.includes(i) ? 1 : d));
  const outShape = keepdim ? outKeep : shape.filter((_, i) => !ax.includes(i));
  const n = outKeep.reduce((a, b) => a * b, 1);
  const y = new Float64Array(n).fill(kind === 'max' ? -Infinity : 0);
  const abs = new Float64Array(n);
  const count = ax.reduce((a, d) => a * shape[d]!, 1);
  for (let i = 0; i < x.length; i++) {
    let rem = i;
    let o = 0;
    let st = 1;
    for (let d = r - 1; d >= 0; d--) {
      const c = rem % shape[d]!;
      rem = Math.floor(rem / shape[d]!);
      if (!ax.includes(d)) o += c * st;
      st *= outKeep[d]!;
    }
    y[o] = kind === 'max' ? Math.max(y[o]!, x[i]!) : y[o]! + x[i]!;
    abs[o] = abs[o]! + Math.abs(x[i]!);
  }
  if (kind === 'mean') for (let o = 0; o < n; o++) y[o] = y[o]! / count;
  return { y, shape: outShape, count, sumAbs: Math.max(...abs) };
}

/** Checks kind(x, axes, keepdim) on random inputs against the reference. */
async function fwd(
  kind: Kind,
  shape: Shape,
  axes: number | number[] | undefined,
  keepdim: boolean,
  seed: number,
): Promise<void> {
  const [x, hx] = randTensor(shape, seed);
  const ref = reduceRef(kind, hx, shape, axes, keepdim);
  const y = OPS[kind](x, axes, keepdim);
  const what = `${kind}([${shape}], ${JSON.stringify(axes)}, ${keepdim})`;
  assert.equal([...y.shape], ref.shape, `${what}: shape`);
  const atol = kind === 'max' ? 0 : (ref.count * U * ref.sumAbs) / (kind === 'mean' ? ref.count : 1);
  assertClose(await y.toArray(), ref.y, kind === 'mean' ? 3 * U : 0, atol, what);
  x.dispose();
  y.dispose();
}

/** n distinct float32 values in [-1, 1], spaced ≥ 2/n apart, shuffled: no ties even after ±eps steps for n ≤ 60. */
function distinct(n: number, seed: number): Float32Array {
  const g = new Generator(seed);
  const v = Float32Array.from({ length: n }, (_, i) => -1 + (2 * i) / n);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(g.uniform() * (i + 1));
    [v[i], v[j]] = [v[j]!, v[i]!];
  }
  return v;
}

/** Dyadic values k/8, k in [-8, 8]: sums of up to 2^21 of them are exact in float32. */
function dyadic(n: number, seed: number): Float64Array {
  return randArray(n, seed, -8, 9).map((v) => Math.floor(v) / 8);
}

const CASES: [Shape, number | number[] | undefined][] = [
  [[3, 4, 5], 1], // single middle axis (inner > 1)
  [[3, 4, 5], 2], // last axis
  [[3, 4, 5], 0], // first axis
  [
    [3, 4, 5],
    [0, 2],
  ], // non-adjacent: permuted to the end
  [
    [2, 3, 2, 3],
    [1, 3],
  ], // non-adjacent, rank 4
  [
    [3, 4, 5],
    [1, 2],
  ], // adjacent pair
  [[3, 4, 5], -1], // negative axis
  [
    [3, 4, 5],
    [-3, -1],
  ], // negative non-adjacent
  [[3, 4, 5], undefined], // all axes
  [
    [3, 4, 5],
    [0, 1, 2],
  ], // all axes, listed
  [[7], 0], // rank 1
  [[3, 4], []], // no axes: a copy
  [[300, 2], 0], // R ≥ 256, inner 2: strided kernel
  [[2, 300], 1], // R ≥ 256, inner 1: tree kernel, one chunk
];

for (const kind of ['sum', 'mean', 'max'] as const) {
  test(`${kind}: forward over single / several / negative / all axes, keepdim`, async () => {
    let seed = 100;
    for (const [shape, axes] of CASES)
      for (const keepdim of [false, true]) await fwd(kind, shape, axes, keepdim, seed++);
  });
}

test('long reductions: tree kernel two-pass, permute path (exact dyadic sums)', async () => {
  const shapes: [Shape, number | number[] | undefined][] = [
    [[5000], undefined], // one row, 2 chunks of 4096: second pass
    [[3, 9001], 1], // 3 rows, 3 chunks each
    [[2, 1100, 3], 1], // inner 3, R 1100 ≥ 1024: permuted to (6, 1100), one chunk
    [[5000, 3], 0], // inner 3, R 5000: permuted, then two passes
    [
      [4, 40, 40],
      [1, 2],
    ], // R 1600 over two adjacent axes, tree kernel
    [
      [40, 3, 40],
      [0, 2],
    ], // R 1600 over non-adjacent axes
  ];
  let seed = 300;
  for (const [shape, axes] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const h = dyadic(n, seed++);
    for (const kind of ['sum', 'max'] as const) {
      for (const keepdim of [false, true]) {
        const x = tensor(Float32Array.from(h), shape);
        const ref = reduceRef(kind, h, shape, axes, keepdim);
        const y = OPS[kind](x, axes, keepdim);
        assert.equal([...y.shape], ref.shape);
        assertClose(await y.toArray(), ref.y, 0, 0, `${kind}([${shape}], ${JSON.stringify(axes)}, ${keepdim})`);
        x.dispose();
        y.dispose();
      }
    }
  }
});

test('long random sum stays within n·u·Σ|x|', async () => {
  await fwd('sum', [2, 6000], 1, false, 400);
  await fwd('mean', [1500, 2], 0, true, 401);
});

test('max of all-negative rows and of -inf', async () => {
  const x = tensor([-5, -3, -4, -Infinity, -Infinity, -Infinity], [2, 3]);
  const y = max(x, 1);
  assert.equal([...(await y.toArray())], [-3, -Infinity]);
  x.dispose();
  y.dispose();
});

test('sum / mean gradcheck', async () => {
  for (const [shape, axes, keepdim] of [
    [[3, 4], 1, false],
    [[2, 3, 4], [0, 2], true],
    [[2, 3, 4], -2, false],
    [[3, 5], undefined, false],
    [[2, 3, 2], [0, 1, 2], true],
  ] as [Shape, number | number[] | undefined, boolean][]) {
    await check((x) => sum(x!, axes, keepdim), [randTensor(shape, 500)[0]]);
    await check((x) => mean(x!, axes, keepdim), [randTensor(shape, 501)[0]]);
  }
});

test('max gradcheck (no ties)', async () => {
  for (const [shape, axes, keepdim] of [
    [[3, 5], 1, false],
    [[3, 5], 0, true],
    [[2, 3, 4], [0, 2], false],
    [[2, 3, 4], -1, true],
    [[4, 5], undefined, false],
  ] as [Shape, number | number[] | undefined, boolean][]) {
    const n = shape.reduce((a, b) => a * b, 1);
    await check((x) => max(x!, axes, keepdim), [tensor(distinct(n, n + shape.length), shape)]);
  }
});

test('max ties split the gradient evenly', async () => {
  const x = tensor([1, 3, 3, 2, 2, 2, 0, 5, -1, 4, 4, 4], [2, 2, 3], { requiresGrad: true });
  const third = Math.fround(1 / 3); // share = 1 / count in float32
  {
    const m = max(x, 2);
    const s = sum(m);
    const [g] = grad([s], [x]);
    assert.equal([...(await g!.toArray())], [0, 0.5, 0.5, third, third, third, 0, 1, 0, third, third, third]);
    for (const t of [m, s, g!]) t.dispose();
  }
  {
    // over axes [0, 2]: for axis-1 index 0 the 5 is unique; for index 1 the three 4s tie
    const m = max(x, [0, 2]);
    const s = sum(m);
    const [g] = grad([s], [x]);
    assert.equal([...(await g!.toArray())], [0, 0, 0, 0, 0, 0, 0, 1, 0, third, third, third]);
    for (const t of [m, s, g!]) t.dispose();
  }
  {
    const y = tensor([2, 7, 7, 1, 7, 0], [6], { requiresGrad: true });
    const m = max(y);
    const [g] = grad([m], [y]);
    assert.equal([...(await g!.toArray())], [0, third, third, 0, third, 0]);
    for (const t of [m, g!, y]) t.dispose();
  }
  x.dispose();
});

test('bad input: out-of-range / repeated axes', () => {
  const x = tensor(new Float32Array(24), [2, 3, 4]);
  rejects(() => sum(x, 3), 'sum', 'axis 3', '[2, 3, 4]');
  rejects(() => sum(x, [0, -4]), 'sum', 'axis -4', '[2, 3, 4]');
  rejects(() => mean(x, 5), 'mean', 'axis 5', '[2, 3, 4]');
  rejects(() => max(x, [1, -2]), 'max', 'repeated');
  rejects(() => sum(x, 1.5), 'sum', 'axis 1.5');
  x.dispose();
});

test('bad input: disposed and int32 tensors', () => {
  const x = tensor([1, 2], [2]);
  x.dispose();
  rejects(() => sum(x), 'sum', 'disposed', '[2]');
  rejects(() => mean(x, 0), 'mean', 'disposed');
  rejects(() => max(x), 'max', 'disposed');
  const i = tensor([1, 2], [2], { dtype: 'int32' });
  rejects(() => sum(i), 'sum', 'int32', '[2]');
  rejects(() => mean(i), 'mean', 'int32');
  rejects(() => max(i, 0), 'max', 'int32');
  i.dispose();
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
