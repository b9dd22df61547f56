// A training run's configuration: what `mmpareto train` parses from its flags and writes to
// the run directory's config.json (with `version` and `device` added at the start of a run).
import type { IntegratorMethod } from '../../engine/index.ts';
import { MODELS, type ModelName } from '../../models/registry.ts';
import { DATASETS, type DatasetName } from '../data/registry.ts';

export { DATASETS, MODELS, type DatasetName, type ModelName };

export const OPTIMIZERS = ['sgd', 'adamw'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

export interface RunConfig {
  dataset: DatasetName;
  model: ModelName;
  method: IntegratorMethod;
  epochs: number;
  batchSize: number;
  optimizer: OptimizerName;
  lr: number;
  momentum: number;
  weightDecay: number;
  /** 'none' or 'cosine' (cosine decay to 0 over all steps). */
  lrSchedule: 'none' | 'cosine';
  /** MMPareto's magnitude factor γ. */
  gamma: number;
  /** Late-fusion combination of the modality features. */
  fusion: 'concat' | 'sum';
  seed: number;
  /** Fashion-MNIST directory (the gzipped IDX files), or a directory made by `mmpareto prepare` (crema-d, ave). */
  dataDir: string;
  /** crema-d / ave: frames per clip, frame side, audio features (absent in runs made before them). */
  frames?: number;
  imageSize?: number;
  audio?: 'stft' | 'fbank';
  /** Use at most this many training items (0: all), for quick runs. */
  trainLimit: number;
  /** Training items held out for validation. */
  valSize: number;
  /** Log mean losses (and read telemetry) every this many steps. */
  logEvery: number;
  /**
   * At a non-finite (NaN/±Inf) loss or gradient: 'stop' the run (nothing of that step or later is
   * applied) or 'skip' (drop such steps and train on). Absent in configs written before it: 'stop'.
   */
  onNonFinite?: 'stop' | 'skip';
  outDir: string;
}

/** The package's version, written into every run's config.json. */
export const VERSION = '0.1.0';

export const DEFAULT_DATA_DIR = '/usr/share/datasets/fashion-mnist';
