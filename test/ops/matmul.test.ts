// matmul and linear: forward against a float64 reference, backward by gradcheck, bad input.
// Tolerance: each output is a float32 dot product of K terms; in any summation order (tiles,
// FMA or not) its error is within γ_K·Σ_k|a_ik·b_kj| ≈ K·u·Σ|a·b| (u = 2^-24), so
// atol = K·u·max over outputs of Σ|a·b|; linear adds the bias: K + 1 terms, Σ|a·b| + |bias|.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, check, randTensor, rejects } from '../helpers.ts';
import { matmul, linear, tensor, liveTensors, type Tensor } from '../../engine/index.ts';

const test = suite('matmul');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

const U = 2 ** -24;
type Shape = number[];

/** op(a)·op(b) with numpy-style batch sharing for 2-D or batch-1 operands; also max Σ|a·b|. */
function matmulRef(a: Float64Array, sa: Shape, b: Float64Array, sb: Shape, transA = false, transB = false) {
  const [ba, ra, ca] = sa.length === 3 ? sa : [1, ...sa];
  const [bb, rb, cb] = sb.length === 3 ? sb : [1, ...sb];
  const [m, k] = transA ? [ca!, ra!] : [ra!, ca!];
  const n = transB ? rb! : cb!;
  const batch = Math.max(ba!, bb!);
  const y = new Float64Array(batch * m * n);
  let absMax = 0;
  for (let p = 0; p < batch; p++) {
    const oa = ba === 1 ? 0 : p * ra! * ca!;
    const ob = bb === 1 ? 0 : p * rb! * cb!;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        let abs = 0;
        for (let q = 0; q < k; q++) {
          const x = a[oa + (transA ? q * ca! + i : i * ca! + q)]!;
          const w = b[ob + (transB ? j * cb! + q : q * cb! + j)]!;
          s += x * w;
          abs += Math.abs(x * w);
        }
        y[(p * m + i) * n + j] = s;
        absMax = Math.max(absMax, abs);
      }
    }
  }
  const shape = sa.length === 3 || sb.length === 3 ? [batch, m, n] : [m, n];
  return { y, shape, k, absMax, atol: k * U * absMax };
}

async function expectMatmul(sa: Shape, sb: Shape, transA: boolean, transB: boolean, seed: number): Promise<void> {
  const [a, ha] = randTensor(sa, seed);
  const [b, hb] = randTensor(sb, seed + 1);
  const ref = matmulRef(ha, sa, hb, sb, transA, transB);
  const y = matmul(a, b, { transA, transB });
  const what = `matmul [${sa}]${transA ? 'ᵀ' : ''} · [${sb}]${transB ? 'ᵀ' : ''}`;
  assert.equal([...y.shape], ref.shape, `${what}: shape`);
  assertClose(await y.toArray(), ref.y, 0, ref.atol, what);
  for (const t of [a, b, y]) t.dispose();
}

const T = (s: Shape) => [...s.slice(0, -2), s[s.length - 1]!, s[s.length - 2]!];

test('forward: 2-D, odd non-square sizes, vectors', async () => {
  await expectMatmul([3, 5], [5, 7], false, false, 1);
  await expectMatmul([1, 9], [9, 1], false, false, 3);
  await expectMatmul([6, 1], [1, 4], false, false, 5);
  await expectMatmul([4, 4], [4, 4], false, false, 7);
});

test('forward: 3-D batched, 3-D × 2-D, 2-D × 3-D, batch-1 broadcast', async () => {
  await expectMatmul([2, 3, 5], [2, 5, 4], false, false, 11);
  await expectMatmul([3, 3, 5], [5, 4], false, false, 13);
  await expectMatmul([3, 5], [2, 5, 4], false, false, 15);
  await expectMatmul([1, 3, 5], [3, 5, 4], false, false, 17);
  await expectMatmul([3, 3, 5], [1, 5, 4], false, false, 19);
});

test('forward: transA, transB, both (2-D and batched)', async () => {
  for (const [ta, tb] of [
    [true, false],
    [false, true],
    [true, true],
  ] as const) {
    const sa = [3, 5],
      sb = [5, 7];
    await expectMatmul(ta ? T(sa) : sa, tb ? T(sb) : sb, ta, tb, 21);
    await expectMatmul(ta ? T([2, 3, 5]) : [2, 3, 5], tb ? T([2, 5, 4]) : [2, 5, 4], ta, tb, 23);
    await expectMatmul(ta ? T([2, 3, 5]) : [2, 3, 5], tb ? T([5, 4]) : [5, 4], ta, tb, 25);
    await expectMatmul(ta ? T([3, 5]) : [3, 5], tb ? T([1, 5, 4]) : [1, 5, 4], ta, tb, 27);
  }
});

test('forward: sizes crossing the 64-tile boundary', async () => {
  await expectMatmul([67, 70], [70, 65], false, false, 31);
  await expectMatmul([70, 67], [65, 70], true, true, 33);
  await expectMatmul([67, 70], [65, 70], false, true, 35);
  await expectMatmul([70, 67], [70, 65], true, false, 37);
  await expectMatmul([2, 65, 129], [129, 66], false, false, 39);
  await expectMatmul([64, 64], [64, 64], false, false, 41);
});

test('matmul gradcheck: 2-D, batched, broadcast, transposed', async () => {
  const cases: [Shape, Shape, boolean, boolean][] = [
    [[3, 5], [5, 4], false, false],
    [[2, 3, 4], [2, 4, 3], false, false],
    [[2, 3, 4], [4, 3], false, false],
    [[3, 4], [2, 4, 3], false, false],
    [[1, 3, 4], [2, 4, 3], false, false],
    [[2, 3, 4], [1, 4, 3], false, false],
    [[5, 3], [5, 4], true, false],
    [[3, 5], [4, 5], false, true],
    [[2, 5, 3], [4, 5], true, true],
    [[4, 3], [2, 2, 4], true, true],
  ];
  let seed = 50;
  for (const [sa, sb, transA, transB] of cases) {
    await check((a, b) => matmul(a!, b!, { transA, transB }), [randTensor(sa, seed++)[0], randTensor(sb, seed++)[0]]);
  }
});

/** Reference linear: x (…, in) · wᵀ + b. */
function linearRef(x: Float64Array, sx: Shape, w: Float64Array, sw: Shape, b?: Float64Array) {
  const rows = x.length / sx[sx.length - 1]!;
  const r = matmulRef(x, [rows, sx[sx.length - 1]!], w, sw, false, true);
  const out = sw[0]!;
  const y = b ? r.y.map((v, i) => v + b[i % out]!) : r.y;
  const bmax = b ? Math.max(...b.map(Math.abs)) : 0;
  return { y, shape: [...sx.slice(0, -1), out], atol: (r.k + 1) * U * (r.absMax + bmax) };
}

test('linear: 1-D, 2-D and 3-D input, with and without bias', async () => {
  let seed = 70;
  for (const sx of [[5], [4, 5], [2, 3, 5]]) {
    for (const withBias of [false, true]) {
      const [x, hx] = randTensor(sx, seed++);
      const [w, hw] = randTensor([7, 5], seed++);
      const [b, hb] = withBias ? randTensor([7], seed++) : [undefined, undefined];
      const ref = linearRef(hx, sx, hw, [7, 5], hb);
      const y = linear(x, w, b);
      assert.equal([...y.shape], ref.shape);
      assertClose(await y.toArray(), ref.y, 0, ref.atol, `linear [${sx}] bias ${withBias}`);
      for (const t of [x, w, b, y]) t?.dispose();
    }
  }
});

test('linear gradcheck: 2-D and 3-D, with and without bias', async () => {
  await check(
    (x, w, b) => linear(x!, w!, b!),
    [randTensor([4, 3], 80)[0], randTensor([5, 3], 81)[0], randTensor([5], 82)[0]],
  );
  await check((x, w) => linear(x!, w!), [randTensor([4, 3], 83)[0], randTensor([5, 3], 84)[0]]);
  await check(
    (x, w, b) => linear(x!, w!, b!),
    [randTensor([2, 3, 3], 85)[0], randTensor([2, 3], 86)[0], randTensor([2], 87)[0]],
  );
  await check((x, w) => linear(x!, w!), [randTensor([2, 2, 3], 88)[0], randTensor([4, 3], 89)[0]]);
});

test('bad input: inner-dimension and batch mismatch, rank', () => {
  const t = (s: Shape): Tensor => tensor(new Float32Array(s.reduce((a, v) => a * v, 1)), s);
  const [a, b, c, d, v] = [t([2, 3]), t([4, 5]), t([2, 3, 4]), t([3, 4, 5]), t([3])];
  rejects(() => matmul(a, b), 'matmul', '[2, 3]', '[4, 5]', '3 vs 4');
  rejects(() => matmul(a, a, { transB: false }), 'matmul', '[2, 3]', '3 vs 2');
  rejects(() => matmul(a, b, { transA: true }), 'matmul', '[2, 3]', '[4, 5]', '2 vs 4');
  rejects(() => matmul(c, d), 'matmul', '[2, 3, 4]', '[3, 4, 5]', 'batch');
  rejects(() => matmul(v, a), 'matmul', '[3]', '[2, 3]');
  rejects(() => linear(c, a), 'linear', '[2, 3, 4]', '[2, 3]');
  rejects(() => linear(a, b), 'linear', '[2, 3]', '[4, 5]');
  const w = t([4, 3]);
  rejects(() => linear(a, w, v), 'linear', 'bias', '[3]', '[4, 3]');
  for (const x of [a, b, c, d, v, w]) x.dispose();
});

test('bad input: int32 and disposed tensors', () => {
  const i = tensor([1, 2, 3, 4], [2, 2], { dtype: 'int32' });
  const f = tensor([1, 2, 3, 4], [2, 2]);
  const x = tensor([1, 2, 3, 4], [2, 2]);
  x.dispose();
  try {
    rejects(() => matmul(i, f), 'matmul', 'int32', '[2, 2]');
    rejects(() => matmul(f, i), 'matmul', 'int32');
    rejects(() => matmul(x, f), 'matmul', 'disposed', '[2, 2]');
    rejects(() => matmul(f, x), 'matmul', 'disposed');
    rejects(() => linear(x, f), 'linear', 'disposed');
  } finally {
    i.dispose();
    f.dispose();
  }
});

test('bad input: linear checks every operand (dtype, bias) before dispatching', () => {
  const i = tensor([1, 2, 3, 4], [2, 2], { dtype: 'int32' });
  const ib = tensor([1, 2], [2], { dtype: 'int32' });
  const f = tensor([1, 2, 3, 4], [2, 2]);
  const b = tensor([1, 2], [2]);
  b.dispose();
  try {
    rejects(() => linear(f, i), 'linear', 'int32');
    rejects(() => linear(f, f, ib), 'linear', 'int32');
    rejects(() => linear(f, f, b), 'linear', 'disposed');
  } finally {
    for (const t of [i, ib, f]) t.dispose();
  }
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
