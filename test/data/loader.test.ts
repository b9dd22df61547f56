// The batch loader (seeded per-epoch shuffling, dropLast, host normalisation, int32 labels, bad
// batch sizes, no leaked tensors) and the synthetic audio-visual set (deterministic, shapes,
// class-dependent with audio the stronger modality).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { liveTensors } from '../../engine/index.ts';
import { disposeBatch, Loader, normalizationStats } from '../../train/data/loader.ts';
import { deriveSeed } from '../../train/data/seed.ts';
import { syntheticAV } from '../../train/data/synthetic.ts';
import { buildDataset } from '../../train/data/registry.ts';
import type { Split } from '../../train/data/dataset.ts';
import { assertClose, randArray, throwsWith } from '../helpers.ts';

const test = suite('loader');

/** n items: modality x [2, 3] (item i's values i·10 + k, 6 per item) and task y = i. */
function indexedSplit(n: number): {
  split: Split;
  dataset: { inputs: Record<string, number[]>; tasks: Record<string, number> };
} {
  const x = Float32Array.from({ length: n * 6 }, (_, k) => Math.floor(k / 6) * 10 + (k % 6));
  const y = Int32Array.from({ length: n }, (_, i) => i);
  return { split: { n, inputs: { x }, labels: { y } }, dataset: { inputs: { x: [2, 3] }, tasks: { y: n } } };
}

/** Reads every batch of an epoch back: the item ids in order (from labels), checking inputs match. */
async function readEpoch(loader: Loader, epoch: number): Promise<{ ids: number[]; sizes: number[] }> {
  const ids: number[] = [];
  const sizes: number[] = [];
  for (const b of loader.batches(epoch)) {
    assert.is(b.index, sizes.length);
    assert.equal(b.inputs.x!.shape, [b.size, 2, 3]);
    assert.equal(b.labels.y!.shape, [b.size]);
    assert.is(b.labels.y!.dtype, 'int32');
    assert.is(b.inputs.x!.dtype, 'float32');
    const y = await b.labels.y!.toArray();
    const x = await b.inputs.x!.toArray();
    assert.ok(y instanceof Int32Array);
    for (let i = 0; i < b.size; i++)
      for (let k = 0; k < 6; k++) assert.is(x[i * 6 + k], y[i]! * 10 + k, 'inputs travel with their label');
    ids.push(...y);
    sizes.push(b.size);
    disposeBatch(b);
  }
  return { ids, sizes };
}

test('shuffled epochs: every item exactly once, epochs differ, (seed, epoch) reproduces the order', async () => {
  const live = liveTensors.count;
  const { split, dataset } = indexedSplit(23);
  const loader = new Loader(split, dataset, { batchSize: 5, shuffle: true, seed: 11 });
  assert.is(loader.batchesPerEpoch, 5);
  const e0 = await readEpoch(loader, 0);
  const e1 = await readEpoch(loader, 1);
  assert.equal(e0.sizes, [5, 5, 5, 5, 3]);
  for (const e of [e0, e1])
    assert.equal(
      [...e.ids].sort((a, b) => a - b),
      Array.from({ length: 23 }, (_, i) => i),
    );
  assert.not.equal(e0.ids, e1.ids, 'another epoch, another order');
  assert.not.equal(
    e0.ids,
    Array.from({ length: 23 }, (_, i) => i),
    'shuffled',
  );
  // Epoch 1 from a fresh loader (as after a resume) without reading epoch 0 first: same order.
  const fresh = new Loader(split, dataset, { batchSize: 5, shuffle: true, seed: 11 });
  assert.equal((await readEpoch(fresh, 1)).ids, e1.ids);
  assert.equal([...fresh.order(1)], e1.ids);
  assert.not.equal(
    [...new Loader(split, dataset, { batchSize: 5, shuffle: true, seed: 12 }).order(1)],
    e1.ids,
    'another seed',
  );
  // Without shuffling: the split's order.
  const plain = new Loader(split, dataset, { batchSize: 5, shuffle: false, seed: 11 });
  assert.equal(
    (await readEpoch(plain, 3)).ids,
    Array.from({ length: 23 }, (_, i) => i),
  );
  assert.is(liveTensors.count, live, 'no tensor leaked');
});

test('dropLast: floor(n / batch) full batches; a batch larger than the split without it is one batch', async () => {
  const live = liveTensors.count;
  const { split, dataset } = indexedSplit(10);
  const drop = new Loader(split, dataset, { batchSize: 3, shuffle: true, seed: 1, dropLast: true });
  assert.is(drop.batchesPerEpoch, 3);
  const e = await readEpoch(drop, 0);
  assert.equal(e.sizes, [3, 3, 3]);
  assert.equal(e.ids, [...drop.order(0).subarray(0, 9)], 'the dropped item is the last of the permutation');
  const keep = new Loader(split, dataset, { batchSize: 3, shuffle: true, seed: 1 });
  assert.equal((await readEpoch(keep, 0)).sizes, [3, 3, 3, 1]);
  const big = new Loader(split, dataset, { batchSize: 64, shuffle: false, seed: 1 });
  assert.equal((await readEpoch(big, 0)).sizes, [10]);
  assert.is(liveTensors.count, live);
});

test('bad batch sizes and mismatched splits are refused, naming the split size or the mismatch', () => {
  const live = liveTensors.count;
  const { split, dataset } = indexedSplit(10);
  for (const bs of [0, -2, 2.5, Number.NaN])
    throwsWith(
      () => new Loader(split, dataset, { batchSize: bs, shuffle: true, seed: 0 }),
      `batch size ${bs}`,
      'split size (10)',
    );
  throwsWith(
    () => new Loader(split, dataset, { batchSize: 11, shuffle: true, seed: 0, dropLast: true }),
    'batch size 11',
    'larger than the split (10 items)',
  );
  throwsWith(
    () => new Loader(split, { inputs: { z: [6] }, tasks: { y: 10 } }, { batchSize: 2, shuffle: false, seed: 0 }),
    "no modality 'z'",
    'x',
  );
  throwsWith(
    () => new Loader(split, { inputs: { x: [7] }, tasks: { y: 10 } }, { batchSize: 2, shuffle: false, seed: 0 }),
    "modality 'x' holds 60 values",
  );
  throwsWith(
    () => new Loader(split, { inputs: { x: [2, 3] }, tasks: { w: 10 } }, { batchSize: 2, shuffle: false, seed: 0 }),
    "task 'w'",
  );
  throwsWith(
    () =>
      new Loader(split, dataset, { batchSize: 2, shuffle: false, seed: 0, normalize: { q: { mean: [0], std: [1] } } }),
    "modality 'q'",
    'x',
  );
  throwsWith(
    () =>
      new Loader(split, dataset, { batchSize: 2, shuffle: false, seed: 0, normalize: { x: { mean: [0], std: [1] } } }),
    '2 channels',
  );
  throwsWith(
    () =>
      new Loader(split, dataset, {
        batchSize: 2,
        shuffle: false,
        seed: 0,
        normalize: { x: { mean: [0, 0], std: [1, 0] } },
      }),
    'positive',
  );
  const loader = new Loader(split, dataset, { batchSize: 2, shuffle: true, seed: 0 });
  throwsWith(() => loader.order(-1), 'epoch -1');
  assert.is(liveTensors.count, live);
});

test('normalisation: per-channel stats and (x − mean)/std against float64 host references', async () => {
  const live = liveTensors.count;
  // 9 items of a [2, 2, 3] modality, channel 1 offset and scaled so the channels differ.
  const n = 9;
  const raw = randArray(n * 12, 5, 0, 1);
  const x = Float32Array.from(raw, (v, k) => (Math.floor(k / 6) % 2 === 1 ? 4 + 3 * v : v));
  const split: Split = { n, inputs: { m: x }, labels: { t: Int32Array.from({ length: n }, (_, i) => i % 3) } };
  const shapes = { m: [2, 2, 3] };
  const stats = normalizationStats(split, shapes);
  const ref = [0, 1].map((ch) => {
    const vals: number[] = [];
    for (let i = 0; i < n; i++) for (let p = 0; p < 6; p++) vals.push(x[(i * 2 + ch) * 6 + p]!);
    const mean = vals.reduce((a, b) => a + b, 0) / vals.length;
    return { mean, std: Math.sqrt(vals.reduce((a, b) => a + (b - mean) ** 2, 0) / vals.length) };
  });
  // Both float64 sums over the same float32 data: equal up to summation order (~1e-15 relative).
  assertClose(
    stats.m!.mean,
    ref.map((r) => r.mean),
    1e-12,
    0,
    'mean',
  );
  assertClose(
    stats.m!.std,
    ref.map((r) => r.std),
    1e-12,
    0,
    'std',
  );
  const loader = new Loader(
    split,
    { inputs: shapes, tasks: { t: 3 } },
    { batchSize: 4, shuffle: true, seed: 3, normalize: stats },
  );
  const order = loader.order(0);
  const got: number[] = [];
  const labels: number[] = [];
  for (const b of loader.batches(0)) {
    got.push(...(await b.inputs.m!.toArray()));
    labels.push(...(await b.labels.t!.toArray()));
    disposeBatch(b);
  }
  const want: number[] = [];
  for (const i of order)
    for (let k = 0; k < 12; k++)
      want.push((x[i * 12 + k]! - ref[Math.floor(k / 6)]!.mean) / ref[Math.floor(k / 6)]!.std);
  // float32 arithmetic on values of magnitude <= ~3: a few ulps (u = 6e-8) of the result, atol for values near 0.
  assertClose(got, want, 1e-6, 1e-6, 'normalised batch');
  assert.equal(
    labels,
    [...order].map((i) => i % 3),
  );
  // Constant channel: std 1, normalised to zeros (no division by zero).
  const flat: Split = { n: 2, inputs: { c: new Float32Array(16).fill(0.5) }, labels: {} };
  assert.equal(normalizationStats(flat, { c: [1, 8] }), { c: { mean: [0.5], std: [1] } });
  assert.is(liveTensors.count, live);
});

test('consecutive batches keep their own contents when read back after both were built', async () => {
  // The loader alternates two host buffer sets; this checks the observable contract (batch k's
  // tensor is unchanged by building batch k+1), which holds whether or not upload copies.
  const live = liveTensors.count;
  const { split, dataset } = indexedSplit(6);
  const loader = new Loader(split, dataset, { batchSize: 3, shuffle: false, seed: 0 });
  const it = loader.batches(0);
  const a = it.next().value!;
  const b = it.next().value!;
  assert.equal([...(await a.labels.y!.toArray())], [0, 1, 2]);
  assert.equal([...(await b.labels.y!.toArray())], [3, 4, 5]);
  disposeBatch(a);
  disposeBatch(b);
  assert.is(liveTensors.count, live);
});

test('deriveSeed: deterministic, sensitive to every part', () => {
  assert.is(deriveSeed(1, 'epoch', 2), deriveSeed(1, 'epoch', 2));
  const seeds = new Set([
    deriveSeed(1, 'epoch', 2),
    deriveSeed(1, 'epoch', 3),
    deriveSeed(2, 'epoch', 2),
    deriveSeed(1, 'epocg', 2),
    deriveSeed(1, 'ab', 'c'),
    deriveSeed(1, 'a', 'bc'),
    deriveSeed(2 ** 32 + 1),
  ]);
  assert.is(seeds.size, 7);
  assert.ok(deriveSeed(2 ** 32 + 1) !== deriveSeed(1), 'high bits count');
});

/** Nearest-class-mean accuracy: means from (xa, ya), evaluated on (xb, yb); d floats per item. */
function nearestMeanAccuracy(
  xa: Float32Array,
  ya: Int32Array,
  xb: Float32Array,
  yb: Int32Array,
  d: number,
  classes: number,
): number {
  const mu = new Float64Array(classes * d);
  const count = new Float64Array(classes);
  for (let i = 0; i < ya.length; i++) {
    count[ya[i]!]!++;
    for (let k = 0; k < d; k++) mu[ya[i]! * d + k]! += xa[i * d + k]!;
  }
  for (let c = 0; c < classes; c++) for (let k = 0; k < d; k++) mu[c * d + k]! /= count[c]!;
  let hit = 0;
  for (let i = 0; i < yb.length; i++) {
    let best = -1;
    let bestD = Infinity;
    for (let c = 0; c < classes; c++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += (xb[i * d + k]! - mu[c * d + k]!) ** 2;
      if (s < bestD) [best, bestD] = [c, s];
    }
    if (best === yb[i]) hit++;
  }
  return hit / yb.length;
}

test(
  'synthetic AV: shapes, balanced labels, deterministic, ' + 'audio clearly stronger than visual on held-out items',
  () => {
    const a = syntheticAV({ n: 200, seed: 1 });
    assert.is(a.audio.length, 200 * 256);
    assert.is(a.visual.length, 200 * 3 * 256);
    const hist = [0, 0, 0, 0];
    for (const y of a.labels) hist[y]!++;
    assert.equal(hist, [50, 50, 50, 50]);
    assert.equal(syntheticAV({ n: 200, seed: 1 }).visual, a.visual, 'deterministic for a seed');
    assert.not.equal(syntheticAV({ n: 200, seed: 2 }).audio, a.audio);
    const held = syntheticAV({ n: 400, seed: 2 });
    const accAudio = nearestMeanAccuracy(a.audio, a.labels, held.audio, held.labels, 256, 4);
    const accVisual = nearestMeanAccuracy(a.visual, a.labels, held.visual, held.labels, 768, 4);
    // Chance is 0.25; with 400 held-out items its 5σ band is ±0.11. Measured: audio ≈ 0.87, visual ≈ 0.49.
    assert.ok(accAudio > 0.7, `audio accuracy ${accAudio}`);
    assert.ok(
      accVisual > 0.25 + 0.11 && accVisual < accAudio - 0.2,
      `visual accuracy ${accVisual} (audio ${accAudio})`,
    );
    // No signal: chance level; strong visual signal: visual wins.
    const noise = syntheticAV({ n: 400, seed: 3, audioStrength: 0, visualStrength: 0 });
    const noiseTrain = syntheticAV({ n: 200, seed: 4, audioStrength: 0, visualStrength: 0 });
    assert.ok(
      Math.abs(nearestMeanAccuracy(noiseTrain.audio, noiseTrain.labels, noise.audio, noise.labels, 256, 4) - 0.25) <
        0.11,
    );
    const vTrain = syntheticAV({ n: 200, seed: 5, visualStrength: 2 });
    const vTest = syntheticAV({ n: 200, seed: 6, visualStrength: 2 });
    assert.ok(nearestMeanAccuracy(vTrain.visual, vTrain.labels, vTest.visual, vTest.labels, 768, 4) > 0.95);
    assert.is(syntheticAV({ n: 12, seed: 0, classes: 6 }).labels.filter((y) => y === 5).length, 2);
    throwsWith(() => syntheticAV({ n: 4, seed: 0, classes: 1 }), 'classes = 1', 'from 2 to 16');
    throwsWith(() => syntheticAV({ n: -1, seed: 0 }), 'n = -1');
    throwsWith(() => syntheticAV({ n: 4, seed: 0, audioStrength: -1 }), 'audioStrength = -1');
  },
);

test('synthetic-av data set: sizes, independent splits, a Loader over it; unknown names list the choices', async () => {
  const live = liveTensors.count;
  const d = buildDataset('synthetic-av', { seed: 9, dataDir: '/nonexistent' });
  assert.equal(d.inputs, { audio: [1, 16, 16], visual: [3, 16, 16] });
  assert.equal(d.tasks, { label: 4 });
  assert.equal([d.train.n, d.val.n, d.test.n], [256, 64, 64]);
  assert.not.equal(d.val.inputs.audio, d.test.inputs.audio, 'val and test drawn from different seeds');
  assert.equal(buildDataset('synthetic-av', { seed: 9, dataDir: '' }).test.inputs.visual, d.test.inputs.visual);
  const small = buildDataset('synthetic-av', { seed: 9, dataDir: '', syntheticSize: 40, trainLimit: 30 });
  assert.equal([small.train.n, small.val.n, small.test.n], [30, 10, 10]);
  const stats = normalizationStats(d.train, d.inputs);
  const loader = new Loader(d.train, d, { batchSize: 100, shuffle: true, seed: 9, normalize: stats });
  let total = 0;
  for (const b of loader.batches(0)) {
    assert.equal(b.inputs.visual!.shape, [b.size, 3, 16, 16]);
    total += b.size;
    disposeBatch(b);
  }
  assert.is(total, 256);
  throwsWith(
    () => buildDataset('cifar' as 'cg-fmnist', { seed: 0, dataDir: '' }),
    "unknown dataset 'cifar'",
    'cg-fmnist, multi-fmnist, synthetic-av',
  );
  assert.is(liveTensors.count, live);
});

test.run();
