// Builds a registered data set with its honest three-way split, deterministically from a seed.
// Fashion-MNIST based sets: the 60k training file is shuffled with the seed and split into val
// (the first valSize items of the permutation) and train (the rest, capped by trainLimit); the
// t10k file is the test split, used only for reporting. Every split derives its own seeds, and
// items of one split never feed another (Multi-FMNIST pairs are drawn within a split).
import type { Dataset, Split } from './dataset.ts';
import { colorModality, multiModality, type ImageSet } from './image-sets.ts';
import { loadFashionMnist, FASHION_MNIST_CLASSES } from './fmnist.ts';
import { deriveSeed, permutation } from './seed.ts';
import { Generator } from '../../engine/index.ts';
import { syntheticAV, SYNTHETIC_DEFAULT_CLASSES, SYNTHETIC_SIDE } from './synthetic.ts';
import { buildAvDataset, type AvDatasetOptions } from './av/dataset.ts';

/** The registered data sets (`--dataset`). */
export const DATASETS = ['cg-fmnist', 'multi-fmnist', 'synthetic-av', 'crema-d', 'ave'] as const;
export type DatasetName = (typeof DATASETS)[number];

export interface BuildDatasetOptions {
  seed: number;
  /** Fashion-MNIST directory (ignored by synthetic-av). */
  dataDir: string;
  /** At most this many training items (0 or absent: all). */
  trainLimit?: number;
  /** Items of the training file held out for validation (default 5000; Fashion-MNIST sets). */
  valSize?: number;
  /** synthetic-av training items (default 256); val and test get a quarter each (at least 8). */
  syntheticSize?: number;
  /** crema-d / ave (dataDir: a directory made by `mmpareto prepare`; the split is the one it made). */
  av?: Pick<AvDatasetOptions, 'frames' | 'imageSize' | 'audio'>;
}

export const DEFAULT_VAL_SIZE = 5000;
export const DEFAULT_SYNTHETIC_SIZE = 256;

/** Indices into the training file for train and val: disjoint, from one seeded permutation. */
export function fashionSplitIndices(
  total: number,
  seed: number,
  valSize: number,
  trainLimit = 0,
): { train: Int32Array; val: Int32Array } {
  if (!Number.isInteger(valSize) || valSize < 1 || valSize >= total) {
    throw new Error(
      `valSize ${valSize} is invalid: it must be an integer from 1 to ${total - 1} (the training file has ${total} ` +
        `items)`,
    );
  }
  if (!Number.isInteger(trainLimit) || trainLimit < 0)
    throw new Error(`trainLimit ${trainLimit} is invalid: it must be an integer >= 0 (0: all)`);
  const perm = permutation(total, new Generator(deriveSeed(seed, 'fashion-mnist-split')));
  const trainCount = trainLimit > 0 ? Math.min(trainLimit, total - valSize) : total - valSize;
  return { val: perm.slice(0, valSize), train: perm.slice(valSize, valSize + trainCount) };
}

export function buildDataset(name: DatasetName, opts: BuildDatasetOptions): Dataset {
  if (!(DATASETS as readonly string[]).includes(name))
    throw new Error(`unknown dataset '${name}'; valid choices: ${DATASETS.join(', ')}`);
  if (!Number.isFinite(opts.seed)) throw new Error(`dataset seed ${opts.seed} is not a finite number`);
  switch (name) {
    case 'cg-fmnist':
      return cgFmnist(opts);
    case 'multi-fmnist':
      return multiFmnist(opts);
    case 'synthetic-av':
      return syntheticDataset(opts);
    case 'crema-d':
    case 'ave':
      if (!opts.dataDir)
        throw new Error(
          `--dataset ${name} needs --data-dir DIR, ` +
            `a directory made by \`mmpareto prepare ${name} --src RAW --out DIR\``,
        );
      return buildAvDataset(name, opts.dataDir, { seed: opts.seed, trainLimit: opts.trainLimit, ...opts.av });
  }
}

type SplitName = 'train' | 'val' | 'test';

/** The train/val/test gray item sets of Fashion-MNIST for these options, plus a description. */
function fashionSplits(opts: BuildDatasetOptions): { sets: Record<SplitName, ImageSet>; sizes: string } {
  const fm = loadFashionMnist(opts.dataDir);
  const valSize = opts.valSize ?? DEFAULT_VAL_SIZE;
  const idx = fashionSplitIndices(fm.train.n, opts.seed, valSize, opts.trainLimit ?? 0);
  const sets = { train: takeItems(fm.train, idx.train), val: takeItems(fm.train, idx.val), test: fm.test };
  const sizes =
    `train ${sets.train.n} and val ${sets.val.n} (disjoint, from the ${fm.train.n}-item training ` +
    `file), test ${sets.test.n} (t10k)`;
  return { sets, sizes };
}

function cgFmnist(opts: BuildDatasetOptions): Dataset {
  const { sets, sizes } = fashionSplits(opts);
  const split = (s: SplitName): Split => {
    const gray = sets[s];
    const { color } = colorModality(gray, s, deriveSeed(opts.seed, 'cg-fmnist', s));
    return { n: gray.n, inputs: { gray: gray.images, color: color.images }, labels: { label: gray.labels } };
  };
  const side = sets.train.h;
  return {
    name: 'cg-fmnist',
    inputs: { gray: [1, side, side], color: [3, side, side] },
    tasks: { label: FASHION_MNIST_CLASSES },
    ...splits(split),
    description:
      `CG-FMNIST (gray + class-coloured in train, randomly coloured in val/test) from Fashion-MNIST at ` +
      `${opts.dataDir}: ${sizes}; seed ${opts.seed}`,
  };
}

function multiFmnist(opts: BuildDatasetOptions): Dataset {
  const { sets, sizes } = fashionSplits(opts);
  const split = (s: SplitName): Split => {
    const items = sets[s];
    const m = multiModality(items, items.n, deriveSeed(opts.seed, 'multi-fmnist', s));
    return { n: items.n, inputs: { image: m.image.images }, labels: { left: m.left, right: m.right } };
  };
  const side = sets.train.h;
  return {
    name: 'multi-fmnist',
    inputs: { image: [1, side, 2 * side] },
    tasks: { left: FASHION_MNIST_CLASSES, right: FASHION_MNIST_CLASSES },
    ...splits(split),
    description:
      `Multi-FMNIST (pairs side by side, right half 50% salt-and-pepper, pairs drawn within each split) ` +
      `from Fashion-MNIST at ${opts.dataDir}: ${sizes}; seed ${opts.seed}`,
  };
}

function syntheticDataset(opts: BuildDatasetOptions): Dataset {
  const size = opts.syntheticSize ?? DEFAULT_SYNTHETIC_SIZE;
  if (!Number.isInteger(size) || size < 1)
    throw new Error(`syntheticSize ${size} is invalid: it must be an integer >= 1`);
  const limit = opts.trainLimit ?? 0;
  if (!Number.isInteger(limit) || limit < 0)
    throw new Error(`trainLimit ${limit} is invalid: it must be an integer >= 0 (0: all)`);
  const sizes: Record<SplitName, number> = {
    train: limit > 0 ? Math.min(limit, size) : size,
    val: Math.max(8, Math.round(size / 4)),
    test: Math.max(8, Math.round(size / 4)),
  };
  const split = (s: SplitName): Split => {
    const d = syntheticAV({ n: sizes[s], seed: deriveSeed(opts.seed, 'synthetic-av', s) });
    return { n: sizes[s], inputs: { audio: d.audio, visual: d.visual }, labels: { label: d.labels } };
  };
  const S = SYNTHETIC_SIDE;
  return {
    name: 'synthetic-av',
    inputs: { audio: [1, S, S], visual: [3, S, S] },
    tasks: { label: SYNTHETIC_DEFAULT_CLASSES },
    ...splits(split),
    description:
      `synthetic audio-visual (generated; audio dominant): train ${sizes.train}, val ${sizes.val}, test ` +
      `${sizes.test}, each from its own derived seed; seed ${opts.seed}`,
  };
}

/** The items at `idx`, copied into a new set. */
/** The three splits from one builder. */
function splits(split: (s: SplitName) => Split): Pick<Dataset, SplitName> {
  return { train: split('train'), val: split('val'), test: split('test') };
}

function takeItems(set: ImageSet, idx: Int32Array): ImageSet {
  const len = set.c * set.h * set.w;
  const images = new Float32Array(idx.length * len);
  const labels = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    const j = idx[i]!;
    images.set(set.images.subarray(j * len, (j + 1) * len), i * len);
    labels[i] = set.labels[j]!;
  }
  return { n: idx.length, c: set.c, h: set.h, w: set.w, images, labels };
}
