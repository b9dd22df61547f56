// An app that owns its GPUDevice and hands it to the engine (Device.fromGPUDevice): the app's own
// compute work between training steps, its error scopes and uncaptured errors, buffers shared
// both ways (Tensor.fromGPUBuffer, tensor.gpuBuffer()), and the refusals of bad input.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { create } from 'webgpu';
import { device } from '../helpers.ts';
import { dawnGPU } from '../../train/node.ts';
import {
  Device,
  EngineError,
  MultimodalStep,
  SGD,
  Tensor,
  liveTensors,
  matmul,
  releaseGraph,
  scaledDotProductAttention,
  setDefaultGPU,
  setDevice,
  sum,
  tensor,
  tidy,
  type Tensor as T,
} from '../../engine/index.ts';
import { unaryKernel } from '../../shaders/elementwise.ts';
import { LateFusion } from '../fixtures/late-fusion.ts';

const test = suite('app device');
const U = { MAP_READ: 0x01, COPY_SRC: 0x04, COPY_DST: 0x08, UNIFORM: 0x40, STORAGE: 0x80 };

// The app's side: its own Dawn instance (kept alive: Dawn crashes if it is collected) and device
// with default limits, as a page would request it.
const instance = create([]);
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

/** Builds a module on `dev` (modules draw their parameters on the current device). */
function on<M>(dev: Device, build: () => M): M {
  setDevice(dev);
  try {
    return build();
  } finally {
    setDevice(device);
  }
}

/** Three MMPareto steps of the tests' two-encoder model; `between(step, headWeight)` runs after each. */
async function train(
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

test("the app's compute pass between engine training steps: the app's and the engine's results both hold", async () => {
  const before = liveTensors.count;
  const engine = await Device.fromGPUDevice(appDevice);
  assert.not.ok(engine.ownsDevice);
  const n = 3 * 8; // the head weight (3 classes × 2·4 features)
  const input = Float32Array.from({ length: n }, (_, i) => i / 7 - 1);
  const a = appBuffer(input, U.STORAGE | U.COPY_DST, 'app input');
  const out = appDevice.createBuffer({ label: 'app output', size: n * 4, usage: U.STORAGE | U.COPY_SRC });
  const appResults: Float32Array[] = [];
  const expected: Float64Array[] = [];
  const onApp = await train(engine, async (_, w) => {
    assert.is(w.byteLength, n * 4);
    appPass(a, w.gpuBuffer(), out, n); // gpuBuffer() flushed the step, so the pass sees the updated weight
    appResults.push(await appRead(out, n * 4));
    const host = await w.toArray();
    expected.push(Float64Array.from(input, (x, i) => 2 * x + host[i]!));
  });
  // The app's results: 2·a + w of each step, exact in float32 (one multiply by 2, one add).
  appResults.forEach((r, s) => {
    assert.equal([...r], [...Float32Array.from(expected[s]!)], `app result after step ${s}`);
  });
  assert.ok(
    appResults[0]!.some((x, i) => x !== appResults[2]![i]),
    'the weight changed between steps',
  );
  // The engine's results: bit-identical to the same training on an engine-owned device (same
  // adapter, same kernels, deterministic), where no app work ran in between.
  const alone = await train(device, () => undefined);
  onApp.forEach((p, i) => {
    assert.equal([...p], [...alone[i]!], `parameter ${i}`);
  });
  engine.destroy();
  a.destroy();
  out.destroy();
  assert.is(liveTensors.count, before, 'no leaks');
});

test(
  "error scopes: the app's stack is left as found, " + "the app's errors reach the app, the engine's reach the engine",
  async () => {
    const engine = await Device.fromGPUDevice(appDevice);
    // 1. The app's own scope around engine work still catches the app's error, and only its own.
    appDevice.pushErrorScope('validation');
    await train(engine, () => undefined);
    appDevice.createBuffer({ size: 4, usage: U.STORAGE | U.MAP_READ }); // invalid: MAP_READ allows only COPY_DST
    const caught = await appDevice.popErrorScope();
    assert.ok(caught, "the app's scope caught the app's error");
    assert.match(caught!.message, /usage/i);
    // The engine pushed and popped its own scopes: the stack is empty again, so one more pop rejects.
    try {
      await appDevice.popErrorScope();
      assert.unreachable('the error-scope stack should be empty');
    } catch (e) {
      assert.is((e as Error).name, 'OperationError');
    }
    // 2. An uncaptured app error reaches the app's listener; the engine neither swallows it nor throws it.
    const seen: string[] = [];
    const listener = (ev: Event) => {
      ev.preventDefault(); // the app's choice: no console print
      seen.push((ev as GPUUncapturedErrorEvent).error.message);
    };
    appDevice.addEventListener('uncapturederror', listener);
    appDevice.createBuffer({ label: 'app bad buffer', size: 4, usage: U.STORAGE | U.MAP_READ });
    const x = tensor([1, 2, 3], [3], { device: engine });
    assert.equal([...(await x.toArray())], [1, 2, 3]); // an engine sync point: no error
    await engine.sync();
    await appDevice.queue.onSubmittedWorkDone();
    assert.is(seen.length, 1, "the app's listener got its error");
    // 3. An engine error (a dispatch whose output buffer lacks STORAGE usage, a validation error
    // only the GPU reports) is the engine's: thrown at its next sync, naming the op, and never shown
    // to the app's listener.
    const notStorage = appDevice.createBuffer({ label: 'not storage', size: 16, usage: U.COPY_DST | U.MAP_READ });
    engine.dispatch({
      kernel: unaryKernel,
      op: 'missingBinding',
      variant: { code: 'exp' },
      params: { n: 3, nan: 0, s: 0 },
      bindings: { xs: x.rawBuffer, ys: notStorage },
    });
    try {
      await engine.sync();
      assert.unreachable('expected the engine to report its validation error');
    } catch (e) {
      assert.instance(e, EngineError);
      assert.match((e as Error).message, /missingBinding/);
    }
    await appDevice.queue.onSubmittedWorkDone();
    assert.is(seen.length, 1, "the engine's error did not reach the app's listener");
    appDevice.removeEventListener('uncapturederror', listener);
    notStorage.destroy();
    x.dispose();
    engine.destroy();
  },
);

test("destroy() frees the engine's buffers and leaves the app's device alive", async () => {
  const engine = await Device.fromGPUDevice(appDevice);
  const t = tensor([1, 2, 3, 4], [4], { device: engine });
  await t.toArray();
  t.dispose();
  await engine.sync();
  engine.destroy();
  assert.is(engine.pool.stats.bytesAllocated, 0);
  const lost = await Promise.race([
    appDevice.lost.then(() => 'lost'),
    appDevice.queue.onSubmittedWorkDone().then(() => 'alive'),
  ]);
  assert.is(lost, 'alive');
  const a = appBuffer(Float32Array.of(1, 2), U.STORAGE);
  const b = appBuffer(Float32Array.of(10, 20), U.STORAGE);
  const out = appDevice.createBuffer({ size: 8, usage: U.STORAGE | U.COPY_SRC });
  appPass(a, b, out, 2);
  assert.equal([...(await appRead(out, 8))], [12, 24]);
  for (const buf of [a, b, out]) buf.destroy();
});

test('fromGPUDevice on a lost device: a clear error', async () => {
  const other = await (await instance.requestAdapter())!.requestDevice();
  other.destroy();
  try {
    await Device.fromGPUDevice(other);
    assert.unreachable('expected an error');
  } catch (e) {
    assert.instance(e, EngineError);
    assert.match((e as Error).message, /Device\.fromGPUDevice: the GPUDevice is lost \(reason 'destroyed'/);
    assert.match((e as Error).message, /requestDevice/);
  }
});

test("Tensor.fromGPUBuffer: the app's buffer without a copy, never pooled or destroyed by the engine", async () => {
  const engine = await Device.fromGPUDevice(appDevice);
  const data = Float32Array.of(1, 2, 3, 4, 5, 6);
  // One float more than the shape needs: the tensor's values are bytes [0, 24).
  const buf = appBuffer(Float32Array.of(...data, 99), U.STORAGE | U.COPY_SRC | U.COPY_DST, 'app weights');
  const w = Tensor.fromGPUBuffer(buf, [2, 3], { device: engine, requiresGrad: true });
  assert.ok(w.rawBuffer === buf, 'no copy');
  assert.is(w.byteLength, 24);
  const x = tensor([1, 0, -1, 2, 1, 0], [3, 2], { device: engine });
  const y = matmul(w, x); // [[1·1+2·(−1)+3·1, 1·0+2·2+3·0], [4−5+6, 0+10+0]] = [[2, 4], [5, 10]]
  assert.equal([...(await y.toArray())], [2, 4, 5, 10]);
  // As a parameter: SGD updates the app's buffer in place; the app sees it with its own readback.
  const loss = tidy(() =>
    matmul(
      tensor([[1, 1]], undefined, { device: engine }),
      matmul(y, tensor([[1], [1]], undefined, { device: engine })),
    ),
  );
  loss.backward();
  const opt = new SGD([w], { lr: 0.5 });
  opt.step();
  // ∂(Σ_ij (w x)_ij)/∂w_ik = Σ_j x_kj, the row sums of x: [1, 1, 1]; so every w_ik drops by 0.5.
  const updated = Float32Array.from(data, (v) => v - 0.5);
  engine.flush();
  assert.equal(
    [...(await appRead(buf, 28))],
    [...updated, 99],
    "the app's buffer holds the update; bytes 24 on untouched",
  );
  opt.dispose();
  for (const t of [x, y, loss]) t.dispose();
  // dispose() only forgets the buffer: it is not pooled (later tensors never get it) nor destroyed.
  w.dispose();
  await engine.sync();
  const later = Array.from({ length: 4 }, () => tensor([0, 0, 0, 0, 0, 0], [2, 3], { device: engine }));
  assert.ok(
    later.every((t) => t.rawBuffer !== buf),
    'never handed out by the pool',
  );
  for (const t of later) t.dispose();
  engine.destroy();
  assert.equal([...(await appRead(buf, 28))], [...updated, 99], 'still alive after Device.destroy()');
  buf.destroy();
});

test('Tensor.fromGPUBuffer refuses a buffer too small or without STORAGE, before any dispatch', async () => {
  const engine = await Device.fromGPUDevice(appDevice);
  const small = appDevice.createBuffer({ label: 'small', size: 16, usage: U.STORAGE });
  const uniform = appDevice.createBuffer({ label: 'uniforms', size: 64, usage: U.UNIFORM | U.COPY_DST });
  const noCopy = appDevice.createBuffer({ label: 'no copy', size: 16, usage: U.STORAGE });
  const tensors = liveTensors.count;
  const dispatches = engine.batcher.stats.dispatches;
  const refuse = (fn: () => unknown, ...fragments: string[]) => {
    try {
      fn();
      assert.unreachable(`expected an error mentioning ${fragments.join(', ')}`);
    } catch (e) {
      assert.instance(e, EngineError);
      for (const f of fragments) assert.ok((e as Error).message.includes(f), `"${(e as Error).message}" lacks "${f}"`);
    }
  };
  refuse(
    () => Tensor.fromGPUBuffer(small, [2, 3], { device: engine }),
    "buffer 'small' has 16 bytes",
    'shape [2, 3] of float32 needs 24',
  );
  refuse(
    () => Tensor.fromGPUBuffer(uniform, [4], { device: engine }),
    "buffer 'uniforms' lacks GPUBufferUsage.STORAGE",
  );
  refuse(() => Tensor.fromGPUBuffer(small, [2, -1], { device: engine }), 'invalid shape');
  assert.is(liveTensors.count, tensors, 'no tensor made');
  assert.is(engine.batcher.stats.dispatches, dispatches, 'nothing dispatched');
  // Reading back needs COPY_SRC: a clear error instead of a validation error at the submit.
  const t = Tensor.fromGPUBuffer(noCopy, [4], { device: engine });
  try {
    await t.toArray();
    assert.unreachable('expected an error');
  } catch (e) {
    assert.match((e as Error).message, /toArray: the source buffer lacks GPUBufferUsage.COPY_SRC/);
  }
  t.dispose();
  await engine.sync();
  engine.destroy();
  for (const b of [small, uniform, noCopy]) b.destroy();
});

test(
  "a kernel binding more storage buffers than the app's device allows is refused, " + 'naming the op and the limit',
  async () => {
    // The app's device has the default 8 storage buffers per stage; attention's backward binds 9.
    assert.is(appDevice.limits.maxStorageBuffersPerShaderStage, 8);
    const engine = await Device.fromGPUDevice(appDevice);
    const r = (shape: number[], seed: number) =>
      tensor(
        Float32Array.from({ length: shape.reduce((a, b) => a * b) }, (_, i) => Math.sin(seed + i)),
        shape,
        { device: engine, requiresGrad: true },
      );
    const [q, k, v] = [r([1, 2, 3, 4], 1), r([1, 2, 3, 4], 2), r([1, 2, 3, 4], 3)];
    const y = scaledDotProductAttention(q, k, v); // the forward binds 5: fine
    const loss = sum(y);
    try {
      loss.backward();
      assert.unreachable('expected an error');
    } catch (e) {
      assert.instance(e, EngineError);
      assert.match(
        (e as Error).message,
        new RegExp(
          /attentionGradQuery: its kernel binds (9|10) storage buffers, /.source +
            /above this device's maxStorageBuffersPerShaderStage \(8\)/.source,
        ),
      );
      assert.match((e as Error).message, /requiredLimits: \{ maxStorageBuffersPerShaderStage: (9|10) \}/);
    }
    await engine.sync(); // no validation error followed: nothing invalid reached the device
    releaseGraph(loss);
    for (const t of [q, k, v, y, loss]) t.dispose();
    engine.destroy();
  },
);

test('no WebGPU: Device.create names what is missing', async () => {
  setDefaultGPU(null); // as in a JavaScript runtime with no navigator.gpu and no Dawn registered
  try {
    await Device.create();
    assert.unreachable('expected an error');
  } catch (e) {
    assert.instance(e, EngineError);
    assert.match((e as Error).message, /No WebGPU: navigator\.gpu is undefined/);
    assert.match((e as Error).message, /'webgpu' package/);
  } finally {
    setDefaultGPU(dawnGPU);
  }
});

// The app owns its device, and a live device keeps Dawn polling (and Node running): release it.
test.after(() => appDevice.destroy());

test.run();
