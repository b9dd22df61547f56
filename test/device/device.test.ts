// Device, pipeline cache, batcher, buffer pool and error reporting.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { device, throwsWith } from '../helpers.ts';
import { Device, EngineError, add, empty, exp, tensor, zeros } from '../../engine/index.ts';
import { unaryKernel } from '../../shaders/elementwise.ts';
import { sgdKernel } from '../../shaders/optim.ts';
import { sizeClass } from '../../engine/buffer-pool.ts';

const test = suite('device');

test('no adapter: the error says what to install', async () => {
  const fakeGPU = { requestAdapter: async () => null } as unknown as GPU;
  try {
    await Device.create({ gpu: fakeGPU });
    assert.unreachable('expected an error');
  } catch (e) {
    assert.instance(e, EngineError);
    assert.match((e as Error).message, /npm run setup/);
    assert.match((e as Error).message, /mesa-vulkan-drivers/);
  }
});

test('fromGPUDevice wraps an app-owned device and checks its limits', async () => {
  const wrapped = await Device.fromGPUDevice(device.gpu, 'app device');
  const [a, b] = [tensor([1, 2], [2], { device: wrapped }), tensor([3, 4], [2], { device: wrapped })];
  const y = add(a, b);
  assert.equal([...(await y.toArray())], [4, 6]);
  for (const t of [a, b, y]) t.dispose();
  wrapped.destroy();
  const tiny = {
    limits: {
      ...Object.fromEntries(
        Object.entries(Object.getOwnPropertyDescriptors(Object.getPrototypeOf(device.gpu.limits))).map(([k]) => [k, 0]),
      ),
    },
  } as unknown as GPUDevice;
  try {
    await Device.fromGPUDevice(tiny);
    assert.unreachable('expected an error');
  } catch (e) {
    assert.match((e as Error).message, /maxStorageBuffersPerShaderStage = 0 is below the engine's minimum/);
  }
});

test('pipelines are cached by source', async () => {
  const x = tensor([1, 2, 3], [3]);
  exp(x).dispose();
  const n = device.pipelineCount;
  for (let i = 0; i < 5; i++) exp(x).dispose();
  assert.is(device.pipelineCount, n);
  x.dispose();
});

test('dispatches are batched: 200 dispatches take a handful of submits', async () => {
  const x = zeros([16]);
  await device.sync();
  const s0 = { ...device.batcher.stats };
  for (let i = 0; i < 200; i++) exp(x).dispose();
  await device.sync();
  const d = device.batcher.stats.dispatches - s0.dispatches;
  const s = device.batcher.stats.submits - s0.submits;
  assert.is(d, 200);
  assert.ok(s <= Math.ceil(200 / 64) + 1, `${s} submits for 200 dispatches`);
  x.dispose();
});

test('released buffers are reused after the submit, not before', async () => {
  await device.sync();
  const a = empty([1000]);
  const buf = a.rawBuffer;
  a.dispose();
  const b = empty([1000]); // same size class, but a's buffer waits for a submit
  assert.ok(b.rawBuffer !== buf);
  await device.sync();
  const c = empty([1000]);
  assert.ok(c.rawBuffer === buf, 'reused after the submit');
  b.dispose();
  c.dispose();
  assert.is(sizeClass(1000), 1024);
  assert.is(sizeClass(1100), 1280);
  assert.is(sizeClass(1300), 1536);
});

test('a compile error names the op and the line', async () => {
  device.pipeline('brokenShader', '@compute @workgroup_size(1)\nfn main() {\n  let x: u32 = 1.5;\n}');
  try {
    await device.sync();
    assert.unreachable('expected a compile error');
  } catch (e) {
    assert.match((e as Error).message, /brokenShader/);
  }
  await device.sync(); // the error was reported once; the device still works
});

test('a validation error surfaces at the next sync and names the op', async () => {
  // A 4-byte buffer where the shader binds array<vec4<f32>> (16 bytes at least): Dawn refuses the
  // bind group, asynchronously.
  const STORAGE = 0x80 | 0x08;
  const small = device.gpu.createBuffer({ size: 4, usage: STORAGE });
  const x = zeros([4]);
  device.dispatch({
    kernel: sgdKernel,
    op: 'tooSmallBinding',
    variant: { guarded: false },
    params: { n: 1, nesterov: 0, lr: 0.1, momentum: 0, wd: 0 },
    bindings: { p: small, m: x.rawBuffer, grad: x.rawBuffer },
  });
  try {
    await device.sync();
    assert.unreachable('expected a validation error');
  } catch (e) {
    assert.match((e as Error).message, /tooSmallBinding/);
  }
  x.dispose();
  small.destroy();
  await device.sync();
});

test("a dispatch without one of its kernel's bindings is refused at once, naming the binding", async () => {
  const x = tensor([1, 2], [2]);
  const d0 = device.batcher.stats.dispatches;
  const params = { n: 2, nan: 0, s: 0 };
  const bindings = { xs: x.rawBuffer };
  const run = () =>
    // @ts-expect-error ys is missing: the declaration makes it a compile error too
    device.dispatch({ kernel: unaryKernel, op: 'missingBinding', variant: { code: 'exp' }, params, bindings });
  throwsWith(run, 'missingBinding', "binding 'ys'");
  assert.is(device.batcher.stats.dispatches, d0, 'nothing recorded');
  x.dispose();
  await device.sync();
});

test('a tensor larger than the binding limit is refused with a clear error', () => {
  const max = device.limits.maxStorageBufferBindingSize;
  throwsWith(() => empty([Math.ceil(max / 4) + 1]), 'maxStorageBufferBindingSize');
});

test('int32 round trip', async () => {
  const t = tensor(Int32Array.from([0, 1, -5, 2147483647]), [4]);
  assert.is(t.dtype, 'int32');
  assert.equal([...(await t.toArray())], [0, 1, -5, 2147483647]);
  t.dispose();
  throwsWith(() => tensor([1.5], [1], { dtype: 'int32' }), 'non-integer');
});

test.run();
