// What a data set is to the trainer: named input modalities (per-item shapes), named
// classification tasks (class counts), and three splits holding host arrays. Items are stored
// row-major, item after item: inputs[m] has n·prod(shape) floats, labels[t] has n ints.
export interface Split {
  n: number;
  inputs: Record<string, Float32Array>;
  labels: Record<string, Int32Array>;
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
