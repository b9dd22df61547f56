// Gradient integrators (engine/integrate) against the float64 references of
// test/integrate/reference.ts, on random gradients split over tensors of several sizes (not
// multiples of 4, one > 65536 elements) and on hand-made cases; telemetry, non-finite input,
// the fused optimizer path, readback counts, bad input and leaks.
// Tolerances (u = 2^-24 ≈ 6e-8): the kernels compute h = Σ_j c_j·g_j with c_j from the Gram sums
// g_a·g_b. A Gram sum over n ≤ 7·10^4 products is accumulated in 64 lanes × vec4 of ≤ 256 terms,
// a serial sum of the 64 lanes and of ≤ 2 partial rows, so its error is ≲ 322·u·Σ|a_i b_i|
// ≈ 2e-5·Σ|a_i b_i| (worst case; random rounding gives ~√ of that). The coefficients depend on
// the entries through well-conditioned ratios such as (|g_u|² − g_m·g_u)/|g_m − g_u|², whose
// denominators are ≥ the diagonal entries' scale Σ|a_i b_i|, so c_j is good to ~2e-5 relative.
// Each output element is then K float32 FMAs.
// We therefore check h with rtol 1e-4 and atol 1e-4·max|h| (the atol covers elements where the
// c_j·g_j cancel), and the telemetry scalars with rtol 1e-4.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, device, randArray, rejects } from '../helpers.ts';
import { applyCoef, newState, reference, type Grads, type RefOptions, type RefState } from './reference.ts';
import {
  AdamW,
  concat,
  crossEntropy,
  grad,
  GradientIntegrator,
  linear,
  liveTensors,
  magnitudeHistogram,
  releaseGraph,
  relu,
  SGD,
  tensor,
  tidy,
  type IntegratorMethod,
  type IntegratorOptions,
  type PerLossGradients,
  type Tensor,
} from '../../engine/index.ts';

const test = suite('integrate');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

const SIZES = [5, 130, 7, 70001];
const SMALL = [3, 17];

interface Setup {
  params: Tensor[][];
  integrator: GradientIntegrator;
}
/** Group g's K losses are named g<g>l<j>: every group has its own loss values (gradnorm). */
const lossName = (g: number, j: number) => `g${g}l${j}`;
function setup(sizes: number[][], k: number, opts: IntegratorOptions): Setup {
  const params = sizes.map((group) => group.map((n) => tensor(new Float32Array(n), [n], { requiresGrad: true })));
  const groups = params.map((ps, g) => ({ params: ps, losses: Array.from({ length: k }, (_, j) => lossName(g, j)) }));
  return { params, integrator: new GradientIntegrator(groups, opts) };
}
function teardown(s: Setup, ...more: (Tensor[] | Tensor[][])[]): void {
  s.integrator.dispose();
  for (const t of [...s.params.flat(), ...more.flat(2)]) t.dispose();
}

/** grads[g][j][t] (null: loss j does not reach tensor t) keyed by parameter, as perLossGrads gives them. */
function keyed(params: Tensor[][], grads: readonly (readonly (readonly (Tensor | null)[])[])[]): PerLossGradients {
  const out: PerLossGradients = new Map();
  params.forEach((ps, g) => {
    ps.forEach((p, t) => {
      const byLoss: Record<string, Tensor> = {};
      grads[g]!.forEach((list, j) => {
        const gr = list[t];
        if (gr) byLoss[lossName(g, j)] = gr;
      });
      out.set(p, byLoss);
    });
  });
  return out;
}
/** The integrator's result by parameter, as [group][tensor]. */
const byGroup = (params: Tensor[][], h: Map<Tensor, Tensor>): Tensor[][] =>
  params.map((ps) => ps.map((p) => h.get(p)!));
/** Loss values lossVals[g][j] by name. */
const lossRecord = (values: Tensor[][]): Record<string, Tensor> =>
  Object.fromEntries(values.flatMap((list, g) => list.map((l, j) => [lossName(g, j), l])));

/** Host gradients gs[j][t] for one group (float32-representable values) and their device copies. */
function upload(gs: Grads): Tensor[][] {
  return gs.map((list) => list.map((x) => tensor(Float32Array.from(x), [x.length])));
}
function randomGrads(
  k: number,
  sizes: number[],
  seed: number,
  f?: (j: number, x: Float64Array[], t: number, i: number) => number,
): Grads {
  const base = Array.from({ length: k }, (_, j) => sizes.map((n, t) => randArray(n, seed + 97 * j + t)));
  if (!f) return base;
  return base.map((list, j) =>
    list.map((x, t) =>
      Float64Array.from(
        Float32Array.from(x, (_, i) =>
          f(
            j,
            base.map((l) => l[t]!),
            t,
            i,
          ),
        ),
      ),
    ),
  );
}

const maxAbs = (xs: Float64Array[]) => xs.reduce((m, x) => x.reduce((mm, v) => Math.max(mm, Math.abs(v)), m), 0);
async function expectH(out: Tensor[], ref: Float64Array[], what: string): Promise<void> {
  const atol = 1e-4 * maxAbs(ref);
  for (let t = 0; t < out.length; t++)
    assertClose(await out[t]!.toArray(), ref[t]!, 1e-4, atol, `${what}, tensor ${t}`);
}

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

test(
  'NaN / Inf in a gradient: that group is not updated (zero gradient), ' + 'the others are; read() reports it',
  async () => {
    const s = setup([[130, 5], [7]], 2, { method: 'mmpareto', telemetrySteps: 4 });
    const h0 = [randomGrads(2, [130, 5], 1), randomGrads(2, [7], 2)];
    h0[0]![1]![0]![3] = NaN;
    h0[1]![0]![0]![0] = Infinity;
    const grads = h0.map(upload);
    const out = byGroup(s.params, s.integrator.combine(keyed(s.params, grads)));
    for (const t of out[0]!)
      assert.ok(
        (await t.toArray()).every((x) => x === 0),
        'group 0 zero',
      );
    for (const t of out[1]!)
      assert.ok(
        (await t.toArray()).every((x) => x === 0),
        'group 1 zero',
      );
    for (const t of out.flat()) t.dispose();
    try {
      await s.integrator.telemetry.read();
      assert.unreachable('read() should throw');
    } catch (e) {
      assert.match((e as Error).message, /non-finite.*group 0: 1 step\(s\), first 0, last 0; group 1/);
    }
    // a finite step afterwards: no new report, the earlier record still flagged
    const ok = [randomGrads(2, [130, 5], 3), randomGrads(2, [7], 4)].map(upload);
    for (const t of s.integrator.combine(keyed(s.params, ok)).values()) t.dispose();
    const r = await s.integrator.telemetry.read({ onNonFinite: 'return' });
    assert.is(r.nonFinite.length, 0);
    assert.equal(
      r.records.map((x) => x.nonFinite),
      [true, true, false, false],
    );
    // fused: the flagged group's parameters and momentum stay as they were
    const opt = new SGD(s.params.flat(), { lr: 0.1, momentum: 0.9 });
    s.integrator.step(opt, keyed(s.params, grads));
    for (const p of s.params.flat())
      assert.ok(
        (await p.toArray()).every((x) => x === 0),
        'parameters untouched',
      );
    const r2 = await s.integrator.telemetry.read({ onNonFinite: 'return' });
    assert.equal(
      r2.nonFinite.map((n) => [n.group, n.count, n.firstStep, n.lastStep]),
      [
        [0, 1, 0, 2],
        [1, 1, 0, 2],
      ],
    );
    opt.dispose();
    teardown(s, ...grads, ...ok);
  },
);

test('telemetry ring wraps around: ring of 3, 5 steps → steps 2, 3, 4 with their own norms', async () => {
  const s = setup([[130, 70001]], 2, { method: 'mmpareto', telemetrySteps: 3 });
  const norms: number[] = [];
  for (let step = 0; step < 5; step++) {
    const gs = randomGrads(2, [130, 70001], 60 + step, (j, x, _t, i) => (step + 1) * x[j]![i]!);
    norms.push(Math.sqrt(gs[0]!.reduce((a, x) => a + x.reduce((b, y) => b + y * y, 0), 0)));
    const grads = upload(gs);
    for (const t of s.integrator.combine(keyed(s.params, [grads])).values()) t.dispose();
    for (const t of grads.flat()) t.dispose();
  }
  const r = await s.integrator.telemetry.read();
  assert.is(r.steps, 5);
  assert.equal(
    r.records.map((x) => x.step),
    [2, 3, 4],
  );
  assertClose(
    r.records.map((x) => x.normM),
    norms.slice(2),
    1e-5,
    0,
    '|g_m| per step',
  ); // positive squares: ≲ 135·u relative, halved by the sqrt
  teardown(s);
});

for (const kind of ['sgd', 'adamw'] as const) {
  test(
    `fused combine + ${kind} equals combine, then ${kind}.step() on the combined gradient (3 steps, ` +
      `mmpareto-official)`,
    async () => {
      const sizes = [[130, 5], [70001]];
      const init = sizes.map((g, gi) => g.map((n, t) => randArray(n, 500 + 10 * gi + t)));
      const mk = () => init.map((g) => g.map((x) => tensor(Float32Array.from(x), [x.length], { requiresGrad: true })));
      const [pa, pb] = [mk(), mk()];
      const opt = (ps: Tensor[][]) =>
        kind === 'sgd'
          ? new SGD(ps.flat(), { lr: 0.05, momentum: 0.9, weightDecay: 0.01, nesterov: true })
          : new AdamW(ps.flat(), { lr: 0.01, weightDecay: 0.1 });
      const [oa, ob] = [opt(pa), opt(pb)];
      const groups = (ps: Tensor[][]) => ps.map((params, g) => ({ params, losses: [lossName(g, 0), lossName(g, 1)] }));
      const [ia, ib] = [pa, pb].map((ps) => new GradientIntegrator(groups(ps), { method: 'mmpareto-official' }));
      for (let step = 0; step < 3; step++) {
        const grads = sizes.map((g, gi) =>
          upload(
            randomGrads(2, g, 70 + 3 * step + gi, (j, x, _t, i) =>
              j === 1 && step !== 1 ? -0.5 * x[0]![i]! + x[1]![i]! : x[j]![i]!,
            ),
          ),
        );
        ia!.step(oa, keyed(pa, grads));
        const h = ib!.combine(keyed(pb, grads));
        for (const p of pb.flat()) p.grad = h.get(p)!;
        ob.step();
        for (const p of pb.flat()) p.grad = null;
        for (const t of [...grads.flat(2), ...h.values()]) t.dispose();
      }
      // same float32 operations in the same order: identical up to FMA contraction choices (a few ulp)
      for (let i = 0; i < pa.flat().length; i++)
        assertClose(await pa.flat()[i]!.toArray(), await pb.flat()[i]!.toArray(), 1e-6, 1e-7, `parameter ${i}`);
      for (const x of [oa, ob, ia!, ib!]) x.dispose();
      for (const t of [...pa.flat(), ...pb.flat()]) t.dispose();
    },
  );
}

test('no buffer maps over 5 fused steps with telemetry off; exactly one per telemetry.read() with it on', async () => {
  for (const telemetrySteps of [0, 8]) {
    const s = setup([[130, 70001], [7]], 2, { method: 'mmpareto', telemetrySteps });
    const opt = new SGD(s.params.flat(), { lr: 0.01, momentum: 0.9 });
    const grads = [upload(randomGrads(2, [130, 70001], 1)), upload(randomGrads(2, [7], 2))];
    const before = device.batcher.stats.readbacks;
    for (let i = 0; i < 5; i++) s.integrator.step(opt, keyed(s.params, grads));
    device.batcher.flush();
    assert.is(device.batcher.stats.readbacks, before, 'no readback during steps');
    if (telemetrySteps) {
      const r = await s.integrator.telemetry.read();
      assert.is(device.batcher.stats.readbacks, before + 1, 'one readback per read()');
      assert.is(r.records.length, 10);
    }
    opt.dispose();
    teardown(s, ...grads);
  }
});

test(
  'a late-fusion model: mmpareto on separately computed g_m, ' + 'g_u per encoder, fused SGD step, matches the formula',
  async () => {
    // audio and visual encoders (linear → relu → linear), a fusion head on their concatenation and
    // one head per encoder; L_m on the fusion head, L_a / L_v on the unimodal heads
    const mk = (shape: number[], seed: number) =>
      tensor(Float32Array.from(randArray(shape[0]! * (shape[1] ?? 1), seed, -0.6, 0.6)), shape, { requiresGrad: true });
    const enc = [
      [mk([5, 6], 1), mk([5], 2), mk([4, 5], 3), mk([4], 4)],
      [mk([5, 8], 5), mk([5], 6), mk([4, 5], 7), mk([4], 8)],
    ];
    const [fusion, headA, headV] = [[mk([3, 8], 9)], [mk([3, 4], 10)], [mk([3, 4], 11)]];
    const x = [
      tensor(Float32Array.from(randArray(6 * 6, 20)), [6, 6]),
      tensor(Float32Array.from(randArray(6 * 8, 21)), [6, 8]),
    ];
    const y = tensor(Int32Array.from([0, 1, 2, 1, 0, 2]), [6]);
    const feats = tidy(() => enc.map((e, k) => linear(relu(linear(x[k]!, e[0]!, e[1]!)), e[2]!, e[3]!)));
    const [lm, ...lu] = tidy(() => [
      crossEntropy(linear(concat(feats, 1), fusion[0]!), y),
      crossEntropy(linear(feats[0]!, headA[0]!), y),
      crossEntropy(linear(feats[1]!, headV[0]!), y),
    ]);
    const grads = enc.map((e, k) => [grad(lm!, e, { retainGraph: true }), grad(lu[k]!, e, { retainGraph: true })]);
    const before = await Promise.all(enc.flat().map((p) => p.toArray()));
    const host: Grads[] = await Promise.all(
      grads.map((gk) =>
        Promise.all(gk.map((list) => Promise.all(list.map(async (t) => Float64Array.from(await t.toArray()))))),
      ),
    );
    const names = ['audio', 'visual'];
    const integ = new GradientIntegrator(
      enc.map((params, k) => ({ params, losses: ['mm', names[k]!] })),
      { method: 'mmpareto', telemetrySteps: 1 },
    );
    const opt = new SGD(enc.flat(), { lr: 0.5 });
    // g_m and g_u per encoder, keyed by parameter as perLossGrads gives them
    const byParam: PerLossGradients = new Map(
      enc.flatMap((e, k) =>
        e.map((p, t): [Tensor, Record<string, Tensor>] => [
          p,
          { mm: grads[k]![0]![t]!, [names[k]!]: grads[k]![1]![t]! },
        ]),
      ),
    );
    integ.step(opt, byParam);
    const rec = (await integ.telemetry.read()).records;
    let i = 0;
    for (let k = 0; k < 2; k++) {
      const r = reference('mmpareto', host[k]!, {}, newState(2), k);
      assertClose([rec[k]!.cos], [r.cos], 1e-4, 1e-6, `encoder ${k} cos`);
      const h = applyCoef(host[k]!, r.coef);
      // p − lr·h: one rounding of p plus h's error (see the header) times lr
      for (const [t, p] of enc[k]!.entries())
        assertClose(
          await p.toArray(),
          before[i++]!.map((v, j) => v - 0.5 * h[t]![j]!),
          1e-5,
          1e-5 * maxAbs(h),
          `encoder ${k} parameter ${t}`,
        );
    }
    integ.dispose();
    opt.dispose();
    for (const l of [lm!, ...lu]) releaseGraph(l);
    for (const t of [...enc.flat(), ...fusion, ...headA, ...headV, ...x, y, ...feats, lm!, ...lu, ...grads.flat(2)])
      t.dispose();
  },
);

test('magnitudeHistogram: the per-batch |g_m|, |g_u| distribution of one group from the telemetry ring', async () => {
  const s = setup([[130], [7]], 2, { method: 'uniform', telemetrySteps: 6 });
  for (let step = 0; step < 6; step++) {
    const grads = [
      upload(randomGrads(2, [130], 90 + step, (j, x, _t, i) => (j === 0 ? 0.1 : 1) * (1 + step) * x[j]![i]!)),
      upload(randomGrads(2, [7], 3)),
    ];
    for (const t of s.integrator.combine(keyed(s.params, grads)).values()) t.dispose();
    for (const t of grads.flat(2)) t.dispose();
  }
  const { records } = await s.integrator.telemetry.read();
  const hist = magnitudeHistogram(records, 0, 4);
  assert.is(hist.edges.length, 5);
  assert.is(
    hist.multimodal.reduce((a, b) => a + b, 0),
    6,
  );
  assert.is(
    hist.unimodal.reduce((a, b) => a + b, 0),
    6,
  );
  const g0 = records.filter((r) => r.group === 0);
  const bin = (v: number) => Math.min(3, Math.floor((v - hist.edges[0]!) / (hist.edges[1]! - hist.edges[0]!)));
  const expect = (vs: number[]) => {
    const c = [0, 0, 0, 0];
    for (const v of vs) c[bin(v)]!++;
    return c;
  };
  assert.equal(hist.multimodal, expect(g0.map((r) => r.normM)));
  assert.equal(hist.unimodal, expect(g0.map((r) => r.normU)));
  assert.ok(hist.multimodal[0]! === 6, 'multimodal norms ~10x smaller: all in the first bin');
  teardown(s);
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
