// Public API of the engine (browser-safe: no Node modules).
export {
  Device,
  DeviceLostError,
  NONFINITE_COUNTERS,
  setDefaultGPU,
  type DeviceOptions,
  type GPUProvider,
} from './device.ts';
export { EngineError } from './errors.ts';
export {
  Tensor,
  type FromGPUBufferOptions,
  empty,
  tidy,
  keep,
  init,
  setDevice,
  getDevice,
  liveTensors,
  type DType,
  type Shape,
} from './tensor.ts';
export { noGrad, isGradEnabled, releaseGraph, type Rule, type StackedRule, type OpContext } from './graph.ts';
export {
  backward,
  grad,
  perLossGrads,
  perLossStats,
  type BackwardOptions,
  type GradOptions,
  type PerLossGradients,
  type PerLossOptions,
} from './backward.ts';
export * from './ops/index.ts';
export {
  tensor,
  writeTensor,
  assertFinite,
  full,
  zeros,
  ones,
  randn,
  rand,
  type CreateOptions,
  type RandomOptions,
} from './creation.ts';
export { Generator, manualSeed, defaultGenerator } from './random.ts';
export { DispatchTimer, type TimedDispatch } from './dispatch-timer.ts';
export { gradcheck, type GradcheckOptions, type GradcheckResult } from './gradcheck.ts';
export type { OpName, OpAttrs } from './op-attrs.ts';
export {
  Optimizer,
  SGD,
  AdamW,
  type SGDOptions,
  type AdamWOptions,
  type Gradient,
  type CombinedGradient,
  type OptimizerState,
  type StepGuard,
} from './optim.ts';
export * from './integrate/index.ts';
export * from './nn/index.ts';
export * from './audio/index.ts';
