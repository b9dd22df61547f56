// frameSignal, stft, ogmGeSpectrogram and kaldiFbank against the float64 references of
// test/fixtures/audio-reference.ts (torch.stft and torchaudio.compliance.kaldi.fbank, step by step).
// Tolerances are per element, derived there from float32 rounding: framing is a copy (exact);
// the spectra are float32 dot products over a frame, so each element is held to
// (frame + 1)·u·Σ|terms| plus a few roundings, carried through the log as Δ/value.
// Gradients: gradcheck (central differences, engine/gradcheck.ts's float32-derived tolerances).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { check, randArray, rejects } from '../helpers.ts';
import { fbankRef, frames as refFrames, pad, stftRef, logBound, U } from '../fixtures/audio-reference.ts';
import {
  frameSignal,
  kaldiFbank,
  liveTensors,
  ogmGeSpectrogram,
  stft,
  tensor,
  type Tensor,
} from '../../engine/index.ts';

const test = suite('spectrogram');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

/** Asserts |got − want| ≤ bound elementwise, reporting the worst element. */
function withinBound(got: Float32Array, want: Float64Array, bound: Float64Array, what: string): void {
  assert.is(got.length, want.length, `${what}: length`);
  let worst = -1;
  let ratio = 0;
  for (let i = 0; i < got.length; i++) {
    const r = Math.abs(got[i]! - want[i]!) / bound[i]!;
    if (!(r <= 1) && (worst < 0 || r > ratio || Number.isNaN(r))) [worst, ratio] = [i, r];
  }
  if (worst >= 0)
    assert.unreachable(`${what}: element ${worst}: got ${got[worst]}, expected ${want[worst]} ± ${bound[worst]}`);
}

async function read(t: Tensor): Promise<Float32Array> {
  const a = (await t.toArray()) as Float32Array;
  t.dispose();
  return a;
}

/** A test signal: a 440 Hz tone at 8 kHz plus uniform noise, float32-exact. */
function signal(n: number, seed: number): Float64Array {
  const noise = randArray(n, seed, -0.3, 0.3);
  return Float64Array.from(Float32Array.from(noise, (v, i) => v + 0.6 * Math.sin((2 * Math.PI * 440 * i) / 8000)));
}

test('frameSignal copies the padded signal exactly (reflect and constant, one signal and a batch)', async () => {
  const n = 37;
  const xs = [randArray(n, 1), randArray(n, 2)];
  for (const mode of ['reflect', 'constant'] as const) {
    const x = tensor(Float32Array.from([...xs[0]!, ...xs[1]!]), [2, n]);
    const y = frameSignal(x, { frameLength: 8, hop: 3, padLeft: 4, padRight: 5, padMode: mode });
    const want = xs.flatMap((s) => refFrames(pad(s, 4, 5, mode), 8, 3).flatMap((f) => [...f]));
    assert.equal(y.shape, [2, 1 + Math.floor((n + 9 - 8) / 3), 8]);
    assert.equal([...(await read(y))], want, mode);
    x.dispose();
  }
  const one = tensor(Float32Array.from(xs[0]!), [n]);
  const y = frameSignal(one, { frameLength: 10, hop: 10 });
  assert.equal(y.shape, [3, 10]);
  assert.equal([...(await read(y))], [...xs[0]!.slice(0, 30)]);
  one.dispose();
});

test('frameSignal gradient (overlap-add, both pad modes, hop below and above the frame length)', async () => {
  for (const [mode, len, hop, pl, pr] of [
    ['reflect', 6, 2, 3, 3],
    ['constant', 5, 7, 2, 0],
    ['reflect', 4, 1, 3, 2],
  ] as const) {
    const x = tensor(Float32Array.from(randArray(2 * 11, 3)), [2, 11], { requiresGrad: true });
    await check((v) => frameSignal(v, { frameLength: len, hop, padLeft: pl, padRight: pr, padMode: mode }), [x]);
  }
});

test('stft matches torch.stft (periodic Hann, centre, reflect / constant, not centred, batched)', async () => {
  const n = 1000;
  for (const [center, mode] of [
    [true, 'reflect'],
    [true, 'constant'],
    [false, 'reflect'],
  ] as const) {
    const a = signal(n, 4);
    const b = signal(n, 5);
    const x = tensor(Float32Array.from([...a, ...b]), [2, n]);
    const y = stft(x, { nFft: 64, hop: 24, center, padMode: mode });
    const ra = stftRef(a, 64, 24, center, mode);
    const rb = stftRef(b, 64, 24, center, mode);
    assert.equal(y.shape, [2, 33, ra.frames]);
    if (center) assert.is(ra.frames, 1 + Math.floor(n / 24));
    withinBound(
      await read(y),
      Float64Array.from([...ra.mag, ...rb.mag]),
      Float64Array.from([...ra.bound, ...rb.bound]),
      `stft ${center} ${mode}`,
    );
    x.dispose();
  }
  const one = tensor(Float32Array.from(signal(300, 6)), [300]);
  const p = stft(one, { nFft: 32, hop: 8, power: 2 });
  const r = stftRef(signal(300, 6), 32, 8, true, 'reflect');
  assert.equal(p.shape, [17, 1 + Math.floor(300 / 8)]);
  // |X|² errs by 2|X|·Δ + Δ² + 2u|X|².
  withinBound(
    await read(p),
    r.mag.map((m) => m * m),
    r.bound.map((d, i) => 2 * r.mag[i]! * d + d * d + 2 * U * r.mag[i]! ** 2),
    'stft power 2',
  );
  one.dispose();
});

test('ogmGeSpectrogram: 3 s at 22,050 Hz gives 257 × 188, log(|X| + 1e-7) as the reference', async () => {
  const n = 3 * 22050;
  const g = randArray(n, 7, -0.5, 0.5);
  const xs = Float64Array.from(
    Float32Array.from(g, (v, i) => v * Math.sin(i / 5000) + 0.3 * Math.sin((2 * Math.PI * 300 * i) / 22050)),
  );
  const x = tensor(Float32Array.from(xs), [1, n]);
  const y = ogmGeSpectrogram(x);
  assert.equal(y.shape, [1, 257, 188]);
  const r = stftRef(xs, 512, 353, true, 'reflect');
  const want = r.mag.map((m) => Math.log(m + 1e-7));
  const bound = r.mag.map((m, i) => logBound(m + 1e-7, r.bound[i]! + U * (m + 1e-7), 1e-7));
  withinBound(await read(y), want, bound, 'ogmGeSpectrogram');
  x.dispose();
});

test('stft gradient (magnitude and power)', async () => {
  for (const power of [1, 2] as const) {
    const x = tensor(Float32Array.from(signal(40, 8)), [40], { requiresGrad: true });
    await check((v) => stft(v, { nFft: 8, hop: 3, power }), [x]);
  }
});

test(
  'kaldiFbank matches torchaudio.compliance.kaldi.fbank (128 mel, ' + '25/10 ms, pre-emphasis 0.97, hanning and povey)',
  async () => {
    for (const [sr, win, dc] of [
      [16000, 'hanning', true],
      [22050, 'povey', true],
      [16000, 'povey', false],
    ] as const) {
      const n = Math.round(sr * 0.31);
      const a = signal(n, 9);
      const b = signal(n, 10);
      const x = tensor(Float32Array.from([...a, ...b]), [2, n]);
      const o = {
        sampleRate: sr,
        nMels: 128,
        frameLengthMs: 25,
        frameShiftMs: 10,
        preemphasis: 0.97,
        removeDcOffset: dc,
        window: win,
      };
      const y = kaldiFbank(x, o);
      const ra = fbankRef(a, o);
      const rb = fbankRef(b, o);
      assert.equal(y.shape, [2, ra.frames, 128]);
      withinBound(
        await read(y),
        Float64Array.from([...ra.out, ...rb.out]),
        Float64Array.from([...ra.bound, ...rb.bound]),
        `fbank ${sr} ${win} dc=${dc}`,
      );
      x.dispose();
    }
  },
);

test('kaldiFbank floors silent frames at log(float32 epsilon) and frames a single signal', async () => {
  const x = tensor(new Float32Array(800), [800]);
  const y = kaldiFbank(x, { sampleRate: 16000, nMels: 23 });
  assert.equal(y.shape, [1 + Math.floor((800 - 400) / 160), 23]);
  for (const v of await read(y)) assert.is(v, Math.fround(Math.log(2 ** -23)));
  x.dispose();
});

test('kaldiFbank gradient', async () => {
  const x = tensor(Float32Array.from(signal(120, 11)), [120], { requiresGrad: true });
  await check((v) => kaldiFbank(v, { sampleRate: 1600, nMels: 5, window: 'hanning' }), [x]);
});

test('bad input names the op and the problem', () => {
  const x = tensor(new Float32Array(100), [100]);
  rejects(() => stft(x, { nFft: 256 }), 'frameSignal', 'reflect padding', '100 samples');
  rejects(() => kaldiFbank(x, { sampleRate: 16000 }), 'kaldiFbank', '100 samples', '400-sample window');
  rejects(() => kaldiFbank(x, { sampleRate: 1600, nMels: 3 }), 'nMels 3');
  rejects(() => kaldiFbank(x, { sampleRate: 1600, highFreq: 900 }), 'Nyquist (800 Hz)');
  rejects(() => frameSignal(x, { frameLength: 0, hop: 1 }), 'frameLength 0');
  rejects(() => frameSignal(x, { frameLength: 200, hop: 1 }), 'shorter than one frame of 200');
  const m = tensor(new Float32Array(8), [2, 2, 2]);
  rejects(() => stft(m, { nFft: 4 }), 'stft', '[2, 2, 2]');
  x.dispose();
  m.dispose();
});

test('no tensors leak', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
