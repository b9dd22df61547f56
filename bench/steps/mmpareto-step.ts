// A whole training step of the paper's setting on a two-encoder late-fusion model (ResNet-18
// audio and visual encoders, concat → linear head, one linear head per encoder; batch 4, 64²,
// 10 classes, SGD momentum 0.9): the MMPareto step against the uniform baseline (one backward
// of L_m + Σ L_u), interleaved; the share of the step spent in integration + update kernels;
// and the pool's peak bytes of each step.
//
// The share is measured two ways:
// - in place (`insitu`, where the adapter has 'timestamp-query'): whole steps with a
//   DispatchTimer, every kernel's GPU time where it runs; share = (Gram + solve + fused update
//   kernels) / all kernels of the MMPareto step. The same rounds give the floor any optimizer
//   sets: the plain SGD kernels' share of the uniform step, and the fused update alone.
// - by wall clock (`wall`): gradients first (then a sync), then integrator + optimizer timed
//   alone, over the whole step's wall time (with that extra sync).
// Usage: tsx bench/steps/mmpareto-step.ts [size] [rounds]
import '../../train/node.ts'; // Dawn as the default GPU
import {
  DispatchTimer,
  init,
  MultimodalStep,
  perLossGrads,
  randn,
  SGD,
  tensor,
  tidy,
  type IntegratorMethod,
  type TimedDispatch,
} from '../../engine/index.ts';
import { TwoEncoders } from './two-encoders.ts';
import { emit, median, round } from '../util.ts';

const size = Number(process.argv[2] ?? 64);
const rounds = Number(process.argv[3] ?? 3);
const batch = 4;
const classes = 10;
// Timestamps only change what a DispatchTimer can read; untimed steps run as usual.
const device = await init({ timestamps: true }).catch(() => init());
const timer = device.gpu.features.has('timestamp-query') ? new DispatchTimer(device) : null;

const model = new TwoEncoders(classes);
const a = randn([batch, 1, size, size]);
const v = randn([batch, 3, size, size]);
const y = tensor(
  Int32Array.from({ length: batch }, (_, i) => i % classes),
  [batch],
  { dtype: 'int32' },
);
const inputs = { inputs: { audio: a, visual: v }, labels: { label: y } };
const encoders = model.encoderGroups();
const setups = Object.fromEntries(
  (['uniform', 'mmpareto'] as IntegratorMethod[]).map((method) => {
    const opt = new SGD(model.parameters(), { lr: 1e-4, momentum: 0.9 });
    return [method, { opt, step: new MultimodalStep({ method, encoders, optimizer: opt }) }];
  }),
);

/** One step; returns [ms, peak bytes]. */
async function run(method: string): Promise<[number, number]> {
  const { step } = setups[method]!;
  await device.sync();
  device.pool.stats.peakBytesInUse = device.pool.stats.bytesInUse;
  const t0 = performance.now();
  const losses = tidy(() => model.losses(inputs));
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
  const losses = tidy(() => model.losses(inputs));
  const params = opt.params;
  const grads = perLossGrads(losses, params);
  await device.sync();
  const t1 = performance.now();
  step.integrator!.step(opt, grads);
  await device.sync();
  const t2 = performance.now();
  for (const byLoss of grads.values()) for (const g of Object.values(byLoss)) g.dispose();
  for (const l of Object.values(losses)) l.dispose();
  return [t2 - t1, t2 - t0];
}

/** Kernel GPU ms of one timed step of `method`, by family. */
async function inSitu(
  method: string,
): Promise<{ total: number; gram: number; solve: number; update: number; plain: number }> {
  device.batcher.timer = timer;
  try {
    await run(method);
  } finally {
    device.batcher.timer = null;
  }
  const times: TimedDispatch[] = await timer!.read();
  const sum = (f: (op: string) => boolean) => times.filter((t) => f(t.op)).reduce((a, t) => a + t.ms, 0);
  return {
    total: sum(() => true),
    gram: sum((op) => op === 'integrateGram'),
    solve: sum((op) => op === 'integrateSolve'),
    update: sum((op) => op.startsWith('integrate+')),
    plain: sum((op) => op === 'sgd'), // the plain optimizer kernel (uniform: every parameter; MMPareto: heads)
  };
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
const situ: Record<string, Awaited<ReturnType<typeof inSitu>>[]> = { uniform: [], mmpareto: [] };
if (timer) {
  for (let r = 0; r < rounds; r++) for (const m of Object.keys(setups)) situ[m]!.push(await inSitu(m));
}
const med = (m: string, k: keyof Awaited<ReturnType<typeof inSitu>>): number => median(situ[m]!.map((x) => x[k]));
const shares = (m: string, f: (x: Awaited<ReturnType<typeof inSitu>>) => number): number =>
  median(situ[m]!.map((x) => f(x) / x.total));
const u = median(ms.uniform!);
const mp = median(ms.mmpareto!);
emit({
  bench: 'mmpareto_step',
  model: 'late-fusion 2×ResNet-18',
  batch,
  size,
  rounds,
  uniform_ms: round(u, 1),
  mmpareto_ms: round(mp, 1),
  ratio: round(mp / u),
  target_ratio: 1.8,
  insitu: timer
    ? {
        mmpareto: {
          kernels_ms: round(med('mmpareto', 'total'), 1),
          gram_ms: round(med('mmpareto', 'gram'), 1),
          solve_ms: round(med('mmpareto', 'solve'), 2),
          update_ms: round(med('mmpareto', 'update'), 1),
          integration_share: round(shares('mmpareto', (x) => x.gram + x.solve + x.update)),
          update_only_share: round(shares('mmpareto', (x) => x.update)),
        },
        uniform: {
          kernels_ms: round(med('uniform', 'total'), 1),
          sgd_ms: round(med('uniform', 'plain'), 1),
          sgd_share: round(shares('uniform', (x) => x.plain)),
        },
      }
    : 'no timestamp-query on this adapter',
  wall: { integration_update_ms: round(median(integ), 1), integration_share: round(median(share)) },
  target_share: 0.05,
  peak_mb: { uniform: round(peak.uniform! / 2 ** 20, 1), mmpareto: round(peak.mmpareto! / 2 ** 20, 1) },
  peak_ratio: round(peak.mmpareto! / peak.uniform!),
  adapter: device.adapterName,
});

// Destroying the device ends Dawn's polling, so the process exits as soon as the bench is done.
device.destroy();
