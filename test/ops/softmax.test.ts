// softmax / logSoftmax: forward and backward against float64 references on the last axis
// (scalar and vec4 kernels) and on every axis of a 3-D tensor, rows of ±1000, gradcheck,
// bad input, no leaks.
//
// Tolerances (u = 2^-24). Per row of length D the kernel sums k = D/4 + 3 (vec4, D % 4 = 0 on the
// last axis) or D + 3 terms serially. With a = x − m (one rounding) and s = Σ e^a ∈ [1, D]:
//  - e^a has (3 + 2|a|) ULP (WGSL) plus |a|·u from rounding a; |a|·e^a ≤ 1/e, so s has relative
//    error ≤ (k + 4)·u and p = e^a/s is within (k + 8)·u·p + 2u (rtol (k + 8)u, atol 2u);
//  - log s adds ≤ 2^-21 absolute (WGSL log near 1) or 3 ULP: log-softmax (a − log s) is within
//    u·|y| + (k + 6)·u + 2^-21 (rtol 2u; ±1000 inputs only enter through a, whose error is relative).
// Backward, G = max|g|:
//  - softmax dx = y·(g − Σg·y): |g − dot| ≤ 2G, and Σ_j |g_j|·|Δy_j| ≤ G·((k + 8)·u + 3u·Σ|a|·p)
//    with Σ|a|·p ≤ 2 ln D + 1 (entropy), so every entry is within 4·(k + 8 + 6 ln D + 3)·u·G;
//  - log-softmax dx = g − e^y·Σg: e^y is p within (|y| + k + 12)·u + 2^-21 relative, p·|y| ≤ 1/e,
//    and Σg has k·u·Σ|g| error, so an entry is within |Σg|·((k + 13)·u + 2^-21) + k·u·Σ|g| + u·|dx|,
//    taken with the largest row sums |Σg| and Σ|g| of the data and a factor 2 spare.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, check, randArray, randTensor, throwsWith } from '../helpers.ts';
import { softmax, logSoftmax, grad, tensor, liveTensors } from '../../engine/index.ts';

const test = suite('softmax');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

const U = 2 ** -24;
type Kind = 'softmax' | 'logSoftmax';

/** float64 reference along `axis`: [output, d(Σ g·output)/dx]. */
function ref(
  kind: Kind,
  x: Float64Array,
  shape: number[],
  axis: number,
  g: Float64Array,
): [Float64Array, Float64Array] {
  const d = shape[axis]!;
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const outer = x.length / (d * inner);
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      const idx = (j: number) => (o * d + j) * inner + i;
      let m = -Infinity;
      for (let j = 0; j < d; j++) m = Math.max(m, x[idx(j)]!);
      let s = 0;
      for (let j = 0; j < d; j++) s += Math.exp(x[idx(j)]! - m);
      let dot = 0;
      let sg = 0;
      for (let j = 0; j < d; j++) {
        const p = Math.exp(x[idx(j)]! - m) / s;
        y[idx(j)] = kind === 'softmax' ? p : x[idx(j)]! - m - Math.log(s);
        dot += g[idx(j)]! * p;
        sg += g[idx(j)]!;
      }
      for (let j = 0; j < d; j++) {
        const p = Math.exp(x[idx(j)]! - m) / s;
        dx[idx(j)] = kind === 'softmax' ? p * (g[idx(j)]! - dot) : g[idx(j)]! - p * sg;
      }
    }
  return [y, dx];
}

async function compare(kind: Kind, x: Float64Array, shape: number[], axis: number, what: string): Promise<void> {
  const a = axis < 0 ? axis + shape.length : axis;
  const d = shape[a]!;
  const k = a === shape.length - 1 && d % 4 === 0 ? d / 4 + 3 : d + 3;
  const xt = tensor(Float32Array.from(x), shape, { requiresGrad: true });
  const [gt, g] = randTensor(shape, 77 + x.length, -1, 1);
  const y = kind === 'softmax' ? softmax(xt, axis) : logSoftmax(xt, axis);
  const [dx] = grad([y], [xt], { gradOutputs: [gt] });
  const [ry, rdx] = ref(kind, x, shape, a, g);
  assert.equal([...y.shape], shape, `${what}: shape`);
  if (kind === 'softmax') assertClose(await y.toArray(), ry, (k + 8) * U, 2 * U, `${what}: forward`);
  else assertClose(await y.toArray(), ry, 2 * U, (k + 6) * U + 2 ** -21, `${what}: forward`);
  // Largest row sums |Σg| and Σ|g| (rows along the axis, as in ref()).
  const inner = shape.slice(a + 1).reduce((p, q) => p * q, 1);
  let s1 = 0;
  let s2 = 0;
  for (let o = 0; o < x.length / (d * inner); o++)
    for (let i = 0; i < inner; i++) {
      let sg = 0;
      let sa = 0;
      for (let j = 0; j < d; j++) {
        sg += g[(o * d + j) * inner + i]!;
        sa += Math.abs(g[(o * d + j) * inner + i]!);
      }
      s1 = Math.max(s1, Math.abs(sg));
      s2 = Math.max(s2, sa);
    }
  const gmax = Math.max(...Array.from(g, Math.abs));
  const bwd =
    kind === 'softmax'
      ? 4 * (k + 8 + 6 * Math.log(d) + 3) * U * gmax
      : 2 * (s1 * ((k + 13) * U + 2 ** -21) + k * U * s2 + U * (s1 + gmax));
  assertClose(await dx!.toArray(), rdx, 0, bwd, `${what}: backward`);
  for (const t of [xt, gt, y, dx!]) t.dispose();
}

test('last axis (scalar and vec4 kernels, D up to 300) against float64', async () => {
  for (const kind of ['softmax', 'logSoftmax'] as const)
    for (const shape of [
      [5, 7],
      [5, 8],
      [3, 300],
      [2, 3, 37],
      [64, 1000],
    ]) {
      const n = shape.reduce((a, b) => a * b, 1);
      await compare(kind, randArray(n, n, -4, 4), shape, -1, `${kind} ${JSON.stringify(shape)}`);
    }
});

test('every axis of 3-D tensors (in place, strided rows)', async () => {
  for (const kind of ['softmax', 'logSoftmax'] as const)
    for (const shape of [
      [3, 4, 5],
      [4, 8, 4],
    ])
      for (const axis of [0, 1, 2, -2, -3])
        await compare(
          kind,
          randArray(
            shape.reduce((a, b) => a * b, 1),
            40 + axis,
            -3,
            3,
          ),
          shape,
          axis,
          `${kind} ${JSON.stringify(shape)} axis ${axis}`,
        );
});

test('rows of ±1000: accurate, finite, exact where float32 allows', async () => {
  for (const kind of ['softmax', 'logSoftmax'] as const) {
    await compare(kind, randArray(6 * 9, 90, -1000, 1000), [6, 9], -1, `${kind} ±1000`);
    await compare(kind, randArray(4 * 8 * 3, 91, -1000, 1000), [4, 8, 3], 1, `${kind} ±1000 axis 1`);
  }
  const x = tensor([1000, -1000, 0, 0, 1000, 1000, -1000, -1000, 1000, 1000, 1000, 1000], [3, 4]);
  const pt = softmax(x);
  const p = await pt.toArray();
  assert.equal([...p.subarray(0, 4)], [1, 0, 0, 0], 'one dominant entry: exactly one-hot');
  assertClose(p.subarray(4), [0.5, 0.5, 0, 0, 0.25, 0.25, 0.25, 0.25], 0, 0, 'ties: exact halves and quarters');
  const lt = logSoftmax(x);
  const l = await lt.toArray();
  assert.equal([...l.subarray(0, 4)], [0, -2000, -1000, -1000], 'log-softmax: exact differences from the max');
  assertClose(
    l.subarray(4),
    [-Math.LN2, -Math.LN2, -2000 - Math.LN2, -2000 - Math.LN2, ...Array(4).fill(-2 * Math.LN2)],
    2 * U,
    2 ** -21,
    'log of ties',
  );
  for (const t of [x, pt, lt]) t.dispose();
});

test('gradcheck (last axis, middle axis, first axis)', async () => {
  let seed = 700;
  for (const kind of ['softmax', 'logSoftmax'] as const) {
    const f = kind === 'softmax' ? softmax : logSoftmax;
    await check((x) => f(x!), [randTensor([3, 5], seed++, -2, 2)[0]]);
    await check((x) => f(x!), [randTensor([2, 8], seed++, -2, 2)[0]]);
    await check((x) => f(x!, 1), [randTensor([2, 3, 4], seed++, -2, 2)[0]]);
    await check((x) => f(x!, 0), [randTensor([3, 2, 2], seed++, -2, 2)[0]]);
  }
});

test('bad input: axis out of range, scalar input', () => {
  const x = tensor(new Float32Array(24), [2, 3, 4]);
  const s = tensor([1], []);
  const n = liveTensors.count;
  throwsWith(() => softmax(x, 3), 'softmax', 'axis 3', '[2, 3, 4]');
  throwsWith(() => logSoftmax(x, -4), 'logSoftmax', 'axis -4', '[2, 3, 4]');
  throwsWith(() => softmax(x, 1.5), 'softmax', 'axis 1.5');
  throwsWith(() => softmax(s), 'softmax', 'scalar');
  assert.is(liveTensors.count, n, 'nothing allocated');
  for (const t of [x, s]) t.dispose();
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
