// Fashion-MNIST from its four IDX files (gzipped as the Debian package `dataset-fashion-mnist`
// ships them, or plain), as images of floats in [0, 1]. Parsed once per directory per process:
// gunzipping and converting 70k images takes a moment, and every split and data set reuses them.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseIdx, type IdxArray } from './idx.ts';
import type { ImageSet } from './image-sets.ts';

export const FASHION_MNIST_CLASSES = 10;
export const FASHION_MNIST_SIDE = 28;

/** The four files, by role, without the `.gz` suffix. */
export const FASHION_MNIST_FILES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
} as const;

/** How to get the data, appended to every error. */
export const FASHION_MNIST_HELP =
  'install the Debian package dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`, or `npm run setup`), ' +
  'or pass --data-dir DIR holding the four Fashion-MNIST IDX files';

export interface FashionMnist {
  train: ImageSet;
  test: ImageSet;
}

const cache = new Map<string, FashionMnist>();

/** Loads (once per directory) the training (60k) and test (10k) sets from `dataDir`. */
export function loadFashionMnist(dataDir: string): FashionMnist {
  const dir = resolve(dataDir);
  const hit = cache.get(dir);
  if (hit) return hit;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new Error(`Fashion-MNIST: directory ${dir} does not exist; ${FASHION_MNIST_HELP}`);
  }
  const f = FASHION_MNIST_FILES;
  const loaded: FashionMnist = {
    train: imageSet(dir, f.trainImages, f.trainLabels),
    test: imageSet(dir, f.testImages, f.testLabels),
  };
  cache.set(dir, loaded);
  return loaded;
}

/** Forgets the parsed sets (tests that rewrite a directory; freeing memory). */
export function clearFashionMnistCache(): void {
  cache.clear();
}

function imageSet(dir: string, imagesName: string, labelsName: string): ImageSet {
  const [images, imagesPath] = readIdx(dir, imagesName);
  const [labels, labelsPath] = readIdx(dir, labelsName);
  const s = FASHION_MNIST_SIDE;
  if (images.shape.length !== 3 || images.shape[1] !== s || images.shape[2] !== s) {
    throw new Error(
      `Fashion-MNIST: ${imagesPath} has shape [${images.shape.join(', ')}], expected [N, ${s}, ${s}]; ` +
        `${FASHION_MNIST_HELP}`,
    );
  }
  if (labels.shape.length !== 1) {
    throw new Error(
      `Fashion-MNIST: ${labelsPath} has shape [${labels.shape.join(', ')}], expected [N]; ${FASHION_MNIST_HELP}`,
    );
  }
  const n = images.shape[0]!;
  if (labels.shape[0] !== n) {
    throw new Error(
      `Fashion-MNIST: ${imagesPath} holds ${n} images but ${labelsPath} holds ${labels.shape[0]} labels; ` +
        `${FASHION_MNIST_HELP}`,
    );
  }
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const v = labels.data[i]!;
    if (v >= FASHION_MNIST_CLASSES) {
      throw new Error(
        `Fashion-MNIST: ${labelsPath} has label ${v} at item ${i}, outside [0, ${FASHION_MNIST_CLASSES}); ` +
          `${FASHION_MNIST_HELP}`,
      );
    }
    y[i] = v;
  }
  const px = new Float32Array(images.data.length);
  for (let i = 0; i < px.length; i++) px[i] = images.data[i]! / 255;
  return { n, c: 1, h: s, w: s, images: px, labels: y };
}

/** Reads `name.gz`, else `name`, from `dir`; errors name the file and how to get it. */
function readIdx(dir: string, name: string): [IdxArray, string] {
  const gz = join(dir, `${name}.gz`);
  const plain = join(dir, name);
  const path = existsSync(gz) ? gz : existsSync(plain) ? plain : null;
  if (path === null) throw new Error(`Fashion-MNIST: ${gz} not found (nor ${plain}); ${FASHION_MNIST_HELP}`);
  let raw: Uint8Array;
  try {
    raw = readFileSync(path);
  } catch (e) {
    throw new Error(`Fashion-MNIST: cannot read ${path}: ${(e as Error).message}; ${FASHION_MNIST_HELP}`);
  }
  try {
    return [parseIdx(raw, path), path];
  } catch (e) {
    // parseIdx names the file itself; zlib errors (a cut-off .gz) do not.
    const msg = (e as Error).message;
    const detail = msg.startsWith(path) ? msg : `${path}: truncated or corrupt (${msg})`;
    throw new Error(`Fashion-MNIST: ${detail}; ${FASHION_MNIST_HELP}`);
  }
}
