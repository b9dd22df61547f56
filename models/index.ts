// The package's `mmpareto-webgpu/models` entry: the networks, browser-safe like the engine.
export {
  LateFusionClassifier,
  FUSIONS,
  type Encoder,
  type EncoderSpec,
  type FusionKind,
  type LateFusionOptions,
} from './late-fusion.ts';
export { CGEncoder, type CGEncoderOptions } from './cg-encoder.ts';
export { ResNet18, BasicBlock, type ResNet18Options } from './resnet.ts';
export { MBT, MBT_TINY, MBT_VIT_BASE, type MBTConfig, type MBTOutput, type MBTSize, type ModalitySpec } from './mbt.ts';
export { MBTClassifier, type MBTClassifierOptions } from './mbt-classifier.ts';
export { SharedTwoHead, type SharedTwoHeadOptions } from './shared-two-head.ts';
export { buildModel, MODELS, type BuildModelOptions, type DatasetShape, type ModelName } from './registry.ts';
export type { TrainableModel } from './multimodal.ts';
