// Gradient integrators (engine/integrate) against the float64 references of
// test/integrate/reference.ts, on random gradients split over tensors of several sizes (not
// multiples of 4, one > 65536 elements) and on hand-made cases; bad input and leaks.
// Tolerances: see test/integrate/harness.ts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, rejects } from '../helpers.ts';
import { applyCoef, newState, reference, type Grads, type RefOptions, type RefState } from './reference.ts';
import { byGroup, expectH, keyed, lossRecord, maxAbs, randomGrads, setup, teardown, upload } from './harness.ts';
import {
  GradientIntegrator,
  liveTensors,
  SGD,
  tensor,
  type IntegratorMethod,
  type PerLossGradients,
  type Tensor,
} from '../../engine/index.ts';

const test = suite('integrate');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

const SIZES = [5, 130, 7, 70001];
const SMALL = [3, 17];

/** Runs `steps` steps of one method on several groups, checking h and the telemetry against the reference. */
async function runAgainstReference(
  method: IntegratorMethod,
  k: number,
  sizes: number[][],
  make: (step: number, g: number) => Grads,
  o: RefOptions = {},
  steps = 1,
): Promise<void> {
  const s = setup(sizes, k, { method, telemetrySteps: steps, ...o });
  const states: RefState[] = sizes.map(() => newState(k));
  for (let step = 0; step < steps; step++) {
    const host = sizes.map((_, g) => make(step, g));
    const grads = host.map(upload);
    const lossVals = sizes.map((_, g) => Array.from({ length: k }, (_, j) => 2 + Math.sin(step + g + j) / (1 + step)));
    const losses = lossVals.map((l) => l.map((v) => tensor([v], [1])));
    const out = byGroup(
      s.params,
      s.integrator.combine(keyed(s.params, grads), method === 'gradnorm' ? lossRecord(losses) : undefined),
    );
    for (let g = 0; g < sizes.length; g++) {
      const r = reference(
        method,
        host[g]!,
        o,
        states[g]!,
        g,
        lossVals[g]!.map((v) => Math.fround(v)),
      );
      await expectH(out[g]!, applyCoef(host[g]!, r.coef), `${method} step ${step} group ${g}`);
    }
    for (const t of [...grads.flat(2), ...losses.flat(), ...out.flat()]) t.dispose();
  }
  const { records } = await s.integrator.telemetry.read();
  assert.is(records.length, steps * sizes.length);
  teardown(s);
}

const K2: IntegratorMethod[] = [
  'uniform',
  'one-joint-loss',
  'mgda',
  'mmpareto',
  'mmpareto-official',
  'pcgrad',
  'gradnorm',
  'metabalance',
];
for (const method of K2) {
  test(
    `${method}, K = 2: random gradients over tensors of ${SIZES.join(', ')} elements + a second group, 3 steps, ` +
      `match float64`,
    async () => {
      // loss 1 = −0.4·loss 0 + noise on odd steps (conflicting), independent on even steps
      const make = (step: number, g: number): Grads =>
        randomGrads(2, g === 0 ? SIZES : SMALL, 10 * step + 100 * g + 1, (j, x, _t, i) =>
          j === 1 && step % 2 === 1 ? -0.4 * x[0]![i]! + 0.3 * x[1]![i]! : x[j]![i]!,
        );
      await runAgainstReference(method, 2, [SIZES, SMALL], make, {}, 3);
    },
  );
}
for (const method of ['uniform', 'mgda', 'pcgrad', 'gradnorm', 'metabalance'] as const) {
  test(`${method}, K = 3: random gradients (loss 2 conflicts with loss 0), 2 steps, match float64`, async () => {
    const make = (step: number): Grads =>
      randomGrads(3, [130, 70001, 9], 7 + step, (j, x, _t, i) =>
        j === 2 ? -0.5 * x[0]![i]! + 0.5 * x[2]![i]! : x[j]![i]!,
      );
    await runAgainstReference(method, 3, [[130, 70001, 9]], make, { seed: 5 }, 2);
  });
}

/** One step of `method` on one group of hand-made gradients; returns the telemetry record. */
async function handMade(method: IntegratorMethod, gs: Grads, what: string) {
  const sizes = gs[0]!.map((x) => x.length);
  const s = setup([sizes], gs.length, { method, telemetrySteps: 1 });
  const grads = upload(gs);
  const [out] = byGroup(s.params, s.integrator.combine(keyed(s.params, [grads])));
  const r = reference(method, gs, {}, newState(gs.length), 0);
  const ref = applyCoef(gs, r.coef);
  for (let t = 0; t < out!.length; t++) {
    const got = await out![t]!.toArray();
    assert.ok(got.every(Number.isFinite), `${what}: finite`);
    assertClose(got, ref[t]!, 1e-4, 1e-4 * maxAbs(ref) + 1e-30, `${what}, tensor ${t}`);
  }
  const rec = (await s.integrator.telemetry.read()).records[0]!;
  assertClose([rec.cos, rec.alpha, rec.normH], [r.cos, r.alpha, r.normH], 1e-4, 1e-6, `${what}: cos, alpha, |h|`);
  assert.is(rec.conflict, r.conflict, `${what}: conflict`);
  assert.is(rec.zeroDirection, r.zeroDirection, `${what}: zeroDirection`);
  assert.is(rec.nonFinite, false);
  teardown(s, grads, out!);
  return rec;
}

const v = (xs: number[]) => Float64Array.from(xs);
const gm = [v([1, 2, -1, 0.5, 3]), v([0.25, -2, 1])];
const scaled = (gs: Float64Array[], f: (x: number, t: number, i: number) => number) =>
  gs.map((x, t) => x.map((y, i) => f(y, t, i)));
const CASES: [string, Grads][] = [
  ['cos > 0', [gm, scaled(gm, (x, t, i) => x + 0.3 * ((t + i) % 3) - 0.2)]],
  ['cos < 0', [gm, scaled(gm, (x, t, i) => -0.5 * x + 0.25 * ((t + 2 * i) % 3))]],
  [
    'cos = 0 exactly (disjoint supports)',
    [
      [v([1, 2, 0, 0, 0]), v([0, 0, 0])],
      [v([0, 0, 3, -1, 0]), v([0, 0, 2])],
    ],
  ],
  ['g_u = 3·g_m (mgda α clamped at 1)', [gm, scaled(gm, (x) => 3 * x)]],
  ['g_m = 3·g_u (mgda α clamped at 0)', [scaled(gm, (x) => 3 * x), gm]],
  ['g_u = g_m', [gm, gm]],
  ['g_u = −g_m (Pareto-stationary: zero update)', [gm, scaled(gm, (x) => -x)]],
  ['g_u = 0', [gm, scaled(gm, () => 0)]],
  ['g_m = 0', [scaled(gm, () => 0), gm]],
  ['both zero', [scaled(gm, () => 0), scaled(gm, () => 0)]],
  [
    'very unequal norms, conflicting (|g_m| ~ 1e-4, |g_u| ~ 1e3)',
    [scaled(gm, (x) => 1e-4 * x), scaled(gm, (x, t, i) => 1e3 * (-x + 0.5 * ((t + i) % 2)))],
  ],
  [
    'very unequal norms, aligned (|g_m| ~ 1e3, |g_u| ~ 1e-4)',
    [scaled(gm, (x) => 1e3 * x), scaled(gm, (x, t, i) => 1e-4 * (x + 0.5 * ((t + i) % 2)))],
  ],
];
for (const method of ['mmpareto', 'mmpareto-official', 'mgda', 'pcgrad', 'uniform'] as const) {
  test(`${method}: hand-made cases (cos > 0, < 0, = 0, clamped α, equal, opposite, zero, unequal norms)`, async () => {
    for (const [what, gs] of CASES) {
      const f32 = gs.map((l) => l.map((x) => Float64Array.from(Float32Array.from(x))));
      const rec = await handMade(method, f32, `${method}: ${what}`);
      // γ·|2g|·2g/|2g|
      if (method === 'mmpareto' && what === 'g_u = g_m') assertClose(rec.coefficients, [1.5, 1.5], 1e-6, 0, 'h = 2γ·g');
      if (method === 'mmpareto' && what.startsWith('g_u = −g_m')) assert.ok(rec.zeroDirection);
      if (method === 'mgda' && what.includes('clamped at 1')) assertClose([rec.alpha], [1], 0, 0, 'α = 1');
      if (method === 'mgda' && what.includes('clamped at 0')) assertClose([rec.alpha], [0], 0, 0, 'α = 0');
    }
  });
}

test('a null gradient (a loss that does not reach a parameter) counts as zero', async () => {
  const gs = randomGrads(2, [130, 7], 80);
  gs[1]![1] = new Float64Array(7);
  const s = setup([[130, 7]], 2, { method: 'mmpareto' });
  const grads = upload(gs);
  const withNull = [grads[0]!, [grads[1]![0]!, null]];
  const out = byGroup(s.params, s.integrator.combine(keyed(s.params, [withNull])))[0]!;
  const ref = applyCoef(gs, reference('mmpareto', gs, {}, newState(2), 0).coef);
  await expectH(out, ref, 'null as zero');
  teardown(s, grads, out);
});

test('3 groups (3 modalities) in one step: mmpareto per group, each group only sees its own gradients', async () => {
  const sizes = [[5, 130], [70001], [7, 9, 11]];
  const make = (_s: number, g: number): Grads =>
    randomGrads(2, sizes[g]!, 40 + g, (j, x, _t, i) =>
      j === 1 && g !== 1 ? -0.6 * x[0]![i]! + 0.2 * x[1]![i]! : x[j]![i]!,
    );
  await runAgainstReference('mmpareto', 2, sizes, make, { gamma: 1.25 }, 1);
});

test('bad input is refused before any dispatch, naming the problem', () => {
  const p = [
    tensor(new Float32Array(6), [2, 3], { requiresGrad: true }),
    tensor(new Float32Array(4), [4], { requiresGrad: true }),
  ];
  const q = tensor(new Float32Array(3), [3], { requiresGrad: true });
  const two = ['a', 'b'];
  const group = (params: Tensor[], losses = two) => ({ params, losses });
  rejects(() => new GradientIntegrator([group(p)], { method: 'nash' as IntegratorMethod }), "unknown method 'nash'");
  rejects(() => new GradientIntegrator([group(p), group([])], { method: 'uniform' }), 'parameter group 1 is empty');
  rejects(() => new GradientIntegrator([], { method: 'uniform' }), 'no parameter groups');
  rejects(
    () => new GradientIntegrator([group(p), group([q, p[1]!])], { method: 'uniform' }),
    'is in group 0 and group 1',
  );
  rejects(
    () => new GradientIntegrator([group(p, ['a', 'b', 'c'])], { method: 'mmpareto' }),
    "'mmpareto' integrates exactly 2 losses",
  );
  rejects(
    () => new GradientIntegrator([group(p, [...'abcdefghi'])], { method: 'mgda' }),
    'losses (K) must be an integer in [1, 8]',
  );
  rejects(
    () => new GradientIntegrator([group(p), group([q], ['a'])], { method: 'mgda' }),
    'group 1 has 1 losses, group 0 has 2',
  );
  rejects(() => new GradientIntegrator([group(p, ['a', 'a'])], { method: 'mgda' }), 'group 0 names a loss twice');
  const integ = new GradientIntegrator([group(p)], { method: 'mmpareto' });
  const g = (shape: number[]) => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
  const ok = [g([2, 3]), g([4]), g([2, 3]), g([4])];
  const [wrong, scalar, pair] = [g([3, 2]), g([1]), g([2])];
  const grads = (first: Tensor): PerLossGradients =>
    new Map([
      [p[0]!, { a: first, b: ok[2]! }],
      [p[1]!, { a: ok[1]!, b: ok[3]! }],
    ]);
  rejects(
    () => integ.combine(new Map([[p[0]!, { a: ok[0]! }]])),
    'group 0, parameter 1 [4]: no gradients given for it',
  );
  rejects(
    () => integ.combine(grads(wrong)),
    "group 0, parameter 0, loss 'a': gradient [3, 2] does not match parameter [2, 3]",
  );
  rejects(() => integ.combine([[ok]] as unknown as PerLossGradients), 'keyed by parameter');
  const opt = new SGD([p[0]!], { lr: 0.1 });
  rejects(() => integ.step(opt, grads(ok[0]!)), 'is not in the optimizer');
  const gn = new GradientIntegrator([group(p)], { method: 'gradnorm' });
  rejects(() => gn.combine(grads(ok[0]!)), "'gradnorm' needs the loss values");
  rejects(() => gn.combine(grads(ok[0]!), { a: scalar, b: pair }), "loss 'b': expected a float32 scalar tensor");
  for (const x of [integ, gn, opt]) x.dispose();
  for (const t of [...p, q, ...ok, wrong, scalar, pair]) t.dispose();
});

test('no leaked tensors', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
