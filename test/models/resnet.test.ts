// ResNet-18: torchvision's names, shapes and parameter count; forward + backward on a tiny
// input with finite gradients everywhere; frames folded into the batch; a few SGD steps on a
// fixed batch drive the loss down.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { randTensor, throwsWith } from '../helpers.ts';
import { crossEntropy, liveTensors, mean, SGD, tensor, tidy, type Tensor } from '../../engine/index.ts';
import { Linear } from '../../engine/nn/index.ts';
import { ResNet18 } from '../../models/resnet.ts';

const test = suite('resnet18');

test('parameter names, shapes and count match torchvision resnet18 without fc (11,176,512)', () => {
  const m = new ResNet18();
  assert.is(m.numParameters(), 11_176_512);
  const sd = m.stateDict();
  assert.is(m.parameters().length, 60);
  assert.is(sd.size, 120); // + running_mean, running_var, num_batches_tracked of 20 batchnorms
  const shape = (k: string) => sd.get(k)?.shape.join('x');
  assert.is(shape('conv1.weight'), '64x3x7x7');
  assert.is(shape('bn1.running_var'), '64');
  assert.is(shape('layer1.0.conv1.weight'), '64x64x3x3');
  assert.is(shape('layer1.1.bn2.bias'), '64');
  assert.is(shape('layer2.0.conv1.weight'), '128x64x3x3');
  assert.is(shape('layer2.0.downsample.0.weight'), '128x64x1x1');
  assert.is(shape('layer2.0.downsample.1.running_mean'), '128');
  assert.is(shape('layer4.1.conv2.weight'), '512x512x3x3');
  assert.is(shape('layer4.0.downsample.1.num_batches_tracked'), '');
  assert.not.ok(sd.has('layer1.0.downsample.0.weight'));
  assert.not.ok([...sd.keys()].some((k) => k.startsWith('fc')));
  m.dispose();
  const audio = new ResNet18({ inChannels: 1 });
  assert.is(audio.stateDict().get('conv1.weight')!.shape.join('x'), '64x1x7x7');
  assert.is(audio.numParameters(), 11_176_512 - 64 * 2 * 49);
  audio.dispose();
});

async function allFinite(ts: Tensor[]): Promise<boolean> {
  for (const t of ts) if (!(await t.toArray()).every(Number.isFinite)) return false;
  return true;
}

test(
  'forward + backward on 2×3×32×32: 512-d features, ' + 'finite nonzero gradients for all 60 parameters, no leaks',
  async () => {
    const before = liveTensors.count;
    const m = new ResNet18({ seed: 2 });
    const [x] = randTensor([2, 3, 32, 32], 3);
    const f = m.forward(x);
    assert.equal(f.shape, [2, 512]);
    const loss = tidy(() => mean(f));
    loss.backward();
    assert.ok(Number.isFinite(await loss.item()));
    const grads = m.parameters().map((p) => p.grad!);
    assert.ok(
      grads.every((g) => g),
      'every parameter has a gradient',
    );
    assert.ok(await allFinite(grads), 'finite gradients');
    let nonzero = 0;
    for (const g of grads) if ((await g.toArray()).some((v) => v !== 0)) nonzero++;
    assert.is(nonzero, 60);
    // Training mode updated the running statistics of the stem's batchnorm away from (0, 1).
    assert.ok((await m.stateDict().get('bn1.running_mean')!.toArray()).some((v) => v !== 0));
    assert.is((await m.stateDict().get('bn1.num_batches_tracked')!.toArray())[0], 1);
    for (const t of [x, f, loss]) t.dispose();
    m.dispose();
    assert.is(liveTensors.count, before);
  },
);

test('frames (B, T, C, H, W): features are the mean over T of the per-frame features (eval mode)', async () => {
  const m = new ResNet18({ inChannels: 1, seed: 4 }).eval();
  const [x, xh] = randTensor([2, 3, 1, 32, 32], 5);
  const f = m.forwardFrames(x);
  assert.equal(f.shape, [2, 512]);
  const flat = tensor(Float32Array.from(xh), [6, 1, 32, 32]);
  const perT = m.forward(flat);
  const per = await perT.toArray();
  const ref = new Float64Array(2 * 512);
  for (let b = 0; b < 2; b++)
    for (let t = 0; t < 3; t++)
      for (let c = 0; c < 512; c++) ref[b * 512 + c] = ref[b * 512 + c]! + per[(b * 3 + t) * 512 + c]! / 3;
  const got = await f.toArray();
  // Same per-frame values; only the mean over 3 adds float32 rounding (a few ulp of values ~1).
  for (let i = 0; i < ref.length; i++)
    assert.ok(Math.abs(got[i]! - ref[i]!) <= 1e-5 + 1e-5 * Math.abs(ref[i]!), `feature ${i}`);
  for (const t of [x, f, flat, perT]) t.dispose();
  m.dispose();
});

test('bad input: wrong channels, wrong rank', () => {
  const m = new ResNet18({ inChannels: 1 });
  const [x] = randTensor([2, 3, 32, 32], 6);
  throwsWith(() => m.forward(x), 'ResNet18: input [2, 3, 32, 32] is not (batch, 1, H, W)');
  throwsWith(() => m.forwardFrames(x), 'frames [2, 3, 32, 32] are not (batch, time, 1, H, W)');
  x.dispose();
  m.dispose();
});

test('SGD on a fixed batch of 4 drives the cross-entropy down', async () => {
  const m = new ResNet18({ seed: 7 });
  const head = new Linear(512, 4);
  const opt = new SGD([...m.parameters(), ...head.parameters()], { lr: 0.02, momentum: 0.9 });
  const [x] = randTensor([4, 3, 32, 32], 8);
  const y = tensor(Int32Array.of(0, 1, 2, 3), [4], { dtype: 'int32' });
  const losses: number[] = [];
  for (let s = 0; s < 6; s++) {
    const loss = tidy(() => crossEntropy(head.forward(m.forward(x)), y));
    loss.backward();
    opt.step();
    opt.zeroGrad();
    losses.push(await loss.item());
    loss.dispose();
  }
  assert.ok(losses.every(Number.isFinite));
  assert.ok(losses[5]! < 0.5 * losses[0]!, `losses ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  for (const t of [x, y]) t.dispose();
  opt.dispose();
  m.dispose();
  head.dispose();
});

test.run();
