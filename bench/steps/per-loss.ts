// Per-loss gradients on a two-encoder late-fusion model (ResNet-18 audio and visual encoders,
// concat → linear multimodal head, one linear head per encoder; batch 4, 64², 10 classes):
// perLossGrads (one sweep, stacked cotangents; and one rule call per slot) against the
// official recipe on our own engine — forward, a retained-graph backward per loss, then a
// backward of the sum — interleaved in one process. Usage: tsx bench/steps/per-loss.ts [size] [rounds]
import '../../train/node.ts'; // Dawn as the default GPU
import {
  add,
  grad,
  init,
  perLossGrads,
  randn,
  tensor,
  tidy,
  type PerLossGradients,
  type Tensor,
} from '../../engine/index.ts';
import { TwoEncoders } from './two-encoders.ts';
import { emit, median, round } from '../util.ts';

const size = Number(process.argv[2] ?? 64);
const rounds = Number(process.argv[3] ?? 3);
const batch = 4;
const classes = 10;
const device = await init();

const model = new TwoEncoders(classes);
const params = model.parameters();
const a = randn([batch, 1, size, size]);
const v = randn([batch, 3, size, size]);
const y = tensor(
  Int32Array.from({ length: batch }, (_, i) => i % classes),
  [batch],
  { dtype: 'int32' },
);

const dispose = (gs: Iterable<Tensor | null>) => {
  for (const g of gs) g?.dispose();
};
const disposeByParam = (g: PerLossGradients) => {
  for (const byLoss of g.values()) dispose(Object.values(byLoss));
};
const labelled = { inputs: { audio: a, visual: v }, labels: { label: y } };

/** Forward + per-loss gradients; returns ms and the pool's peak bytes during the call. */
async function measure(run: (l: Record<string, Tensor>) => void): Promise<[number, number]> {
  await device.sync();
  device.pool.stats.peakBytesInUse = device.pool.stats.bytesInUse;
  const t0 = performance.now();
  const losses = tidy(() => model.losses(labelled));
  run(losses);
  for (const l of Object.values(losses)) l.dispose();
  await device.sync();
  return [performance.now() - t0, device.pool.stats.peakBytesInUse];
}

const variants: Record<string, () => Promise<[number, number]>> = {
  official: () =>
    measure((l) => {
      for (const n of ['mm', 'audio', 'visual']) dispose(grad(l[n]!, params, { retainGraph: true, allowUnused: true }));
      const total = tidy(() => add(add(l.mm!, l.audio!), l.visual!));
      total.backward();
      total.dispose();
      for (const p of params) {
        p.grad?.dispose();
        p.grad = null;
      }
    }),
  stacked: () =>
    measure((l) => {
      disposeByParam(perLossGrads(l, params, { stacked: true }));
    }),
  per_slot: () =>
    measure((l) => {
      disposeByParam(perLossGrads(l, params, { stacked: false }));
    }),
};

// compiles everything
for (const [k, run] of Object.entries(variants)) console.error(`warm-up ${k}: ${(await run())[0].toFixed(0)} ms`);
const ms: Record<string, number[]> = {};
const peak: Record<string, number> = {};
for (let r = 0; r < rounds; r++) {
  for (const [k, run] of Object.entries(variants)) {
    const [t, p] = await run();
    (ms[k] ??= []).push(t);
    peak[k] = p;
  }
}
const med = Object.fromEntries(Object.entries(ms).map(([k, xs]) => [k, median(xs)]));
emit({
  bench: 'per_loss_grads',
  model: 'late-fusion 2×ResNet-18',
  batch,
  size,
  rounds,
  official_ms: round(med.official!, 1),
  stacked_ms: round(med.stacked!, 1),
  per_slot_ms: round(med.per_slot!, 1),
  stacked_ratio: round(med.stacked! / med.official!),
  per_slot_ratio: round(med.per_slot! / med.official!),
  target_ratio: 0.75,
  peak_mb: Object.fromEntries(Object.entries(peak).map(([k, b]) => [k, round(b / 2 ** 20, 1)])),
  adapter: device.adapterName,
});

// Destroying the device ends Dawn's polling, so the process exits as soon as the bench is done.
device.destroy();
