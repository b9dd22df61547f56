// Audio input for crema-d / ave: the spectrogram computed on the GPU per batch (what the loader
// does) against a cache of precomputed spectrograms on the host (gather + upload), both timed
// to completion, and a ResNet-18 audio-encoder training step on the same batch for scale.
// Prints JSON lines; compare the ratios (same process, interleaved repetitions).
//   npx tsx bench/steps/av-audio.ts [batch=8] [reps=5]
import '../../train/node.ts'; // Dawn as the default GPU
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crossEntropy, init, noGrad, ogmGeSpectrogram, SGD, tensor, tidy } from '../../engine/index.ts';
import { Linear } from '../../engine/nn/index.ts';
import { ResNet18 } from '../../models/resnet.ts';
import { tileClip } from '../../train/data/av/dataset.ts';
import { encodeWav, parseWav } from '../../train/data/av/wav.ts';
import { emit, median, round } from '../util.ts';

const batch = Number(process.argv[2] ?? 8);
const reps = Number(process.argv[3] ?? 5);
const device = await init();
const SR = 22050;
const N = 3 * SR;
const SPEC = 257 * 188;

// B clips of 2.5 s (CREMA-D's mean length) written as the prepared WAVs are.
const dir = mkdtempSync(join(tmpdir(), 'bench-av-'));
const files = Array.from({ length: batch }, (_, i) => {
  const f = join(dir, `${i}.wav`);
  writeFileSync(
    f,
    encodeWav(
      Float32Array.from(
        { length: Math.round(2.5 * SR) },
        (_, k) => 0.3 * Math.sin(k * (0.01 + 0.001 * i)) + 0.05 * Math.sin(k * 0.37),
      ),
      SR,
    ),
  );
  return f;
});
const wave = new Float32Array(batch * N);
const tmp = new Float32Array(N);

async function gpuPerBatch(): Promise<number> {
  const t0 = performance.now();
  files.forEach((f, b) => {
    tileClip(parseWav(readFileSync(f), f).samples, tmp);
    wave.set(tmp, b * N);
  });
  const x = tensor(wave, [batch, N]);
  const s = noGrad(() => ogmGeSpectrogram(x));
  x.dispose();
  await device.sync();
  s.dispose();
  return performance.now() - t0;
}

// The cache: every clip's spectrogram on the host (built once here from the same GPU op).
const cache = new Float32Array(batch * SPEC);
{
  files.forEach((f, b) => {
    tileClip(parseWav(readFileSync(f), f).samples, tmp);
    wave.set(tmp, b * N);
  });
  const x = tensor(wave, [batch, N]);
  const s = noGrad(() => ogmGeSpectrogram(x));
  cache.set((await s.toArray()) as Float32Array);
  x.dispose();
  s.dispose();
}
const gathered = new Float32Array(batch * SPEC);
async function cached(): Promise<number> {
  const t0 = performance.now();
  for (let b = 0; b < batch; b++) gathered.set(cache.subarray(b * SPEC, (b + 1) * SPEC), b * SPEC);
  const x = tensor(gathered, [batch, 1, 257, 188]);
  await device.sync();
  x.dispose();
  return performance.now() - t0;
}

const model = new ResNet18({ inChannels: 1, seed: 1 });
const head = new Linear(512, 6);
const opt = new SGD([...model.parameters(), ...head.parameters()], { lr: 0.01, momentum: 0.9 });
const labels = tensor(
  Int32Array.from({ length: batch }, (_, i) => i % 6),
  [batch],
  { dtype: 'int32' },
);
const spec = tensor(cache, [batch, 1, 257, 188]);
async function step(): Promise<number> {
  const t0 = performance.now();
  const loss = tidy(() => crossEntropy(head.forward(model.forward(spec)), labels));
  loss.backward();
  opt.step();
  opt.zeroGrad();
  await loss.item();
  loss.dispose();
  return performance.now() - t0;
}

await gpuPerBatch();
await cached();
await step(); // warm-up: pipelines compiled
const t = { gpu: [] as number[], cache: [] as number[], step: [] as number[] };
for (let r = 0; r < reps; r++) {
  t.gpu.push(await gpuPerBatch());
  t.cache.push(await cached());
  t.step.push(await step());
}
const [g, c, s] = [median(t.gpu), median(t.cache), median(t.step)];
emit({
  bench: 'av-audio',
  batch,
  adapter: device.adapterName,
  gpu_per_batch_ms: round(g, 1),
  cached_ms: round(c, 1),
  resnet18_audio_step_ms: round(s, 1),
  gpu_over_cached: round(g / c, 2),
  gpu_share_of_step: round(g / s, 3),
  cached_share_of_step: round(c / s, 3),
});
emit({
  bench: 'av-audio-memory',
  cache_bytes_per_clip: SPEC * 4,
  crema_d_cache_gb: round((7442 * SPEC * 4) / 1e9, 2),
  wav_bytes_per_clip_2_5s: 2 * Math.round(2.5 * SR) + 44,
});
for (const m of [model, head, opt, labels, spec]) m.dispose();
rmSync(dir, { recursive: true, force: true });
device.destroy();
