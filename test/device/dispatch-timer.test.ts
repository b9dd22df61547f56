// DispatchTimer: per-dispatch GPU times from timestamp queries (profiling). Only counts, order,
// finiteness and results are asserted; durations are never compared (no timing assertions).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { device, throwsWith } from '../helpers.ts';
import { Device, DispatchTimer, EngineError, add, exp, mulScalar, tensor, type Tensor } from '../../engine/index.ts';

const test = suite('dispatch-timer');

test('a device without timestamp-query: a clear error', () => {
  throwsWith(() => new DispatchTimer(device), "lacks 'timestamp-query'", 'timestamps: true');
});

test('Device.create({ timestamps: true }) on an adapter without the feature: a clear error', async () => {
  const adapter = {
    limits: device.gpu.limits,
    features: new Set<string>(),
    info: {},
    requestDevice: async () => device.gpu,
  };
  const gpu = { requestAdapter: async () => adapter } as unknown as GPU;
  try {
    await Device.create({ gpu, timestamps: true });
    assert.unreachable('expected an error');
  } catch (e) {
    assert.instance(e, EngineError);
    assert.match((e as Error).message, /timestamp-query/);
  }
});

test('one timing per dispatch, in order, across submits; results unchanged', async () => {
  const timed = await Device.create({ timestamps: true });
  try {
    throwsWith(() => new DispatchTimer(timed, 0), 'capacity must be an integer >= 1');
    const timer = new DispatchTimer(timed);
    const a = tensor([1, 2, 3, 4, 5], [5], { device: timed });
    const b = tensor([10, 20, 30, 40, 50], [5], { device: timed });
    timed.batcher.timer = timer;
    const ops: string[] = [];
    timed.batcher.trace = (d) => ops.push(d.op);
    let s = add(a, b); // 224 dispatches: four submits of at most 64
    for (let i = 0; i < 149; i++) {
      let t: Tensor;
      if (i % 2) t = add(s, a);
      else {
        const z = mulScalar(s, 0);
        t = exp(z);
        z.dispose();
      }
      s.dispose();
      s = t;
    }
    timed.batcher.trace = null;
    const values = await s.toArray(); // the last op (i = 148) is exp(0·s) = 1
    timed.batcher.timer = null;
    assert.equal([...values], [1, 1, 1, 1, 1]);
    const times = await timer.read();
    assert.is(times.length, ops.length);
    assert.equal(
      times.map((t) => t.op),
      ops,
    );
    for (const t of times) assert.ok(Number.isFinite(t.ms) && t.ms >= 0, `${t.op}: ${t.ms} ms`);
    assert.equal(await timer.read(), [], 'read() starts afresh');

    const small = new DispatchTimer(timed, 1);
    timed.batcher.timer = small;
    add(a, b).dispose();
    timed.batcher.flush();
    throwsWith(() => add(a, b), 'more than 1 submits since the last read()');
    timed.batcher.timer = null;
    await timed.sync();
    for (const x of [s, a, b]) x.dispose();
    timer.dispose();
    small.dispose();
  } finally {
    timed.destroy();
  }
});

test.run();
