// The example's training: a two-modality late-fusion classifier trained with MMPareto on the
// synthetic audio-visual set, generated here from a seed. Pure engine code, so the same module
// runs in the page's Web Worker, in Node (test/embedding/browser.test.ts compares the two; bench/steps/example-steps.ts
// times both). An app imports the same names from 'mmpareto-webgpu', 'mmpareto-webgpu/nn',
// '/models' and '/data'; the example imports the repository's source so it always runs the
// current engine.
import {
  Generator,
  MultimodalStep,
  SGD,
  concat,
  crossEntropy,
  noGrad,
  perLossGrads,
  reshape,
  setDevice,
  tensor,
  tidy,
  type Device,
  type Tensor,
} from '../../engine/index.ts';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, ReLU, Sequential } from '../../engine/nn/index.ts';
import { LateFusionClassifier } from '../../models/late-fusion.ts';
import { SYNTHETIC_SIDE, syntheticAV } from '../../train/data/synthetic.ts';

export const MODALITIES = ['audio', 'visual'] as const;
export type Modality = (typeof MODALITIES)[number];
export const LOSSES = ['mm', ...MODALITIES] as const;
export type LossName = (typeof LOSSES)[number];

export interface ExampleConfig {
  /** Items generated (the set the example cycles over). */
  items: number;
  batch: number;
  classes: number;
  /** Channels of each encoder's first convolution (the second has twice as many). */
  width: number;
  lr: number;
  seed: number;
  /** Steps between two readbacks of losses and cos β (one buffer map each). */
  readEvery: number;
}

export const DEFAULT_CONFIG: ExampleConfig = {
  items: 512,
  batch: 32,
  classes: 4,
  width: 8,
  lr: 0.02,
  seed: 0,
  readEvery: 5,
};

/** One step's readout: the three losses and cos β between g_m and g_u per encoder. */
export interface StepRecord {
  step: number;
  losses: Record<LossName, number>;
  cos: Record<Modality, number>;
}

/**
 * conv 3×3 → batchnorm → relu → conv 3×3 stride 2 → relu → average pool to 4×4 → flatten:
 * (B, C, 16, 16) → (B, 32·width). The classes differ by where the band or blob sits, so the pool
 * keeps a coarse map rather than one global average.
 */
function encoder(inChannels: number, width: number, generator: Generator): Sequential {
  return new Sequential(
    new Conv2d(inChannels, width, 3, { padding: 1, generator }),
    new BatchNorm2d(width),
    new ReLU(),
    new Conv2d(width, 2 * width, 3, { stride: 2, padding: 1, generator }),
    new ReLU(),
    new AdaptiveAvgPool2d(4),
    new Flatten(),
  );
}

export class ExampleTraining {
  readonly config: ExampleConfig;
  readonly model: LateFusionClassifier;
  readonly step: MultimodalStep;
  private readonly optimizer: SGD;
  private readonly data: ReturnType<typeof syntheticAV>;
  private steps = 0;
  private pending: Tensor[] = []; // per step since the last read: the three losses, (3,)

  constructor(
    readonly device: Device,
    config: Partial<ExampleConfig> = {},
  ) {
    this.config = { ...DEFAULT_CONFIG, ...config };
    const c = this.config;
    setDevice(device); // modules draw their parameters on the current device
    const generator = new Generator(c.seed);
    const features = 32 * c.width;
    this.model = new LateFusionClassifier({
      encoders: {
        audio: { module: encoder(1, c.width, generator), features },
        visual: { module: encoder(3, c.width, generator), features },
      },
      classes: c.classes,
      seed: c.seed,
    });
    this.data = syntheticAV({ n: c.items, classes: c.classes, seed: c.seed });
    this.optimizer = new SGD(this.model.parameters(), { lr: c.lr, momentum: 0.9 });
    this.step = new MultimodalStep({
      method: 'mmpareto',
      encoders: this.model.encoderGroups(),
      optimizer: this.optimizer,
      telemetrySteps: c.readEvery,
    });
  }

  get stepsDone(): number {
    return this.steps;
  }

  /** Batch k (cycling over the items in order): inputs and labels, uploaded. */
  batch(k: number): { inputs: Record<Modality, Tensor>; labels: Tensor } {
    const { batch, items } = this.config;
    const px = SYNTHETIC_SIDE * SYNTHETIC_SIDE;
    const start = (k * batch) % (items - (items % batch));
    const d = this.data;
    const dev = { device: this.device };
    return {
      inputs: {
        audio: tensor(
          d.audio.subarray(start * px, (start + batch) * px),
          [batch, 1, SYNTHETIC_SIDE, SYNTHETIC_SIDE],
          dev,
        ),
        visual: tensor(
          d.visual.subarray(start * 3 * px, (start + batch) * 3 * px),
          [batch, 3, SYNTHETIC_SIDE, SYNTHETIC_SIDE],
          dev,
        ),
      },
      labels: tensor(d.labels.subarray(start, start + batch), [batch], { ...dev, dtype: 'int32' }),
    };
  }

  private losses(inputs: Record<Modality, Tensor>, labels: Tensor): Record<LossName, Tensor> {
    return tidy(() => {
      const logits = this.model.logits(inputs);
      return {
        mm: crossEntropy(logits.mm!, labels),
        audio: crossEntropy(logits.audio!, labels),
        visual: crossEntropy(logits.visual!, labels),
      };
    });
  }

  /** One MMPareto step; nothing is read back (see read()). */
  trainStep(): void {
    const { inputs, labels } = this.batch(this.steps);
    const losses = this.losses(inputs, labels);
    this.step.step(losses);
    this.pending.push(
      noGrad(() =>
        concat(
          LOSSES.map((n) => reshape(losses[n], [1])),
          0,
        ),
      ),
    );
    for (const t of [...Object.values(losses), ...Object.values(inputs), labels]) t.dispose();
    this.steps++;
  }

  /** The records of the steps since the last read: two buffer maps (losses, the integrator's telemetry). */
  async read(): Promise<StepRecord[]> {
    if (this.pending.length === 0) return [];
    const all = noGrad(() => concat(this.pending, 0));
    const values = await all.toArray();
    all.dispose();
    const telemetry = await this.step.integrator!.telemetry.read();
    const first = this.steps - this.pending.length;
    const records = this.pending.map((_, i): StepRecord => {
      const step = first + i;
      const cos = (g: number) => telemetry.records.find((r) => r.step === step && r.group === g)?.cos ?? Number.NaN;
      return {
        step,
        losses: { mm: values[3 * i]!, audio: values[3 * i + 1]!, visual: values[3 * i + 2]! },
        cos: { audio: cos(0), visual: cos(1) },
      };
    });
    for (const t of this.pending) t.dispose();
    this.pending = [];
    return records;
  }

  /**
   * For the parity check: on batch 0, before any update, each loss and the norm of its gradient
   * over all the parameters it reaches (per-loss gradients from one forward), in float64 on the host.
   */
  async firstStepDiagnostics(): Promise<{ losses: Record<LossName, number>; gradNorms: Record<LossName, number> }> {
    const { inputs, labels } = this.batch(0);
    const losses = this.losses(inputs, labels);
    const grads = perLossGrads(losses, this.model.parameters());
    const out = { losses: {} as Record<LossName, number>, gradNorms: {} as Record<LossName, number> };
    for (const n of LOSSES) {
      out.losses[n] = await losses[n].item();
      let sq = 0;
      for (const byLoss of grads.values()) {
        const g = byLoss[n];
        if (!g) continue;
        for (const x of await g.toArray()) sq += x * x;
        g.dispose();
      }
      out.gradNorms[n] = Math.sqrt(sq);
    }
    for (const t of [...Object.values(losses), ...Object.values(inputs), labels]) t.dispose();
    return out;
  }

  dispose(): void {
    for (const t of this.pending) t.dispose();
    this.pending = [];
    this.step.dispose();
    this.optimizer.dispose();
    this.model.dispose();
  }
}
