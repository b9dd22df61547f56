// Autograd semantics: accumulation, shared subexpressions, retainGraph, noGrad, grad(), memory.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { device, assertClose, throwsWith } from '../helpers.ts';
import { add, exp, grad, liveTensors, mul, noGrad, ones, sum, tanh, tensor, tidy } from '../../engine/index.ts';
import { backwardState } from '../../engine/tensor.ts';

const test = suite('autograd');
const vals = async (t: { toArray(): Promise<Float32Array | Int32Array> }) => [...(await t.toArray())];

test('a tensor used twice gets the sum of both paths', async () => {
  const x = tensor([1.5, -2, 3], [3], { requiresGrad: true });
  const y = sum(add(mul(x, x), x)); // d/dx = 2x + 1
  y.backward();
  assert.equal(await vals(x.grad!), [4, -3, 7]);
  x.dispose();
  y.dispose();
});

test('shared subexpression through two branches', async () => {
  const x = tensor([0.3, -0.7], [2], { requiresGrad: true });
  const e = exp(x);
  const y = sum(add(mul(e, e), tanh(e))); // d/dx = 2e² + (1 - tanh²(e))·e
  y.backward();
  const ref = [0.3, -0.7].map((v) => {
    const ev = Math.fround(Math.exp(v));
    return 2 * ev * ev + (1 - Math.tanh(ev) ** 2) * ev;
  });
  assertClose(await x.grad!.toArray(), ref, 1e-5, 1e-6, 'grad'); // a few float32 ops: ~10 ulp
  x.dispose();
  y.dispose();
  e.dispose();
});

test('backward twice with retainGraph accumulates; a third without the graph throws', async () => {
  const x = tensor([1, 2], [2], { requiresGrad: true });
  const y = sum(mul(x, x));
  y.backward({ retainGraph: true });
  y.backward();
  assert.equal(await vals(x.grad!), [4, 8]);
  throwsWith(() => y.backward(), 'already freed', 'retainGraph');
  x.dispose();
  y.dispose();
});

test('grad() returns fresh tensors and leaves .grad untouched', async () => {
  const x = tensor([1, 2, 3], [3], { requiresGrad: true });
  const w = tensor([0.5, -1, 2], [3], { requiresGrad: true });
  const y = sum(mul(x, w));
  const [gx, gw] = grad(y, [x, w], { retainGraph: true });
  assert.equal(await vals(gx!), [0.5, -1, 2]);
  assert.equal(await vals(gw!), [1, 2, 3]);
  assert.is(x.grad, null);
  assert.is(w.grad, null);
  const [gx2] = grad(y, [x]); // graph was retained
  assert.equal(await vals(gx2!), [0.5, -1, 2]);
  for (const t of [x, w, y, gx!, gw!, gx2!]) t.dispose();
});

test('grad() of an unreached input throws unless allowUnused', async () => {
  const x = tensor([1], [1], { requiresGrad: true });
  const z = tensor([2], [1], { requiresGrad: true });
  const y = sum(mul(x, x));
  throwsWith(() => grad(y, [z], { retainGraph: true }), 'not reached');
  const [gz] = grad(y, [z], { allowUnused: true });
  assert.equal(await vals(gz!), [0]);
  for (const t of [x, z, y, gz!]) t.dispose();
});

test('grad() with an explicit upstream gradient (vector-Jacobian product)', async () => {
  const x = tensor([1, 2], [2], { requiresGrad: true });
  const y = mul(x, x);
  const v = tensor([3, -1], [2]);
  const [gx] = grad(y, [x], { gradOutputs: [v] });
  assert.equal(await vals(gx!), [6, -4]);
  assert.ok(!v.disposed, 'caller-owned upstream gradient stays alive');
  for (const t of [x, y, v, gx!]) t.dispose();
});

test('grad() of several outputs sums them, and leaks nothing', async () => {
  await device.sync();
  const live = liveTensors.count;
  const x = tensor([1, 2], [2], { requiresGrad: true });
  const y = tidy(() => sum(mul(x, x)));
  const z = sum(x);
  const [gx] = grad([y, y, z], [x]); // 2·(2x) + 1
  assert.equal(await vals(gx!), [5, 9]);
  for (const t of [x, y, z, gx!]) t.dispose();
  assert.is(liveTensors.count, live);
});

test(
  'grad() of outputs where one depends on another: ' + 'both paths counted (topological order across roots)',
  async () => {
    const x = tensor([1, 2], [2], { requiresGrad: true });
    const y = tidy(() => sum(mul(x, x))); // dy/dx = 2x
    const z = tidy(() => mul(y, tensor([3]))); // z = 3y: dz/dx = 6x
    for (const outs of [
      [y, z],
      [z, y],
    ]) {
      const [gx] = grad(outs, [x], { retainGraph: true }); // 8x whichever output comes first
      assert.equal(await vals(gx!), [8, 16]);
      gx!.dispose();
    }
    for (const t of [x, y, z]) t.dispose();
  },
);

test('noGrad records nothing', () => {
  const x = tensor([1, 2], [2], { requiresGrad: true });
  const y = noGrad(() => mul(x, x));
  assert.is(y.requiresGrad, false);
  assert.is(y.node, null);
  throwsWith(() => y.backward(), 'does not require grad');
  x.dispose();
  y.dispose();
});

test('non-scalar backward needs a gradient', () => {
  const x = tensor([1, 2], [2], { requiresGrad: true });
  const y = mul(x, x);
  throwsWith(() => y.backward(), 'pass a gradient');
  x.dispose();
  y.dispose();
});

test('tidy + backward free every intermediate (no leaked tensors or bytes)', async () => {
  await device.sync();
  const before = { live: liveTensors.count, bytes: device.pool.stats.bytesInUse };
  const x = tensor([0.1, 0.2, 0.3, 0.4], [2, 2], { requiresGrad: true });
  for (let i = 0; i < 3; i++) {
    const loss = tidy(() => sum(tanh(mul(exp(x), ones([2, 2])))));
    loss.backward();
    loss.dispose();
  }
  x.dispose();
  await device.sync();
  assert.is(liveTensors.count, before.live, 'live tensors');
  assert.is(device.pool.stats.bytesInUse, before.bytes, 'pool bytes in use');
  assert.is(backwardState.depth, 0);
});

test('the graph keeps a disposed intermediate alive until backward', async () => {
  const x = tensor([2], [1], { requiresGrad: true });
  const e = exp(x);
  const y = sum(e);
  e.dispose(); // user drops it; exp's backward still needs it
  throwsWith(() => add(e, e), 'disposed');
  y.backward();
  assertClose(await x.grad!.toArray(), [Math.exp(2)], 1e-6, 0, 'd exp'); // exp on lavapipe: a few ulp
  x.dispose();
  y.dispose();
});

test.run();
