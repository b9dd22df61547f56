// The op table: every op named in rules.ts must have a backward rule here, or tsc fails.
import { setRules, type RuleTable } from '../rules.ts';
import { elementwiseRules } from './elementwise.ts';
import { reduceRules } from './reduce.ts';
import { shapeRules } from './shape.ts';
import { matmulRules } from './matmul.ts';
import { crossEntropyRules } from './cross-entropy.ts';
// -- conv imports
// -- batchnorm, pooling imports
// -- layerNorm, gelu, softmax, dropout imports
// -- attention imports

setRules((): RuleTable => ({ ...elementwiseRules, ...reduceRules, ...shapeRules, ...matmulRules, ...crossEntropyRules,
  // -- conv rules
  // -- batchnorm, pooling rules
  // -- layerNorm, gelu, softmax, dropout rules
  // -- attention rules
}));

export * from './elementwise.ts';
export { sum, mean, max } from './reduce.ts';
export { reshape, permute, transpose, slice, concat, expand } from './shape.ts';
export { matmul, linear, matmulKernel, type MatmulOptions } from './matmul.ts';
export { crossEntropy, type CrossEntropyOptions } from './cross-entropy.ts';
// -- conv exports
// -- batchnorm, pooling exports
// -- layerNorm, gelu, softmax, dropout exports
// -- attention exports
