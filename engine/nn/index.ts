// Modules (torch.nn style): parameters, buffers, state dicts, layers.
export { Module, Layer, Sequential, ModuleList, ModuleDict } from './module.ts';
export {
  Linear,
  Conv2d,
  BatchNorm2d,
  ReLU,
  GELU,
  Dropout,
  MaxPool2d,
  AdaptiveAvgPool2d,
  Flatten,
  LayerNorm,
  type Conv2dModuleOptions,
} from './layers.ts';
export { MultiheadAttention, type AttentionCallOptions } from './attention.ts';
export { TransformerBlock, PatchEmbed, type TransformerBlockOptions } from './transformer.ts';
export {
  uniform,
  fans,
  defaultWeight,
  kaimingNormalFanOut,
  xavierUniform,
  truncNormal,
  type InitOptions,
} from './init.ts';
