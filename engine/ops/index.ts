// The ops, and their backward rules as one table: every op declared in OpAttrs (engine/op-attrs.ts,
// filled by the op files) must have a rule here, or tsc fails. engine/backward.ts imports it.
import type { RuleTable } from '../graph.ts';
import { elementwiseRules } from './elementwise.ts';
import { reduceRules } from './reduce.ts';
import { shapeRules } from './shape.ts';
import { matmulRules } from './matmul.ts';
import { crossEntropyRules } from './cross-entropy.ts';
import { convRules } from './conv.ts';
import { batchNormRules } from './batchnorm.ts';
import { poolRules } from './pool.ts';
import { layerNormRules } from './layernorm.ts';
import { geluRules } from './gelu.ts';
import { softmaxRules } from './softmax.ts';
import { dropoutRules } from './dropout.ts';
import { attentionRules } from './attention.ts';
import { frameRules } from './frame.ts';

export const rules: RuleTable = {
  ...elementwiseRules,
  ...reduceRules,
  ...shapeRules,
  ...matmulRules,
  ...crossEntropyRules,
  ...convRules,
  ...batchNormRules,
  ...poolRules,
  ...layerNormRules,
  ...geluRules,
  ...softmaxRules,
  ...dropoutRules,
  ...attentionRules,
  ...frameRules,
};

export * from './elementwise.ts';
export { sum, mean, max } from './reduce.ts';
export { reshape, permute, transpose, slice, concat, expand } from './shape.ts';
export { matmul, linear, matmulKernel, type MatmulOptions } from './matmul.ts';
export { crossEntropy, type CrossEntropyOptions } from './cross-entropy.ts';
export { conv2d, type Conv2dOptions } from './conv.ts';
export { batchNorm2d, type BatchNormOptions } from './batchnorm.ts';
export { maxPool2d, avgPool2d, adaptiveAvgPool2d, type Pool2dOptions } from './pool.ts';
export { layerNorm, type LayerNormOptions } from './layernorm.ts';
export { gelu, type GeluOptions } from './gelu.ts';
export { softmax, logSoftmax } from './softmax.ts';
export { dropout, type DropoutOptions } from './dropout.ts';
export { scaledDotProductAttention, type AttentionOptions } from './attention.ts';
export { frameSignal, frameCount, type FrameOptions, type PadMode } from './frame.ts';
