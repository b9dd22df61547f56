// Where the engine's WebGPU errors go, so that they are thrown at its next sync point naming the op.
//
// - A device the engine created (Device.create) is its own: an `uncapturederror` listener takes
//   every error, and preventDefault() stops the browser's (or Dawn's) console print.
// - An app's device (Device.fromGPUDevice) is not: a listener there would see, swallow and
//   misattribute the APP's errors. So the engine adds none. Instead each stretch of engine calls
//   into the device (creating a buffer, a pipeline or a bind group, writing, submitting) runs
//   inside error scopes of its own, pushed and popped synchronously around that stretch: no app
//   call can run in between, so the scopes catch only engine errors, and the app's error-scope
//   stack is left exactly as it was found.
import { EngineError } from './errors.ts';

const FILTERS: readonly GPUErrorFilter[] = ['validation', 'out-of-memory'];

export class DeviceErrors {
  private first: Error | null = null;
  private readonly pending = new Set<Promise<void>>();

  /** `scoped`: the device belongs to an app (error scopes); else a listener takes every error. */
  constructor(
    private readonly gpu: GPUDevice,
    readonly scoped: boolean,
    private readonly lastOp: () => string,
  ) {
    if (scoped) return;
    gpu.addEventListener('uncapturederror', (ev) => {
      ev.preventDefault(); // reported through the next sync point instead of the console
      this.record(`WebGPU error (near op '${this.lastOp()}'): ${(ev as GPUUncapturedErrorEvent).error.message}`);
    });
  }

  /** Keeps the first error until take(). */
  record(message: string): void {
    this.first ??= new EngineError(message);
  }

  /** Runs `fn` (engine calls into the device) inside the engine's own error scopes on an app's device. */
  guard<T>(op: string, fn: () => T): T {
    if (!this.scoped) return fn();
    for (const f of FILTERS) this.gpu.pushErrorScope(f);
    try {
      return fn();
    } finally {
      for (let i = 0; i < FILTERS.length; i++) {
        const p: Promise<void> = this.gpu.popErrorScope().then(
          (e) => {
            this.pending.delete(p);
            if (e) this.record(`WebGPU ${e.constructor.name} in op '${op}': ${e.message}`);
          },
          (e: Error) => {
            this.pending.delete(p);
            this.record(`internal: error scope of op '${op}' could not be popped: ${e.message}`);
          },
        );
        this.pending.add(p);
      }
    }
  }

  /** Waits until every scope popped so far has reported. */
  async settle(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
  }

  /** The first error recorded since the last take(), or null. */
  take(): Error | null {
    const e = this.first;
    this.first = null;
    return e;
  }
}
