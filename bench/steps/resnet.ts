// ResNet-18 training step (forward, cross-entropy, backward, SGD momentum 0.9), batch 4,
// 10 classes: ours (models/resnet.ts + a Linear head) against tfjs-webgpu 4.22 on the same
// Dawn device, interleaved step by step so machine noise hits both. One JSON line per input
// size. Usage: tsx bench/steps/resnet.ts [sizes, default 32,64,112] [rounds, default 3]
import '../../train/node.ts'; // Dawn as the default GPU
import { init } from '../../engine/index.ts';
import { resnetStep } from './resnet-step.ts';
import { tf, tfjsOn, tfSync } from '../tfjs/backend.ts';
import { TfResNet18 } from '../tfjs/resnet.ts';
import { emit, median, round } from '../util.ts';

const sizes = (process.argv[2] ?? '32,64,112').split(',').map(Number);
const rounds = Number(process.argv[3] ?? 3);
const batch = 4;
const classes = 10;

const device = await init();
await tfjsOn(device);

for (const size of sizes) {
  const ours0 = resnetStep(size, batch, classes);
  let dispatches = 0;
  const ours = async (): Promise<number> => {
    const d0 = device.batcher.stats.dispatches;
    const ms = await ours0.run();
    dispatches = device.batcher.stats.dispatches - d0;
    return ms;
  };

  const tfModel = new TfResNet18(3, classes);
  const tx = tf.randomNormal([batch, size, size, 3]) as tf.Tensor4D;
  const onehot = tf.cast(
    tf.oneHot(
      tf.tensor1d(
        Array.from({ length: batch }, (_, i) => i % classes),
        'int32',
      ),
      classes,
    ),
    'float32',
  ) as tf.Tensor2D;
  const theirs = async (): Promise<number> => {
    const t0 = performance.now();
    const loss = tfModel.step(tx, onehot);
    await tfSync(loss);
    loss.dispose();
    return performance.now() - t0;
  };

  const warm = [await ours(), await theirs()]; // first steps compile every shader
  if (process.env.VERBOSE)
    console.error(`size ${size}: warm-up ours ${warm[0]!.toFixed(0)} ms, tfjs ${warm[1]!.toFixed(0)} ms`);
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < rounds; r++) {
    a.push(await ours());
    b.push(await theirs());
    if (process.env.VERBOSE)
      console.error(`size ${size} round ${r}: ours ${a[r]!.toFixed(0)} ms, tfjs ${b[r]!.toFixed(0)} ms`);
  }
  const oursMs = median(a);
  const tfMs = median(b);
  emit({
    bench: 'resnet18_train_step',
    size,
    batch,
    classes,
    rounds,
    ours_ms: round(oursMs, 1),
    tfjs_ms: round(tfMs, 1),
    ratio: round(oursMs / tfMs),
    first_step_ms: { ours: round(warm[0]!, 0), tfjs: round(warm[1]!, 0) },
    ours_dispatches_per_step: dispatches,
    peak_gpu_mb: round(device.pool.stats.peakBytesInUse / 2 ** 20, 1),
    adapter: device.adapterName,
  });
  ours0.dispose();
  tfModel.dispose();
  tx.dispose();
  onehot.dispose();
}

// Destroying the device ends Dawn's polling, so the process exits as soon as the bench is done.
device.destroy();
