// What a data set is to the trainer: named input modalities (per-item shapes), named
// classification tasks (class counts), and three splits holding host arrays. Items are stored
// row-major, item after item: inputs[m] has n·prod(shape) floats, labels[t] has n ints. A split
// too large for memory (video frames) has a `source` instead, read batch by batch (inputs {}).
import type { Tensor } from '../../engine/index.ts';

export interface Split {
  n: number;
  inputs: Record<string, Float32Array>;
  labels: Record<string, Int32Array>;
  source?: ItemSource;
}

/** Items read on demand (from disk), with optional per-modality GPU transforms after upload. */
export interface ItemSource {
  /** Modality → per-item shape of what `read` writes (before `onDevice`). */
  hostShapes: Record<string, number[]>;
  /** Writes items' inputs into dst (per modality, items × hostShape); `epoch` seeds augmentation. */
  read(items: Int32Array, dst: Record<string, Float32Array>, epoch: number): void;
  /** Modality → the GPU map from the uploaded host batch to the model's input (e.g. waveform → spectrogram). */
  onDevice?: Record<string, (x: Tensor) => Tensor>;
}

export interface Dataset {
  /** Registry name, e.g. 'cg-fmnist'. */
  name: string;
  /** Modality → per-item shape, e.g. { gray: [1, 28, 28], color: [3, 28, 28] }. */
  inputs: Record<string, number[]>;
  /** Task → number of classes, e.g. { label: 10 } or { left: 10, right: 10 }. */
  tasks: Record<string, number>;
  train: Split;
  val: Split;
  test: Split;
  /** One line for logs and the report: source, sizes, seed. */
  description: string;
}
