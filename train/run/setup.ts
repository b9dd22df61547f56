// A run's config turned into the objects that train: the data set and the model (what training,
// `mmpareto eval` and `mmpareto analyze` share), then the optimizer, the NonFiniteGuard, the
// MultimodalStep (method, encoder groups, γ) and the training loader (what only training needs).
// Every flag of RunConfig that shapes an object is read here and nowhere else.
import { AdamW, MultimodalStep, NonFiniteGuard, SGD, type Device } from '../../engine/index.ts';
import type { TrainableModel } from '../../models/multimodal.ts';
import { buildModel } from '../../models/registry.ts';
import type { Dataset } from '../data/dataset.ts';
import { Loader, normalizationStats } from '../data/loader.ts';
import { buildDataset } from '../data/registry.ts';
import type { RunConfig } from './config.ts';

/** A data set and model built from a config: what both training and `mmpareto eval` need. */
export interface Setup {
  dataset: Dataset;
  model: TrainableModel;
  normalize: Record<string, { mean: number[]; std: number[] }>;
}

export function buildSetup(config: RunConfig): Setup {
  const dataset = buildDataset(config.dataset, {
    seed: config.seed,
    dataDir: config.dataDir,
    trainLimit: config.trainLimit,
    valSize: config.valSize,
    av: { frames: config.frames, imageSize: config.imageSize, audio: config.audio },
  });
  if (config.batchSize > dataset.train.n)
    throw new Error(`--batch-size ${config.batchSize} is larger than the training split (${dataset.train.n} items)`);
  const model = buildModel(config.model, dataset, { seed: config.seed, fusion: config.fusion });
  // Item sources (crema-d, ave) normalise their own items.
  return { dataset, model, normalize: dataset.train.source ? {} : normalizationStats(dataset.train, dataset.inputs) };
}

/** What a training run steps with, besides the data set and model. */
export interface Training {
  optimizer: SGD | AdamW;
  guard: NonFiniteGuard;
  step: MultimodalStep;
  /** The training split, shuffled by (seed, epoch), incomplete last batch dropped. */
  loader: Loader;
}

export function buildTraining(config: RunConfig, setup: Setup, device: Device): Training {
  const { dataset, model } = setup;
  const params = model.parameters();
  const optimizer =
    config.optimizer === 'adamw'
      ? new AdamW(params, { lr: config.lr, weightDecay: config.weightDecay })
      : new SGD(params, { lr: config.lr, momentum: config.momentum, weightDecay: config.weightDecay });
  // BatchNorm running statistics: restored if a step is dropped (num_batches_tracked counts every training batch, as a
  // forward counter).
  const running = model
    .namedBuffers()
    .filter(([k]) => !k.endsWith('num_batches_tracked'))
    .map(([, t]) => t);
  const guard = new NonFiniteGuard(device, {
    mode: config.onNonFinite ?? 'stop',
    protect: running,
    ringSteps: config.logEvery,
  });
  const step = new MultimodalStep({
    method: config.method,
    encoders: model.encoderGroups(),
    optimizer,
    mainLoss: model.mainLoss,
    gamma: config.gamma,
    telemetrySteps: config.logEvery,
    guard,
  });
  const loader = new Loader(dataset.train, dataset, {
    batchSize: config.batchSize,
    shuffle: true,
    seed: config.seed,
    dropLast: true,
    normalize: setup.normalize,
  });
  return { optimizer, guard, step, loader };
}
