// Everything a checkpoint must carry to resume training exactly: module state (parameters,
// batchnorm running statistics and counter), optimizer state (SGD momentum, AdamW moments and
// step counts) and integrator state (learned loss weights, moving averages, step counters).
// Resuming from saved state must give bit-identical parameters to an uninterrupted run: the
// kernels are deterministic (no atomics), so any difference means lost state.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { randTensor, throwsWith } from '../helpers.ts';
import {
  AdamW,
  BatchNorm2d,
  liveTensors,
  MultimodalStep,
  SGD,
  tensor,
  tidy,
  INTEGRATOR_METHODS,
  type IntegratorMethod,
  type Tensor,
} from '../../engine/index.ts';
import { LateFusion } from '../fixtures/late-fusion.ts';

const test = suite('training state');

function batch(i: number): [Tensor, Tensor, Tensor] {
  const [a] = randTensor([3, 1, 8, 8], 100 + i);
  const [v] = randTensor([3, 3, 6, 6], 200 + i);
  return [a, v, tensor(Int32Array.of(i % 3, (i + 1) % 3, (i + 2) % 3), [3], { dtype: 'int32' })];
}

interface Run {
  m: LateFusion;
  opt: SGD | AdamW;
  step: MultimodalStep;
}
function build(method: IntegratorMethod, optimizer: 'sgd' | 'adamw'): Run {
  const m = new LateFusion(4, 3, 5);
  const params = m.parameters();
  const opt =
    optimizer === 'sgd'
      ? new SGD(params, { lr: 0.05, momentum: 0.9, weightDecay: 1e-3 })
      : new AdamW(params, { lr: 0.01 });
  const step = new MultimodalStep({
    method,
    encoders: { audio: m.audio.parameters(), visual: m.visual.parameters() },
    optimizer: opt,
    telemetrySteps: 4,
  });
  return { m, opt, step };
}
function train(r: Run, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    const [a, v, y] = batch(i);
    const losses = tidy(() => r.m.losses(a, v, y));
    r.step.step(losses);
    for (const t of [a, v, y, ...Object.values(losses)]) t.dispose();
  }
}
function dispose(r: Run): void {
  r.step.dispose();
  r.opt.dispose();
  r.m.dispose();
}

for (const method of INTEGRATOR_METHODS) {
  for (const optimizer of ['sgd', 'adamw'] as const) {
    if (optimizer === 'adamw' && !['mmpareto', 'uniform', 'gradnorm'].includes(method)) continue;
    test(
      `${method} + ${optimizer}: 2 steps, save, ` +
        `load into fresh objects, 2 steps = 4 uninterrupted steps (bitwise)`,
      async () => {
        const before = liveTensors.count;
        const whole = build(method, optimizer);
        train(whole, 0, 4);
        const first = build(method, optimizer);
        train(first, 0, 2);
        const modelState = new Map<string, Float32Array | Int32Array>();
        for (const [k, t] of first.m.stateDict()) modelState.set(k, (await t.toArray()) as Float32Array | Int32Array);
        const optState = await first.opt.stateDict();
        const integState = await first.step.stateDict();
        dispose(first);
        const resumed = build(method, optimizer);
        resumed.m.loadStateDict(modelState);
        resumed.opt.loadStateDict(optState);
        resumed.step.loadStateDict(integState);
        train(resumed, 2, 4);
        const a = whole.m.stateDict();
        const b = resumed.m.stateDict();
        for (const [k, t] of a) assert.equal(Array.from(await b.get(k)!.toArray()), Array.from(await t.toArray()), k);
        const oa = await whole.opt.stateDict();
        const ob = await resumed.opt.stateDict();
        for (const [k, v] of oa) assert.equal(Array.from(ob.get(k)!), Array.from(v), `optimizer ${k}`);
        const ia = await whole.step.stateDict();
        const ib = await resumed.step.stateDict();
        for (const [k, v] of ia) assert.equal(Array.from(ib.get(k)!), Array.from(v), `integrator ${k}`);
        dispose(whole);
        dispose(resumed);
        assert.is(liveTensors.count, before, 'no leaks');
      },
    );
  }
}

test(
  'loadStateDict right after construction wins over the pending zero-fill; ' + 'num_batches_tracked continues',
  async () => {
    const bn = new BatchNorm2d(3);
    bn.loadStateDict(
      new Map<string, Float32Array | Int32Array>([
        ['weight', Float32Array.of(1, 2, 3)],
        ['bias', Float32Array.of(4, 5, 6)],
        ['running_mean', Float32Array.of(7, 8, 9)],
        ['running_var', Float32Array.of(1, 1, 2)],
        ['num_batches_tracked', Int32Array.of(41)],
      ]),
    );
    assert.equal(Array.from(await bn.stateDict().get('running_mean')!.toArray()), [7, 8, 9]);
    assert.equal(Array.from(await bn.stateDict().get('weight')!.toArray()), [1, 2, 3]);
    const [x] = randTensor([2, 3, 2, 2], 3);
    bn.forward(x).dispose();
    assert.equal(Array.from(await bn.stateDict().get('num_batches_tracked')!.toArray()), [42]);
    x.dispose();
    bn.dispose();
  },
);

test('loadStateDict lists every mismatch and writes nothing', async () => {
  const bn = new BatchNorm2d(2);
  throwsWith(
    () =>
      bn.loadStateDict(
        new Map<string, Float32Array | Int32Array>([
          ['weight', Float32Array.of(9, 9)],
          ['bias', Float32Array.of(1, 2, 3)],
          ['running_mean', Float32Array.of(0)],
          ['extra', Float32Array.of(0)],
        ]),
      ),
    'unexpected keys extra',
    'missing keys running_var, num_batches_tracked',
    "'bias' has 3 values, the module expects [2]",
    "'running_mean' has 1 values",
  );
  assert.equal(Array.from(await bn.stateDict().get('weight')!.toArray()), [1, 1], 'nothing written');
  bn.dispose();
});

test('optimizer and integrator state: wrong sizes and keys are named', () => {
  const r = build('mmpareto', 'sgd');
  throwsWith(
    () =>
      r.opt.loadStateDict(
        new Map([
          ['0.momentum_buffer', new Float32Array(1)],
          ['x', new Float32Array(1)],
        ]),
      ),
    "unexpected key 'x'",
    "'0.momentum_buffer' has 1 float32 values",
    "missing key '1.momentum_buffer'",
  );
  throwsWith(() => r.step.loadStateDict(new Map([['state', new Float32Array(1)]])), "'state' must hold");
  dispose(r);
});

test.run();
