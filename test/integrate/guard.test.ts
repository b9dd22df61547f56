// NonFiniteGuard: a step with a NaN/±Inf loss or gradient (or a BatchNorm layer that refused a
// running-stat update) changes nothing — parameters, optimizer state, running statistics and
// integrator state are bitwise what they were before it — for every integration method; in
// 'stop' mode the steps recorded after it (before the host reads the verdict) change nothing
// either, and in 'skip' mode they train on as if the bad step had never been taken.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { device, randTensor, throwsWith } from '../helpers.ts';
import {
  AdamW,
  INTEGRATOR_METHODS,
  Linear,
  MultimodalStep,
  NonFiniteGuard,
  SGD,
  batchNorm2d,
  crossEntropy,
  liveTensors,
  tensor,
  tidy,
  writeTensor,
  type IntegratorMethod,
  type Tensor,
} from '../../engine/index.ts';
import { LateFusion } from '../fixtures/late-fusion.ts';

const test = suite('guard');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

/** Batch i; `poison` puts a NaN into one audio pixel (a corrupt input that passed no host check). */
function batch(i: number, poison = false): [Tensor, Tensor, Tensor] {
  const [a, ha] = randTensor([3, 1, 8, 8], 100 + i);
  if (poison) {
    const bad = Float32Array.from(ha);
    bad[37] = NaN;
    writeTensor(a, bad);
  }
  const [v] = randTensor([3, 3, 6, 6], 200 + i);
  return [a, v, tensor(Int32Array.of(i % 3, (i + 1) % 3, (i + 2) % 3), [3], { dtype: 'int32' })];
}

interface Run {
  m: LateFusion;
  opt: SGD | AdamW;
  step: MultimodalStep;
  guard: NonFiniteGuard | undefined;
}
function build(method: IntegratorMethod, optimizer: 'sgd' | 'adamw', mode?: 'stop' | 'skip'): Run {
  const m = new LateFusion(4, 3, 5);
  const params = m.parameters();
  const opt =
    optimizer === 'sgd'
      ? new SGD(params, { lr: 0.05, momentum: 0.9, weightDecay: 1e-3 })
      : new AdamW(params, { lr: 0.01 });
  const running = m
    .namedBuffers()
    .filter(([k]) => !k.endsWith('num_batches_tracked'))
    .map(([, t]) => t);
  const guard = mode ? new NonFiniteGuard(device, { mode, protect: running, ringSteps: 8 }) : undefined;
  const step = new MultimodalStep({
    method,
    encoders: { audio: m.audio.parameters(), visual: m.visual.parameters() },
    optimizer: opt,
    telemetrySteps: 4,
    guard,
  });
  return { m, opt, step, guard };
}
function stepOn(r: Run, i: number, poison = false): void {
  const [a, v, y] = batch(i, poison);
  const losses = tidy(() => r.m.losses(a, v, y));
  r.step.step(losses);
  for (const t of [a, v, y, ...Object.values(losses)]) t.dispose();
}
/**
 * Everything a step may change, read back: model state (minus the batch counter), optimizer state and step counts,
 * integrator state.
 */
async function state(r: Run): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  const put = (k: string, v: Float32Array | Int32Array) =>
    out.set(k, new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength)));
  for (const [k, t] of r.m.stateDict())
    if (!k.endsWith('num_batches_tracked')) put(k, (await t.toArray()) as Float32Array);
  for (const [k, v] of await r.opt.stateDict()) put(`optimizer.${k}`, v);
  const integ = await r.step.stateDict();
  if (integ.has('state')) put('integrator.state', integ.get('state')!);
  return out;
}
function sameState(a: Map<string, Uint8Array>, b: Map<string, Uint8Array>, what: string): void {
  assert.equal([...a.keys()], [...b.keys()], `${what}: keys`);
  for (const [k, v] of a) assert.ok(Buffer.from(v).equals(Buffer.from(b.get(k)!)), `${what}: ${k} differs`);
}
function dispose(r: Run): void {
  r.step.dispose();
  r.guard?.dispose();
  r.opt.dispose();
  r.m.dispose();
}

for (const method of INTEGRATOR_METHODS) {
  for (const optimizer of ['sgd', 'adamw'] as const) {
    if (optimizer === 'adamw' && !['mmpareto', 'uniform'].includes(method)) continue;
    test(
      `${method} + ${optimizer}, stop: a NaN input at step 3 and two more steps before the readback leave the ` +
        `state of step 2 (bitwise)`,
      async () => {
        const r = build(method, optimizer, 'stop');
        stepOn(r, 0);
        stepOn(r, 1);
        const before = await state(r);
        stepOn(r, 2, true);
        stepOn(r, 3);
        stepOn(r, 4);
        const v = await r.guard!.read();
        assert.ok(v.halted, 'halted');
        assert.is(v.badSteps, 1, 'only step 3 was bad; 4 and 5 were dropped by the halt');
        assert.is(v.first!.step, 2);
        for (const reason of ['loss', 'batchNorm'] as const)
          assert.ok(v.first!.reasons.includes(reason), `reasons ${v.first!.reasons}`);
        assert.equal(v.first!.losses, [0, 1], 'the mm and audio losses (indices in [mm, audio, visual]) were NaN');
        assert.equal(
          v.dropped.map((s) => [s.step, s.applied]),
          [
            [2, false],
            [3, false],
            [4, false],
          ],
        );
        assert.equal(v.dropped[1]!.reasons, [], 'step 4 was fine but dropped');
        sameState(await state(r), before, `${method} + ${optimizer}`);
        dispose(r);
      },
    );
  }
}

for (const [method, optimizer] of [
  ['mmpareto', 'sgd'],
  ['uniform', 'adamw'],
  ['gradnorm', 'sgd'],
] as const) {
  const what = 'skip: steps 0, 1, bad, 3, 4 = steps 0, 1, 3, 4 without the bad one (bitwise)';
  test(`${method} + ${optimizer}, ${what}`, async () => {
    const r = build(method, optimizer, 'skip');
    stepOn(r, 0);
    stepOn(r, 1);
    stepOn(r, 2, true);
    const v = await r.guard!.read(); // rewinds AdamW's step counts for the dropped step
    assert.not.ok(v.halted);
    assert.equal(
      v.dropped.map((s) => [s.step, s.applied]),
      [[2, false]],
    );
    stepOn(r, 3);
    stepOn(r, 4);
    const ref = build(method, optimizer);
    for (const i of [0, 1, 3, 4]) stepOn(ref, i);
    sameState(await state(r), await state(ref), `${method} skip`);
    dispose(r);
    dispose(ref);
  });
}

test('a non-finite gradient with finite losses is caught, named by tensor index; reset() resumes updates', async () => {
  const p = tensor(Float32Array.of(1, 2, 3, 4, 5), [5], { requiresGrad: true });
  const q = tensor(Float32Array.of(1, 1), [2], { requiresGrad: true });
  const opt = new SGD([p, q], { lr: 0.5 });
  const guard = new NonFiniteGuard(device, { mode: 'stop' });
  const loss = tensor([0.25]);
  p.grad = tensor(Float32Array.of(1, 1, 1, 1, 1), [5]);
  q.grad = tensor(Float32Array.of(1, Infinity), [2]);
  guard.checkLosses([loss]);
  guard.checkTensors([p.grad, q.grad]);
  opt.step(guard);
  guard.end();
  const v = await guard.read();
  assert.ok(v.halted);
  assert.equal([v.first!.step, v.first!.reasons, v.first!.tensor, v.first!.losses], [0, ['gradient'], 1, []]);
  assert.equal(Array.from(await p.toArray()), [1, 2, 3, 4, 5], 'p not updated although its own gradient was finite');
  // The host dealt with it: after reset(), a good step updates again.
  guard.reset();
  q.grad.dispose();
  q.grad = tensor(Float32Array.of(1, 1), [2]);
  guard.checkLosses([loss]);
  guard.checkTensors([p.grad, q.grad]);
  opt.step(guard);
  guard.end();
  assert.equal(Array.from(await p.toArray()), [0.5, 1.5, 2.5, 3.5, 4.5]);
  const after = await guard.read();
  assert.equal([after.halted, after.badSteps, after.first], [false, 0, null]);
  opt.zeroGrad();
  for (const t of [p, q, loss]) t.dispose();
  opt.dispose();
  guard.dispose();
});

test(
  'a plain Linear + SGD step on a NaN input: every weight turns NaN without a guard (as PyTorch), none changes ' +
    'with one',
  async () => {
    const x = tensor(Float32Array.of(1, NaN, 2, 0.5, -1, 3), [2, 3]);
    const labels = tensor(Int32Array.of(0, 1), [2], { dtype: 'int32' });
    for (const guarded of [false, true]) {
      const lin = new Linear(3, 2);
      const w0 = Float32Array.from(await lin.weight.toArray());
      const opt = new SGD(lin.parameters(), { lr: 0.1 });
      const guard = guarded ? new NonFiniteGuard(device) : undefined;
      const loss = tidy(() => crossEntropy(lin.forward(x), labels));
      loss.backward();
      guard?.checkLosses([loss]);
      guard?.checkTensors(opt.params.map((p) => p.grad));
      opt.step(guard);
      guard?.end();
      const w = await lin.weight.toArray();
      if (guarded) assert.equal(Array.from(w), Array.from(w0), 'weights unchanged');
      else assert.ok(Array.from(w).every(Number.isNaN), 'every weight NaN');
      if (guarded) assert.equal((await guard!.read()).first!.reasons, ['loss', 'gradient']);
      opt.zeroGrad();
      loss.dispose();
      guard?.dispose();
      opt.dispose();
      lin.dispose();
    }
    x.dispose();
    labels.dispose();
  },
);

test('a BatchNorm layer that refused its running-stat update makes the step bad even with finite losses', async () => {
  const guard = new NonFiniteGuard(device, { mode: 'skip' });
  const x = tensor(Float32Array.of(1, NaN, 3, 4), [2, 2]);
  const rm = tensor([0, 0]);
  const rv = tensor([1, 1]);
  const y = batchNorm2d(x, null, null, rm, rv, { training: true });
  const loss = tensor([1]);
  guard.checkLosses([loss]);
  guard.end();
  guard.checkLosses([loss]); // the next step is fine again
  guard.end();
  const v = await guard.read();
  assert.equal(
    v.dropped.map((s) => [s.step, s.reasons]),
    [[0, ['batchNorm']]],
  );
  for (const t of [x, rm, rv, y, loss]) t.dispose();
  guard.dispose();
});

test('bad use is refused with a clear message', () => {
  throwsWith(() => new NonFiniteGuard(device, { mode: 'halt' as 'stop' }), "mode must be 'stop' or 'skip'");
  throwsWith(() => new NonFiniteGuard(device, { ringSteps: 0 }), 'ringSteps');
  const g = new NonFiniteGuard(device);
  g.dispose();
  throwsWith(() => g.end(), 'NonFiniteGuard.end: the guard was disposed');
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
