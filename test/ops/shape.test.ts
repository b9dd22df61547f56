// Shape ops: reshape, permute, transpose, slice, concat, expand. They move values without
// arithmetic, so forward checks are exact (rtol = atol = 0, also for int32 bit patterns);
// backward by gradcheck; bad input must throw at the call naming the op and the shapes.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { check, randTensor, rejects } from '../helpers.ts';
import {
  reshape,
  permute,
  transpose,
  slice,
  concat,
  expand,
  mul,
  tensor,
  tidy,
  liveTensors,
  type Tensor,
} from '../../engine/index.ts';

const test = suite('shape');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

type Shape = number[];
const size = (s: Shape) => s.reduce((a, b) => a * b, 1);
function strides(s: Shape): number[] {
  const st = s.map(() => 1);
  for (let d = s.length - 2; d >= 0; d--) st[d] = st[d + 1]! * s[d + 1]!;
  return st;
}
/** Coordinates of flat index i in shape s. */
function coords(i: number, s: Shape): number[] {
  const c = s.map(() => 0);
  for (let d = s.length - 1; d >= 0; d--) {
    c[d] = i % s[d]!;
    i = Math.floor(i / s[d]!);
  }
  return c;
}
/** out[c] = x[src(c)] over every coordinate c of outShape. */
function gather(x: ArrayLike<number>, xs: Shape, outShape: Shape, src: (c: number[]) => number[]): number[] {
  const st = strides(xs);
  return Array.from(
    { length: size(outShape) },
    (_, i) => x[src(coords(i, outShape)).reduce((a, v, d) => a + v * st[d]!, 0)]!,
  );
}
const permuteRef = (x: ArrayLike<number>, s: Shape, p: number[]) =>
  gather(
    x,
    s,
    p.map((a) => s[a]!),
    (c) => {
      const o = s.map(() => 0);
      p.forEach((a, i) => {
        o[a] = c[i]!;
      });
      return o;
    },
  );
function sliceRef(x: ArrayLike<number>, s: Shape, begin: number[], end: number[]): [number[], Shape] {
  const b = s.map((d, i) => ((begin[i] ?? 0) < 0 ? begin[i]! + d : (begin[i] ?? 0)));
  const e = s.map((d, i) => ((end[i] ?? d) < 0 ? end[i]! + d : (end[i] ?? d)));
  const out = s.map((_, i) => e[i]! - b[i]!);
  return [gather(x, s, out, (c) => c.map((v, i) => v + b[i]!)), out];
}
function concatRef(xs: [ArrayLike<number>, Shape][], axis: number): [number[], Shape] {
  const out = [...xs[0]![1]];
  out[axis] = xs.reduce((a, [, s]) => a + s[axis]!, 0);
  const y = Array.from({ length: size(out) }, (_, i) => {
    const c = coords(i, out);
    let k = 0;
    while (c[axis]! >= xs[k]![1][axis]!) c[axis] = c[axis]! - xs[k++]![1][axis]!;
    const [data, s] = xs[k]!;
    return data[c.reduce((a, v, d) => a + v * strides(s)[d]!, 0)]!;
  });
  return [y, out];
}
const expandRef = (x: ArrayLike<number>, s: Shape, out: Shape) =>
  gather(x, s, out, (c) => s.map((d, i) => (d === 1 ? 0 : c[i + out.length - s.length]!)));

async function exact(y: Tensor, values: number[], shape: Shape, what: string): Promise<void> {
  assert.equal([...y.shape], shape, `${what}: shape`);
  assert.equal([...(await y.toArray())], values, `${what}: values`);
  y.dispose();
}
test('reshape: values kept, -1 inferred, gradcheck', async () => {
  const [x, h] = randTensor([2, 3, 4], 1);
  for (const s of [[6, 4], [4, -1], [-1], [2, 1, 12], [24, 1, 1], [-1, 2, 3]]) {
    const y = reshape(x, s);
    const full = s.includes(-1) ? s.map((d) => (d === -1 ? 24 / size(s.filter((v) => v !== -1)) : d)) : s;
    await exact(y, [...Float32Array.from(h)], full, `reshape ${s}`);
  }
  // reshape shares storage: disposing the view leaves the source usable
  await exact(reshape(x, [24]), [...Float32Array.from(h)], [24], 'again');
  await check((a) => tidy(() => mul(reshape(a!, [3, -1]), reshape(a!, [3, 8]))), [x]);
});

test('permute and transpose: forward and gradcheck', async () => {
  const [x, h] = randTensor([2, 3, 4], 2);
  for (const p of [
    [2, 0, 1],
    [1, 0, 2],
    [0, 2, 1],
    [2, 1, 0],
    [0, 1, 2],
  ])
    await exact(
      permute(x, p),
      permuteRef(h, [2, 3, 4], p),
      p.map((a) => [2, 3, 4][a]!),
      `permute ${p}`,
    );
  await exact(permute(x, [-1, 0, -2]), permuteRef(h, [2, 3, 4], [2, 0, 1]), [4, 2, 3], 'permute negative');
  await exact(transpose(x), permuteRef(h, [2, 3, 4], [0, 2, 1]), [2, 4, 3], 'transpose default');
  await exact(transpose(x, 0, -1), permuteRef(h, [2, 3, 4], [2, 1, 0]), [4, 3, 2], 'transpose 0 -1');
  await check((a) => permute(a!, [2, 0, 1]), [x]);
  await check((a) => transpose(a!), [randTensor([3, 5], 3)[0]]);
  const [y, hy] = randTensor([2, 3, 2, 3], 4);
  await exact(permute(y, [3, 1, 0, 2]), permuteRef(hy, [2, 3, 2, 3], [3, 1, 0, 2]), [3, 3, 2, 2], 'rank 4');
  await check((a) => permute(a!, [3, 1, 0, 2]), [y]);
});

test('slice: negative indices, partial axes, empty, gradcheck', async () => {
  const s = [3, 4, 5];
  const [x, h] = randTensor(s, 5);
  const cases: [number[], number[]][] = [
    [[1], [3]], // first axis only
    [
      [0, 1],
      [3, 3],
    ], // two axes, last whole
    [
      [-2, -3, 1],
      [-1, 4, -1],
    ], // negative begin and end
    [
      [0, 0, 4],
      [3, 4, 5],
    ], // width-1 window at the end
    [[], []], // everything
    [
      [1, 2, 2],
      [1, 4, 5],
    ], // empty along axis 0
    [[0, 0, 0], []], // begin only
  ];
  for (const [b, e] of cases) {
    const [ref, shape] = sliceRef(h, s, b, e);
    await exact(slice(x, b, e), ref, shape, `slice ${b} ${e}`);
  }
  await check((a) => slice(a!, [-2, 1, 1], [3, -1, 4]), [x]);
  await check((a) => slice(a!, [1]), [randTensor([3, 5], 6)[0]]);
});

test('concat: axis 0, middle axis, last, 3 tensors, gradcheck', async () => {
  const [a, ha] = randTensor([2, 3, 2], 7);
  const [b, hb] = randTensor([1, 3, 2], 8);
  const [c, hc] = randTensor([2, 4, 2], 9);
  const [d, hd] = randTensor([2, 3, 3], 10);
  const [e, he] = randTensor([2, 1, 2], 11);
  let [ref, shape] = concatRef(
    [
      [ha, [2, 3, 2]],
      [hb, [1, 3, 2]],
    ],
    0,
  );
  await exact(concat([a, b], 0), ref, shape, 'axis 0');
  [ref, shape] = concatRef(
    [
      [ha, [2, 3, 2]],
      [hc, [2, 4, 2]],
      [he, [2, 1, 2]],
    ],
    1,
  );
  await exact(concat([a, c, e], 1), ref, shape, 'axis 1, 3 tensors');
  [ref, shape] = concatRef(
    [
      [ha, [2, 3, 2]],
      [hd, [2, 3, 3]],
      [ha, [2, 3, 2]],
    ],
    2,
  );
  await exact(concat([a, d, a], -1), ref, shape, 'axis -1, repeated input');
  await exact(concat([a], 1), [...Float32Array.from(ha)], [2, 3, 2], 'one tensor');
  await check((p, q, r) => concat([p!, q!, r!], 1), [a, c, e]);
  await check((p, q) => concat([p!, q!, p!], 0), [b, randTensor([3, 3, 2], 12)[0]]);
  d.dispose();
});

test('expand: forward and gradcheck (summed back over broadcast axes)', async () => {
  const cases: [Shape, Shape][] = [
    [
      [3, 1],
      [3, 4],
    ],
    [[4], [2, 3, 4]],
    [
      [2, 1, 3],
      [2, 4, 3],
    ],
    [
      [1, 1],
      [2, 3],
    ],
    [
      [2, 3],
      [2, 3],
    ],
    [[], [2, 2]],
  ];
  for (const [s, out] of cases) {
    const [x, h] = randTensor(s, 13);
    await exact(expand(x, out), expandRef(Float32Array.from(h), s, out), out, `expand [${s}] → [${out}]`);
    x.dispose();
  }
  await check((a) => expand(a!, [2, 3, 4]), [randTensor([3, 1], 14)[0]]);
  await check((a) => expand(a!, [2, 3, 5]), [randTensor([5], 15)[0]]);
  await check((a) => expand(a!, [4, 2, 3]), [randTensor([1, 2, 1], 16)[0]]);
});

test('int32 tensors: bit patterns survive every shape op', async () => {
  // small ints are float32 denormals, large ones NaN/inf patterns: a float copy could flush them
  const v = [1, 2, -1, 0x7fc00001, 2147483647, -2147483648];
  const x = tensor(v, [2, 3], { dtype: 'int32' });
  const run = async (y: Tensor, ref: number[], shape: Shape, what: string) => {
    assert.is(y.dtype, 'int32', what);
    await exact(y, ref, shape, what);
  };
  await run(reshape(x, [3, 2]), v, [3, 2], 'reshape');
  await run(permute(x, [1, 0]), permuteRef(v, [2, 3], [1, 0]), [3, 2], 'permute');
  await run(slice(x, [0, 1], [2, 3]), sliceRef(v, [2, 3], [0, 1], [2, 3])[0], [2, 2], 'slice');
  await run(
    concat([x, x], 1),
    concatRef(
      [
        [v, [2, 3]],
        [v, [2, 3]],
      ],
      1,
    )[0],
    [2, 6],
    'concat',
  );
  const x3 = reshape(x, [1, 2, 3]);
  await run(expand(x3, [2, 2, 3]), [...v, ...v], [2, 2, 3], 'expand');
  x3.dispose();
  x.dispose();
});

test('bad input: reshape to the wrong size', () => {
  const x = tensor(new Float32Array(6), [2, 3]);
  rejects(() => reshape(x, [4]), 'reshape', '[2, 3]', '[4]');
  rejects(() => reshape(x, [-1, -1]), 'reshape', '[2, 3]', '[-1, -1]');
  rejects(() => reshape(x, [4, -1]), 'reshape', '[2, 3]', '[4, -1]');
  rejects(() => reshape(x, [0, -1]), 'reshape', '[2, 3]');
  rejects(() => reshape(x, [-2, -3]), 'reshape', '[-2, -3]');
  x.dispose();
});

test('bad input: permute / transpose', () => {
  const x = tensor(new Float32Array(6), [2, 3]);
  rejects(() => permute(x, [0, 0]), 'permute', '[0, 0]', '[2, 3]');
  rejects(() => permute(x, [0]), 'permute', '[2, 3]');
  rejects(() => permute(x, [0, 1, 2]), 'permute', '[2, 3]');
  rejects(() => permute(x, [0, 1.5]), 'permute', '[2, 3]');
  rejects(() => transpose(x, 0, 2), 'transpose', 'axis 2', '[2, 3]');
  x.dispose();
});

test('bad input: slice out of range', () => {
  const x = tensor(new Float32Array(12), [3, 4]);
  rejects(() => slice(x, [0, 0], [4, 4]), 'slice', 'axis 0', '[3, 4]');
  rejects(() => slice(x, [0, 3], [3, 2]), 'slice', 'axis 1', '[3, 4]');
  rejects(() => slice(x, [-5]), 'slice', 'axis 0', '[3, 4]');
  rejects(() => slice(x, [0, 0, 0]), 'slice', '[3, 4]');
  rejects(() => slice(x, [0.5]), 'slice', '[3, 4]');
  x.dispose();
});

test('bad input: concat mismatch', () => {
  const a = tensor(new Float32Array(6), [2, 3]);
  const b = tensor(new Float32Array(8), [2, 4]);
  const c = tensor(new Float32Array(6), [6]);
  const i = tensor(new Int32Array(6), [2, 3]);
  rejects(() => concat([a, b], 0), 'concat', '[2, 4]', '[2, 3]');
  rejects(() => concat([a, c], 0), 'concat', '[6]', '[2, 3]');
  rejects(() => concat([a, i], 0), 'concat', 'int32');
  rejects(() => concat([a, a], 2), 'concat', 'axis 2', '[2, 3]');
  rejects(() => concat([], 0), 'concat');
  for (const t of [a, b, c, i]) t.dispose();
});

test('bad input: expand to an incompatible shape', () => {
  const x = tensor(new Float32Array(3), [3]);
  rejects(() => expand(x, [4]), 'expand', '[3]', '[4]');
  rejects(() => expand(x, [3, 2]), 'expand', '[3]', '[3, 2]');
  const z = tensor(new Float32Array(6), [2, 3]);
  rejects(() => expand(z, [3]), 'expand', '[2, 3]', '[3]');
  rejects(() => expand(x, [2, -3]), 'expand', '[3]', '[2, -3]');
  x.dispose();
  z.dispose();
});

test('bad input: disposed tensors', () => {
  const x = tensor([1, 2, 3, 4], [2, 2]);
  const y = tensor([1, 2, 3, 4], [2, 2]);
  x.dispose();
  rejects(() => reshape(x, [4]), 'reshape', 'disposed', '[2, 2]');
  rejects(() => permute(x, [1, 0]), 'permute', 'disposed');
  rejects(() => transpose(x), 'transpose', 'disposed');
  rejects(() => slice(x, [1]), 'slice', 'disposed');
  rejects(() => concat([y, x], 0), 'concat', 'disposed');
  rejects(() => expand(x, [2, 2, 2]), 'expand', 'disposed');
  y.dispose();
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
