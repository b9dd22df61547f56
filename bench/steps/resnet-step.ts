// The benches' ResNet-18 training step: ResNet-18 + Linear(512, classes), cross-entropy,
// backward, SGD momentum 0.9, on a fixed random batch (bench/steps/resnet.ts, bench/steps/profile.ts).
import { crossEntropy, randn, SGD, tensor, tidy } from '../../engine/index.ts';
import { Linear } from '../../engine/nn/index.ts';
import { ResNet18 } from '../../models/resnet.ts';

export interface ResNetStep {
  /** One step, awaited to completion (the loss readback); returns milliseconds. */
  run(): Promise<number>;
  dispose(): void;
}

export function resnetStep(size: number, batch: number, classes: number): ResNetStep {
  const model = new ResNet18({ inChannels: 3, seed: 1 });
  const head = new Linear(512, classes);
  const opt = new SGD([...model.parameters(), ...head.parameters()], { lr: 0.01, momentum: 0.9 });
  const x = randn([batch, 3, size, size]);
  const labels = tensor(
    Int32Array.from({ length: batch }, (_, i) => i % classes),
    [batch],
    { dtype: 'int32' },
  );
  return {
    async run() {
      const t0 = performance.now();
      const loss = tidy(() => crossEntropy(head.forward(model.forward(x)), labels));
      loss.backward();
      opt.step();
      opt.zeroGrad();
      await loss.item(); // waits for the whole step
      loss.dispose();
      return performance.now() - t0;
    },
    dispose() {
      for (const m of [model, head, opt, x, labels]) m.dispose();
    },
  };
}
