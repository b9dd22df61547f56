// batchNorm2d: forward (train and eval) and backward against float64 references of
// torch.nn.functional.batch_norm, gradcheck of x, weight and bias in both modes, running-stat
// updates, (N, C) input, a large-mean input (stable variance), bad input, no leaks.
// Tolerances (u = 2^-24 ≈ 6e-8). A sum computed with sequential depth D (the most roundings any
// partial sum sees) errs by at most D·u·Σ|terms|. The kernels sum a channel's M values either in
// one invocation (M ≤ BATCHNORM_SERIAL_MAX = 256: D = M) or over wg lanes of ≤ M/64 terms each
// plus the leader's 4 accumulators over ≤ 256 partials (D ≤ M/64 + 68): `depth` below. Then per
// channel
//  - mean = K + Σ(x − K)/M, K the first value: error ≤ u·|mean| + D·u·2·maxDev (|x − K| ≤ 2·maxDev,
//    maxDev = max|x − mean|);
//  - var = Σ(x − mean)²/M: relative error ≤ (D + 2)·u (a mean error enters only squared);
//    invstd = 1/√(var + eps): ≤ (D + 6)·u/2 relative;
//  - y = (x − mean)·(w·invstd) + b: three more roundings.
//  So |y − y_ref| ≤ |w|·invstd·u·(|mean| + (3·D + 8)·maxDev) + 4·u·|b| + 4·u·|y|; the tests use
//  twice that (atol = 2·u·|w|·invstd·(|mean| + (3D + 8)·maxDev) + 8·u·|b|, rtol = 64·u). At mean
//  1000, std 0.6 this is ≲ 6e-4, while E[x²] − E[x]² in float32 would be off by ~u·10⁶ ≈ 0.06 in
//  the variance, i.e. ≳ 0.1 in y: the large-mean test tells them apart.
// Backward, with |gy| ≤ 1 and X = max|x̂|: Σgy errs by ≤ D·u·M, Σgy·(x − mean) by ≤ D·u·M·maxDev;
//  divided by M and scaled, dx = k1·(gy − Σgy/M − x̂·Σgy·x̂/M) is within
//  |w|·invstd·u·(D·(1 + X²) + 16·(1 + X)), used twice over; dbias within 2·D·u·Σ|gy| and dweight
//  within 2·D·u·Σ|gy·x̂| + (mean error)·invstd·|Σgy| (both doubled).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, check, randArray, rejects } from '../helpers.ts';
import { batchNorm2d, grad, liveTensors, tensor, type BatchNormOptions, type Tensor } from '../../engine/index.ts';
import { bnGradRef, bnRef, channelStats, depth, geoOf, U } from './batchnorm-reference.ts';

const test = suite('batchnorm');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

/** Asserts per-element |a − e| ≤ atol_i + 64·u·|e|. */
function assertCloseEach(a: ArrayLike<number>, e: Float64Array, atol: Float64Array, what: string): void {
  const excess = Array.from(e, (ev, i) => Math.abs(a[i]! - ev) - atol[i]! - 64 * U * Math.abs(ev));
  assertClose(
    excess.map((v) => Math.max(v, 0)),
    new Float64Array(e.length),
    0,
    0,
    what,
  );
}

const f32 = (h: Float64Array, shape: number[], requiresGrad = false) =>
  tensor(Float32Array.from(h), shape, { requiresGrad });

test(
  'training forward against float64: ' + '4-D (scalar and vec4 layouts) and (N, C); with and without affine',
  async () => {
    const shapes = [
      [2, 3, 3, 5],
      [3, 2, 4, 2],
      [5, 3],
      [2, 2, 96, 96],
      [4, 3, 20, 30],
      [1100, 2],
    ];
    let seed = 100;
    for (const shape of shapes) {
      const c = shape[1]!;
      const x = randArray(
        shape.reduce((a, b) => a * b, 1),
        seed++,
        -2,
        3,
      );
      const w = randArray(c, seed++, 0.5, 2);
      const b = randArray(c, seed++, -1, 1);
      for (const affine of [true, false]) {
        const xt = f32(x, shape);
        const wt = affine ? f32(w, [c]) : null;
        const bt = affine ? f32(b, [c]) : null;
        const y = batchNorm2d(xt, wt, bt, null, null, { training: true });
        assert.equal([...y.shape], shape);
        const ref = bnRef(x, shape, affine ? w : null, affine ? b : null, true);
        assertCloseEach(await y.toArray(), ref.y, ref.atol, `train [${shape}] affine ${affine}`);
        for (const t of [xt, wt, bt, y]) t?.dispose();
      }
    }
  },
);

test('eval forward uses the running statistics', async () => {
  for (const shape of [
    [2, 3, 3, 5],
    [2, 4, 2, 2],
    [4, 3],
  ]) {
    const c = shape[1]!;
    const x = randArray(
      shape.reduce((a, b) => a * b, 1),
      200,
      -2,
      2,
    );
    const w = randArray(c, 201, 0.5, 2);
    const b = randArray(c, 202, -1, 1);
    const rm = randArray(c, 203, -0.5, 0.5);
    const rv = randArray(c, 204, 0.5, 2);
    const ts = [f32(x, shape), f32(w, [c]), f32(b, [c]), f32(rm, [c]), f32(rv, [c])];
    const y = batchNorm2d(ts[0]!, ts[1]!, ts[2]!, ts[3]!, ts[4]!, { training: false });
    const ref = bnRef(x, shape, w, b, false, rm, rv);
    assertCloseEach(await y.toArray(), ref.y, ref.atol, `eval [${shape}]`);
    // Eval leaves the running stats untouched.
    assert.equal([...(await ts[3]!.toArray())], [...Float32Array.from(rm)]);
    assert.equal([...(await ts[4]!.toArray())], [...Float32Array.from(rv)]);
    for (const t of [...ts, y]) t.dispose();
  }
});

test('running stats updated in place after two calls (momentum 0.1 and 0.3)', async () => {
  for (const [shape, momentum] of [
    [[2, 3, 3, 5], undefined],
    [[3, 2, 4, 4], 0.3],
    [[6, 4], 0.3],
  ] as const) {
    const c = shape[1]!;
    const size = shape.reduce((a: number, b: number) => a * b, 1);
    const mo = momentum ?? 0.1;
    const rm = randArray(c, 300, -0.5, 0.5);
    const rv = randArray(c, 301, 0.5, 2);
    const rmt = f32(rm, [c]);
    const rvt = f32(rv, [c]);
    const m = size / c;
    for (let call = 0; call < 2; call++) {
      const x = randArray(size, 310 + call, -1 + call, 2 + 3 * call);
      const xt = f32(x, [...shape]);
      const opts: BatchNormOptions = momentum === undefined ? { training: true } : { training: true, momentum };
      batchNorm2d(xt, null, null, rmt, rvt, opts).dispose();
      xt.dispose();
      const st = channelStats(x, geoOf([...shape]));
      for (let k = 0; k < c; k++) {
        rm[k] = (1 - mo) * rm[k]! + mo * st.mean[k]!;
        rv[k] = (1 - mo) * rv[k]! + mo * st.varB[k]! * (m / (m - 1));
      }
    }
    // A handful of roundings per update on values ≤ 5 (the mean/var errors above are ≤ 32·u relative).
    assertClose(await rmt.toArray(), rm, 64 * U, 64 * U, `running_mean [${shape}]`);
    assertClose(await rvt.toArray(), rv, 64 * U, 64 * U, `running_var [${shape}]`);
    rmt.dispose();
    rvt.dispose();
  }
});

test('large mean (1000 ± 1): the variance is computed stably', async () => {
  for (const shape of [
    [4, 3, 5, 6],
    [4, 2, 4, 4],
    [64, 3],
    [4, 2, 30, 30],
  ]) {
    const c = shape[1]!;
    const size = shape.reduce((a, b) => a * b, 1);
    const x = randArray(size, 400, 999, 1001);
    const w = randArray(c, 401, 0.5, 2);
    const xt = f32(x, shape);
    const wt = f32(w, [c]);
    const rmt = f32(new Float64Array(c), [c]);
    const rvt = f32(new Float64Array(c).fill(1), [c]);
    const y = batchNorm2d(xt, wt, null, rmt, rvt, { training: true, momentum: 1 });
    const ref = bnRef(x, shape, w, null, true);
    assertCloseEach(await y.toArray(), ref.y, ref.atol, `large mean [${shape}]`);
    // momentum 1: running_var = unbiased batch variance (≈ 1/3), within (D + 2)·u relative (the mean
    // error enters squared; x − mean is exact here, both being within a factor 2 of 1000) plus the
    // unbiasing and blend roundings: rtol = 4·(D + 8)·u. Naive E[x²] − E[x]² is off by ~0.1 absolute.
    const m = size / c;
    const rtol = 4 * (depth(geoOf(shape)) + 8) * U;
    assertClose(
      await rvt.toArray(),
      ref.varB.map((v) => (v * m) / (m - 1)),
      rtol,
      0,
      `unbiased variance [${shape}]`,
    );
    assertClose(await rmt.toArray(), ref.mean, 2 * U, 0, `mean [${shape}]`);
    for (const t of [xt, wt, rmt, rvt, y]) t.dispose();
  }
});

test('backward against float64 (train and eval; scalar, vec4, (N, C), 256-lane channels)', async () => {
  let seed = 500;
  for (const shape of [
    [2, 3, 3, 5],
    [3, 2, 4, 2],
    [5, 3],
    [2, 2, 96, 96],
    [4, 3, 20, 30],
  ])
    for (const training of [true, false]) {
      const c = shape[1]!;
      const size = shape.reduce((a, b) => a * b, 1);
      const x = randArray(size, seed++, -2, 2);
      const gy = randArray(size, seed++, -1, 1);
      const w = randArray(c, seed++, 0.5, 2);
      const b = randArray(c, seed++, -1, 1);
      const rm = randArray(c, seed++, -0.5, 0.5);
      const rv = randArray(c, seed++, 0.5, 2);
      const [xt, wt, bt] = [f32(x, shape, true), f32(w, [c], true), f32(b, [c], true)];
      const [rmt, rvt, gyt] = [f32(rm, [c]), f32(rv, [c]), f32(gy, shape)];
      const y = batchNorm2d(xt, wt, bt, training ? null : rmt, training ? null : rvt, { training });
      const [dx, dw, db] = grad([y], [xt, wt, bt], { gradOutputs: [gyt] });
      const ref = bnGradRef(x, gy, shape, w, training, rm, rv);
      const what = `[${shape}] ${training ? 'train' : 'eval'}`;
      assertCloseEach(await dx!.toArray(), ref.dx, ref.dxTol, `dx ${what}`);
      assertCloseEach(await dw!.toArray(), ref.dw, ref.dwTol, `dweight ${what}`);
      assertCloseEach(await db!.toArray(), ref.db, ref.dbTol, `dbias ${what}`);
      for (const t of [xt, wt, bt, rmt, rvt, gyt, y, dx!, dw!, db!]) t.dispose();
    }
});

test('gradcheck of x, weight, bias: train and eval, affine or not, (N, C)', async () => {
  let seed = 600;
  for (const shape of [
    [2, 3, 3, 5],
    [2, 2, 2, 4],
    [6, 3],
  ])
    for (const training of [true, false]) {
      const c = shape[1]!;
      const size = shape.reduce((a, b) => a * b, 1);
      const rmt = f32(randArray(c, seed++, -0.5, 0.5), [c]);
      const rvt = f32(randArray(c, seed++, 0.5, 2), [c]);
      const run = training ? { rm: null, rv: null } : { rm: rmt, rv: rvt };
      const mkX = () => f32(randArray(size, seed++, -2, 2), shape);
      const mkW = () => f32(randArray(c, seed++, 0.5, 2), [c]);
      const mkB = () => f32(randArray(c, seed++, -1, 1), [c]);
      await check((x, w, b) => batchNorm2d(x!, w!, b!, run.rm, run.rv, { training }), [mkX(), mkW(), mkB()]);
      await check((x) => batchNorm2d(x!, null, null, run.rm, run.rv, { training, eps: 1e-3 }), [mkX()]);
      await check((x, b) => batchNorm2d(x!, null, b!, run.rm, run.rv, { training }), [mkX(), mkB()]);
      await check((x, w) => batchNorm2d(x!, w!, null, run.rm, run.rv, { training }), [mkX(), mkW()]);
      rmt.dispose();
      rvt.dispose();
    }
});

test('bad input is refused before any dispatch, naming the op and shapes', () => {
  const x = f32(new Float64Array(2 * 3 * 4 * 4), [2, 3, 4, 4]);
  const x3 = f32(new Float64Array(2 * 3 * 4), [2, 3, 4]);
  const one = f32(new Float64Array(3), [1, 3, 1, 1]);
  const c3 = f32(new Float64Array(3), [3]);
  const c4 = f32(new Float64Array(4), [4]);
  const xi = tensor(new Int32Array(2 * 3 * 4 * 4), [2, 3, 4, 4]);
  rejects(
    () => batchNorm2d(x, null, null, c4, c3, { training: true }),
    'batchNorm2d',
    'runningMean [4]',
    '[2, 3, 4, 4]',
    'expected [3]',
  );
  rejects(() => batchNorm2d(x, null, null, c3, c4, { training: false }), 'batchNorm2d', 'runningVar [4]');
  rejects(() => batchNorm2d(x, c4, null, null, null, { training: true }), 'batchNorm2d', 'weight [4]');
  rejects(() => batchNorm2d(x, null, c4, null, null, { training: true }), 'batchNorm2d', 'bias [4]');
  rejects(() => batchNorm2d(x3, null, null, null, null, { training: true }), 'batchNorm2d', '4-D', '[2, 3, 4]');
  rejects(
    () => batchNorm2d(one, null, null, null, null, { training: true }),
    'batchNorm2d',
    'Expected more than 1 value per channel when training',
    '[1, 3, 1, 1]',
  );
  rejects(() => batchNorm2d(x, null, null, null, null, { training: false }), 'batchNorm2d', 'eval', 'runningMean');
  rejects(
    () => batchNorm2d(x, null, null, c3, null, { training: true }),
    'batchNorm2d',
    'both runningMean and runningVar',
  );
  rejects(() => batchNorm2d(xi, null, null, null, null, { training: true }), 'batchNorm2d', 'int32');
  rejects(() => batchNorm2d(x, null, null, null, null, { training: true, eps: -1 }), 'batchNorm2d', 'eps -1');
  for (const t of [x, x3, one, c3, c4, xi] as Tensor[]) t.dispose();
  rejects(() => batchNorm2d(x, null, null, null, null, { training: true }), 'batchNorm2d', 'disposed');
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
