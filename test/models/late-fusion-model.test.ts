// The trainer's models: the CG-MNIST encoder against a float64 host reference, the late-fusion
// classifier (2 and 3 modalities, concat and sum fusion checked numerically, names, encoder
// groups), the shared-encoder two-head model, every registry model on each compatible data-set
// shape, determinism for a seed, bad input, and one MMPareto step on a late-fusion model.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, randTensor, throwsWith } from '../helpers.ts';
import { liveTensors, MultimodalStep, SGD, tensor, tidy, type Tensor } from '../../engine/index.ts';
import { Linear, type Module } from '../../engine/nn/index.ts';
import { CGEncoder } from '../../models/cg-encoder.ts';
import { LateFusionClassifier, type EncoderSpec } from '../../models/late-fusion.ts';
import { SharedTwoHead } from '../../models/shared-two-head.ts';
import { buildModel, patchFor, type DatasetShape } from '../../models/registry.ts';
import type { TrainableModel } from '../../models/multimodal.ts';
import type { ModelName } from '../../train/run/config.ts';

const test = suite('late-fusion models');
const host = async (t: Tensor) => Float64Array.from(await t.toArray());
type Arr = Float64Array;
type Shape4 = [number, number, number, number];

// ---- float64 host references (NCHW, torch semantics) ----
function conv(
  x: Arr,
  [n, c, h, w]: Shape4,
  wt: Arr,
  o: number,
  k: number,
  b: Arr,
  stride: number,
  pad: number,
): [Arr, Shape4] {
  const oh = Math.floor((h + 2 * pad - k) / stride) + 1;
  const ow = Math.floor((w + 2 * pad - k) / stride) + 1;
  const y = new Float64Array(n * o * oh * ow);
  for (let ni = 0; ni < n; ni++)
    for (let oi = 0; oi < o; oi++)
      for (let yi = 0; yi < oh; yi++)
        for (let xi = 0; xi < ow; xi++) {
          let s = b[oi]!;
          for (let ci = 0; ci < c; ci++)
            for (let ky = 0; ky < k; ky++)
              for (let kx = 0; kx < k; kx++) {
                const iy = yi * stride - pad + ky;
                const ix = xi * stride - pad + kx;
                if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                  s += x[((ni * c + ci) * h + iy) * w + ix]! * wt[((oi * c + ci) * k + ky) * k + kx]!;
              }
          y[((ni * o + oi) * oh + yi) * ow + xi] = s;
        }
  return [y, [n, o, oh, ow]];
}
const reluH = (x: Arr): Arr => x.map((v) => Math.max(0, v));
function maxPool(x: Arr, [n, c, h, w]: Shape4, k: number, stride: number, pad: number): [Arr, Shape4] {
  const oh = Math.floor((h + 2 * pad - k) / stride) + 1;
  const ow = Math.floor((w + 2 * pad - k) / stride) + 1;
  const y = new Float64Array(n * c * oh * ow);
  for (let p = 0; p < n * c; p++)
    for (let yi = 0; yi < oh; yi++)
      for (let xi = 0; xi < ow; xi++) {
        let m = -Infinity;
        for (let ky = 0; ky < k; ky++)
          for (let kx = 0; kx < k; kx++) {
            const iy = yi * stride - pad + ky;
            const ix = xi * stride - pad + kx;
            if (iy >= 0 && iy < h && ix >= 0 && ix < w) m = Math.max(m, x[(p * h + iy) * w + ix]!);
          }
        y[(p * oh + yi) * ow + xi] = m;
      }
  return [y, [n, c, oh, ow]];
}
/** Batchnorm with the given per-channel mean/var (training: the batch's, biased variance). */
function batchNorm(x: Arr, [n, c, h, w]: Shape4, g: Arr, b: Arr, stats?: [Arr, Arr]): Arr {
  const hw = h * w;
  const y = new Float64Array(x.length);
  for (let ci = 0; ci < c; ci++) {
    let mean = 0;
    let v = 0;
    if (stats) [mean, v] = [stats[0][ci]!, stats[1][ci]!];
    else {
      for (let ni = 0; ni < n; ni++) for (let i = 0; i < hw; i++) mean += x[(ni * c + ci) * hw + i]!;
      mean /= n * hw;
      for (let ni = 0; ni < n; ni++) for (let i = 0; i < hw; i++) v += (x[(ni * c + ci) * hw + i]! - mean) ** 2;
      v /= n * hw;
    }
    for (let ni = 0; ni < n; ni++)
      for (let i = 0; i < hw; i++) {
        const j = (ni * c + ci) * hw + i;
        y[j] = ((x[j]! - mean) / Math.sqrt(v + 1e-5)) * g[ci]! + b[ci]!;
      }
  }
  return y;
}
/** x (n, i) · wᵀ + b with w (o, i). */
function linearH(x: Arr, n: number, i: number, w: Arr, o: number, b: Arr): Arr {
  const y = new Float64Array(n * o);
  for (let r = 0; r < n; r++)
    for (let c = 0; c < o; c++) {
      let s = b[c]!;
      for (let k = 0; k < i; k++) s += x[r * i + k]! * w[c * i + k]!;
      y[r * o + c] = s;
    }
  return y;
}
async function cgReference(e: CGEncoder, x: Arr, shape: Shape4, stats?: [Arr, Arr]): Promise<Arr> {
  const sd = e.stateDict();
  const p = (k: string) => host(sd.get(k)!);
  let h = batchNorm(x, shape, await p('bn0.weight'), await p('bn0.bias'), stats);
  let s = shape;
  [h, s] = conv(h, s, await p('conv1.weight'), 32, 5, await p('conv1.bias'), 1, 2);
  [h, s] = maxPool(reluH(h), s, 3, 2, 1);
  [h, s] = conv(h, s, await p('conv2.weight'), 32, 3, await p('conv2.bias'), 1, 1);
  [h, s] = conv(reluH(h), s, await p('conv3.weight'), 64, 3, await p('conv3.bias'), 2, 1);
  [h, s] = conv(reluH(h), s, await p('conv4.weight'), 64, 3, await p('conv4.bias'), 1, 1);
  h = reluH(h);
  const [n, c, hh, ww] = s;
  const pooled = new Float64Array(n * c);
  for (let q = 0; q < n * c; q++)
    for (let i = 0; i < hh * ww; i++) pooled[q] = pooled[q]! + h[q * hh * ww + i]! / (hh * ww);
  return linearH(pooled, n, 64, await p('fc.weight'), 512, await p('fc.bias'));
}

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

/**
 * Groups are named like logits entries, disjoint, inside the parameters, and exactly the parameters not under `outside`
 * prefixes.
 */
function checkGroups(model: TrainableModel, outside: string[]): void {
  const groups = model.encoderGroups();
  const seen = new Set<Tensor>();
  for (const [name, ps] of Object.entries(groups)) {
    assert.ok(name in model.targets && name !== model.mainLoss, `group '${name}' is a unimodal loss`);
    assert.ok(ps.length > 0, `group '${name}' is not empty`);
    for (const p of ps) {
      assert.not.ok(seen.has(p), 'groups are disjoint');
      seen.add(p);
    }
  }
  for (const [name, p] of model.namedParameters()) {
    const isOutside = outside.some((o) => name === o || name.startsWith(o));
    assert.is(seen.has(p), !isOutside, `parameter ${name} ${isOutside ? 'outside' : 'inside'} the groups`);
  }
  assert.is(
    seen.size,
    model.parameters().length -
      model.namedParameters().filter(([n]) => outside.some((o) => n === o || n.startsWith(o))).length,
  );
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

const CG: DatasetShape = { name: 'cg-fmnist', inputs: { gray: [1, 28, 28], color: [3, 28, 28] }, tasks: { label: 10 } };
const MULTI: DatasetShape = { name: 'multi-fmnist', inputs: { image: [1, 28, 56] }, tasks: { left: 10, right: 10 } };
const SMALL_AV: DatasetShape = {
  name: 'synthetic-av',
  inputs: { audio: [1, 16, 16], visual: [3, 16, 16] },
  tasks: { label: 5 },
};
const SMALL_THREE: DatasetShape = {
  name: 'three',
  inputs: { a: [1, 16, 16], b: [3, 16, 16], c: [2, 16, 16] },
  tasks: { label: 3 },
};
const SMALL_MULTI: DatasetShape = {
  name: 'multi-fmnist',
  inputs: { image: [1, 16, 32] },
  tasks: { left: 10, right: 10 },
};

const cases: [ModelName, DatasetShape, 'concat' | 'sum', string[]][] = [
  ['cnn', CG, 'concat', ['head.', 'heads.']],
  ['cnn', SMALL_THREE, 'sum', ['head.', 'heads.']],
  ['cnn', MULTI, 'concat', ['heads.']],
  ['resnet18', SMALL_AV, 'concat', ['head.', 'heads.']],
  ['resnet18', SMALL_MULTI, 'concat', ['heads.']],
  ['mbt', SMALL_AV, 'concat', ['mbt.bottleneck', 'mbt.head.', 'heads.']],
  ['mbt', SMALL_THREE, 'sum', ['mbt.bottleneck', 'mbt.heads.', 'heads.']],
];
for (const [name, ds, fusion, outside] of cases) {
  test(`buildModel('${name}') on ${ds.name} [${Object.values(ds.inputs)
    .map((s) => s.join('×'))
    .join(', ')}] (${fusion}): logits, targets, groups, no leaks`, async () => {
    const before = liveTensors.count;
    const model = buildModel(name, ds, { seed: 1, fusion });
    const inputs = Object.fromEntries(
      Object.entries(ds.inputs).map(([m, s], i) => [m, randTensor([2, ...s], 30 + i, 0, 1)[0]]),
    );
    const logits = tidy(() => model.logits(inputs));
    assert.equal(Object.keys(logits).sort(), Object.keys(model.targets).sort());
    assert.ok(model.mainLoss in logits);
    for (const [k, t] of Object.entries(logits)) {
      assert.equal(t.shape, [2, ds.tasks[model.targets[k]!]!], `${k} logits shape`);
      assert.ok((await t.toArray()).every(Number.isFinite), `${k} logits finite`);
    }
    checkGroups(model, outside);
    for (const t of [...Object.values(inputs), ...Object.values(logits)]) t.dispose();
    model.dispose();
    assert.is(liveTensors.count, before, 'no leaks');
  });
}

test('buildModel: deterministic for a seed (identical initial state dict), different for another seed', async () => {
  const values = async (m: TrainableModel) =>
    Promise.all([...m.stateDict()].map(async ([k, t]) => [k, await t.toArray()] as const));
  for (const [name, ds] of [
    ['cnn', CG],
    ['cnn', MULTI],
    ['mbt', SMALL_AV],
  ] as [ModelName, DatasetShape][]) {
    const [a, b, c] = [
      buildModel(name, ds, { seed: 9 }),
      buildModel(name, ds, { seed: 9 }),
      buildModel(name, ds, { seed: 10 }),
    ];
    const [va, vb, vc] = await Promise.all([values(a), values(b), values(c)]);
    assert.equal(
      va.map(([k]) => k),
      vb.map(([k]) => k),
    );
    va.forEach(([k, v], i) => {
      assert.equal([...v], [...vb[i]![1]], `${name} ${k} equal for one seed`);
    });
    const differs = va.filter(([k, v], i) => k.endsWith('weight') && v.some((x, j) => x !== vc[i]![1][j]));
    assert.ok(
      differs.length > 0 &&
        differs.length === va.filter(([k, v]) => k.endsWith('weight') && v.some((x) => x !== 1)).length,
      `${name}: every random weight differs for another seed`,
    );
    // Two encoders of one model are not copies of each other.
    if (name === 'cnn' && ds === CG) {
      const sd = a.stateDict();
      assert.not.equal(
        [...(await sd.get('encoders.gray.conv2.weight')!.toArray())],
        [...(await sd.get('encoders.color.conv2.weight')!.toArray())],
      );
    }
    for (const m of [a, b, c]) m.dispose();
  }
});

test(
  'buildModel bad input: unknown model, mbt on a two-task set, ' + 'unsupported task/input counts, bad item shape',
  () => {
    const before = liveTensors.count;
    throwsWith(() => buildModel('vit' as ModelName, CG, { seed: 0 }), "unknown model 'vit'", 'cnn, resnet18, mbt');
    throwsWith(() => buildModel('mbt', MULTI, { seed: 0 }), "'mbt'", 'multi-fmnist', '2 tasks', 'cnn or resnet18');
    throwsWith(
      () => buildModel('cnn', { name: 'x', inputs: { a: [1, 8, 8] }, tasks: { label: 3 } }, { seed: 0 }),
      '1 input(s) and 1 task(s)',
    );
    throwsWith(
      () => buildModel('cnn', { name: 'x', inputs: { a: [8, 8] }, tasks: { label: 3 } }, { seed: 0 }),
      "input 'a'",
      '[channels, height, width]',
    );
    throwsWith(() => buildModel('cnn', CG, { seed: 0, fusion: 'max' as 'sum' }), "unknown fusion 'max'", 'concat, sum');
    assert.is(liveTensors.count, before, 'refused before building anything');
    assert.equal(
      [patchFor(16, 16), patchFor(28, 28), patchFor(28, 56), patchFor(15, 9), patchFor(7, 5)],
      [4, 4, 4, 3, 1],
    );
  },
);

test(
  "one MultimodalStep('mmpareto') on a LateFusionClassifier of CGEncoders: finite losses, every head and " +
    'encoder moves, no leaks',
  async () => {
    const before = liveTensors.count;
    const ds: DatasetShape = { name: 'tiny', inputs: { gray: [1, 8, 8], color: [3, 8, 8] }, tasks: { label: 3 } };
    const model = buildModel('cnn', ds, { seed: 2 });
    const opt = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
    const step = new MultimodalStep({
      method: 'mmpareto',
      encoders: model.encoderGroups(),
      optimizer: opt,
      mainLoss: model.mainLoss,
    });
    const [gray] = randTensor([3, 1, 8, 8], 40, 0, 1);
    const [color] = randTensor([3, 3, 8, 8], 41, 0, 1);
    const y = tensor(Int32Array.of(0, 2, 1), [3], { dtype: 'int32' });
    const p0 = await Promise.all(model.namedParameters().map(async ([n, p]) => [n, await host(p)] as const));
    const losses = tidy(() => model.losses({ inputs: { gray, color }, labels: { label: y } }));
    for (const [k, l] of Object.entries(losses)) assert.ok(Number.isFinite(await l.item()), `${k} loss finite`);
    step.step(losses);
    const moved = new Set<string>();
    for (const [i, [n, p]] of model.namedParameters().entries()) {
      const now = await host(p);
      assert.ok(now.every(Number.isFinite), `${n} finite`);
      if (now.some((v, j) => v !== p0[i]![1][j])) moved.add(n);
    }
    for (const n of [
      'head.weight',
      'heads.gray.weight',
      'heads.color.weight',
      'encoders.gray.conv1.weight',
      'encoders.color.conv1.weight',
      'encoders.gray.fc.weight',
      'encoders.color.bn0.weight',
    ]) {
      assert.ok(moved.has(n), `${n} moved`);
    }
    for (const t of [gray, color, y, ...Object.values(losses)]) t.dispose();
    step.dispose();
    opt.dispose();
    model.dispose();
    assert.is(liveTensors.count, before, 'no leaks');
  },
);

test.run();
