// NaN and ±Inf semantics, as PyTorch (checked against torch 1.13): relu(NaN) = NaN and its
// gradient passes (threshold_backward); max over a set with a NaN is NaN and the gradient is
// split among the NaN entries (torch.max()); max_pool2d outputs NaN and routes the gradient to
// the window's LAST NaN; argmax picks the first NaN. Forward values against float64 references
// (exact: these ops select an input), gradients against float64 references and by gradcheck on
// inputs holding NaN. BatchNorm never writes a non-finite running statistic. Host data checks:
// assertFinite, tensor({ checkFinite }), int32 range.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { check, device, randArray, throwsWith, rejects } from '../helpers.ts';
import {
  assertFinite,
  batchNorm2d,
  conv2d,
  gradcheck,
  grad,
  liveTensors,
  max,
  maxPool2d,
  mul,
  relu,
  sum,
  tensor,
  tidy,
  type Tensor,
} from '../../engine/index.ts';
import { argmaxRows } from '../../train/run/metrics.ts';

const test = suite('nan');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

/** Elementwise: NaN where expected is NaN, else exactly equal (these ops select or pass values). */
function sameValues(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    const a = actual[i]!;
    if (Number.isNaN(e) ? !Number.isNaN(a) : a !== e)
      assert.unreachable(`${what}: element ${i}: got ${a}, expected ${e}`);
  }
}

/** Gradient of Σ gy·f(x) on the GPU, for f and fixed gy. */
async function vjp(
  f: (x: Tensor) => Tensor,
  x: Float32Array,
  shape: number[],
  gy: Float32Array,
): Promise<Float32Array> {
  const xt = tensor(x, shape, { requiresGrad: true });
  const y = f(xt);
  const g = tensor(gy, y.shape);
  const [dx] = grad([y], [xt], { gradOutputs: [g] });
  const out = (await dx!.toArray()) as Float32Array;
  for (const t of [xt, y, g, dx!]) t.dispose();
  return out;
}

test('relu: NaN stays NaN, ±Inf as numbers; the gradient passes at NaN (torch.relu, threshold_backward)', async () => {
  const x = Float32Array.of(NaN, -NaN, -1.5, 0, -0, 2.5, Infinity, -Infinity);
  const xt = tensor(x);
  const y = relu(xt);
  sameValues(await y.toArray(), [NaN, NaN, 0, 0, 0, 2.5, Infinity, 0], 'relu');
  const gy = Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8);
  // threshold_backward: x <= 0 ? 0 : gy — false for NaN, so NaN passes the gradient.
  sameValues(await vjp(relu, x, [8], gy), [1, 2, 0, 0, 0, 6, 7, 0], 'relu backward');
  xt.dispose();
  y.dispose();
});

/**
 * Float64 reference of max over the last axis of (rows, n): NaN if the row holds one; gradient gy/count on the NaN
 * entries, else on the maxima.
 */
function maxRowsRef(x: Float32Array, rows: number, n: number, gy: Float32Array): { y: number[]; dx: number[] } {
  const y: number[] = [];
  const dx = new Array<number>(x.length).fill(0);
  for (let r = 0; r < rows; r++) {
    const row = Array.from(x.subarray(r * n, (r + 1) * n));
    const hasNaN = row.some(Number.isNaN);
    const m = hasNaN ? NaN : Math.max(...row);
    const hits = row.map((v) => (hasNaN ? Number.isNaN(v) : v === m));
    const count = hits.filter(Boolean).length;
    hits.forEach((h, j) => {
      if (h) dx[r * n + j] = Math.fround(gy[r]! / count);
    });
    y.push(m);
  }
  return { y, dx };
}

test(
  'max: a set with a NaN has maximum NaN, every kernel path (strided, tree, two-pass tree, permuted); gradient ' +
    'split among the NaN entries',
  async () => {
    // [rows, n] reduced over the last axis: n = 7 (strided), 300 (tree), 5000 (tree, two passes);
    // and [1100, 3] over axis 0 (permuted to the tree kernel).
    const cases: { shape: number[]; axis: number; nanAt: [number, number][] }[] = [
      {
        shape: [5, 7],
        axis: 1,
        nanAt: [
          [1, 0],
          [3, 6],
          [3, 2],
        ],
      },
      {
        shape: [4, 300],
        axis: 1,
        nanAt: [
          [0, 299],
          [2, 17],
          [2, 256],
        ],
      },
      {
        shape: [3, 5000],
        axis: 1,
        nanAt: [
          [1, 4999],
          [2, 4096],
          [2, 11],
        ],
      },
      {
        shape: [1100, 3],
        axis: 0,
        nanAt: [
          [1099, 0],
          [5, 2],
        ],
      },
    ];
    for (const [ci, c] of cases.entries()) {
      const [a, b] = c.shape as [number, number];
      // Lay the data out as (rows, n) along the reduced axis for the reference.
      const rows = c.axis === 1 ? a : b;
      const n = c.axis === 1 ? b : a;
      const flatRows = Float32Array.from(randArray(rows * n, 70 + ci));
      for (const [r, j] of c.nanAt) flatRows[r * n + j] = NaN;
      const x =
        c.axis === 1
          ? flatRows
          : Float32Array.from({ length: a * b }, (_, i) => flatRows[(i % b) * n + Math.floor(i / b)]!);
      const gy = Float32Array.from(randArray(rows, 90 + ci, 0.5, 1.5));
      const ref = maxRowsRef(flatRows, rows, n, gy);
      const xt = tensor(x, c.shape);
      const y = max(xt, c.axis);
      sameValues(await y.toArray(), ref.y, `max [${c.shape}] axis ${c.axis}`);
      const dx = await vjp((t) => max(t, c.axis), x, c.shape, gy);
      const dxRows =
        c.axis === 1 ? dx : Float32Array.from({ length: rows * n }, (_, k) => dx[(k % n) * b + Math.floor(k / n)]!);
      sameValues(dxRows, ref.dx, `max backward [${c.shape}] axis ${c.axis}`);
      xt.dispose();
      y.dispose();
    }
    // Over everything (two NaNs share the gradient), and a NaN first in the set.
    const all = Float32Array.from(randArray(600, 77));
    all[0] = NaN;
    all[450] = NaN;
    const ref = maxRowsRef(all, 1, 600, Float32Array.of(3));
    const t = tensor(all);
    const m = max(t);
    sameValues(await m.toArray(), [NaN], 'max of all');
    sameValues(
      await vjp((u) => max(u), all, [600], Float32Array.of(3)),
      ref.dx,
      'max of all backward: 1.5 to each NaN',
    );
    t.dispose();
    m.dispose();
  },
);

/** Float64 reference of max_pool2d on one plane: PyTorch's rule (v > best || isnan(v)), padding never taken. */
function poolRef(x: Float32Array, h: number, w: number, k: number, s: number, p: number, gy: Float32Array) {
  const oh = Math.floor((h + 2 * p - k) / s) + 1;
  const ow = Math.floor((w + 2 * p - k) / s) + 1;
  const y: number[] = [];
  const idx: number[] = [];
  const dx = new Array<number>(h * w).fill(0);
  for (let oy = 0; oy < oh; oy++) {
    for (let ox = 0; ox < ow; ox++) {
      let best = -Infinity;
      let arg = -1;
      for (let ky = 0; ky < k; ky++) {
        for (let kx = 0; kx < k; kx++) {
          const yy = oy * s - p + ky;
          const xx = ox * s - p + kx;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          const v = x[yy * w + xx]!;
          if (arg < 0 || v > best || Number.isNaN(v)) [best, arg] = [v, yy * w + xx];
        }
      }
      y.push(best);
      idx.push(arg);
      dx[arg]! += gy[oy * ow + ox]!;
    }
  }
  return { y, idx, dx: dx.map(Math.fround) };
}

test('maxPool2d: NaN wins, the gradient goes to the last NaN of the window (as PyTorch); Inf is a number', async () => {
  const h = 6;
  const w = 6;
  const x = Float32Array.from(randArray(h * w, 31));
  x[0] = NaN; // window (0, 0) of 2×2/2 holds NaNs at 0 and 7: PyTorch returns index 7
  x[7] = NaN;
  x[14] = Infinity;
  x[20] = NaN; // shared by several 3×3/1 windows
  for (const [k, s, p] of [
    [2, 2, 0],
    [3, 1, 1],
  ] as const) {
    const oh = Math.floor((h + 2 * p - k) / s) + 1;
    const gy = Float32Array.from(randArray(oh * oh, 32 + k, 0.5, 1.5));
    const ref = poolRef(x, h, w, k, s, p, gy);
    const xt = tensor(x, [1, 1, h, w]);
    const y = maxPool2d(xt, { kernelSize: k, stride: s, padding: p });
    sameValues(await y.toArray(), ref.y, `maxPool2d ${k}/${s} pad ${p}`);
    // Gradients are sums of a few gy values: float32 sums in window order, so compare with a tolerance of a few ulps.
    const dx = await vjp((t) => maxPool2d(t, { kernelSize: k, stride: s, padding: p }), x, [1, 1, h, w], gy);
    for (let i = 0; i < dx.length; i++)
      assert.ok(
        Math.abs(dx[i]! - ref.dx[i]!) <= 4 * 2 ** -24 * 9 * 1.5,
        `maxPool2d ${k}/${s} backward element ${i}: ${dx[i]} vs ${ref.dx[i]}`,
      );
    if (k === 2) assert.is(dx[7], gy[0], 'window (0, 0): the last NaN takes the gradient');
    if (k === 2) assert.is(dx[0], 0, 'window (0, 0): not the first NaN');
    xt.dispose();
    y.dispose();
  }
});

test("argmax (the evaluation's predictions): the first NaN, else the first maximum (torch.argmax)", () => {
  assert.equal(Array.from(argmaxRows([1, NaN, 5, NaN, 2, 9, 9, 0, NaN, 1, 1, 1], 4)), [1, 1, 0]);
  assert.equal(Array.from(argmaxRows([-Infinity, -Infinity, Infinity, 3], 2)), [0, 0]);
});

test(
  'gradcheck with NaN inputs: NaN outputs get no cotangent, ' + 'finite elements are checked, and a NaN gradient fails',
  async () => {
    const r = Float32Array.of(NaN, -0.7, 0.4, 1.3, NaN, -1.1, 0.9, 2.2);
    await check((x) => relu(x), [tensor(r, [8])]);
    const m = Float32Array.from(randArray(15, 41));
    m[7] = NaN; // row 1 of [3, 5]
    await check((x) => max(x, 1), [tensor(m, [3, 5])]);
    const p = Float32Array.from(randArray(16, 42));
    p[5] = NaN;
    await check((x) => maxPool2d(x, { kernelSize: 2, stride: 2 }), [tensor(p, [1, 1, 4, 4])]);
    // Composite: the NaN in one item must not leak into the other items' gradients.
    const c = Float32Array.from(randArray(12, 43));
    c[2] = NaN;
    await check((x) => tidy(() => sum(relu(mul(x, x)), 1)), [tensor(c, [3, 4])]);
    // x·c with NaN in c: the analytic gradient of a perturbable element is NaN — a failure, never a silent pass.
    const cn = tensor(Float32Array.of(1, NaN, 2), [3]);
    const x = tensor(Float32Array.of(0.5, 0.25, -1), [3]);
    const bad = await gradcheck((t) => mul(t, cn), [x], { raise: false });
    assert.not.ok(bad.ok);
    assert.is(bad.inputs[0]!.worstElement, 1);
    cn.dispose();
    x.dispose();
  },
);

test(
  'batchNorm2d: a NaN batch never reaches the running statistics (skipped per channel, counted); the other ' +
    'channels update',
  async () => {
    // (N, C, H, W) = (2, 3, 2, 2); channel 1 holds a NaN, channel 2 an Inf.
    const x = Float32Array.from(randArray(24, 51));
    x[4 + 1] = NaN; // item 0, channel 1
    x[12 + 8 + 3] = Infinity; // item 1, channel 2
    const xt = tensor(x, [2, 3, 2, 2]);
    const rm0 = Float32Array.of(0.5, -0.25, 1);
    const rv0 = Float32Array.of(2, 0.5, 1.5);
    const rm = tensor(rm0, [3]);
    const rv = tensor(rv0, [3]);
    const before = (await device.readNonFiniteCounts()).batchNorm;
    const y = batchNorm2d(xt, null, null, rm, rv, { training: true, momentum: 0.1 });
    const out = await y.toArray();
    // Channel 0 is finite: updated as PyTorch (momentum 0.1, unbiased variance), float64 reference.
    const c0 = [0, 1, 2, 3, 12, 13, 14, 15].map((i) => x[i]!);
    const mean = c0.reduce((a, b) => a + b, 0) / 8;
    const varU = c0.reduce((a, b) => a + (b - mean) ** 2, 0) / 7;
    const rmOut = await rm.toArray();
    const rvOut = await rv.toArray();
    assert.ok(Math.abs(rmOut[0]! - (0.9 * 0.5 + 0.1 * mean)) < 1e-6, `running_mean[0] ${rmOut[0]}`);
    assert.ok(Math.abs(rvOut[0]! - (0.9 * 2 + 0.1 * varU)) < 1e-5, `running_var[0] ${rvOut[0]}`);
    // Channels 1 and 2 keep their values exactly; the counter counts the two refusals.
    assert.equal([rmOut[1], rmOut[2], rvOut[1], rvOut[2]], [rm0[1], rm0[2], rv0[1], rv0[2]]);
    assert.is((await device.readNonFiniteCounts()).batchNorm - before, 2);
    // The outputs of the bad channels are NaN (as PyTorch: the batch statistics are NaN).
    assert.ok(Number.isNaN(out[4]!) && Number.isNaN(out[8]!) && Number.isFinite(out[0]!), 'outputs');
    for (const t of [xt, rm, rv, y]) t.dispose();
  },
);

test(
  'conv → batchNorm → relu with one NaN pixel: NaN out (as PyTorch), running stats untouched, eval still tells ' +
    'inputs apart',
  async () => {
    const x = Float32Array.from(randArray(2 * 1 * 5 * 5, 61));
    x[12] = NaN;
    const w = tensor(Float32Array.from(randArray(3 * 9, 62)), [3, 1, 3, 3]);
    const rm = tensor(Float32Array.of(0, 0, 0), [3]);
    const rv = tensor(Float32Array.of(1, 1, 1), [3]);
    const xt = tensor(x, [2, 1, 5, 5]);
    const c = conv2d(xt, w, null, { padding: 1 });
    const bn = batchNorm2d(c, null, null, rm, rv, { training: true });
    const h = relu(bn);
    assert.ok(Array.from(await h.toArray()).every(Number.isNaN), 'every output NaN: the batch statistics are NaN');
    assert.equal(Array.from(await rm.toArray()), [0, 0, 0]);
    assert.equal(Array.from(await rv.toArray()), [1, 1, 1]);
    // Eval with the (intact) running statistics: two different inputs give different features.
    const feats: Float32Array[] = [];
    for (const seed of [63, 64]) {
      const xi = tensor(Float32Array.from(randArray(25, seed)), [1, 1, 5, 5]);
      const ci = conv2d(xi, w, null, { padding: 1 });
      const bi = batchNorm2d(ci, null, null, rm, rv, { training: false });
      feats.push((await bi.toArray()) as Float32Array);
      for (const t of [xi, ci, bi]) t.dispose();
    }
    assert.ok(
      feats[0]!.some((v, i) => v !== feats[1]![i]) && feats[0]!.every(Number.isFinite),
      'eval features finite and input-dependent',
    );
    for (const t of [w, rm, rv, xt, c, bn, h]) t.dispose();
  },
);

test(
  'host data: assertFinite and tensor({ checkFinite }) name the index; ' + 'int32 out of range is refused, not wrapped',
  () => {
    throwsWith(
      () => assertFinite(Float32Array.of(1, 2, NaN, Infinity), 'batch gray'),
      'batch gray',
      'NaN at index 2',
      '2 non-finite values in 4',
    );
    assertFinite([0, -1e38, 3e38], 'fine');
    rejects(
      () =>
        tensor(
          [
            [1, 2],
            [3, -Infinity],
          ],
          undefined,
          { checkFinite: true },
        ),
      'tensor',
      '-Infinity at index 3',
    );
    rejects(
      () => tensor([2 ** 33], [1], { dtype: 'int32' }),
      'tensor',
      '8589934592',
      'outside [-2147483648, 2147483647]',
    );
    rejects(() => tensor([-(2 ** 31) - 1], [1], { dtype: 'int32' }), 'outside');
    const edge = tensor([-(2 ** 31), 2 ** 31 - 1], [2], { dtype: 'int32' });
    assert.equal(edge.valueRange, [-(2 ** 31), 2 ** 31 - 1]);
    edge.dispose();
  },
);

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
