// What a trainable model is to the trainer. A model maps a batch's named inputs to named logits;
// `targets` says which task's labels each logits entry is scored against, and `losses(batch)`
// declares the losses once (cross-entropy of each logits entry against its task's labels) for the
// trainer, the benches and the tests. `mainLoss` + `encoderGroups()` wire engine/integrate's
// MultimodalStep:
// - late fusion (models/late-fusion.ts): logits { mm, <modality>... } all against 'label';
//   mainLoss 'mm'; one group per modality encoder, integrated from (g_mm, g_<modality>);
// - shared encoder with two task heads (models/shared-two-head.ts): logits { left, right };
//   mainLoss 'left'; one group 'right' = the shared encoder, integrated from (g_left, g_right).
import { crossEntropy, EngineError, type Tensor } from '../engine/index.ts';
import { Module } from '../engine/nn/index.ts';

/** A batch as the models see it: inputs by modality, (B, ...itemShape); int32 labels by task, (B). */
export interface LabelledBatch {
  readonly inputs: Readonly<Record<string, Tensor>>;
  readonly labels: Readonly<Record<string, Tensor>>;
}

export abstract class TrainableModel extends Module {
  /** Forward on a batch (inputs keyed by modality, each (B, ...itemShape)); call inside tidy. */
  abstract logits(inputs: Readonly<Record<string, Tensor>>): Record<string, Tensor>;
  /** Logits name → task name whose labels it is scored against. */
  abstract readonly targets: Readonly<Record<string, string>>;
  /** The logits/loss name whose gradient is g_m (g_0) in every group. */
  abstract readonly mainLoss: string;
  /** Loss name → the parameters integrated from (g_mainLoss, g_that loss); disjoint groups. */
  abstract encoderGroups(): Record<string, Tensor[]>;

  /** The losses of one forward: each logits entry's cross-entropy against its task's labels; call inside tidy. */
  losses(batch: LabelledBatch): Record<string, Tensor> {
    for (const [name, task] of Object.entries(this.targets)) {
      if (batch.labels[task]) continue;
      const given = Object.keys(batch.labels).join(', ') || 'none';
      const what = `no labels for task '${task}' (loss '${name}'); the batch has ${given}`;
      throw new EngineError(`${this.constructor.name}.losses: ${what}`);
    }
    const logits = this.logits(batch.inputs);
    const out: Record<string, Tensor> = {};
    for (const [name, task] of Object.entries(this.targets)) {
      out[name] = crossEntropy(logits[name]!, batch.labels[task]!);
    }
    return out;
  }
}
