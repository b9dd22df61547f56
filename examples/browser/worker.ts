// The training worker: owns the WebGPU device (as an app would: it requests it and hands it to
// the engine with Device.fromGPUDevice), checks three ops' gradients with gradcheck, then trains
// while the page draws. Running here keeps the page responsive.
import {
  Device,
  Generator,
  conv2d,
  crossEntropy,
  gradcheck,
  randn,
  scaledDotProductAttention,
  setDevice,
  tensor,
  type GradcheckResult,
  type Tensor,
} from '../../engine/index.ts';
import { ExampleTraining } from './training.ts';
import type { FromWorker, GradcheckReport, ToWorker } from './messages.ts';

const post = (m: FromWorker) => (self as unknown as { postMessage(m: FromWorker): void }).postMessage(m);

let training: ExampleTraining | null = null;
let running = false;
let ready: Promise<Device> | null = null;

async function openDevice(): Promise<Device> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu)
    throw new Error('navigator.gpu is undefined in this Web Worker: this browser exposes no WebGPU to workers.');
  const adapter = await gpu.requestAdapter();
  if (!adapter)
    throw new Error(
      'navigator.gpu.requestAdapter() found no adapter: WebGPU is disabled or no GPU driver supports it.',
    );
  // Default limits suffice for most kernels; attention's backward binds up to 10 storage buffers.
  const maxStorageBuffersPerShaderStage = Math.min(10, adapter.limits.maxStorageBuffersPerShaderStage);
  const device = await Device.fromGPUDevice(
    await adapter.requestDevice({ requiredLimits: { maxStorageBuffersPerShaderStage } }),
  );
  setDevice(device);
  post({ type: 'device', adapter: device.adapterName });
  return device;
}

/** gradcheck of one op at a small random point, reported with its worst error. */
async function check(name: string, fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[]): Promise<GradcheckReport> {
  const t0 = performance.now();
  let r: GradcheckResult;
  try {
    r = await gradcheck(fn, inputs, { raise: false });
  } catch (e) {
    return {
      name,
      ok: false,
      maxAbsErr: Number.NaN,
      tolerance: Number.NaN,
      ms: performance.now() - t0,
      error: (e as Error).message,
    };
  } finally {
    for (const t of inputs) t.dispose();
  }
  const worst = r.inputs.reduce((a, b) => (b.maxAbsErr - b.tolAtWorst > a.maxAbsErr - a.tolAtWorst ? b : a));
  return { name, ok: r.ok, maxAbsErr: worst.maxAbsErr, tolerance: worst.tolAtWorst, ms: performance.now() - t0 };
}

async function gradchecks(): Promise<void> {
  const generator = new Generator(7);
  const r = (shape: number[]) => randn(shape, { generator });
  const labels = tensor(Int32Array.of(0, 3, 1, 4), [4], { dtype: 'int32' });
  const reports = [
    await check('conv2d (stride 2, padding 1)', (x, w, b) => conv2d(x, w, b, { stride: 2, padding: 1 }), [
      r([2, 2, 5, 5]),
      r([3, 2, 3, 3]),
      r([3]),
    ]),
    await check('attention (2 heads, 3 queries, 4 keys)', (q, k, v) => scaledDotProductAttention(q, k, v), [
      r([1, 2, 3, 4]),
      r([1, 2, 4, 4]),
      r([1, 2, 4, 4]),
    ]),
    await check('cross-entropy (4 × 5 logits)', (z) => crossEntropy(z, labels), [r([4, 5])]),
  ];
  labels.dispose();
  for (const report of reports) post({ type: 'gradcheck', report });
}

async function train(device: Device): Promise<void> {
  training ??= new ExampleTraining(device);
  const t = training;
  running = true;
  while (running) {
    const t0 = performance.now();
    for (let i = 0; i < t.config.readEvery; i++) t.trainStep();
    const records = await t.read(); // the one wait per window: the GPU finished these steps
    post({ type: 'progress', records, stepsPerSecond: (records.length * 1000) / (performance.now() - t0) });
  }
  post({ type: 'stopped', steps: t.stepsDone });
}

function fail(e: unknown): void {
  running = false;
  post({ type: 'error', message: (e as Error).message ?? String(e) });
}

self.onmessage = (ev: MessageEvent<ToWorker>) => {
  const m = ev.data;
  if (m.type === 'start' && !running && ready) ready.then(train).catch(fail);
  if (m.type === 'stop') running = false;
};

ready = openDevice();
ready
  .then(gradchecks)
  .then(() => post({ type: 'ready' }))
  .catch(fail);
