// One training step on CREMA-D's input shapes, for the README's step-time figure: the
// late-fusion model of `mmpareto train --dataset crema-d --model resnet18` (a 1-channel
// ResNet-18 on the 1 × 257 × 188 OGM-GE spectrogram, a ResNet-18 on T = 2 frames averaged over
// time, concat head + one head per encoder, 6 classes), MMPareto and the uniform baseline,
// interleaved, on random inputs (the loader's own cost is bench/steps/av-audio.ts's). JSON lines.
//   npx tsx bench/steps/av-step.ts [imageSize=224] [batch=4] [rounds=3] [model=resnet18|mbt]
import '../../train/node.ts'; // Dawn as the default GPU
import {
  crossEntropy,
  init,
  MultimodalStep,
  randn,
  SGD,
  tensor,
  tidy,
  type IntegratorMethod,
  type Tensor,
} from '../../engine/index.ts';
import { buildModel } from '../../models/registry.ts';
import { emit, median, round } from '../util.ts';

const size = Number(process.argv[2] ?? 224);
const batch = Number(process.argv[3] ?? 4);
const rounds = Number(process.argv[4] ?? 3);
const name = (process.argv[5] ?? 'resnet18') as 'resnet18' | 'mbt';
const device = await init();
const model = buildModel(
  name,
  { name: 'crema-d', inputs: { audio: [1, 257, 188], visual: [2, 3, size, size] }, tasks: { label: 6 } },
  { seed: 0 },
);
const inputs = { audio: randn([batch, 1, 257, 188]), visual: randn([batch, 2, 3, size, size]) };
const labels = tensor(
  Int32Array.from({ length: batch }, (_, i) => i % 6),
  [batch],
  { dtype: 'int32' },
);
const setups = Object.fromEntries(
  (['uniform', 'mmpareto'] as IntegratorMethod[]).map((method) => {
    const opt = new SGD(model.parameters(), { lr: 1e-4, momentum: 0.9 });
    return [
      method,
      new MultimodalStep({ method, encoders: model.encoderGroups(), optimizer: opt, mainLoss: model.mainLoss }),
    ];
  }),
);

async function step(method: string): Promise<number> {
  await device.sync();
  const t0 = performance.now();
  const losses = tidy(() => {
    const out = model.logits(inputs);
    const l: Record<string, Tensor> = {};
    for (const n of Object.keys(model.targets)) l[n] = crossEntropy(out[n]!, labels);
    return l;
  });
  setups[method]!.step(losses);
  for (const l of Object.values(losses)) l.dispose();
  await device.sync();
  return performance.now() - t0;
}

await step('mmpareto'); // compiles every pipeline
const t: Record<string, number[]> = { uniform: [], mmpareto: [] };
for (let r = 0; r < rounds; r++) for (const m of ['uniform', 'mmpareto']) t[m]!.push(await step(m));
emit({
  bench: 'av-step',
  model: name,
  image_size: size,
  frames: 2,
  audio: '1x257x188',
  batch,
  adapter: device.adapterName,
  mmpareto_step_s: round(median(t.mmpareto!) / 1000, 2),
  uniform_step_s: round(median(t.uniform!) / 1000, 2),
  mmpareto_per_item_s: round(median(t.mmpareto!) / 1000 / batch, 2),
});
device.destroy();
