// A prepared CREMA-D / AVE directory (manifest.json, audio/, visual/) as the trainer's Dataset.
// Items are read from disk batch by batch (the splits hold only labels): a data set of 224²
// frames does not fit in memory as floats.
//
// Per item:
// - audio: the WAV as floats in [−1, 1), repeated end to end and cut to the recipe's length
//   (OGM-GE's np.tile: a clip shorter than that, even shorter than one STFT window, is padded
//   with itself), clipped to [−1, 1]; uploaded as (B, samples) and turned into the spectrogram on
//   the GPU in the same batch (see AUDIO_FEATURES): 'stft' (OGM-GE: log(|STFT| + 1e-7), n_fft 512,
//   hop 353, 22,050 Hz → 1 × 257 × T) or 'fbank' (Kaldi log mel, 128 bins, 25/10 ms, pre-emphasis
//   0.97, Hanning → 1 × T × 128).
// - visual: T frames (--frames) from the clip's K one-per-second JPEGs: the K frames are cut into
//   T segments of ⌊K/T⌋ (the remainder at the end is unused, as the authors' code), and frame
//   i·seg + r is taken from segment i, r uniform in [0, seg) in training and r = ⌊seg/2⌋ (the
//   middle) otherwise; with K < T, frame ⌊i·K/T⌋ (frames repeat). Training: torchvision's
//   RandomResizedCrop(S) and a horizontal flip with probability ½, per frame; otherwise a resize
//   to S × S. ImageNet mean/std normalisation. Shape T × 3 × S × S.
// The random draws of item j in epoch e come from a generator seeded by (seed, e, j) alone (frame
// choice, then per frame the crop and the flip), so batches are reproducible and resumable.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Generator, kaldiFbank, noGrad, ogmGeSpectrogram, reshape, tidy, type Tensor } from '../../../engine/index.ts';
import type { Dataset, ItemSource, Split } from '../dataset.ts';
import { deriveSeed, permutation } from '../seed.ts';
import { decodeJpeg, randomResizedCropBox, toNormalizedCHW } from './image.ts';
import { audioPath, frameFile, framesDir, readManifest, type Manifest, type ManifestItem } from './manifest.ts';
import type { AvDatasetName, SplitName } from './sources.ts';
import { parseWav } from './wav.ts';

export const AUDIO_FEATURES = ['stft', 'fbank'] as const;
export type AudioFeatures = (typeof AUDIO_FEATURES)[number];

/** Seconds of audio per clip: CREMA-D as OGM-GE (3 s); AVE clips are 10 s long. */
export const AUDIO_SECONDS: Record<AvDatasetName, number> = { 'crema-d': 3, ave: 10 };

export const DEFAULT_FRAMES = 2;
export const DEFAULT_IMAGE_SIZE = 224;

export interface AvDatasetOptions {
  seed: number;
  frames?: number;
  imageSize?: number;
  audio?: AudioFeatures;
  /** At most this many training items (0: all), a seeded subset. */
  trainLimit?: number;
}

/** The frames an item uses: T indices into its K frames (see the file header). */
export function frameIndices(k: number, t: number, train: boolean, g: Generator | null): number[] {
  if (k < t) return Array.from({ length: t }, (_, i) => Math.floor((i * k) / t));
  const seg = Math.floor(k / t);
  return Array.from({ length: t }, (_, i) => i * seg + (train ? g!.int(seg) : Math.floor(seg / 2)));
}

/** Fills `out` with `samples` repeated end to end (np.tile then a cut), clipped to [−1, 1]. */
export function tileClip(samples: Float32Array, out: Float32Array): void {
  for (let i = 0; i < out.length; i += samples.length)
    out.set(samples.subarray(0, Math.min(samples.length, out.length - i)), i);
  for (let i = 0; i < out.length; i++) out[i] = Math.max(-1, Math.min(1, out[i]!));
}

interface AudioRecipe {
  samples: number;
  /** Per-item model input shape. */
  shape: number[];
  onDevice: (x: Tensor) => Tensor;
  describe: string;
}

function audioRecipe(features: AudioFeatures, m: Manifest): AudioRecipe {
  const sr = m.recipe.sampleRate;
  const seconds = AUDIO_SECONDS[m.recipe.dataset];
  const samples = seconds * sr;
  if (features === 'stft') {
    if (sr !== 22050)
      throw new Error(
        `--audio stft is OGM-GE's spectrogram at 22,050 Hz; this data set was prepared at ${sr} Hz (prepare it ` +
          `again with --sample-rate 22050, or use --audio fbank)`,
      );
    const t = 1 + Math.floor(samples / 353);
    return {
      samples,
      shape: [1, 257, t],
      describe:
        `log(|STFT| + 1e-7), n_fft 512, hop 353, periodic Hann, reflect-centred, ${seconds} s at ${sr} Hz ` +
        `→ 1×257×${t}`,
      onDevice: (x) => tidy(() => reshape(ogmGeSpectrogram(x), [x.shape[0]!, 1, 257, t])),
    };
  }
  const window = Math.trunc(sr * 25 * 0.001);
  const shift = Math.trunc(sr * 10 * 0.001);
  const t = 1 + Math.floor((samples - window) / shift);
  const o = {
    sampleRate: sr,
    nMels: 128,
    frameLengthMs: 25,
    frameShiftMs: 10,
    preemphasis: 0.97,
    removeDcOffset: true,
    window: 'hanning',
    lowFreq: 20,
    highFreq: 0,
  } as const;
  return {
    samples,
    shape: [1, t, 128],
    describe:
      `Kaldi log mel fbank, 128 bins, 25/10 ms, pre-emphasis 0.97, Hanning, ${seconds} s at ${sr} Hz → ` + `1×${t}×128`,
    onDevice: (x) => tidy(() => reshape(kaldiFbank(x, o), [x.shape[0]!, 1, t, 128])),
  };
}

class ClipSource implements ItemSource {
  readonly hostShapes: Record<string, number[]>;
  readonly onDevice: Record<string, (x: Tensor) => Tensor>;
  private readonly wav: Float32Array;

  constructor(
    private readonly root: string,
    private readonly items: readonly ManifestItem[],
    private readonly index: Int32Array,
    private readonly audio: AudioRecipe,
    private readonly frames: number,
    private readonly size: number,
    private readonly train: boolean,
    private readonly seed: number,
    private readonly sampleRate: number,
  ) {
    this.hostShapes = { audio: [audio.samples], visual: [frames, 3, size, size] };
    this.onDevice = { audio: (x) => noGrad(() => audio.onDevice(x)) };
    this.wav = new Float32Array(audio.samples);
  }

  /** Manifest item of split item i. */
  item(i: number): ManifestItem {
    return this.items[this.index[i]!]!;
  }

  /** The frame indices split item i uses in `epoch`. */
  frameChoice(i: number, epoch: number): number[] {
    return frameIndices(this.item(i).frames, this.frames, this.train, this.train ? this.generator(i, epoch) : null);
  }

  private generator(i: number, epoch: number): Generator {
    return new Generator(deriveSeed(this.seed, 'av-augment', epoch, this.index[i]!));
  }

  read(items: Int32Array, dst: Record<string, Float32Array>, epoch: number): void {
    try {
      this.readItems(items, dst, epoch);
    } catch (e) {
      // A prepared file that vanished or was damaged after prepare: name it (the error does) and say how to repair.
      throw new Error(
        `${(e as Error).message} — run \`mmpareto prepare\` again with --out ${this.root}: it re-checks every clip ` +
          `against the manifest and remakes damaged ones`,
      );
    }
  }

  private readItems(items: Int32Array, dst: Record<string, Float32Array>, epoch: number): void {
    const a = dst.audio!;
    const v = dst.visual!;
    const frameLen = 3 * this.size * this.size;
    items.forEach((i, b) => {
      const it = this.item(i);
      const wavFile = audioPath(this.root, it.name);
      const wav = parseWav(readFileSync(wavFile), wavFile);
      if (wav.sampleRate !== this.sampleRate || wav.samples.length === 0)
        throw new Error(
          `${wavFile}: ${wav.samples.length} samples at ${wav.sampleRate} Hz, the manifest says ${it.samples} at ` +
            `${this.sampleRate} Hz; run \`mmpareto prepare\` again to repair it`,
        );
      tileClip(wav.samples, this.wav);
      a.set(this.wav, b * this.audio.samples);
      const g = this.generator(i, epoch);
      const chosen = frameIndices(it.frames, this.frames, this.train, this.train ? g : null);
      chosen.forEach((f, t) => {
        const file = join(framesDir(this.root, it.name), frameFile(f));
        const img = decodeJpeg(readFileSync(file), file);
        const box = this.train
          ? randomResizedCropBox(img.width, img.height, g)
          : { top: 0, left: 0, height: img.height, width: img.width };
        const flip = this.train && g.uniform() < 0.5;
        toNormalizedCHW(
          img,
          box,
          this.size,
          flip,
          v.subarray((b * this.frames + t) * frameLen, (b * this.frames + t + 1) * frameLen),
        );
      });
    });
  }
}

export function buildAvDataset(name: AvDatasetName, dir: string, o: AvDatasetOptions): Dataset {
  const m = readManifest(dir);
  if (m.recipe.dataset !== name)
    throw new Error(`${dir} holds a prepared '${m.recipe.dataset}' data set, not '${name}'`);
  const frames = o.frames ?? DEFAULT_FRAMES;
  const size = o.imageSize ?? DEFAULT_IMAGE_SIZE;
  if (!Number.isInteger(frames) || frames < 1) throw new Error(`frames ${frames} must be an integer >= 1`);
  if (!Number.isInteger(size) || size < 8) throw new Error(`image size ${size} must be an integer >= 8`);
  const audio = audioRecipe(o.audio ?? 'stft', m);
  const limit = o.trainLimit ?? 0;
  const split = (s: SplitName): Split => {
    let index = Int32Array.from(m.items.flatMap((it, i) => (it.split === s ? [i] : [])));
    if (s === 'train' && limit > 0 && limit < index.length) {
      const p = permutation(index.length, new Generator(deriveSeed(o.seed, 'av-train-limit')));
      index = Int32Array.from(p.subarray(0, limit), (k) => index[k]!).sort();
    }
    const labels = Int32Array.from(index, (k) => m.items[k]!.label);
    const source = new ClipSource(dir, m.items, index, audio, frames, size, s === 'train', o.seed, m.recipe.sampleRate);
    return { n: index.length, inputs: {}, labels: { label: labels }, source };
  };
  const [train, val, test] = (['train', 'val', 'test'] as const).map(split) as [Split, Split, Split];
  const title = name === 'crema-d' ? 'CREMA-D' : 'AVE';
  return {
    name,
    inputs: { audio: audio.shape, visual: [frames, 3, size, size] },
    tasks: { label: m.classes.length },
    train,
    val,
    test,
    description:
      `${title} prepared at ${dir} (${m.recipe.split} split): train ${train.n}, val ${val.n}, test ` +
      `${test.n} clips, ${m.classes.length} classes; audio ${audio.describe}; visual ${frames} ` +
      `frame(s) at ${size}², RandomResizedCrop + flip in training; seed ${o.seed}`,
  };
}
