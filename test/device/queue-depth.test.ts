// The GPU queue's depth: Dawn's Node binding kills the process (SIGSEGV, no message) at about
// 1,000 submits that were recorded but never seen to finish, which a loop that never reads back
// reached (`mmpareto analyze --batches 100` did). The engine refuses to record past 512 such
// submits with an error that says what to do, and `device.throttle()` keeps a loop below that.
// Each test runs on its own device, so the suite's device never holds a deep queue.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Device, EngineError, add, setDevice, tensor, type Tensor } from '../../engine/index.ts';
import { device } from '../helpers.ts';

const test = suite('queue depth');
const SLOTS = 64; // dispatches per submit (engine/batcher.ts)

/** Runs `fn` with a device of its own as the current one; restores the suite's and destroys it. */
async function onOwnDevice(fn: (dev: Device) => Promise<void>): Promise<void> {
  const dev = await Device.create();
  setDevice(dev);
  try {
    await fn(dev);
  } finally {
    setDevice(device);
    dev.destroy();
  }
}

/** x ← x + 1 elementwise `n` times; every add is one dispatch. Integers below 2^24 stay exact in float32. */
function addOnes(x: Tensor, one: Tensor, n: number): Tensor {
  for (let i = 0; i < n; i++) {
    const y = add(x, one);
    x.dispose();
    x = y;
  }
  return x;
}

test('a loop that never waits is refused at 512 queued submits, not crashed; after sync() it goes on', () =>
  onOwnDevice(async (dev) => {
    let x = tensor([0, 10, 20, 30], [4]);
    const one = tensor([1, 1, 1, 1], [4]);
    let done = 0;
    let error: unknown = null;
    try {
      for (; done < 1000 * SLOTS; done++) {
        const y = add(x, one);
        x.dispose();
        x = y;
      }
    } catch (e) {
      error = e;
    }
    assert.instance(error, EngineError, String(error));
    const msg = (error as Error).message;
    assert.ok(msg.startsWith('add: 512 submits'), msg);
    for (const f of ['device.throttle()', 'device.sync()']) assert.ok(msg.includes(f), `"${msg}" lacks "${f}"`);
    // Refused before recording: 512 submitted chunks and one full chunk recorded behind them.
    assert.is(done, 513 * SLOTS);
    assert.is(dev.batcher.queued, 512);
    await dev.sync();
    assert.is(dev.batcher.queued, 0);
    x = addOnes(x, one, 100);
    const expected = [0, 10, 20, 30].map((v) => v + done + 100);
    assert.equal(Array.from((await x.toArray()) as Float32Array), expected);
  }));

test('throttle() once per step keeps a loop without readbacks going past 1,000 submits', () =>
  onOwnDevice(async (dev) => {
    let x = tensor([0, -5, 5, 1], [4]);
    const one = tensor([1, 1, 1, 1], [4]);
    const steps = 300;
    const perStep = 4 * SLOTS; // four submits a step
    let deepest = 0;
    for (let s = 0; s < steps; s++) {
      x = addOnes(x, one, perStep);
      deepest = Math.max(deepest, dev.batcher.queued);
      await dev.throttle();
    }
    assert.ok(dev.batcher.stats.submits > 1000, `submits ${dev.batcher.stats.submits}`);
    // throttle(256) lets at most 256 submits wait, plus one step's four.
    assert.ok(deepest <= 256 + 4, `deepest queue ${deepest}`);
    const n = steps * perStep;
    assert.equal(Array.from((await x.toArray()) as Float32Array), [n, n - 5, n + 5, n + 1]);
  }));

test('a readback or a sync empties the count; a step that reads back never reaches the limit', () =>
  onOwnDevice(async (dev) => {
    let x = tensor([1, 2, 3, 4], [4]);
    const one = tensor([1, 1, 1, 1], [4]);
    x = addOnes(x, one, 10 * SLOTS);
    assert.is(dev.batcher.queued, 9); // the tenth chunk is recorded, not yet submitted
    const v = (await x.toArray()) as Float32Array;
    assert.is(dev.batcher.queued, 0);
    assert.equal(Array.from(v), [641, 642, 643, 644]);
    await dev.throttle(); // nothing queued: returns at once
    assert.is(dev.batcher.stats.readbacks, 1);
  }));

test.run();
