// The crema-d / ave loaders on a prepared fixture: shapes and labels; the audio spectrogram of a
// batch against the float64 OGM-GE reference of the tiled clip (including a clip shorter than one
// STFT window); deterministic seeded augmentation; the test-time frame choice; the Kaldi fbank
// option; bad inputs (a corrupt frame, a sample rate the recipe cannot use). Frame transforms
// (crop box, resize, flip, normalisation) against direct computations.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Generator, liveTensors } from '../../engine/index.ts';
import { buildDataset } from '../../train/data/registry.ts';
import { Loader, disposeBatch } from '../../train/data/loader.ts';
import { frameIndices, tileClip } from '../../train/data/av/dataset.ts';
import {
  IMAGENET_MEAN,
  IMAGENET_STD,
  decodeJpeg,
  randomResizedCropBox,
  toNormalizedCHW,
} from '../../train/data/av/image.ts';
import { readManifest } from '../../train/data/av/manifest.ts';
import { CorruptMediaError, encodeWav, parseWav } from '../../train/data/av/wav.ts';
import { AVE_CLASSES, preparedAve, preparedCremaD, root } from '../fixtures/av.ts';
import { logBound, stftRef, U } from '../fixtures/audio-reference.ts';
import { throwsWith } from '../helpers.ts';

const test = suite('av-loader');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

const av = { frames: 2, imageSize: 32 };

test('crema-d batches: shapes, labels from the manifest, the OGM-GE spectrogram of the tiled clip', async () => {
  const { fixture, out } = await preparedCremaD();
  const m = readManifest(out);
  const d = buildDataset('crema-d', { seed: 3, dataDir: out, av });
  assert.equal(d.inputs, { audio: [1, 257, 188], visual: [2, 3, 32, 32] });
  assert.equal(d.tasks, { label: 6 });
  const val = m.items.filter((i) => i.split === 'val');
  assert.equal(
    [...d.val.labels.label!],
    val.map((i) => i.label),
  );
  const loader = new Loader(d.val, d, { batchSize: 4, shuffle: false, seed: 0 });
  const b = loader.batches(0).next().value!;
  assert.equal(b.inputs.audio!.shape, [4, 1, 257, 188]);
  assert.equal(b.inputs.visual!.shape, [4, 2, 3, 32, 32]);
  assert.equal(
    [...(await b.labels.label!.toArray())],
    val.slice(0, 4).map((i) => i.label),
  );
  const spec = (await b.inputs.audio!.toArray()) as Float32Array;
  disposeBatch(b);
  // Each item: the WAV tiled to 3 s (66,150 samples), then log(|STFT| + 1e-7) — also for the 221-sample clip.
  const short = val.findIndex((i) => i.name === fixture.shortClip);
  assert.ok(short >= 0 && short < 4, 'the short clip is in this batch');
  for (const k of [0, short]) {
    const wav = parseWav(readFileSync(join(out, 'audio', `${val[k]!.name}.wav`)), 'wav');
    const tiled = new Float32Array(66150);
    tileClip(wav.samples, tiled);
    const r = stftRef(Float64Array.from(tiled), 512, 353, true, 'reflect');
    const got = spec.subarray(k * 257 * 188, (k + 1) * 257 * 188);
    for (let i = 0; i < got.length; i++) {
      const bound = logBound(r.mag[i]! + 1e-7, r.bound[i]! + U * (r.mag[i]! + 1e-7), 1e-7);
      if (!(Math.abs(got[i]! - Math.log(r.mag[i]! + 1e-7)) <= bound))
        assert.unreachable(`item ${k} element ${i}: ${got[i]} vs ${Math.log(r.mag[i]! + 1e-7)} ± ${bound}`);
    }
  }
});

test('ave batches: 10 s of audio → 1 × 257 × 625, labels in sorted-class order', async () => {
  const { ids, out } = await preparedAve();
  const d = buildDataset('ave', { seed: 0, dataDir: out, av });
  assert.equal(d.inputs, { audio: [1, 257, 625], visual: [2, 3, 32, 32] });
  const classes = [...AVE_CLASSES].sort();
  const m = readManifest(out);
  assert.equal(
    [...d.test.labels.label!],
    m.items.filter((i) => i.split === 'test').map((i) => classes.indexOf(ids.get(i.name)!)),
  );
  const b = new Loader(d.test, d, { batchSize: 3, shuffle: false, seed: 0 }).batches(0).next().value!;
  assert.equal(b.inputs.audio!.shape, [3, 1, 257, 625]);
  const a = (await b.inputs.audio!.toArray()) as Float32Array;
  disposeBatch(b);
  assert.ok(a.every(Number.isFinite));
});

test('tileClip repeats a clip end to end (np.tile then a cut) and clips to [-1, 1]', () => {
  const out = new Float32Array(7);
  tileClip(Float32Array.from([0.5, -2, 0.25]), out);
  assert.equal([...out], [0.5, -1, 0.25, 0.5, -1, 0.25, 0.5]);
});

test(
  'augmentation is seeded and deterministic: same (seed, ' + 'epoch) same batch; another epoch or seed differs',
  async () => {
    const { out } = await preparedCremaD();
    const visual = async (seed: number, epoch: number) => {
      const d = buildDataset('crema-d', { seed, dataDir: out, av });
      const b = new Loader(d.train, d, { batchSize: 6, shuffle: false, seed }).batches(epoch).next().value!;
      const v = (await b.inputs.visual!.toArray()) as Float32Array;
      disposeBatch(b);
      return v;
    };
    const a = await visual(5, 0);
    assert.equal(await visual(5, 0), a);
    assert.not.equal(await visual(5, 1), a);
    assert.not.equal(await visual(6, 0), a);
  },
);

test(
  'frame choice: T segments of ⌊K/T⌋, random within each in training, ' + 'the middle one at test; repeats when K < T',
  async () => {
    assert.equal(frameIndices(4, 2, false, null), [1, 3]);
    assert.equal(frameIndices(5, 2, false, null), [1, 3]);
    assert.equal(frameIndices(2, 2, false, null), [0, 1]);
    assert.equal(frameIndices(1, 3, false, null), [0, 0, 0]);
    assert.equal(frameIndices(2, 4, true, new Generator(1)), [0, 0, 1, 1]);
    const seen = [new Set<number>(), new Set<number>()];
    for (let s = 0; s < 200; s++)
      frameIndices(6, 2, true, new Generator(s)).forEach((f, i) => {
        seen[i]!.add(f);
      });
    assert.equal(
      [[...seen[0]!].sort(), [...seen[1]!].sort()],
      [
        [0, 1, 2],
        [3, 4, 5],
      ],
    );
    // The validation loader's frames of the 4-frame clip are frames 2 and 4, resized whole.
    const { fixture, out } = await preparedCremaD();
    const d = buildDataset('crema-d', { seed: 0, dataDir: out, av });
    const m = readManifest(out);
    const val = m.items.filter((i) => i.split === 'val');
    const k = val.findIndex((i) => i.name === fixture.longClip);
    assert.ok(k >= 0, 'the long clip is in val');
    const b = new Loader(d.val, d, { batchSize: val.length, shuffle: false, seed: 0 }).batches(0).next().value!;
    const v = (await b.inputs.visual!.toArray()) as Float32Array;
    disposeBatch(b);
    const len = 3 * 32 * 32;
    for (const [t, f] of [
      [0, 2],
      [1, 4],
    ] as const) {
      const img = decodeJpeg(readFileSync(join(out, 'visual', fixture.longClip, `frame_0000${f}.jpg`)), 'frame');
      const want = new Float32Array(len);
      toNormalizedCHW(img, { top: 0, left: 0, width: img.width, height: img.height }, 32, false, want);
      assert.equal(v.subarray((k * 2 + t) * len, (k * 2 + t + 1) * len), want, `frame ${f}`);
    }
  },
);

test('--audio fbank: Kaldi log mel, 128 bins, 25/10 ms at 22,050 Hz → 1 × 299 × 128', async () => {
  const { out } = await preparedCremaD();
  const d = buildDataset('crema-d', { seed: 0, dataDir: out, av: { ...av, audio: 'fbank' } });
  assert.equal(d.inputs.audio, [1, 299, 128]);
  const b = new Loader(d.test, d, { batchSize: 2, shuffle: false, seed: 0 }).batches(0).next().value!;
  assert.equal(b.inputs.audio!.shape, [2, 1, 299, 128]);
  const a = (await b.inputs.audio!.toArray()) as Float32Array;
  disposeBatch(b);
  assert.ok(a.every(Number.isFinite));
});

test(
  'bad input: a corrupt frame names the file; ' +
    'stft at 16 kHz says what to do; no manifest; an unprepared --data-dir',
  async () => {
    const { out } = await preparedCremaD();
    const copy = join(root, 'prepared-copy');
    cpSync(out, copy, { recursive: true });
    const m = readManifest(copy);
    const it = m.items.find((i) => i.split === 'test')!;
    const jpg = join(copy, 'visual', it.name, 'frame_00001.jpg');
    writeFileSync(jpg, readFileSync(jpg).subarray(0, 200));
    const d = buildDataset('crema-d', { seed: 0, dataDir: copy, av });
    const loader = new Loader(d.test, d, { batchSize: d.test.n, shuffle: false, seed: 0 });
    throwsWith(() => loader.batches(0).next(), jpg, 'not a decodable JPEG', 'run `mmpareto prepare` again');
    const edited = { ...m, recipe: { ...m.recipe, sampleRate: 16000 } };
    writeFileSync(join(copy, 'manifest.json'), JSON.stringify(edited));
    throwsWith(
      () => buildDataset('crema-d', { seed: 0, dataDir: copy, av }),
      '22,050 Hz',
      'prepared at 16000 Hz',
      '--audio fbank',
    );
    writeFileSync(join(copy, 'manifest.json'), JSON.stringify({ ...m, items: m.items.slice(1) }));
    throwsWith(() => buildDataset('crema-d', { seed: 0, dataDir: copy, av }), 'does not match its checksum');
    const empty = join(root, 'empty-dir');
    mkdirSync(empty, { recursive: true });
    throwsWith(() => buildDataset('crema-d', { seed: 0, dataDir: empty, av }), 'no manifest.json', 'mmpareto prepare');
    throwsWith(() => buildDataset('ave', { seed: 0, dataDir: out, av }), "a prepared 'crema-d' data set, not 'ave'");
    throwsWith(
      () => buildDataset('crema-d', { seed: 0, dataDir: '', av }),
      '--data-dir DIR',
      'mmpareto prepare crema-d',
    );
  },
);

test('WAV: 16-bit PCM mono round trip; anything else is refused naming the file', () => {
  const w = parseWav(encodeWav([0, 0.5, -1, 0.25], 8000), 'x.wav');
  assert.is(w.sampleRate, 8000);
  assert.equal([...w.samples], [0, 0.5, -1, 0.25]);
  throwsWith(() => parseWav(new Uint8Array(10), 'bad.wav'), 'bad.wav', 'not a WAV');
  const stereo = encodeWav([0, 0], 8000);
  new DataView(stereo.buffer).setUint16(22, 2, true);
  throwsWith(() => parseWav(stereo, 's.wav'), 's.wav', '2 channel');
  try {
    parseWav(new Uint8Array(10), 'c.wav');
  } catch (e) {
    assert.ok(e instanceof CorruptMediaError);
  }
});

test(
  'frame transforms: crop boxes inside the image, ' + 'torchvision fallback, exact resize of constant images, flip',
  () => {
    for (let s = 0; s < 100; s++) {
      const g = new Generator(s);
      const b = randomResizedCropBox(64, 48, g);
      assert.ok(
        b.top >= 0 && b.left >= 0 && b.top + b.height <= 48 && b.left + b.width <= 64 && b.width > 0 && b.height > 0,
        JSON.stringify(b),
      );
      const area = (b.width * b.height) / (64 * 48);
      assert.ok(area >= 0.08 * 0.9 && area <= 1, `area ${area}`); // rounding of w and h
    }
    // A 1000 × 10 image cannot hold a 3/4..4/3 crop of ≥ 8% area in 10 tries: the centre-crop fallback
    // (ratio clamped to 4/3).
    assert.equal(randomResizedCropBox(1000, 10, new Generator(0)), { top: 0, left: 493, height: 10, width: 13 });
    const img = { width: 5, height: 3, data: new Uint8Array(5 * 3 * 3).fill(51) };
    const out = new Float32Array(3 * 4 * 4);
    toNormalizedCHW(img, { top: 0, left: 0, width: 5, height: 3 }, 4, false, out);
    for (let c = 0; c < 3; c++)
      for (let i = 0; i < 16; i++)
        assert.ok(Math.abs(out[c * 16 + i]! - (0.2 - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]!) < 1e-6);
    // A horizontal ramp, downscaled 4 → 2 (Pillow's taps): scale 2, support 2, output o centred at 2o + 1,
    // weights 1 − |i + ½ − centre|/2.
    const ramp = { width: 4, height: 1, data: Uint8Array.from([0, 0, 0, 100, 100, 100, 200, 200, 200, 250, 250, 250]) };
    const r = new Float32Array(3 * 1 * 2);
    const rf = new Float32Array(3 * 1 * 2);
    toNormalizedCHW(ramp, { top: 0, left: 0, width: 4, height: 1 }, 2, false, r.subarray(0, 6));
    toNormalizedCHW(ramp, { top: 0, left: 0, width: 4, height: 1 }, 2, true, rf);
    const px = (v: number) => v * IMAGENET_STD[0] * 255 + IMAGENET_MEAN[0] * 255;
    // Output 0: taps 0, 1, 2 with weights ¾, ¾, ¼; output 1: taps 1, 2, 3 with ¼, ¾, ¾.
    assert.ok(Math.abs(px(r[0]!) - (0 * 0.75 + 100 * 0.75 + 200 * 0.25) / 1.75) < 1e-3, `${px(r[0]!)}`);
    assert.ok(Math.abs(px(r[1]!) - (100 * 0.25 + 200 * 0.75 + 250 * 0.75) / 1.75) < 1e-3, `${px(r[1]!)}`);
    assert.equal([rf[0], rf[1]], [r[1], r[0]]);
  },
);

test('no tensors leak', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
