// The whole MMPareto step on a two-encoder late-fusion model (conv → batchnorm(train) → relu →
// conv → pool per encoder, concat → linear head, a linear head per encoder): per-loss gradients
// from one forward, integration per encoder, plain sums elsewhere, SGD — against the float64
// formula applied to gradients computed by a separate backward per loss; no buffer maps.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, device, randTensor, rejects } from '../helpers.ts';
import {
  grad,
  liveTensors,
  MultimodalStep,
  SGD,
  tensor,
  tidy,
  zeros,
  type IntegratorMethod,
  type Tensor,
} from '../../engine/index.ts';
import { LateFusion } from '../fixtures/late-fusion.ts';
import { applyCoef, newState, reference, type Grads } from './reference.ts';

const test = suite('multimodal step');
const host = async (t: Tensor) => Float64Array.from(await t.toArray());
const maxAbs = (xs: Float64Array[]) => Math.max(...xs.map((x) => x.reduce((m, v) => Math.max(m, Math.abs(v)), 0)));

function data(seed: number): [Tensor, Tensor, Tensor] {
  const [a] = randTensor([3, 1, 8, 8], seed);
  const [v] = randTensor([3, 3, 6, 6], seed + 1);
  return [a, v, tensor(Int32Array.of(0, 2, 1), [3], { dtype: 'int32' })];
}

for (const method of ['mmpareto', 'mmpareto-official', 'mgda', 'uniform'] as IntegratorMethod[]) {
  test(`${method}: one step equals the float64 formula on separately computed per-loss gradients`, async () => {
    const before = liveTensors.count;
    const m = new LateFusion(4, 3, 11);
    const [a, v, y] = data(12);
    const params = m.parameters();
    const lr = 0.1;
    const opt = new SGD(params, { lr });
    const encoders = { audio: m.audio.parameters(), visual: m.visual.parameters() };
    const step = new MultimodalStep({ method, encoders, optimizer: opt });
    const losses = tidy(() => m.losses(a, v, y));
    // Reference gradients: one retained-graph backward per loss (the official recipe).
    const ref: Record<string, Float64Array[]> = {};
    for (const [n, l] of Object.entries(losses)) {
      const gs = grad(l, params, { retainGraph: true, allowUnused: true });
      ref[n] = await Promise.all(gs.map(host));
      for (const g of gs) g.dispose();
    }
    const p0 = await Promise.all(params.map(host));
    step.step(losses);
    const index = new Map(params.map((p, i) => [p, i]));
    const expected = p0.map((p, i) =>
      p.map((x, j) => x - lr * (ref.mm![i]![j]! + ref.audio![i]![j]! + ref.visual![i]![j]!)),
    );
    if (method !== 'uniform') {
      for (const [k, name] of ['audio', 'visual'].entries()) {
        const ids = encoders[name as 'audio' | 'visual'].map((p) => index.get(p)!);
        const gs: Grads = [ids.map((i) => ref.mm![i]!), ids.map((i) => ref[name]![i]!)];
        const h = applyCoef(gs, reference(method, gs, {}, newState(2), k).coef);
        ids.forEach((i, t) => {
          expected[i] = p0[i]!.map((x, j) => x - lr * h[t]![j]!);
        });
      }
    }
    // p − lr·h: h from float32 Gram sums over ~500 values (relative error ~1e-5 of the largest
    // entry through the coefficients) → atol 1e-5·lr·max|g| + one rounding of p.
    const scale = lr * maxAbs(Object.values(ref).flat());
    for (const [i, p] of params.entries())
      assertClose(await p.toArray(), expected[i]!, 1e-6, 2e-5 * scale + 1e-7, `${method} parameter ${i}`);
    for (const t of [a, v, y, ...Object.values(losses)]) t.dispose();
    step.dispose();
    opt.dispose();
    m.dispose();
    assert.is(liveTensors.count, before, 'no leaks');
  });
}

test('three MMPareto training steps read nothing back (no buffer maps) and change the parameters', async () => {
  const m = new LateFusion(4, 3, 13);
  const [a, v, y] = data(14);
  const opt = new SGD(m.parameters(), { lr: 0.05, momentum: 0.9 });
  const step = new MultimodalStep({
    method: 'mmpareto',
    encoders: { audio: m.audio.parameters(), visual: m.visual.parameters() },
    optimizer: opt,
  });
  const w0 = await host(m.audio.conv1.weight);
  await device.sync();
  const maps = device.batcher.stats.readbacks;
  for (let s = 0; s < 3; s++) {
    const losses = tidy(() => m.losses(a, v, y));
    step.step(losses);
    for (const l of Object.values(losses)) l.dispose();
  }
  await device.sync();
  assert.is(device.batcher.stats.readbacks, maps, 'no readback during the steps');
  assert.ok((await host(m.audio.conv1.weight)).some((x, i) => x !== w0[i]));
  for (const t of [a, v, y]) t.dispose();
  step.dispose();
  opt.dispose();
  m.dispose();
});

test('bad input: missing or unknown loss, a parameter in two groups, a group no loss reaches', () => {
  const m = new LateFusion(4, 3, 15);
  const [a, v, y] = data(16);
  const stray = zeros([2], { requiresGrad: true });
  const opt = new SGD([...m.parameters(), stray], { lr: 0.1 });
  const audio = m.audio.parameters();
  rejects(
    () => new MultimodalStep({ method: 'mmpareto', encoders: { audio, visual: [audio[0]!] }, optimizer: opt }),
    'is in two encoder groups',
  );
  const outside = zeros([1], { requiresGrad: true });
  rejects(
    () => new MultimodalStep({ method: 'mmpareto', encoders: { audio: [outside] }, optimizer: opt }),
    'is not in the optimizer',
  );
  const step = new MultimodalStep({
    method: 'mmpareto',
    encoders: { audio, visual: m.visual.parameters(), depth: [stray] },
    optimizer: opt,
  });
  const losses = tidy(() => m.losses(a, v, y));
  rejects(() => step.step(losses), "loss 'depth' is missing");
  const two = new MultimodalStep({
    method: 'mmpareto',
    encoders: { audio, visual: m.visual.parameters() },
    optimizer: opt,
  });
  rejects(() => two.step({ ...losses, text: losses.mm }), "unknown loss 'text'");
  rejects(() => step.step({ ...losses, depth: losses.audio }), "encoder group 'depth' is reached by no loss");
  for (const t of [a, v, y, stray, outside, ...Object.values(losses)]) t.dispose();
  step.dispose();
  two.dispose();
  opt.dispose();
  m.dispose();
});

test.run();
