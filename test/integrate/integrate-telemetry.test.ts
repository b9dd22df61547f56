// Gradient integrators (engine/integrate): telemetry (ring, non-finite input, magnitude
// histogram), the fused optimizer path, readback counts, a late-fusion model, and leaks.
// Tolerances: see test/integrate/harness.ts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, device, randArray } from '../helpers.ts';
import { applyCoef, newState, reference, type Grads } from './reference.ts';
import { byGroup, keyed, lossName, maxAbs, randomGrads, setup, teardown, upload } from './harness.ts';
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
  type PerLossGradients,
  type Tensor,
} from '../../engine/index.ts';

const test = suite('integrate-telemetry');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

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
      // p − lr·h: one rounding of p plus h's error (see harness.ts) times lr
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

test('no leaked tensors', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
