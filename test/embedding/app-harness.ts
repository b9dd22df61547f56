// The app's side of the app-device tests (app-device.test.ts, app-device-buffers.test.ts): its
// own Dawn instance, a device per test file with its own compute pipeline and buffers, and the
// engine-side helpers that build and train the tests' model on a given device.
import { create } from 'webgpu';
import { device } from '../helpers.ts';
import { type Device, MultimodalStep, SGD, setDevice, tensor, tidy, type Tensor as T } from '../../engine/index.ts';
import { LateFusion } from '../fixtures/late-fusion.ts';

export const U = { MAP_READ: 0x01, COPY_SRC: 0x04, COPY_DST: 0x08, UNIFORM: 0x40, STORAGE: 0x80 };

// The app's own Dawn instance, shared by the test files (kept alive: Dawn crashes if it is collected).
export const instance = create([]);

/**
 * The app's device with default limits, as a page would request it (from an adapter of its own: an
 * adapter makes one device), and its own pipeline, buffers and passes on it. A test file that opens
 * one destroys it in test.after: a live device keeps Dawn polling (and Node running).
 */
export async function openApp() {
  const adapter = (await instance.requestAdapter())!;
  const appDevice = await adapter.requestDevice();

  /** The app's own pipeline: out = 2·a + b over n floats. */
  const appPipeline = appDevice.createComputePipeline({
    label: 'app: out = 2a + b',
    layout: 'auto',
    compute: {
      module: appDevice.createShaderModule({
        code: `@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < arrayLength(&out)) { out[id.x] = 2.0 * a[id.x] + b[id.x]; }
}`,
      }),
      entryPoint: 'main',
    },
  });

  function appBuffer(data: Float32Array, usage: number, label = 'app buffer'): GPUBuffer {
    const b = appDevice.createBuffer({ label, size: data.byteLength, usage, mappedAtCreation: true });
    new Float32Array(b.getMappedRange()).set(data);
    b.unmap();
    return b;
  }

  /** The app reads a buffer back with its own staging buffer. */
  async function appRead(src: GPUBuffer, bytes: number): Promise<Float32Array> {
    const stage = appDevice.createBuffer({ size: bytes, usage: U.MAP_READ | U.COPY_DST });
    const enc = appDevice.createCommandEncoder();
    enc.copyBufferToBuffer(src, 0, stage, 0, bytes);
    appDevice.queue.submit([enc.finish()]);
    await stage.mapAsync(U.MAP_READ);
    const out = new Float32Array(stage.getMappedRange().slice(0));
    stage.destroy();
    return out;
  }

  /** The app's compute pass, submitted on the shared queue: out = 2·a + (bytes [0, n·4) of b). */
  function appPass(a: GPUBuffer, b: GPUBuffer, out: GPUBuffer, n: number): void {
    const bind = appDevice.createBindGroup({
      layout: appPipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: a, size: n * 4 } },
        { binding: 1, resource: { buffer: b, size: n * 4 } },
        { binding: 2, resource: { buffer: out, size: n * 4 } },
      ],
    });
    const enc = appDevice.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(appPipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(Math.ceil(n / 64));
    pass.end();
    appDevice.queue.submit([enc.finish()]);
  }

  return { appDevice, appBuffer, appRead, appPass };
}

/** Builds a module on `dev` (modules draw their parameters on the current device). */
export function on<M>(dev: Device, build: () => M): M {
  setDevice(dev);
  try {
    return build();
  } finally {
    setDevice(device);
  }
}

/** Three MMPareto steps of the tests' two-encoder model; `between(step, headWeight)` runs after each. */
export async function train(
  dev: Device,
  between: (step: number, headWeight: T) => Promise<void> | void,
): Promise<Float32Array[]> {
  const m = on(dev, () => new LateFusion(4, 3, 21));
  const g = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7.1 + i * 1.3));
  const a = tensor(g(3 * 64, 1), [3, 1, 8, 8], { device: dev });
  const v = tensor(g(3 * 3 * 36, 2), [3, 3, 6, 6], { device: dev });
  const y = tensor(Int32Array.of(0, 2, 1), [3], { dtype: 'int32', device: dev });
  const opt = new SGD(m.parameters(), { lr: 0.1, momentum: 0.9 });
  const step = new MultimodalStep({
    method: 'mmpareto',
    encoders: { audio: m.audio.parameters(), visual: m.visual.parameters() },
    optimizer: opt,
  });
  for (let s = 0; s < 3; s++) {
    const losses = tidy(() => m.losses(a, v, y));
    step.step(losses);
    for (const l of Object.values(losses)) l.dispose();
    await between(s, m.head.weight);
  }
  const params = await Promise.all(m.parameters().map(async (p) => Float32Array.from(await p.toArray())));
  for (const t of [a, v, y]) t.dispose();
  step.dispose();
  opt.dispose();
  m.dispose();
  return params;
}
