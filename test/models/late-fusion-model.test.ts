// The trainer's models: the CG-MNIST encoder against a float64 host reference (host-reference.ts),
// the late-fusion classifier (2 and 3 modalities, concat and sum fusion checked numerically, names,
// encoder groups) and the shared-encoder two-head model. The registry's models: registry.test.ts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, randTensor, throwsWith } from '../helpers.ts';
import { liveTensors, tensor, tidy, type Tensor } from '../../engine/index.ts';
import { Linear, type Module } from '../../engine/nn/index.ts';
import { CGEncoder } from '../../models/cg-encoder.ts';
import { LateFusionClassifier, type EncoderSpec } from '../../models/late-fusion.ts';
import { SharedTwoHead } from '../../models/shared-two-head.ts';
import { type Arr, cgReference, host, linearH, type Shape4 } from './host-reference.ts';
import { checkGroups } from './groups.ts';

const test = suite('late-fusion models');

// float32 through five layers of sums of ≤ 576 products of O(1) terms: the rounding error is
// about √K·u ≈ 1.5e-6 relative per layer; rtol 1e-4 / atol 2e-5 leave a wide margin and still
// catch any wrong stride, padding, pooling or channel order (those change values at O(0.1)).
const RTOL = 1e-4;
const ATOL = 2e-5;

test(
  'CGEncoder: PMR convnet names and shapes; ' + 'forward equals the float64 reference in training and eval mode',
  async () => {
    const before = liveTensors.count;
    const e = new CGEncoder({ inChannels: 3, seed: 5 });
    const shapes = Object.fromEntries([...e.stateDict()].map(([k, t]) => [k, t.shape.join('x')]));
    assert.equal(Object.keys(shapes), [
      'bn0.weight',
      'bn0.bias',
      'bn0.running_mean',
      'bn0.running_var',
      'bn0.num_batches_tracked',
      'conv1.weight',
      'conv1.bias',
      'conv2.weight',
      'conv2.bias',
      'conv3.weight',
      'conv3.bias',
      'conv4.weight',
      'conv4.bias',
      'fc.weight',
      'fc.bias',
    ]);
    assert.is(shapes['conv1.weight'], '32x3x5x5');
    assert.is(shapes['conv3.weight'], '64x32x3x3');
    assert.is(shapes['fc.weight'], '512x64');
    // 2·3 + 32·3·25 + 32 + 32·32·9 + 32 + 64·32·9 + 64 + 64·64·9 + 64 + 64·512 + 512
    assert.is(e.numParameters(), 6 + 2432 + 9248 + 18496 + 36928 + 33280);
    const shape: Shape4 = [2, 3, 7, 6]; // odd, non-square: exercises padding, the stride-2 layers and pool bins
    const [x, xh] = randTensor(shape, 6, 0, 1);
    const y = e.forward(x);
    assert.equal(y.shape, [2, 512]);
    assertClose(await y.toArray(), await cgReference(e, xh, shape), RTOL, ATOL, 'train-mode features');
    // The training forward moved the running statistics (momentum 0.1, unbiased variance); eval uses them.
    const rm = await host(e.bn0.runningMean);
    const rv = await host(e.bn0.runningVar);
    const m = 2 * 7 * 6;
    for (let c = 0; c < 3; c++) {
      let mean = 0;
      for (let n = 0; n < 2; n++) for (let i = 0; i < 42; i++) mean += xh[(n * 3 + c) * 42 + i]! / m;
      let v = 0;
      for (let n = 0; n < 2; n++) for (let i = 0; i < 42; i++) v += (xh[(n * 3 + c) * 42 + i]! - mean) ** 2 / (m - 1);
      assertClose([rm[c]!, rv[c]!], [0.1 * mean, 0.9 + 0.1 * v], 1e-5, 1e-6, `running stats channel ${c}`);
    }
    e.eval();
    const ye = e.forward(x);
    assertClose(await ye.toArray(), await cgReference(e, xh, shape, [rm, rv]), RTOL, ATOL, 'eval-mode features');
    for (const t of [x, y, ye]) t.dispose();
    e.dispose();
    assert.is(liveTensors.count, before, 'no leaks');
  },
);

/** Features of each encoder alone, in eval mode (deterministic), as host arrays. */
async function encoderFeatures(
  model: LateFusionClassifier,
  inputs: Record<string, Tensor>,
): Promise<Record<string, Arr>> {
  const out: Record<string, Arr> = {};
  for (const n of model.modalities) {
    const f = model.encoders.items.get(n)!.forward(inputs[n]!);
    out[n] = await host(f);
    f.dispose();
  }
  return out;
}

for (const fusion of ['concat', 'sum'] as const) {
  const what = 'logits shapes and values, names, targets, groups';
  test(`LateFusionClassifier (${fusion}), 2 and 3 modalities: ${what}`, async () => {
    const before = liveTensors.count;
    for (const names of [
      ['gray', 'color'],
      ['gray', 'color', 'depth'],
    ]) {
      const channels: Record<string, number> = { gray: 1, color: 3, depth: 2 };
      const encoders: Record<string, EncoderSpec> = {};
      names.forEach((n, i) => {
        encoders[n] = { module: new CGEncoder({ inChannels: channels[n]!, seed: 10 + i }), features: 512 };
      });
      const model = new LateFusionClassifier({ encoders, classes: 4, fusion, seed: 7 }).eval();
      const inputs: Record<string, Tensor> = {};
      const hostIn: Record<string, Arr> = {};
      names.forEach((n, i) => {
        [inputs[n], hostIn[n]] = randTensor([2, channels[n]!, 6, 6], 20 + i);
      });
      const logits = tidy(() => model.logits(inputs));
      assert.equal(Object.keys(logits).sort(), ['mm', ...names].sort());
      for (const t of Object.values(logits)) assert.equal(t.shape, [2, 4]);
      assert.equal(model.targets, Object.fromEntries(['mm', ...names].map((n) => [n, 'label'])));
      assert.is(model.mainLoss, 'mm');
      // The logits from the encoders' features by the float64 formula of the fusion.
      const feats = await encoderFeatures(model, inputs);
      const sd = model.stateDict();
      const p = (k: string) => host(sd.get(k)!);
      let fused: Arr;
      if (fusion === 'concat') {
        fused = new Float64Array(2 * 512 * names.length);
        for (let r = 0; r < 2; r++)
          names.forEach((n, j) => {
            fused.set(feats[n]!.subarray(r * 512, (r + 1) * 512), r * 512 * names.length + j * 512);
          });
      } else fused = feats[names[0]!]!.map((_, i) => names.reduce((s, n) => s + feats[n]![i]!, 0));
      const width = fusion === 'concat' ? 512 * names.length : 512;
      assert.equal(sd.get('head.weight')!.shape, [4, width]);
      // Features are float32 outputs fed to a float32 dot product over ≤ 1536 terms: rtol 1e-5 / atol 1e-5.
      assertClose(
        await logits.mm!.toArray(),
        linearH(fused, 2, width, await p('head.weight'), 4, await p('head.bias')),
        1e-5,
        1e-5,
        'mm logits',
      );
      for (const n of names) {
        assertClose(
          await logits[n]!.toArray(),
          linearH(feats[n]!, 2, 512, await p(`heads.${n}.weight`), 4, await p(`heads.${n}.bias`)),
          1e-5,
          1e-5,
          `${n} logits`,
        );
      }
      for (const k of [
        'encoders.gray.conv1.weight',
        'encoders.gray.bn0.running_mean',
        'encoders.color.fc.bias',
        'head.bias',
        'heads.gray.weight',
        'heads.color.bias',
      ])
        assert.ok(sd.has(k), `has ${k}`);
      checkGroups(model, ['head.', 'heads.']);
      for (const t of [...Object.values(inputs), ...Object.values(logits)]) t.dispose();
      model.dispose();
    }
    assert.is(liveTensors.count, before, 'no leaks');
  });
}

test('LateFusionClassifier bad input: one encoder, sum of unequal widths, wrong names, a modality named mm', () => {
  const before = liveTensors.count;
  const lin = (i: number, o: number) => ({ module: new Linear(i, o), features: o });
  const built: Module[] = [];
  const spec = (i: number, o: number) => {
    const s = lin(i, o);
    built.push(s.module);
    return s;
  };
  throwsWith(
    () => new LateFusionClassifier({ encoders: { a: spec(3, 4) }, classes: 2 }),
    'at least 2 modality encoders',
    'a',
  );
  throwsWith(
    () => new LateFusionClassifier({ encoders: { a: spec(3, 4), b: spec(3, 5) }, classes: 2, fusion: 'sum' }),
    'equal feature size',
    'a 4',
    'b 5',
    'concat',
  );
  throwsWith(() => new LateFusionClassifier({ encoders: { mm: spec(3, 4), b: spec(3, 4) }, classes: 2 }), "'mm'");
  throwsWith(
    () => new LateFusionClassifier({ encoders: { a: spec(3, 4), b: spec(3, 4) }, classes: 2, fusion: 'max' as 'sum' }),
    "unknown fusion 'max'",
    'concat, sum',
  );
  const model = new LateFusionClassifier({ encoders: { a: lin(3, 4), b: lin(3, 4) }, classes: 2 });
  const [x] = randTensor([2, 3], 1);
  throwsWith(() => model.logits({ a: x }), 'missing input b', 'expects a, b');
  throwsWith(() => model.logits({ a: x, b: x, c: x }), 'unknown input c', 'expects a, b');
  x.dispose();
  model.dispose();
  for (const m of built) m.dispose();
  assert.is(liveTensors.count, before, 'no leaks');
});

test('SharedTwoHead: one shared forward, two task heads, targets, main loss and the one group', async () => {
  const before = liveTensors.count;
  const model = new SharedTwoHead({
    encoder: { module: new CGEncoder({ inChannels: 1, seed: 3 }), features: 512 },
    input: 'image',
    tasks: { left: 10, right: 10 },
    seed: 4,
  });
  const [x] = randTensor([2, 1, 6, 12], 8);
  const logits = tidy(() => model.logits({ image: x }));
  assert.equal(Object.keys(logits), ['left', 'right']);
  for (const t of Object.values(logits)) assert.equal(t.shape, [2, 10]);
  assert.equal(model.targets, { left: 'left', right: 'right' });
  assert.is(model.mainLoss, 'left');
  assert.equal(Object.keys(model.encoderGroups()), ['right']);
  checkGroups(model, ['heads.']);
  const names = model.namedParameters().map(([n]) => n);
  for (const k of ['encoder.conv1.weight', 'encoder.fc.weight', 'heads.left.weight', 'heads.right.bias'])
    assert.ok(names.includes(k), `has ${k}`);
  throwsWith(() => model.logits({ gray: x }), 'expects exactly image');
  throwsWith(
    () => new SharedTwoHead({ encoder: { module: model.encoder, features: 512 }, input: 'image', tasks: { a: 2 } }),
    'exactly 2 tasks',
  );
  for (const t of [x, ...Object.values(logits)]) t.dispose();
  model.dispose();
  assert.is(liveTensors.count, before, 'no leaks');
});

test("losses(batch): each logits entry scored against its own task's labels; missing labels are named", async () => {
  const before = liveTensors.count;
  const encoder = { module: new CGEncoder({ inChannels: 1, seed: 5 }), features: 512 };
  const model = new SharedTwoHead({ encoder, input: 'image', tasks: { left: 4, right: 3 }, seed: 6 });
  const [x] = randTensor([3, 1, 6, 12], 9);
  const left = tensor(Int32Array.of(0, 3, 1), [3], { dtype: 'int32' });
  const right = tensor(Int32Array.of(2, 0, 1), [3], { dtype: 'int32' });
  const losses = tidy(() => model.losses({ inputs: { image: x }, labels: { left, right } }));
  assert.equal(Object.keys(losses), ['left', 'right']);
  // the same forward through logits, and crossEntropy by hand on the host (float64)
  const logits = tidy(() => model.logits({ image: x }));
  for (const [name, labels] of [
    ['left', [0, 3, 1]],
    ['right', [2, 0, 1]],
  ] as const) {
    const z = await host(logits[name]!);
    const c = z.length / 3;
    let want = 0;
    for (let r = 0; r < 3; r++) {
      const row = z.subarray(r * c, (r + 1) * c);
      const m = Math.max(...row);
      want += m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) - row[labels[r]!]!;
    }
    // a log-sum-exp of ≤ 4 terms and a mean of 3 rows in float32: a few ulp of values ~1
    assertClose([await losses[name]!.item()], [want / 3], 1e-5, 1e-6, `${name} loss`);
  }
  const partial = { inputs: { image: x }, labels: { left } };
  // refused before any forward
  throwsWith(() => model.losses(partial), "no labels for task 'right'", "loss 'right'", 'has left');
  for (const t of [x, left, right, ...Object.values(losses), ...Object.values(logits)]) t.dispose();
  model.dispose();
  assert.is(liveTensors.count, before, 'no leaks');
});

test.run();
