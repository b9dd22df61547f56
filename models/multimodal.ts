// What a trainable model is to the trainer. A model maps a batch's named inputs to named logits;
// `targets` says which task's labels each logits entry is scored against (cross-entropy), and
// `mainLoss` + `encoderGroups()` wire engine/integrate's MultimodalStep:
// - late fusion (models/late-fusion.ts): logits { mm, <modality>... } all against 'label';
//   mainLoss 'mm'; one group per modality encoder, integrated from (g_mm, g_<modality>);
// - shared encoder with two task heads (models/shared-two-head.ts): logits { left, right };
//   mainLoss 'left'; one group 'right' = the shared encoder, integrated from (g_left, g_right).
import type { Tensor } from '../engine/index.ts';
import type { Module } from '../engine/nn/index.ts';

export interface TrainableModel extends Module {
  /** Forward on a batch (inputs keyed by modality, each (B, ...itemShape)); call inside tidy. */
  logits(inputs: Readonly<Record<string, Tensor>>): Record<string, Tensor>;
  /** Logits name → task name whose labels it is scored against. */
  readonly targets: Readonly<Record<string, string>>;
  /** The logits/loss name whose gradient is g_m (g_0) in every group. */
  readonly mainLoss: string;
  /** Loss name → the parameters integrated from (g_mainLoss, g_that loss); disjoint groups. */
  encoderGroups(): Record<string, Tensor[]>;
}
