// An app that owns its GPUDevice and hands it to the engine (Device.fromGPUDevice): buffers shared
// both ways (Tensor.fromGPUBuffer, tensor.gpuBuffer()) and the refusals of bad input (buffers too
// small or without STORAGE, a kernel over the device's storage-buffer limit).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Device,
  EngineError,
  SGD,
  Tensor,
  liveTensors,
  matmul,
  releaseGraph,
  scaledDotProductAttention,
  sum,
  tensor,
  tidy,
} from '../../engine/index.ts';
import { U, openApp } from './app-harness.ts';

const test = suite('app device buffers');
const { appDevice, appBuffer, appRead } = await openApp();

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

// The app owns its device, and a live device keeps Dawn polling (and Node running): release it.
test.after(() => appDevice.destroy());

test.run();
