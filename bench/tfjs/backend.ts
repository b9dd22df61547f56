// tfjs-webgpu 4.22 on the engine's own Dawn device, for same-process comparisons.
// Both libraries then share one GPUDevice and queue, so interleaved timings see the same
// machine load; each side's work is timed up to its own completion (tf: dataSync of a
// scalar it computed last; ours: device.sync()).
// The union package, as tfjs users load it in Node: tfjs-core's Node bundle alone registers
// no gradient functions (tf.grads would fail), the union bundle does.
import * as tf from '@tensorflow/tfjs';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import type { Device } from '../../engine/index.ts';

export { tf };

let ready: Promise<void> | null = null;

/** Registers and selects tfjs's WebGPU backend on `device.gpu` (idempotent). */
export function tfjsOn(device: Device): Promise<void> {
  ready ??= (async () => {
    // tfjs only checks that navigator.gpu exists; the device it uses is the one given below.
    const g = globalThis as { navigator?: { gpu?: unknown } };
    if (!g.navigator?.gpu)
      Object.defineProperty(globalThis, 'navigator', {
        value: { ...(g.navigator ?? {}), gpu: {} },
        configurable: true,
      });
    tf.registerBackend('webgpu', () => new WebGPUBackend(device.gpu), 10);
    const ok = await tf.setBackend('webgpu');
    if (!ok) throw new Error('tfjs: could not start the WebGPU backend on the engine device');
    await tf.ready();
  })();
  return ready;
}

/** Waits until tfjs's queued work is done (reads one element of `t`, then disposes the scalar). */
export async function tfSync(t: tf.Tensor): Promise<void> {
  const s = tf.tidy(() => tf.sum(tf.slice(tf.reshape(t, [-1]), 0, 1)));
  await s.data();
  s.dispose();
}
