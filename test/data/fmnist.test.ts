// Fashion-MNIST loading from the installed Debian package (and from small IDX files written here):
// shapes, class balance, pixel range, the errors for a missing or truncated file, and the
// honest train/val/test split of the data sets built from it.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { DEFAULT_DATA_DIR } from '../../train/run/config.ts';
import { clearFashionMnistCache, FASHION_MNIST_FILES, loadFashionMnist } from '../../train/data/fmnist.ts';
import { buildDataset, fashionSplitIndices } from '../../train/data/registry.ts';
import { throwsWith } from '../helpers.ts';

const test = suite('fmnist');
const fm = loadFashionMnist(DEFAULT_DATA_DIR); // parsed once for the file (a few seconds)
const HOW = ['dataset-fashion-mnist', 'apt-get install dataset-fashion-mnist', '--data-dir'];

/** An unsigned-byte IDX file of `shape` with the given data. */
function idx(shape: number[], data: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(4 + 4 * shape.length + data.length);
  const view = new DataView(out.buffer);
  out.set([0, 0, 0x08, shape.length]);
  shape.forEach((d, i) => {
    view.setUint32(4 + 4 * i, d, false);
  });
  out.set(data, 4 + 4 * shape.length);
  return out;
}

/** A directory with tiny Fashion-MNIST-shaped files: n train and n test items, pixel p of item i = (i + p) mod 256. */
function tinyDir(n: number, gz: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), 'fmnist-'));
  const px = Uint8Array.from({ length: n * 784 }, (_, k) => (Math.floor(k / 784) + (k % 784)) % 256);
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  const write = (name: string, bytes: Uint8Array) =>
    writeFileSync(join(dir, gz ? `${name}.gz` : name), gz ? gzipSync(bytes) : bytes);
  write(FASHION_MNIST_FILES.trainImages, idx([n, 28, 28], px));
  write(FASHION_MNIST_FILES.trainLabels, idx([n], labels));
  write(FASHION_MNIST_FILES.testImages, idx([n, 28, 28], px));
  write(FASHION_MNIST_FILES.testLabels, idx([n], labels));
  return dir;
}

test('the installed Fashion-MNIST: 60000/10000 items of 1×28×28 in [0, 1], 6000 (1000) per class', () => {
  for (const [set, n] of [
    [fm.train, 60000],
    [fm.test, 10000],
  ] as const) {
    assert.equal([set.n, set.c, set.h, set.w], [n, 1, 28, 28]);
    assert.is(set.images.length, n * 784);
    assert.is(set.labels.length, n);
    const hist = new Array<number>(10).fill(0);
    for (const y of set.labels) hist[y]!++;
    assert.equal(hist, new Array<number>(10).fill(n / 10), 'Fashion-MNIST is balanced');
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < set.images.length; i += 7) {
      const v = set.images[i]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
      // bytes / 255: every value is k/255 for an integer k (up to float32 rounding, < 1e-4 in k).
      assert.ok(Math.abs(v * 255 - Math.round(v * 255)) < 1e-4);
    }
    assert.is(lo, 0);
    assert.is(hi, 1);
  }
  assert.ok(loadFashionMnist(DEFAULT_DATA_DIR) === fm, 'parsed once per directory');
});

test('tiny IDX files, gzipped or not, load with pixels / 255 and labels as written', () => {
  for (const gz of [true, false]) {
    const dir = tinyDir(12, gz);
    try {
      const d = loadFashionMnist(dir);
      assert.equal([d.train.n, d.test.n], [12, 12]);
      assert.is(d.train.images[3 * 784 + 5], Math.fround(8 / 255)); // item 3, pixel 5: byte (3 + 5) mod 256
      assert.equal([...d.test.labels], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    } finally {
      rmSync(dir, { recursive: true });
    }
  }
});

test('a missing directory, a missing file and a truncated file name the problem and how to get the data', () => {
  throwsWith(() => loadFashionMnist('/nonexistent/fmnist'), '/nonexistent/fmnist', 'does not exist', ...HOW);
  const dir = tinyDir(5, true);
  try {
    rmSync(join(dir, 't10k-labels-idx1-ubyte.gz'));
    throwsWith(() => loadFashionMnist(dir), join(dir, 't10k-labels-idx1-ubyte.gz'), 'not found', ...HOW);
    // A .gz cut off mid-stream (as an interrupted download leaves it).
    const img = gzipSync(idx([5, 28, 28], new Uint8Array(5 * 784).fill(7)));
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte.gz'), gzipSync(idx([5], [0, 1, 2, 3, 4])));
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), img.subarray(0, Math.floor(img.length / 2)));
    throwsWith(() => loadFashionMnist(dir), join(dir, 'train-images-idx3-ubyte.gz'), 'truncated', ...HOW);
    // A complete gzip of a truncated IDX body.
    const body = idx([5, 28, 28], new Uint8Array(5 * 784).fill(7));
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(body.subarray(0, body.length - 10)));
    throwsWith(() => loadFashionMnist(dir), 'train-images-idx3-ubyte.gz', 'truncated', 'needs 3920 bytes', ...HOW);
    // Counts that disagree, and labels outside [0, 10).
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(idx([4, 28, 28], new Uint8Array(4 * 784))));
    throwsWith(() => loadFashionMnist(dir), '4 images', '5 labels', ...HOW);
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(body));
    writeFileSync(join(dir, 'train-labels-idx1-ubyte.gz'), gzipSync(idx([5], [0, 1, 12, 3, 4])));
    throwsWith(() => loadFashionMnist(dir), 'label 12 at item 2', 'outside [0, 10)', ...HOW);
    writeFileSync(join(dir, 'train-labels-idx1-ubyte.gz'), gzipSync(idx([5], [0, 1, 2, 3, 4])));
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(idx([5, 28, 27], new Uint8Array(5 * 28 * 27))));
    throwsWith(() => loadFashionMnist(dir), 'shape [5, 28, 27]', 'expected [N, 28, 28]');
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('split indices: val and train disjoint, sizes from valSize and trainLimit, deterministic for a seed', () => {
  const a = fashionSplitIndices(60000, 3, 5000);
  assert.equal([a.train.length, a.val.length], [55000, 5000]);
  const seen = new Uint8Array(60000);
  for (const i of a.train) seen[i]!++;
  for (const i of a.val) seen[i]!++;
  assert.ok(
    seen.every((c) => c === 1),
    'train ∪ val is the training file, each item once',
  );
  assert.equal(fashionSplitIndices(60000, 3, 5000).val, a.val);
  assert.not.equal(fashionSplitIndices(60000, 4, 5000).val, a.val);
  assert.is(fashionSplitIndices(60000, 3, 5000, 1234).train.length, 1234);
  assert.equal(fashionSplitIndices(60000, 3, 5000, 1234).val, a.val, 'trainLimit does not change val');
  throwsWith(() => fashionSplitIndices(60000, 3, 60000), 'valSize 60000', 'from 1 to 59999');
  throwsWith(() => fashionSplitIndices(60000, 3, 100, -1), 'trainLimit -1');
});

/** True when item i of `a` (len floats each) equals item j of `b`. */
const sameItem = (a: Float32Array, i: number, b: Float32Array, j: number, len: number) =>
  a.subarray(i * len, (i + 1) * len).every((v, k) => v === b[j * len + k]);

test(
  'cg-fmnist: split sizes, items taken from the right source items, ' + 'colour = gray × one colour, deterministic',
  () => {
    const opts = { seed: 7, dataDir: DEFAULT_DATA_DIR, valSize: 100, trainLimit: 300 };
    const d = buildDataset('cg-fmnist', opts);
    assert.equal(d.inputs, { gray: [1, 28, 28], color: [3, 28, 28] });
    assert.equal(d.tasks, { label: 10 });
    assert.equal([d.train.n, d.val.n, d.test.n], [300, 100, 10000]);
    assert.is(d.train.inputs.color!.length, 300 * 3 * 784);
    const idx = fashionSplitIndices(60000, 7, 100, 300);
    for (const [split, ids] of [
      [d.train, idx.train],
      [d.val, idx.val],
    ] as const) {
      for (let i = 0; i < split.n; i += 37) {
        assert.ok(sameItem(split.inputs.gray!, i, fm.train.images, ids[i]!, 784), 'item comes from its source index');
        assert.is(split.labels.label![i], fm.train.labels[ids[i]!]);
      }
    }
    assert.ok(sameItem(d.test.inputs.gray!, 4321, fm.test.images, 4321, 784), 'test is the t10k file');
    // Every colour channel is the gray image times one constant (checked on the brightest pixel).
    for (let i = 0; i < 5; i++) {
      const g = d.train.inputs.gray!.subarray(i * 784, (i + 1) * 784);
      const p = g.indexOf(Math.max(...g));
      for (let ch = 0; ch < 3; ch++) {
        const c = d.train.inputs.color![(3 * i + ch) * 784 + p]! / g[p]!;
        for (let q = 0; q < 784; q += 11)
          assert.ok(Math.abs(d.train.inputs.color![(3 * i + ch) * 784 + q]! - c * g[q]!) < 1e-6);
      }
    }
    const again = buildDataset('cg-fmnist', opts);
    assert.equal(again.val.inputs.color, d.val.inputs.color, 'deterministic for a seed');
    assert.not.equal(
      buildDataset('cg-fmnist', { ...opts, seed: 8 }).val.labels.label,
      d.val.labels.label,
      'another seed, another split',
    );
    assert.ok(
      d.description.includes('train 300') &&
        d.description.includes('val 100') &&
        d.description.includes('test 10000') &&
        d.description.includes('seed 7'),
    );
  },
);

test('multi-fmnist: [1, 28, 56] pairs, two tasks, left half = a same-split item with the left label', () => {
  const d = buildDataset('multi-fmnist', { seed: 2, dataDir: DEFAULT_DATA_DIR, valSize: 50, trainLimit: 80 });
  assert.equal(d.inputs, { image: [1, 28, 56] });
  assert.equal(d.tasks, { left: 10, right: 10 });
  assert.equal([d.train.n, d.val.n, d.test.n], [80, 50, 10000]);
  assert.is(d.val.inputs.image!.length, 50 * 28 * 56);
  // Each val item's left half is one of the val source items (pairs never cross splits).
  const ids = fashionSplitIndices(60000, 2, 50, 80).val;
  for (let i = 0; i < 6; i++) {
    const left = Float32Array.from(
      { length: 784 },
      (_, k) => d.val.inputs.image![i * 1568 + Math.floor(k / 28) * 56 + (k % 28)]!,
    );
    const j = [...ids].findIndex((s) => sameItem(left, 0, fm.train.images, s, 784));
    assert.ok(j >= 0, `val item ${i}'s left half is a val item`);
    assert.is(d.val.labels.left![i], fm.train.labels[ids[j]!]);
  }
});

test.after(() => clearFashionMnistCache());

test.run();
