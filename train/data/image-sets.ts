// Multimodal data sets built from grayscale item images (Fashion-MNIST), deterministically from
// a seed, on the host:
// - CG-FMNIST (after the paper's CG-MNIST, colour recipe of Kim et al. 2019): modality `gray` is
//   the 1×H×W image; modality `color` is the same item as a monochromatic 3×H×W image, the gray
//   values times one colour. In the training split the colour is the class's mean colour plus
//   Gaussian jitter of variance 0.03 per channel (clamped to [0, 1]) — strongly label-correlated;
//   in validation and test it is uniform in [0, 1]³ — uncorrelated.
// - Multi-FMNIST (the paper's Table 5 MultiMNIST extension): two items side by side (H×2W), the
//   right half with 50% salt-and-pepper noise; two tasks, the left and the right label.
import { Generator } from '../../engine/index.ts';

/** N images of C×H×W floats in [0, 1], row-major, with their labels. */
export interface ImageSet {
  n: number;
  c: number;
  h: number;
  w: number;
  images: Float32Array;
  labels: Int32Array;
}

/** Ten well-separated class colours (RGB in [0, 1]): the training split's mean colours. */
export const CLASS_COLORS: readonly (readonly [number, number, number])[] = [
  [0.9, 0.1, 0.1],
  [0.1, 0.9, 0.1],
  [0.1, 0.1, 0.9],
  [0.9, 0.9, 0.1],
  [0.9, 0.1, 0.9],
  [0.1, 0.9, 0.9],
  [0.9, 0.5, 0.1],
  [0.5, 0.1, 0.9],
  [0.1, 0.5, 0.5],
  [0.6, 0.6, 0.6],
];
export const COLOR_JITTER_VARIANCE = 0.03;

const clamp01 = (x: number) => Math.min(1, Math.max(0, x));

/** The colour modality of CG-FMNIST for a split; returns the colour used per item too. */
export function colorModality(
  gray: ImageSet,
  split: 'train' | 'val' | 'test',
  seed: number,
): { color: ImageSet; colors: Float32Array } {
  if (gray.c !== 1) throw new Error(`colorModality: expected 1-channel images, got ${gray.c} channels`);
  const g = new Generator(seed);
  const px = gray.h * gray.w;
  const images = new Float32Array(gray.n * 3 * px);
  const colors = new Float32Array(gray.n * 3);
  const std = Math.sqrt(COLOR_JITTER_VARIANCE);
  for (let i = 0; i < gray.n; i++) {
    const y = gray.labels[i]!;
    const mean = CLASS_COLORS[y % CLASS_COLORS.length]!;
    for (let ch = 0; ch < 3; ch++) {
      const c = split === 'train' ? clamp01(mean[ch]! + std * g.normal()) : g.uniform();
      colors[3 * i + ch] = c;
      const src = gray.images.subarray(i * px, (i + 1) * px);
      const dst = images.subarray((3 * i + ch) * px, (3 * i + ch + 1) * px);
      for (let p = 0; p < px; p++) dst[p] = src[p]! * c;
    }
  }
  return { color: { ...gray, c: 3, images, labels: gray.labels }, colors };
}

/** Multi-FMNIST from a pool of items: pairs drawn at random, right half 50% salt-and-pepper. */
export function multiModality(
  gray: ImageSet,
  count: number,
  seed: number,
  noise = 0.5,
): { image: ImageSet; left: Int32Array; right: Int32Array } {
  if (gray.c !== 1) throw new Error(`multiModality: expected 1-channel images, got ${gray.c} channels`);
  const g = new Generator(seed);
  const { h, w } = gray;
  const px = h * w;
  const images = new Float32Array(count * h * 2 * w);
  const left = new Int32Array(count);
  const right = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const a = g.int(gray.n);
    const b = g.int(gray.n);
    left[i] = gray.labels[a]!;
    right[i] = gray.labels[b]!;
    for (let r = 0; r < h; r++) {
      for (let x = 0; x < w; x++) {
        const row = (i * h + r) * 2 * w;
        images[row + x] = gray.images[a * px + r * w + x]!;
        const v = gray.images[b * px + r * w + x]!;
        images[row + w + x] = g.uniform() < noise ? (g.uniform() < 0.5 ? 0 : 1) : v;
      }
    }
  }
  return { image: { n: count, c: 1, h, w: 2 * w, images, labels: left }, left, right };
}
