// MBT (models/mbt.ts) as a TrainableModel for the trainer: the multimodal logits are MBT's fused
// logits, and every modality gets a unimodal head on its own CLS feature.
import { EngineError, Generator, permute, reshape, type Tensor } from '../engine/index.ts';
import { Linear, ModuleDict } from '../engine/nn/index.ts';
import type { FusionKind } from './late-fusion.ts';
import { MBT, MBT_TINY, type MBTSize, type ModalitySpec } from './mbt.ts';
import { TrainableModel } from './multimodal.ts';

export interface MBTClassifierOptions {
  modalities: Record<string, ModalitySpec>;
  classes: number;
  /**
   * 'concat' (default): MBT's fused logits from one head on the concatenated CLS features; 'sum': the mean of MBT's
   * per-modality head logits.
   */
  fusion?: FusionKind;
  task?: string;
  size?: Partial<MBTSize>;
  seed?: number;
}

/**
 * MBT as a TrainableModel: `mm` = MBT's fused logits; each modality's unimodal logits come from
 * its own linear head on that modality's CLS feature. Encoder group m = MBT's stream m (patch
 * embedding, CLS, positions, layers, norm); the shared bottleneck tokens, MBT's fused head(s) and
 * the unimodal heads are outside every group (they take the plain sum of gradients).
 */
export class MBTClassifier extends TrainableModel {
  readonly modalities: readonly string[];
  readonly mbt: MBT;
  readonly heads: ModuleDict<Linear>;
  readonly targets: Readonly<Record<string, string>>;
  readonly mainLoss = 'mm';

  constructor(opts: MBTClassifierOptions) {
    super();
    this.modalities = Object.keys(opts.modalities);
    if (this.modalities.includes('mm'))
      throw new EngineError(`MBTClassifier: a modality may not be named 'mm', the multimodal logits' name`);
    const size = { ...MBT_TINY, ...opts.size };
    this.mbt = this.child(
      'mbt',
      new MBT({
        ...size,
        modalities: opts.modalities,
        numClasses: opts.classes,
        fusion: opts.fusion === 'sum' ? 'mean-logits' : 'concat',
        seed: opts.seed,
      }),
    );
    // The unimodal heads draw from a generator of their own, so MBT's draws stay as MBT alone makes them.
    const generator = new Generator(((opts.seed ?? 0) ^ 0x5bd1e995) >>> 0);
    this.heads = this.child('heads', new ModuleDict<Linear>());
    for (const m of this.modalities) this.heads.set(m, new Linear(size.width, opts.classes, { generator }));
    const task = opts.task ?? 'label';
    this.targets = Object.fromEntries(['mm', ...this.modalities].map((n) => [n, task]));
  }

  /** { mm, <modality>... } logits, each (B, classes); call inside tidy. */
  logits(inputs: Readonly<Record<string, Tensor>>): Record<string, Tensor> {
    const given = Object.keys(inputs);
    const missing = this.modalities.filter((n) => !(n in inputs));
    const extra = given.filter((n) => !this.modalities.includes(n));
    if (missing.length || extra.length) {
      const wrong = [
        missing.length ? `missing input ${missing.join(', ')}` : '',
        extra.length ? `unknown input ${extra.join(', ')}` : '',
      ]
        .filter(Boolean)
        .join('; ');
      throw new EngineError(`MBTClassifier.logits: ${wrong} (the model expects ${this.modalities.join(', ')})`);
    }
    // Frames (B, T, C, H, W) → (B, C, T·H, W): stacked vertically, as the registry sized the stream.
    const stacked: Record<string, Tensor> = {};
    for (const [m, x] of Object.entries(inputs)) {
      if (x.rank !== 5) {
        stacked[m] = x;
        continue;
      }
      const [b, t, c, h, w] = x.shape as [number, number, number, number, number];
      const p = permute(x, [0, 2, 1, 3, 4]);
      stacked[m] = reshape(p, [b, c, t * h, w]);
      p.dispose();
    }
    const { features, modalityLogits, logits } = this.mbt.forward(stacked);
    for (const [m, x] of Object.entries(stacked)) if (x !== inputs[m]) x.dispose();
    const out: Record<string, Tensor> = { mm: logits! };
    for (const m of this.modalities) {
      out[m] = this.heads.items.get(m)!.forward(features[m]!);
      features[m]!.dispose(); // the graph keeps what backward needs
      modalityLogits[m]?.dispose();
    }
    return out;
  }

  encoderGroups(): Record<string, Tensor[]> {
    return Object.fromEntries(this.modalities.map((m) => [m, this.mbt.streams[m]!.parameters()]));
  }
}
