// The engine's one error type: bad input (naming the op and what was wrong), device and compile
// errors. A leaf module, so that every floor can throw it without importing the device.
export class EngineError extends Error {
  override name = 'EngineError';
}
