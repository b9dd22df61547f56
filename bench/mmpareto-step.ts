// A whole training step of the paper's setting on a two-encoder late-fusion model (ResNet-18
// audio and visual encoders, concat → linear head, one linear head per encoder; batch 4, 64²,
// 10 classes, SGD momentum 0.9): the MMPareto step against the uniform baseline (one backward
// of L_m + Σ L_u), interleaved; the share of the step spent in integration + update kernels
// (timed after a sync that waits for the gradients); and the pool's peak bytes of each step.
// Usage: tsx bench/mmpareto-step.ts [size] [rounds]
import { init, MultimodalStep, perLossGrads, randn, SGD, tensor, tidy, type IntegratorMethod, type Tensor } from '../engine/index.ts';
import { TwoEncoders } from './two-encoders.ts';
import { emit, median, round } from './util.ts';

const size = Number(process.argv[2] ?? 64);
const rounds = Number(process.argv[3] ?? 3);
const batch = 4;
const classes = 10;
const device = await init();

const model = new TwoEncoders(classes);
const a = randn([batch, 1, size, size]);
const v = randn([batch, 3, size, size]);
const y = tensor(Int32Array.from({ length: batch }, (_, i) => i % classes), [batch], { dtype: 'int32' });
const encoders = model.encoderGroups();
const setups = Object.fromEntries((['uniform', 'mmpareto'] as IntegratorMethod[]).map((method) => {
  const opt = new SGD(model.parameters(), { lr: 1e-4, momentum: 0.9 });
  return [method, { opt, step: new MultimodalStep({ method, encoders, optimizer: opt }) }];
}));

/** One step; returns [ms, peak bytes]. */
async function run(method: string): Promise<[number, number]> {
  const { step } = setups[method]!;
  await device.sync();
  device.pool.stats.peakBytesInUse = device.pool.stats.bytesInUse;
  const t0 = performance.now();
  const losses = tidy(() => model.losses(a, v, y));
  step.step(losses);
  for (const l of Object.values(losses)) l.dispose();
  await device.sync();
  return [performance.now() - t0, device.pool.stats.peakBytesInUse];
}

/** The integration + update part alone: gradients first (synced), then integrator + optimizer. */
async function integrationShare(): Promise<[number, number]> {
  const { opt, step } = setups.mmpareto!;
  await device.sync();
  const t0 = performance.now();
  const losses = tidy(() => model.losses(a, v, y));
  const params = opt.params;
  const grads = perLossGrads(losses, params);
  await device.sync();
  const t1 = performance.now();
  const index = new Map(params.map((p, i) => [p, i]));
  const gg = Object.entries(encoders).map(([n, ps]) => [ps.map((p) => grads.mm![index.get(p)!]!), ps.map((p) => grads[n]![index.get(p)!]!)]);
  step.integrator!.step(opt, gg);
  await device.sync();
  const t2 = performance.now();
  for (const gs of Object.values(grads)) for (const g of gs) g?.dispose();
  for (const l of Object.values(losses)) l.dispose();
  return [t2 - t1, t2 - t0];
}

for (const m of Object.keys(setups)) console.error(`warm-up ${m}: ${(await run(m))[0].toFixed(0)} ms`);
await integrationShare();
const ms: Record<string, number[]> = { uniform: [], mmpareto: [] };
const peak: Record<string, number> = {};
const share: number[] = [];
const integ: number[] = [];
for (let r = 0; r < rounds; r++) {
  for (const m of Object.keys(setups)) {
    const [t, p] = await run(m);
    ms[m]!.push(t);
    peak[m] = p;
  }
  const [ti, tall] = await integrationShare();
  integ.push(ti);
  share.push(ti / tall);
}
const u = median(ms.uniform!);
const mp = median(ms.mmpareto!);
emit({
  bench: 'mmpareto_step', model: 'late-fusion 2×ResNet-18', batch, size, rounds,
  uniform_ms: round(u, 1), mmpareto_ms: round(mp, 1), ratio: round(mp / u), target_ratio: 1.8,
  integration_update_ms: round(median(integ), 1), integration_share: round(median(share)), target_share: 0.05,
  peak_mb: { uniform: round(peak.uniform! / 2 ** 20, 1), mmpareto: round(peak.mmpareto! / 2 ** 20, 1) },
  peak_ratio: round(peak.mmpareto! / peak.uniform!),
  adapter: device.adapterName,
});

// Destroying the device ends Dawn's polling, so the process exits as soon as the bench is done.
device.destroy();
