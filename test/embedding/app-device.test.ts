// An app that owns its GPUDevice and hands it to the engine (Device.fromGPUDevice): the app's own
// compute work between training steps, its error scopes and uncaptured errors, destroy() and a lost
// device, and no WebGPU at all. Buffers shared both ways and the refusals of bad input:
// app-device-buffers.test.ts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { device } from '../helpers.ts';
import { dawnGPU } from '../../train/node.ts';
import { Device, EngineError, liveTensors, setDefaultGPU, tensor } from '../../engine/index.ts';
import { unaryKernel } from '../../shaders/elementwise.ts';
import { U, instance, openApp, train } from './app-harness.ts';

const test = suite('app device');
const { appDevice, appBuffer, appRead, appPass } = await openApp();

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
