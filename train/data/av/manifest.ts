// manifest.json of a prepared data set: what was made, from what, how, and a checksum of every
// clip's files. `mmpareto prepare` writes it last (atomically), so a directory without one is
// unfinished; the loaders refuse it.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AvDatasetName, SplitName } from './sources.ts';

export const MANIFEST_FORMAT = 'mmpareto-av/1';

/** How the files were made; a re-run with a different recipe refuses to mix into the same --out. */
export interface Recipe {
  dataset: AvDatasetName;
  /** Mono 16-bit PCM WAV at this rate (ffmpeg -ac 1 -ar RATE -c:a pcm_s16le). */
  sampleRate: number;
  /**
   * Frames: one per second at t = 0.5, 1.5, … s (ffmpeg -vf trim=start=0.5,setpts=PTS-STARTPTS,fps=1), JPEG -q:v 2, at
   * the source resolution.
   */
  framesPerSecond: 1;
  frameOffsetSeconds: 0.5;
  jpegQuality: 2;
  /** 'official' (the download's own lists), 'csv' (--train-csv/--test-csv, val carved from train) or 'seeded'. */
  split: 'official' | 'csv' | 'seeded';
  splitSeed: number;
  valFraction: number;
  testFraction: number;
  ffmpeg: string;
}

export interface ManifestItem {
  name: string;
  className: string;
  label: number;
  split: SplitName;
  /** Audio samples at recipe.sampleRate. */
  samples: number;
  /** JPEG frames visual/<name>/frame_00001.jpg …. */
  frames: number;
  /** sha256 of the WAV's bytes, then each frame's bytes in order. */
  sha256: string;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  recipe: Recipe;
  classes: string[];
  counts: Record<SplitName, Record<string, number>>;
  items: ManifestItem[];
  /** Source clips left out, with the reason (missing or corrupt files). */
  skipped: { name: string; reason: string }[];
  /** sha256 of the JSON of `items` (detects an edited or damaged manifest). */
  checksum: string;
}

export const itemsChecksum = (items: readonly ManifestItem[]): string =>
  createHash('sha256').update(JSON.stringify(items)).digest('hex');

export const audioPath = (root: string, name: string) => join(root, 'audio', `${name}.wav`);
export const framesDir = (root: string, name: string) => join(root, 'visual', name);
export const frameFile = (i: number) => `frame_${String(i + 1).padStart(5, '0')}.jpg`;

/** Reads and checks OUT/manifest.json. */
export function readManifest(root: string): Manifest {
  const path = join(root, 'manifest.json');
  if (!existsSync(root))
    throw new Error(
      `--data-dir ${root} does not exist (prepare it first: mmpareto prepare crema-d|ave --src RAW --out ${root})`,
    );
  if (!existsSync(path))
    throw new Error(
      `${root} has no manifest.json: it is not a prepared data set, or \`mmpareto prepare\` did not finish there ` +
        `(run it again; finished clips are kept)`,
    );
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  } catch (e) {
    throw new Error(`${path} is not valid JSON (${(e as Error).message}); run \`mmpareto prepare\` again`);
  }
  if (m.format !== MANIFEST_FORMAT)
    throw new Error(`${path}: format '${String(m.format)}', expected '${MANIFEST_FORMAT}'`);
  if (!Array.isArray(m.items) || itemsChecksum(m.items) !== m.checksum)
    throw new Error(
      `${path}: its item list does not match its checksum (edited or damaged); run \`mmpareto prepare\` again`,
    );
  return m;
}
