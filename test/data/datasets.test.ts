// CG-FMNIST colour statistics (train colour predicts the label, test colour does not) and the
// Multi-FMNIST noise fraction, on synthetic gray items (the real set is installed by the setup).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Generator } from '../../engine/index.ts';
import {
  CLASS_COLORS,
  COLOR_JITTER_VARIANCE,
  colorModality,
  multiModality,
  type ImageSet,
} from '../../train/data/image-sets.ts';

const test = suite('datasets');

/** n gray 8×8 items, labels cycling over 10 classes, values uniform in (0, 1). */
function grayItems(n: number, seed: number): ImageSet {
  const g = new Generator(seed);
  return {
    n,
    c: 1,
    h: 8,
    w: 8,
    images: Float32Array.from({ length: n * 64 }, () => 0.05 + 0.9 * g.uniform()),
    labels: Int32Array.from({ length: n }, (_, i) => i % 10),
  };
}

/** Fraction of items whose colour is nearest to their own class's mean colour. */
function colorAccuracy(colors: Float32Array, labels: Int32Array): number {
  let hit = 0;
  for (let i = 0; i < labels.length; i++) {
    let best = -1;
    let bestD = Infinity;
    CLASS_COLORS.forEach((c, k) => {
      const d = (colors[3 * i]! - c[0]) ** 2 + (colors[3 * i + 1]! - c[1]) ** 2 + (colors[3 * i + 2]! - c[2]) ** 2;
      if (d < bestD) [best, bestD] = [k, d];
    });
    if (best === labels[i]) hit++;
  }
  return hit / labels.length;
}

test(
  'CG-FMNIST colour: train colours sit around the class colour (jitter variance 0.03); test colours do not ' +
    'predict the label',
  () => {
    const gray = grayItems(2000, 1);
    const train = colorModality(gray, 'train', 2);
    const testSplit = colorModality(gray, 'test', 3);
    // Train: per-channel deviation from the class colour has variance ≈ 0.03 (less where clamping at
    // 0/1 cuts the tails; the palette sits 0.1 from the bounds), and the colour predicts the label.
    let sq = 0;
    for (let i = 0; i < gray.n; i++)
      for (let ch = 0; ch < 3; ch++) sq += (train.colors[3 * i + ch]! - CLASS_COLORS[gray.labels[i]!]![ch]!) ** 2;
    const variance = sq / (3 * gray.n);
    assert.ok(
      variance > 0.6 * COLOR_JITTER_VARIANCE && variance < 1.05 * COLOR_JITTER_VARIANCE,
      `train jitter variance ${variance}`,
    );
    const accTrain = colorAccuracy(train.colors, gray.labels);
    const accTest = colorAccuracy(testSplit.colors, gray.labels);
    // Jitter std √0.03 ≈ 0.17 against palette colours ≥ 0.4 apart: most items stay nearest their class colour (0.83
    // here).
    assert.ok(accTrain > 0.75, `train colour → label accuracy ${accTrain}`);
    // Uniform colours: nearest-palette class is independent of the label, so ≈ 1/10 (5σ of 2000 draws ≈ 0.034).
    assert.ok(accTest < 0.1 + 0.05, `test colour → label accuracy ${accTest}`);
    // The colour image is the gray image times the colour, channel by channel.
    const px = 64;
    assert.ok(
      Math.abs(train.color.images[(3 * 5 + 1) * px + 7]! - gray.images[5 * px + 7]! * train.colors[3 * 5 + 1]!) < 1e-7,
    );
    // Deterministic for a seed.
    assert.equal(colorModality(gray, 'train', 2).colors, train.colors);
  },
);

test('Multi-FMNIST: two items side by side, left half untouched, half of the right half replaced by 0 or 1', () => {
  const gray = grayItems(50, 4); // values in (0.05, 0.95): a 0 or 1 pixel is always noise
  const m = multiModality(gray, 400, 5);
  assert.equal([m.image.c, m.image.h, m.image.w], [1, 8, 16]);
  let noisy = 0;
  let leftNoisy = 0;
  for (let i = 0; i < 400; i++)
    for (let r = 0; r < 8; r++)
      for (let x = 0; x < 16; x++) {
        const v = m.image.images[(i * 8 + r) * 16 + x]!;
        const isNoise = v === 0 || v === 1;
        if (x < 8) leftNoisy += isNoise ? 1 : 0;
        else noisy += isNoise ? 1 : 0;
      }
  const total = 400 * 8 * 8;
  assert.is(leftNoisy, 0);
  // Binomial(25600, 0.5): 5σ = 5·√(25600·0.25)/25600 ≈ 0.016.
  assert.ok(Math.abs(noisy / total - 0.5) < 0.016, `noise fraction ${noisy / total}`);
  assert.ok(m.left.every((y) => y >= 0 && y < 10) && m.right.some((y, i) => y !== m.left[i]));
});

test.run();
