// Per-loss gradients from one forward: equal to a separate backward per loss on a two-encoder
// late-fusion model (conv → batchnorm(train) → relu → conv → pool per encoder, concat →
// linear head, plus a linear head per encoder); shared nodes run once per reaching loss;
// bad input.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, randTensor, rejects } from '../helpers.ts';
import {
  grad,
  liveTensors,
  mulScalar,
  perLossGrads,
  perLossStats,
  sum,
  tensor,
  tidy,
  type PerLossGradients,
  type Tensor,
} from '../../engine/index.ts';
import { LateFusion } from '../fixtures/late-fusion.ts';

const test = suite('per-loss gradients');

const disposeAll = (g: PerLossGradients) => {
  for (const byLoss of g.values()) for (const t of Object.values(byLoss)) t.dispose();
};

/** Two items; size 2 keeps every conv map within the stacked (tiny-map) backward. */
function batch(seed: number, size = 8): [Tensor, Tensor, Tensor] {
  const [a] = randTensor([2, 1, size, size], seed);
  const [v] = randTensor([2, 3, size, size], seed + 1);
  const y = tensor(Int32Array.of(0, 2), [2], { dtype: 'int32' });
  return [a, v, y];
}

for (const stacked of [true, false]) {
  const title = `equal to one retained-graph backward per loss (stacked ${stacked}); heads get only their own loss`;
  test(title, async () => {
    const before = liveTensors.count;
    const m = new LateFusion(4, 3, 1);
    const params = m.parameters();
    const [a, v, y] = batch(2, stacked ? 2 : 8);
    const losses = tidy(() => m.losses(a, v, y));
    // Reference: the official recipe, a retained-graph backward per loss (allowUnused: zeros).
    const ref: Record<string, Tensor[]> = {};
    for (const [n, l] of Object.entries(losses)) ref[n] = grad(l, params, { retainGraph: true, allowUnused: true });
    const got = perLossGrads(losses, params, { stacked });
    const names = m.namedParameters().map(([n]) => n);
    assert.equal([...got.keys()], params, 'keyed by parameter, every parameter listed');
    for (const loss of Object.keys(losses)) {
      const gs = params.map((p) => got.get(p)![loss] ?? null);
      for (let i = 0; i < params.length; i++) {
        const reaches = names[i]!.startsWith('head.')
          ? loss === 'mm'
          : names[i]!.startsWith('head_audio.')
            ? loss === 'audio'
            : names[i]!.startsWith('head_visual.')
              ? loss === 'visual'
              : names[i]!.startsWith('audio.')
                ? loss === 'mm' || loss === 'audio'
                : loss === 'mm' || loss === 'visual';
        assert.is(gs[i] !== null, reaches, `${loss} reaches ${names[i]}: ${reaches}`);
        // The same kernels run on the same values; only a stacked GEMM's rows may be summed in
        // another order (conv weight gradients: sums of ~100 terms of size ~0.1 → 1e-6 abs).
        if (gs[i])
          assertClose(await gs[i]!.toArray(), await ref[loss]![i]!.toArray(), 1e-5, 1e-6, `${loss} → ${names[i]}`);
      }
    }
    // Encoders are reached by two losses each, heads by one: every encoder node ran for 2 slots.
    assert.ok(perLossStats.singleCalls > 0);
    // conv2d has a stacked rule (used on tiny maps like these 2×2 ones): the encoders' convs ran as one call for both
    // slots.
    assert.ok(
      stacked ? perLossStats.stackedCalls >= 4 : perLossStats.stackedCalls === 0,
      `stacked calls ${perLossStats.stackedCalls}`,
    );
    assert.ok(perLossStats.perSlotCalls > 0, 'ops without a stacked rule ran once per slot');
    disposeAll(got);
    for (const gs of Object.values(ref)) for (const g of gs) g.dispose();
    for (const t of [a, v, y, ...Object.values(losses)]) t.dispose();
    m.dispose();
    assert.is(liveTensors.count, before, 'no leaks, graph freed');
  });
}

test('a loss used twice and a loss that is a sum of others', async () => {
  const m = new LateFusion(4, 3, 3);
  const params = m.parameters();
  const [a, v, y] = batch(4);
  const losses = tidy(() => m.losses(a, v, y));
  const total = tidy(() => sum(mulScalar(losses.audio, 2)));
  const got = perLossGrads({ audio: losses.audio, twice: total }, params, { retainGraph: true });
  for (const [i, p] of params.entries()) {
    const g1 = got.get(p)!.audio;
    const g2 = got.get(p)!.twice;
    assert.is(g1 === undefined, g2 === undefined);
    if (g1)
      assertClose(
        await g2!.toArray(),
        Array.from(await g1.toArray(), (x) => 2 * x),
        1e-6,
        1e-7,
        `param ${i}`,
      );
  }
  disposeAll(got);
  for (const t of [a, v, y, total, ...Object.values(losses)]) t.dispose();
  m.dispose();
});

test('bad input: non-scalar loss, losses of two forwards, repeated or non-leaf parameter, freed graph', () => {
  const m = new LateFusion(4, 3, 5);
  const params = m.parameters();
  const [a, v, y] = batch(6);
  const l1 = tidy(() => m.losses(a, v, y));
  const l2 = tidy(() => m.losses(a, v, y)); // a second forward: shares only parameters with the first
  const vec = tidy(() => mulScalar(m.headAudio.forward(m.audio.forward(a)), 1));
  rejects(() => perLossGrads({}, params), 'no losses given');
  rejects(() => perLossGrads({ v: vec }, params), "loss 'v' is not a scalar (shape [2, 3])");
  rejects(
    () => perLossGrads({ mm: l1.mm, audio: l2.audio }, params),
    "losses 'audio' come from a different forward graph than 'mm'",
  );
  rejects(() => perLossGrads({ mm: l1.mm }, [params[0]!, params[0]!]), 'is listed twice');
  rejects(() => perLossGrads({ mm: l1.mm }, [vec]), 'is not a leaf tensor with requiresGrad');
  disposeAll(perLossGrads({ mm: l1.mm }, params));
  rejects(() => perLossGrads({ mm: l1.mm }, params), 'already freed');
  for (const t of [a, v, y, vec, ...Object.values(l1), ...Object.values(l2)]) t.dispose();
  m.dispose();
});

test.run();
