// Cost of the NonFiniteGuard the trainer puts on every step: the `npm start` CG-FMNIST step
// (bench/steps/cg-step.ts, batch 64) with and without a guard, for mmpareto (encoders checked through
// the integrator's Gram sums, heads by dispatch) and uniform (every gradient by dispatch),
// interleaved in one process so machine noise hits both. Prints one JSON line per method with
// the median step times and their ratio. Usage: tsx bench/steps/guard.ts [steps=20] [batch=64]
import '../../train/node.ts'; // Dawn as the default GPU
import { init, type IntegratorMethod } from '../../engine/index.ts';
import { cgStep } from './cg-step.ts';
import { emit, median, round } from '../util.ts';

const steps = Number(process.argv[2] ?? 20);
const batch = Number(process.argv[3] ?? 64);
const device = await init();
for (const method of ['mmpareto', 'uniform'] as IntegratorMethod[]) {
  const plain = cgStep(batch, method);
  const guarded = cgStep(batch, method, { guard: true });
  for (let i = 0; i < 3; i++) {
    await plain.run();
    await guarded.run();
  } // compile and warm up
  const t = { plain: [] as number[], guarded: [] as number[] };
  for (let i = 0; i < steps; i++) {
    t.plain.push(await plain.run());
    t.guarded.push(await guarded.run());
  }
  const [p, g] = [median(t.plain), median(t.guarded)];
  emit({
    bench: 'guard',
    method,
    batch,
    steps,
    plain_ms: round(p, 2),
    guarded_ms: round(g, 2),
    ratio: round(g / p, 4),
    adapter: device.adapterName,
  });
  plain.dispose();
  guarded.dispose();
}
device.destroy();
