// Public API of the engine (browser-safe: no Node modules).
export { Device, DeviceLostError, EngineError, NONFINITE_COUNTERS, setDefaultGPU, type DeviceOptions, type GPUProvider } from './device.ts';
export { Tensor, type FromGPUBufferOptions, empty, tidy, keep, init, setDevice, getDevice, liveTensors, type DType, type Shape } from './tensor.ts';
export { noGrad, isGradEnabled, grad, releaseGraph, type GradOptions } from './autograd.ts';
export { perLossGrads, perLossStats, type PerLossOptions } from './per-loss.ts';
export { setStackedRule, type StackedRule } from './rules.ts';
export * from './ops/index.ts';
export { tensor, writeTensor, assertFinite, full, zeros, ones, randn, rand, type CreateOptions, type RandomOptions } from './creation.ts';
export { Generator, manualSeed, defaultGenerator } from './random.ts';
export { DispatchTimer, type TimedDispatch } from './dispatch-timer.ts';
export { gradcheck, type GradcheckOptions, type GradcheckResult } from './gradcheck.ts';
export type { OpName } from './rules.ts';
export { SGD, type SGDOptions, AdamW, type AdamWOptions, type FusedOptimizer, type FusedUpdate, type StepGuard } from './optim.ts';
export * from './integrate/index.ts';
export * from './nn/index.ts';
export * from './audio/index.ts';
