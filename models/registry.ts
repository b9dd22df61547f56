// Builds the trainer's model for a model name and a data set's shape (inputs and tasks):
// - one task, two or more inputs (cg-fmnist, synthetic-av): a LateFusionClassifier over one
//   encoder per modality ('cnn': CGEncoder, 'resnet18': ResNet18), or MBT ('mbt');
// - two tasks, one input (multi-fmnist): a SharedTwoHead over one CGEncoder or ResNet18.
// Every random draw comes from the seed, so one seed gives one initial state dict.
import { EngineError, Generator } from '../engine/index.ts';
import { CGEncoder } from './cg-encoder.ts';
import { FUSIONS, LateFusionClassifier, type EncoderSpec, type FusionKind } from './late-fusion.ts';
import type { ModalitySpec } from './mbt.ts';
import { MBTClassifier } from './mbt-classifier.ts';
import type { TrainableModel } from './multimodal.ts';
import { ResNet18 } from './resnet.ts';
import { SharedTwoHead } from './shared-two-head.ts';

export { MBTClassifier, type MBTClassifierOptions } from './mbt-classifier.ts';

/** The model names `buildModel` knows. */
export const MODELS = ['cnn', 'resnet18', 'mbt'] as const;
export type ModelName = (typeof MODELS)[number];

/** What the registry needs to know of a data set (train/data/dataset.ts's Dataset satisfies it). */
export interface DatasetShape {
  name: string;
  /** Modality → per-item shape [channels, height, width]. */
  inputs: Record<string, number[]>;
  /** Task → number of classes. */
  tasks: Record<string, number>;
}

export interface BuildModelOptions {
  seed: number;
  /**
   * Late-fusion combination (default 'concat'); for 'mbt': 'concat' = one head on the concatenated CLS features, 'sum'
   * = mean of per-modality head logits.
   */
  fusion?: FusionKind;
}

export function buildModel(name: ModelName, dataset: DatasetShape, opts: BuildModelOptions): TrainableModel {
  if (!MODELS.includes(name))
    throw new EngineError(`buildModel: unknown model '${String(name)}' (valid: ${MODELS.join(', ')})`);
  const fusion = opts.fusion ?? 'concat';
  if (!FUSIONS.includes(fusion))
    throw new EngineError(`buildModel: unknown fusion '${String(fusion)}' (valid: ${FUSIONS.join(', ')})`);
  const inputs = Object.entries(dataset.inputs);
  for (const [m, shape] of inputs) {
    if ((shape.length !== 3 && shape.length !== 4) || !shape.every((d) => Number.isInteger(d) && d > 0)) {
      throw new EngineError(
        `buildModel: ${dataset.name} input '${m}' has item shape [${shape.join(', ')}], expected [channels, ` +
          `height, width] or [frames, channels, height, width]`,
      );
    }
    // Frames (T, C, H, W): resnet18 folds T into the batch and averages features; mbt patches every frame.
    if (shape.length === 4 && name === 'cnn')
      throw new EngineError(
        `buildModel: model 'cnn' takes single images; ${dataset.name} input '${m}' has ${shape[0]} frames per item ` +
          `(use resnet18 or mbt)`,
      );
  }
  const tasks = Object.keys(dataset.tasks);
  // Sub-seeds for each encoder and the heads, drawn in a fixed order from the one seed.
  const seeds = new Generator(opts.seed);
  const nextSeed = () => seeds.int(2 ** 31);
  const encoder = (shape: number[]): EncoderSpec => {
    const inChannels = shape[shape.length - 3]!; // [C, H, W] or [T, C, H, W]
    return name === 'cnn'
      ? { module: new CGEncoder({ inChannels, seed: nextSeed() }), features: CGEncoder.featureDim }
      : { module: new ResNet18({ inChannels, seed: nextSeed() }), features: ResNet18.featureDim };
  };

  if (tasks.length === 2 && inputs.length === 1) {
    if (name === 'mbt') {
      throw new EngineError(
        `buildModel: model 'mbt' needs one task and two or more inputs; ${dataset.name} has 1 input and 2 tasks ` +
          `(use cnn or resnet18)`,
      );
    }
    const [input, shape] = inputs[0]!;
    return new SharedTwoHead({ encoder: encoder(shape), input, tasks: dataset.tasks, seed: nextSeed() });
  }
  if (tasks.length !== 1 || inputs.length < 2) {
    throw new EngineError(
      `buildModel: ${dataset.name} has ${inputs.length} input(s) and ${tasks.length} task(s); the models take one ` +
        `task over two or more inputs, or two tasks over one input`,
    );
  }
  const task = tasks[0]!;
  const classes = dataset.tasks[task]!;
  if (name === 'mbt') {
    const modalities: Record<string, ModalitySpec> = {};
    for (const [m, shape] of inputs) {
      // T frames of C × H × W are one C × (T·H) × W image to MBT: the frames stacked vertically,
      // so with a patch side dividing H every token is one frame's patch (models/mbt-classifier.ts).
      const [c, h, w] =
        shape.length === 4 ? [shape[1]!, shape[0]! * shape[2]!, shape[3]!] : (shape as [number, number, number]);
      modalities[m] = {
        channels: c,
        height: h,
        width: w,
        patch: shape.length === 4 ? patchFor(shape[2]!, w, true) : patchFor(h, w),
      };
    }
    return new MBTClassifier({ modalities, classes, fusion, task, seed: nextSeed() });
  }
  const encoders: Record<string, EncoderSpec> = {};
  for (const [m, shape] of inputs) encoders[m] = encoder(shape);
  return new LateFusionClassifier({ encoders, classes, fusion, task, seed: nextSeed() });
}

/**
 * ViT's 16 × 16 patches for inputs at least 64 on both sides (a remainder row or column of
 * patches is dropped, as by a stride-16 convolution: 257 × 188 spectrograms give 16 × 11 tokens);
 * smaller ones, the largest patch side ≤ 4 that divides both sides (4 for 16×16, 28×28 and 28×56).
 * `exact`: 16 only when it divides both sides (video frames, stacked: a patch must not straddle two).
 */
export function patchFor(height: number, width: number, exact = false): number {
  if (height >= 64 && width >= 64 && (!exact || (height % 16 === 0 && width % 16 === 0))) return 16;
  for (let p = 4; p > 1; p--) if (height % p === 0 && width % p === 0) return p;
  return 1;
}
