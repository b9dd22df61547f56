// The engine's error type: every refusal of bad input and every GPU error it reports.
export class EngineError extends Error {
  override name = 'EngineError';
}
