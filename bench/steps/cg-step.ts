// The CG-FMNIST training step of `npm start` on random inputs: the late-fusion model of
// models/registry.ts ('cnn': one CGEncoder per modality, gray [1, 28, 28] and color [3, 28, 28],
// 10 classes), the model's losses (cross-entropy per logits entry), one MultimodalStep (per-loss
// gradients, the method's integration, SGD momentum 0.9 at lr 0.01 as in train/start.ts),
// optionally guarded by a NonFiniteGuard as the trainer does. Used by bench/steps/profile.ts
// (`tsx bench/steps/profile.ts cg`) and bench/steps/guard.ts.
import {
  getDevice,
  MultimodalStep,
  NonFiniteGuard,
  randn,
  SGD,
  tensor,
  tidy,
  type IntegratorMethod,
  type Tensor,
} from '../../engine/index.ts';
import { buildModel } from '../../models/registry.ts';

export interface CGStep {
  /** One step, awaited to completion (a readback of the main loss); returns milliseconds. */
  run(): Promise<number>;
  dispose(): void;
}

const CLASSES = 10;
const ITEM = { gray: [1, 28, 28], color: [3, 28, 28] };

export function cgStep(batch: number, method: IntegratorMethod, opts: { guard?: boolean } = {}): CGStep {
  const model = buildModel('cnn', { name: 'cg-fmnist', inputs: ITEM, tasks: { label: CLASSES } }, { seed: 0 });
  const optimizer = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
  const running = model
    .namedBuffers()
    .filter(([k]) => !k.endsWith('num_batches_tracked'))
    .map(([, t]) => t);
  const guard = opts.guard
    ? new NonFiniteGuard(getDevice(), { mode: 'stop', protect: running, ringSteps: 20 })
    : undefined;
  const step = new MultimodalStep({
    method,
    encoders: model.encoderGroups(),
    optimizer,
    mainLoss: model.mainLoss,
    guard,
  });
  const inputs: Record<string, Tensor> = Object.fromEntries(
    Object.entries(ITEM).map(([m, s]) => [m, randn([batch, ...s])]),
  );
  const labels = tensor(
    Int32Array.from({ length: batch }, (_, i) => i % CLASSES),
    [batch],
    { dtype: 'int32' },
  );
  return {
    async run() {
      const t0 = performance.now();
      const losses = tidy(() => model.losses({ inputs, labels: { label: labels } }));
      step.step(losses);
      const main = losses[model.mainLoss]!;
      for (const [n, l] of Object.entries(losses)) if (n !== model.mainLoss) l.dispose();
      await main.item(); // the readback waits for the whole step
      main.dispose();
      return performance.now() - t0;
    },
    dispose() {
      for (const t of [model, optimizer, labels, ...Object.values(inputs)]) t.dispose();
      step.dispose();
      guard?.dispose();
    },
  };
}
