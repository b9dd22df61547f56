// SGD update against a float64 reference, and a small MLP that trains on the GPU.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, randArray } from '../helpers.ts';
import { mean, SGD, square, sub, tensor, tidy, Generator } from '../../engine/index.ts';
import { MLP } from '../../models/mlp.ts';

const test = suite('optim + mlp');

for (const [momentum, wd, nesterov] of [
  [0, 0, false],
  [0.9, 0, false],
  [0.9, 0.01, false],
  [0.9, 0.01, true],
] as const) {
  test(
    `SGD momentum ${momentum}, weight decay ${wd}, ` + `nesterov ${nesterov}: 3 steps match torch.optim.SGD`,
    async () => {
      const p0 = randArray(7, 3);
      const grads = [randArray(7, 4), randArray(7, 5), randArray(7, 6)];
      const p = tensor(Float32Array.from(p0), [7], { requiresGrad: true });
      const opt = new SGD([p], { lr: 0.1, momentum, weightDecay: wd, nesterov });
      const ref = Float64Array.from(p0);
      const buf = new Float64Array(7);
      for (const g of grads) {
        p.grad = tensor(Float32Array.from(g), [7]);
        opt.step();
        opt.zeroGrad();
        for (let i = 0; i < 7; i++) {
          const d = g[i]! + wd * ref[i]!;
          buf[i] = momentum * buf[i]! + d;
          ref[i]! -= 0.1 * (nesterov ? d + momentum * buf[i]! : buf[i]!);
        }
      }
      // three float32 multiply-adds per step on values of size ~1: a few ulp
      assertClose(await p.toArray(), ref, 1e-6, 1e-6, 'params');
      opt.dispose();
      p.dispose();
    },
  );
}

test('SGD refuses non-leaf parameters and a bad lr', () => {
  const p = tensor([1], [1], { requiresGrad: true });
  assert.throws(() => new SGD([p], { lr: 0 }), /lr must be > 0/);
  assert.throws(() => new SGD([tensor([1], [1])], { lr: 0.1 }), /not a leaf tensor with requiresGrad/);
  p.dispose();
});

test('a small MLP fits a smooth function on the GPU (loss falls 5x in 150 steps)', async () => {
  const model = new MLP([2, 32, 32, 1], 3);
  const opt = new SGD(model.parameters, { lr: 0.1, momentum: 0.9 });
  const gen = new Generator(11);
  const n = 128;
  const x = new Float32Array(n * 2).map(() => gen.uniform() * 2 - 1);
  const y = Float32Array.from({ length: n }, (_, i) => Math.sin(3 * x[2 * i]!) * Math.cos(2 * x[2 * i + 1]!));
  const xt = tensor(x, [n, 2]);
  const yt = tensor(y, [n, 1]);
  const losses: number[] = [];
  for (let step = 0; step < 150; step++) {
    const loss = tidy(() => mean(square(sub(model.forward(xt), yt))));
    loss.backward();
    opt.step();
    opt.zeroGrad();
    if (step === 0 || step === 149) losses.push(await loss.item());
    loss.dispose();
  }
  assert.ok(losses[1]! < losses[0]! / 5, `loss ${losses[0]} -> ${losses[1]}`);
  for (const t of [xt, yt, ...model.parameters]) t.dispose();
  opt.dispose();
});

test.run();
