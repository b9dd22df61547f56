// A late-fusion multimodal classifier for any number (≥ 2) of modalities, the paper's setting:
// one encoder per modality; a fusion head on the combined features gives the multimodal logits
// `mm`, and one linear head per encoder gives that modality's unimodal logits. Every logits entry
// is scored against the same task; MultimodalStep integrates each encoder from (g_mm, g_modality).
//   concat: head = Linear(Σ features → classes) on the concatenated features (the default, as
//           the authors' ConcatFusion);
//   sum:    head = Linear(features → classes) on the summed features (all encoders equally wide).
import { EngineError, Generator, add, concat, type Tensor } from '../engine/index.ts';
import { Linear, type Module, ModuleDict } from '../engine/nn/index.ts';
import { TrainableModel } from './multimodal.ts';

/** A module mapping a (B, ...item) batch to (B, features). */
export type Encoder = Module & { forward(x: Tensor): Tensor };

export interface EncoderSpec {
  module: Encoder;
  /** Width of the encoder's feature vector. */
  features: number;
}

export type FusionKind = 'concat' | 'sum';
export const FUSIONS: readonly FusionKind[] = ['concat', 'sum'];

export interface LateFusionOptions {
  /** Modality name → its encoder; two or more. The model owns them from here on (dispose). */
  encoders: Record<string, EncoderSpec>;
  classes: number;
  /** How the features meet the fusion head (default 'concat'). */
  fusion?: FusionKind;
  /** Task whose labels every logits entry is scored against (default 'label'). */
  task?: string;
  /** Seed of the generator that draws the heads' initial weights (default 0). */
  seed?: number;
}

const MAIN = 'mm';

export class LateFusionClassifier extends TrainableModel {
  readonly modalities: readonly string[];
  readonly fusion: FusionKind;
  readonly classes: number;
  readonly encoders: ModuleDict<Encoder>;
  readonly head: Linear;
  readonly heads: ModuleDict<Linear>;
  readonly targets: Readonly<Record<string, string>>;
  readonly mainLoss = MAIN;

  constructor(opts: LateFusionOptions) {
    super();
    const op = 'LateFusionClassifier';
    const names = Object.keys(opts.encoders);
    if (names.length < 2)
      throw new EngineError(
        `${op}: needs at least 2 modality encoders, got ${names.length} (${names.join(', ') || 'none'})`,
      );
    for (const n of names) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(n))
        throw new EngineError(`${op}: modality name '${n}' is not an identifier (letters, digits, _)`);
      if (n === MAIN)
        throw new EngineError(`${op}: a modality may not be named '${MAIN}', the multimodal logits' name`);
      const f = opts.encoders[n]!.features;
      if (!Number.isInteger(f) || f < 1)
        throw new EngineError(`${op}: encoder '${n}' features must be a positive integer, got ${f}`);
    }
    if (!Number.isInteger(opts.classes) || opts.classes < 1)
      throw new EngineError(`${op}: classes must be a positive integer, got ${opts.classes}`);
    const fusion = opts.fusion ?? 'concat';
    if (!FUSIONS.includes(fusion))
      throw new EngineError(`${op}: unknown fusion '${String(fusion)}' (valid: ${FUSIONS.join(', ')})`);
    const widths = names.map((n) => opts.encoders[n]!.features);
    if (fusion === 'sum' && widths.some((w) => w !== widths[0])) {
      throw new EngineError(
        `${op}: sum fusion needs encoders of equal feature size, got ` +
          `${names.map((n, i) => `${n} ${widths[i]}`).join(', ')} (use fusion 'concat')`,
      );
    }
    this.modalities = names;
    this.fusion = fusion;
    this.classes = opts.classes;
    const task = opts.task ?? 'label';
    this.targets = Object.fromEntries([MAIN, ...names].map((n) => [n, task]));

    this.encoders = this.child('encoders', new ModuleDict<Encoder>());
    for (const n of names) this.encoders.set(n, opts.encoders[n]!.module);
    const generator = new Generator(opts.seed ?? 0);
    const fused = fusion === 'concat' ? widths.reduce((a, b) => a + b, 0) : widths[0]!;
    this.head = this.child('head', new Linear(fused, opts.classes, { generator }));
    this.heads = this.child('heads', new ModuleDict<Linear>());
    for (const [i, n] of names.entries()) this.heads.set(n, new Linear(widths[i]!, opts.classes, { generator }));
  }

  /** { mm, <modality>... } logits, each (B, classes); call inside tidy. */
  logits(inputs: Readonly<Record<string, Tensor>>): Record<string, Tensor> {
    const op = 'LateFusionClassifier.logits';
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
      throw new EngineError(`${op}: ${wrong} (the model expects ${this.modalities.join(', ')})`);
    }
    const batch = inputs[this.modalities[0]!]!.shape[0];
    for (const n of this.modalities) {
      if (inputs[n]!.shape[0] !== batch)
        throw new EngineError(
          `${op}: input '${n}' has batch ${inputs[n]!.shape[0]}, '${this.modalities[0]}' has ${batch}`,
        );
    }
    const features = this.modalities.map((n) => this.encoders.items.get(n)!.forward(inputs[n]!));
    const out: Record<string, Tensor> = {};
    let fused: Tensor;
    if (this.fusion === 'concat') fused = concat(features, 1);
    else {
      fused = add(features[0]!, features[1]!);
      for (const f of features.slice(2)) {
        const s = add(fused, f);
        fused.dispose();
        fused = s;
      }
    }
    out[MAIN] = this.head.forward(fused);
    fused.dispose();
    this.modalities.forEach((n, i) => {
      out[n] = this.heads.items.get(n)!.forward(features[i]!);
      features[i]!.dispose(); // the graph keeps what backward needs
    });
    return out;
  }

  /** Modality → its encoder's parameters (the heads and the fusion head are outside every group). */
  encoderGroups(): Record<string, Tensor[]> {
    return Object.fromEntries(this.modalities.map((n) => [n, this.encoders.items.get(n)!.parameters()]));
  }
}
