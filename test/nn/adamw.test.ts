// AdamW against a float64 reference of torch.optim.AdamW (amsgrad off), several steps.
// Tolerances (u = 2^-24 ≈ 6e-8): per step the kernel rounds p·(1 − lr·λ), the two moment
// updates, √v, one division and the final subtraction: ≲ 8 roundings, each ≤ u relative to a
// term of size ≤ |p| ≤ 1 or to the step lr·|m̂|/(√v̂ + ε), which is ≤ a few·lr here; so after 5
// steps the error is ≲ 5·8·u·(1 + 3·0.05) ≈ 3e-6 absolute at worst: atol 3e-6, rtol 1e-6.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, randArray } from '../helpers.ts';
import { AdamW, liveTensors, tensor, type AdamWOptions } from '../../engine/index.ts';

const test = suite('adamw');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

interface RefParam {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
  t: number;
}

/** torch.optim.AdamW's update for one parameter (float64). */
function refStep(s: RefParam, g: Float64Array, o: Required<AdamWOptions>): void {
  const [b1, b2] = o.betas;
  s.t++;
  const bc1 = 1 - b1 ** s.t;
  const bc2 = 1 - b2 ** s.t;
  for (let i = 0; i < g.length; i++) {
    s.p[i]! *= 1 - o.lr * o.weightDecay;
    s.m[i] = b1 * s.m[i]! + (1 - b1) * g[i]!;
    s.v[i] = b2 * s.v[i]! + (1 - b2) * g[i]! * g[i]!;
    s.p[i]! -= ((o.lr / bc1) * s.m[i]!) / (Math.sqrt(s.v[i]!) / Math.sqrt(bc2) + o.eps);
  }
}

const CONFIGS: Required<AdamWOptions>[] = [
  { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 }, // torch defaults
  { lr: 0.05, betas: [0.8, 0.99], eps: 1e-3, weightDecay: 0 },
  { lr: 0.01, betas: [0, 0.5], eps: 1e-8, weightDecay: 0.5 },
];
for (const o of CONFIGS) {
  test(
    `AdamW lr ${o.lr}, betas [${o.betas}], eps ${o.eps}, weight decay ${o.weightDecay}: 5 steps on sizes 7 and ` +
      `130 match torch.optim.AdamW`,
    async () => {
      const sizes = [7, 130];
      const params = sizes.map((n, i) => tensor(Float32Array.from(randArray(n, 10 + i)), [n], { requiresGrad: true }));
      const refs: RefParam[] = sizes.map((n, i) => ({
        p: randArray(n, 10 + i),
        m: new Float64Array(n),
        v: new Float64Array(n),
        t: 0,
      }));
      const opt = new AdamW(params, o);
      for (let step = 0; step < 5; step++) {
        params.forEach((p, i) => {
          const g = randArray(sizes[i]!, 100 * step + i, -2, 2);
          g[0] = 0; // m = v = 0 on the first step: a zero update, not 0/0
          p.grad = tensor(Float32Array.from(g), [g.length]);
          refStep(refs[i]!, g, o);
        });
        opt.step();
        opt.zeroGrad();
      }
      for (let i = 0; i < params.length; i++)
        assertClose(await params[i]!.toArray(), refs[i]!.p, 1e-6, 3e-6, `parameter ${i}`);
      opt.dispose();
      for (const p of params) p.dispose();
    },
  );
}

test('AdamW: a parameter without a gradient is skipped and keeps its own step count (bias correction)', async () => {
  const o: Required<AdamWOptions> = { lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.1 };
  const a = tensor(Float32Array.from(randArray(5, 1)), [5], { requiresGrad: true });
  const b = tensor(Float32Array.from(randArray(6, 2)), [6], { requiresGrad: true });
  const ra: RefParam = { p: randArray(5, 1), m: new Float64Array(5), v: new Float64Array(5), t: 0 };
  const rb: RefParam = { p: randArray(6, 2), m: new Float64Array(6), v: new Float64Array(6), t: 0 };
  const opt = new AdamW([a, b], o);
  for (let step = 0; step < 3; step++) {
    const ga = randArray(5, 20 + step);
    a.grad = tensor(Float32Array.from(ga), [5]);
    refStep(ra, ga, o);
    if (step === 2) {
      const gb = randArray(6, 30);
      b.grad = tensor(Float32Array.from(gb), [6]);
      refStep(rb, gb, o); // b's first step: t = 1
    }
    opt.step();
    opt.zeroGrad();
  }
  assertClose(await a.toArray(), ra.p, 1e-6, 3e-6, 'a');
  assertClose(await b.toArray(), rb.p, 1e-6, 3e-6, 'b (one step, t = 1)');
  opt.dispose();
  a.dispose();
  b.dispose();
});

test('update(p, g): only p and its step count advance, as step() would; a foreign tensor is refused', async () => {
  const o: Required<AdamWOptions> = { lr: 0.05, betas: [0.8, 0.99], eps: 1e-3, weightDecay: 0.1 };
  const sizes = [7, 130];
  const params = sizes.map((n, i) => tensor(Float32Array.from(randArray(n, 40 + i)), [n], { requiresGrad: true }));
  const zeros = (n: number) => new Float64Array(n);
  const refs = sizes.map((n, i): RefParam => ({ p: randArray(n, 40 + i), m: zeros(n), v: zeros(n), t: 0 }));
  const opt = new AdamW(params, o);
  const grads = [0, 1, 2].map((step) => sizes.map((n, i) => randArray(n, 300 + 10 * step + i, -2, 2)));
  // step 0: parameter 0 alone through update(); steps 1, 2: both through step()
  const g0 = tensor(Float32Array.from(grads[0]![0]!), [sizes[0]!]);
  opt.update(params[0]!, g0);
  refStep(refs[0]!, grads[0]![0]!, o);
  g0.dispose();
  for (const step of [1, 2]) {
    params.forEach((p, i) => {
      p.grad = tensor(Float32Array.from(grads[step]![i]!), [sizes[i]!]);
      refStep(refs[i]!, grads[step]![i]!, o);
    });
    opt.step();
    opt.zeroGrad();
  }
  assert.equal([...((await opt.stateDict()).get('step') as Int32Array)], [3, 2]);
  for (const [i, p] of params.entries()) assertClose(await p.toArray(), refs[i]!.p, 1e-6, 3e-6, `parameter ${i}`);
  const foreign = tensor([1, 2], [2], { requiresGrad: true });
  const g = tensor([1, 1], [2]);
  try {
    opt.update(foreign, g);
    assert.unreachable('expected an error');
  } catch (e) {
    assert.match((e as Error).message, /AdamW\.update: .* is not one of the optimizer's parameters/);
  }
  for (const t of [foreign, g, ...params]) t.dispose();
  opt.dispose();
});

test('AdamW refuses bad options and non-leaf parameters', () => {
  const p = tensor([1, 2], [2], { requiresGrad: true });
  assert.throws(() => new AdamW([p], { lr: 0 }), /AdamW: lr must be > 0/);
  assert.throws(() => new AdamW([p], { betas: [0.9, 1] }), /betas must lie in \[0, 1\)/);
  assert.throws(() => new AdamW([p], { eps: -1 }), /eps must be >= 0/);
  assert.throws(() => new AdamW([p], { weightDecay: -0.1 }), /weightDecay must be >= 0/);
  const plain = tensor([1], [1]);
  assert.throws(() => new AdamW([plain]), /not a leaf tensor with requiresGrad/);
  assert.throws(() => new AdamW([p, p]), /appears twice/);
  p.dispose();
  plain.dispose();
});

test('no leaked tensors', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
