// Gradient integrators (MMPareto and peers), their telemetry, PCGrad's host-side order, the step, and the non-finite
// guard.
export { GradientIntegrator } from './integrator.ts';
export {
  INTEGRATOR_METHODS,
  type IntegratorMethod,
  type IntegratorOptions,
  type IntegratorGroup,
} from './options.ts';
export {
  IntegratorTelemetry,
  magnitudeHistogram,
  type MagnitudeHistogram,
  type TelemetryRecord,
  type TelemetryReadout,
  type TelemetryReadOptions,
  type NonFiniteReport,
} from './telemetry.ts';
export { pcgradOrder } from './pcgrad-order.ts';
export { MultimodalStep, type MultimodalStepOptions } from './multimodal-step.ts';
export {
  NonFiniteGuard,
  type NonFiniteGuardOptions,
  type GuardReadout,
  type GuardedStep,
  type NonFiniteReason,
} from './guard.ts';
