// dropout: kept fraction within a binomial 5σ bound on 1e5 elements, kept values x/(1 − p),
// backward = the same mask·scale·g, reproducibility from a seeded Generator, eval/p = 0 identity,
// p = 1 zeros, gradcheck, bad input, no leaks.
// Tolerance: a kept value is x·fl(1/(1 − p)), two roundings: within 2u·|x/(1 − p)| (u = 2^-24).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, check, randArray, randTensor, throwsWith } from '../helpers.ts';
import {
  dropout,
  grad,
  tensor,
  liveTensors,
  Generator,
  defaultGenerator,
  manualSeed,
  type Tensor,
} from '../../engine/index.ts';

const test = suite('dropout');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

const U = 2 ** -24;

/** Runs dropout with gradient on positive inputs (so 0 means dropped); returns values and dx for upstream g. */
async function run(
  n: number,
  p: number,
  gen: Generator | undefined,
  seed: number,
): Promise<{ x: Float64Array; g: Float64Array; y: Float32Array; dx: Float32Array }> {
  const x = randArray(n, seed, 0.5, 2);
  const g = randArray(n, seed + 1, -1, 1);
  const xt = tensor(Float32Array.from(x), [n], { requiresGrad: true });
  const gt = tensor(Float32Array.from(g), [n]);
  const yt = dropout(xt, p, { training: true, ...(gen ? { generator: gen } : {}) });
  const [dxt] = grad([yt], [xt], { gradOutputs: [gt] });
  const y = (await yt.toArray()) as Float32Array;
  const dx = (await dxt!.toArray()) as Float32Array;
  for (const t of [xt, gt, yt, dxt!]) t.dispose();
  return { x, g, y, dx };
}

test('kept fraction, kept values and backward mask (1e5 elements, vec4 and scalar kernels)', async () => {
  for (const [n, p] of [
    [100000, 0.3],
    [99999, 0.5],
    [100000, 0.9],
  ] as const) {
    const { x, g, y, dx } = await run(n, p, new Generator(n + Math.round(p * 10)), 800);
    const q = 1 - p;
    let kept = 0;
    let pairs = 0;
    const keptX: number[] = [];
    const keptY: number[] = [];
    const keptG: number[] = [];
    const keptDx: number[] = [];
    for (let i = 0; i < n; i++) {
      if (y[i] !== 0) {
        kept++;
        keptX.push(x[i]! / q);
        keptY.push(y[i]!);
        keptG.push(g[i]! / q);
        keptDx.push(dx[i]!);
        if (i % 2 === 1 && y[i - 1] !== 0) pairs++;
      } else assert.is(dx[i], 0, `dropped element ${i} has zero gradient`);
    }
    const sigma = Math.sqrt(n * p * q);
    assert.ok(Math.abs(kept - n * q) <= 5 * sigma, `n=${n}, p=${p}: kept ${kept}, expected ${n * q} ± ${5 * sigma}`);
    // Neighbours independent: pairs (2i, 2i+1) both kept ~ Binomial(n/2, q²).
    const m = Math.floor(n / 2);
    assert.ok(
      Math.abs(pairs - m * q * q) <= 5 * Math.sqrt(m * q * q * (1 - q * q)),
      `n=${n}, p=${p}: ${pairs} adjacent kept pairs, expected ${m * q * q}`,
    );
    assertClose(keptY, keptX, 2 * U, 0, `n=${n}, p=${p}: kept values x/(1 − p)`);
    assertClose(keptDx, keptG, 2 * U, 0, `n=${n}, p=${p}: backward g/(1 − p) on the kept elements`);
  }
});

test('the same generator state gives the same mask; another seed a different one', async () => {
  const a = await run(4096, 0.5, new Generator(7), 810);
  const b = await run(4096, 0.5, new Generator(7), 810);
  const c = await run(4096, 0.5, new Generator(8), 810);
  assert.equal([...a.y], [...b.y], 'same seed, same output');
  assert.equal([...a.dx], [...b.dx], 'same seed, same gradient');
  let differ = 0;
  for (let i = 0; i < 4096; i++) if ((a.y[i] === 0) !== (c.y[i] === 0)) differ++;
  assert.ok(differ > 1000, `another seed changes about half the mask (${differ} of 4096)`);
  // The default generator: manualSeed gives the same mask again.
  const saved = defaultGenerator.state;
  manualSeed(123);
  const d = await run(1000, 0.5, undefined, 820);
  manualSeed(123);
  const e = await run(1000, 0.5, undefined, 820);
  defaultGenerator.state = saved;
  assert.equal([...d.y], [...e.y], 'manualSeed reproduces the default generator mask');
});

test('eval mode and p = 0 are the identity (a view); p = 1 gives zeros', async () => {
  const [x, xv] = randTensor([3, 5], 830);
  x.requireGrad();
  const gt = tensor(Float32Array.from(randArray(15, 831)), [3, 5]);
  for (const [p, training] of [
    [0.5, false],
    [0, true],
    [1, false],
  ] as const) {
    const gen = new Generator(1);
    const y = dropout(x, p, { training, generator: gen });
    assert.equal(gen.state, new Generator(1).state, 'no random number drawn');
    assert.is(y.storage, x.storage, 'a view of x (shared storage)');
    const [dx] = grad([y], [x], { gradOutputs: [gt] });
    assert.equal([...(await y.toArray())], [...Float32Array.from(xv)], `p=${p}, training ${training}: y = x`);
    assert.equal([...(await dx!.toArray())], [...(await gt.toArray())], 'dx = g');
    y.dispose();
    dx!.dispose();
  }
  const z = dropout(x, 1, { training: true, generator: new Generator(2) });
  const [dz] = grad([z], [x], { gradOutputs: [gt] });
  assert.ok(
    [...(await z.toArray())].every((v) => Object.is(v, 0)),
    'p = 1: zeros',
  );
  assert.ok(
    [...(await dz!.toArray())].every((v) => Object.is(v, 0)),
    'p = 1: zero gradient',
  );
  for (const t of [x, gt, z, dz!]) t.dispose();
});

test('gradcheck (fixed seed per evaluation)', async () => {
  for (const [shape, p] of [
    [[7], 0.4],
    [[2, 4], 0.25],
  ] as const)
    await check(
      (x) => dropout(x!, p, { training: true, generator: new Generator(9) }),
      [randTensor([...shape], 840, -2, 2)[0]],
    );
});

test('bad input: p outside [0, 1], missing training flag', () => {
  const x = tensor([1, 2, 3], [3]);
  const n = liveTensors.count;
  for (const p of [-0.1, 1.5, NaN])
    throwsWith(() => dropout(x, p, { training: true }), 'dropout', `p ${p}`, '[0, 1]', '[3]');
  throwsWith(() => dropout(x, 0.5, {} as { training: boolean }), 'dropout', 'training');
  assert.is(liveTensors.count, n, 'nothing allocated');
  x.dispose();
  throwsWith(() => dropout(x as Tensor, 0.5, { training: true }), 'dropout', 'disposed');
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
