// A plain Node ESM program using the installed package: no TypeScript loader, no build step.
// Trains a two-modality late-fusion model with MMPareto for 20 steps on one synthetic batch and
// prints the adapter and the multimodal loss of every step as one JSON line.
import { init, MultimodalStep, SGD, crossEntropy, tensor, tidy } from 'mmpareto-webgpu';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, ReLU, Sequential } from 'mmpareto-webgpu/nn';
import { LateFusionClassifier } from 'mmpareto-webgpu/models';
import { syntheticAV } from 'mmpareto-webgpu/data';

const device = await init(); // Dawn, through the package's Node entry
const encoder = (channels) =>
  new Sequential(
    new Conv2d(channels, 8, 3, { padding: 1 }),
    new BatchNorm2d(8),
    new ReLU(),
    new Conv2d(8, 16, 3, { stride: 2, padding: 1 }),
    new ReLU(),
    new AdaptiveAvgPool2d(4),
    new Flatten(),
  );
const model = new LateFusionClassifier({
  encoders: { audio: { module: encoder(1), features: 256 }, visual: { module: encoder(3), features: 256 } },
  classes: 4,
});
const optimizer = new SGD(model.parameters(), { lr: 0.02, momentum: 0.9 });
const step = new MultimodalStep({ method: 'mmpareto', encoders: model.encoderGroups(), optimizer });

const n = 32;
const data = syntheticAV({ n, seed: 1 });
const audio = tensor(data.audio, [n, 1, 16, 16]);
const visual = tensor(data.visual, [n, 3, 16, 16]);
const labels = tensor(data.labels, [n], { dtype: 'int32' });
const losses = [];
for (let s = 0; s < 20; s++) {
  const l = tidy(() => {
    const logits = model.logits({ audio, visual });
    return {
      mm: crossEntropy(logits.mm, labels),
      audio: crossEntropy(logits.audio, labels),
      visual: crossEntropy(logits.visual, labels),
    };
  });
  step.step(l);
  losses.push(await l.mm.item());
  for (const t of Object.values(l)) t.dispose();
}
console.log(JSON.stringify({ adapter: device.adapterName, losses }));
device.destroy();
