// A lost GPU device (destroyed, driver reset, GPU gone): every pending and later operation —
// toArray, item, sync, a new op, a new tensor — fails with a DeviceLostError that names the
// operation and gives the reason the browser or Dawn reported; nothing hangs, nothing returns
// stale data. Each test runs on its own device (the suite's device stays alive).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { device } from '../helpers.ts';
import {
  Device,
  DeviceLostError,
  MultimodalStep,
  SGD,
  add,
  getDevice,
  setDevice,
  tensor,
  tidy,
  type Tensor,
} from '../../engine/index.ts';
import { LateFusion } from '../fixtures/late-fusion.ts';

const test = suite('device lost');

async function rejectsLost(p: Promise<unknown>, op: string, ...fragments: string[]): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, DeviceLostError, String(e));
    const msg = (e as Error).message;
    assert.ok(msg.startsWith(`${op}: the GPU device was lost (`), msg);
    for (const f of fragments) assert.ok(msg.includes(f), `"${msg}" lacks "${f}"`);
    return;
  }
  assert.unreachable(`${op}: expected a DeviceLostError`);
}
const throwsLost = (fn: () => unknown, op: string, ...fragments: string[]) =>
  rejectsLost((async () => fn())(), op, ...fragments);

/** Builds objects on `dev` (modules take the current device), then restores the suite's device. */
function on<T>(dev: Device, fn: () => T): T {
  setDevice(dev);
  try {
    return fn();
  } finally {
    setDevice(device);
  }
}

test(
  'device.destroy() in the middle of a training step: the step, the pending readback and everything after fail, ' +
    'naming themselves',
  async () => {
    const dev = await Device.create();
    const { m, opt, step } = on(dev, () => {
      const m = new LateFusion(4, 3, 1);
      const opt = new SGD(m.parameters(), { lr: 0.1 });
      return {
        m,
        opt,
        step: new MultimodalStep({
          method: 'mmpareto',
          encoders: { audio: m.audio.parameters(), visual: m.visual.parameters() },
          optimizer: opt,
        }),
      };
    });
    const a = tensor(new Float32Array(3 * 64).fill(0.5), [3, 1, 8, 8], { device: dev });
    const v = tensor(new Float32Array(3 * 108).fill(-0.25), [3, 3, 6, 6], { device: dev });
    const y = tensor(Int32Array.of(0, 1, 2), [3], { device: dev, dtype: 'int32' });
    const first = tidy(() => m.losses(a, v, y));
    step.step(first); // one whole step works
    const losses = tidy(() => m.losses(a, v, y));
    const pending = losses.mm.toArray(); // a readback in flight
    dev.destroy(); // … and the device goes away mid-step
    await rejectsLost(pending, 'toArray', 'destroyed');
    await throwsLost(() => step.step(losses), 'MultimodalStep.step');
    await rejectsLost(losses.audio.item(), 'item');
    await rejectsLost(dev.sync(), 'sync');
    await throwsLost(() => add(a, a), 'add');
    await throwsLost(() => tensor([1, 2], [2], { device: dev }), 'tensor');
    // Freeing what lived on the dead device is fine (nothing to wait for).
    for (const t of [a, v, y, ...Object.values(first), ...Object.values(losses)] as Tensor[]) t.dispose();
    step.dispose();
    opt.dispose();
    m.dispose();
    assert.is(getDevice(), device);
  },
);

test("lost underneath the engine (GPUDevice.destroy(), as a driver reset): Dawn's reason is passed on", async () => {
  const dev = await Device.create();
  const x = tensor([1, 2, 3], [3], { device: dev });
  const s = tensor([4], [1], { device: dev });
  const y = add(x, x);
  const pending = y.toArray();
  dev.gpu.destroy();
  await rejectsLost(pending, 'toArray', 'destroyed');
  assert.ok(dev.isLost);
  await throwsLost(() => add(x, y), 'add', 'destroyed');
  await rejectsLost(s.item(), 'item');
  for (const t of [x, y, s]) t.dispose();
  dev.destroy();
});

test.run();
