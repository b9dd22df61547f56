// The registry's models (models/registry.ts): every model on each compatible data-set shape,
// determinism for a seed, bad input, and one MMPareto step on a late-fusion model.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { randTensor, throwsWith } from '../helpers.ts';
import { liveTensors, MultimodalStep, SGD, tensor, tidy } from '../../engine/index.ts';
import { buildModel, patchFor, type DatasetShape } from '../../models/registry.ts';
import type { TrainableModel } from '../../models/multimodal.ts';
import type { ModelName } from '../../train/run/config.ts';
import { host } from './host-reference.ts';
import { checkGroups } from './groups.ts';

const test = suite('registry models');

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
