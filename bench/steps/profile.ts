// Per-kernel profile of one ResNet-18 training step (the step of bench/steps/resnet.ts: ResNet-18 +
// Linear(512, 10), cross-entropy, backward, SGD momentum 0.9, batch 4). After 2 warm-up steps, one
// step's dispatches are recorded through the batcher's trace hook; each is then replayed alone R
// times (its own encoder and submit, then onSubmittedWorkDone). The pool keeps released buffers,
// so every recorded binding still exists; their contents do not matter for timing, but the
// uniform Params do (loop bounds), so each replay binds a copy of the recorded Params.
// GPU time of a dispatch = median replay time − median time of an empty submit (printed as
// overhead_ms). JSON lines: the whole step (median of 5 steps), the top 15 dispatches, totals per
// op name, and totals per conv layer and pack (op + geometry); conv and matmul rows carry GFLOP/s
// computed from the recorded Params (nominal FLOPs: 2 per multiply-add of the GEMM, padding taps
// included). A dispatch replayed alone runs slower than inside the step's batched submits (the sum
// of dispatches exceeds step_ms, about 1.9× on lavapipe for the CG step): compare shares and ratios.
// Usage: tsx bench/steps/profile.ts [size, default 32] [R, default 5]   (ResNet-18 step, batch 4)
//        tsx bench/steps/profile.ts cg [R, default 5] [method, default mmpareto] [batch, default 64]
//        (the CG-FMNIST step of `npm start`, bench/steps/cg-step.ts)
import '../../train/node.ts'; // Dawn as the default GPU
import { init, type IntegratorMethod } from '../../engine/index.ts';
import type { RecordedDispatch as Dispatch } from '../../engine/batcher.ts';
import { cgStep } from './cg-step.ts';
import { resnetStep } from './resnet-step.ts';
import { emit, median, round } from '../util.ts';

const cg = process.argv[2] === 'cg';
const size = cg ? 28 : Number(process.argv[2] ?? 32);
const R = Number(process.argv[3] ?? 5);
const method = (process.argv[4] ?? 'mmpareto') as IntegratorMethod;
const batch = cg ? Number(process.argv[5] ?? 64) : 4;
const classes = 10;
const UNIFORM_COPY_DST = 0x40 | 0x08;

const device = await init();
const gpu = device.gpu;
const ours = cg ? cgStep(batch, method) : resnetStep(size, batch, classes);
const step = (): Promise<number> => ours.run();

for (let i = 0; i < 2; i++) await step();
const stepMs = median([await step(), await step(), await step(), await step(), await step()]);

// Record one step.
const recorded: Dispatch[] = [];
device.batcher.trace = (d) => recorded.push(d);
await step();
device.batcher.trace = null;
await device.sync();

/** A bind group like the batcher's, with the recorded Params in a buffer of its own. */
function bindGroupOf(d: Dispatch): GPUBindGroup {
  const entries: GPUBindGroupEntry[] = [...d.storage];
  if (d.uniform.byteLength > 0) {
    const params = gpu.createBuffer({ label: 'profile-params', size: 256, usage: UNIFORM_COPY_DST });
    gpu.queue.writeBuffer(params, 0, d.uniform);
    entries.push({ binding: 0, resource: { buffer: params } });
  }
  return gpu.createBindGroup({ layout: d.pipeline.getBindGroupLayout(0), entries });
}

/** Median wall time of R submits of one dispatch (or of nothing, for the overhead). */
async function replay(d: Dispatch | null, bg: GPUBindGroup | null): Promise<number> {
  const times: number[] = [];
  for (let r = 0; r < R; r++) {
    const t0 = performance.now();
    const enc = gpu.createCommandEncoder();
    const pass = enc.beginComputePass();
    if (d && bg) {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, bg);
      pass.dispatchWorkgroups(d.groups[0], d.groups[1] ?? 1, d.groups[2] ?? 1);
    }
    pass.end();
    gpu.queue.submit([enc.finish()]);
    await gpu.queue.onSubmittedWorkDone();
    times.push(performance.now() - t0);
  }
  return median(times);
}

device.quietWait = false; // precise waits: a 1 ms polling timer would swamp sub-millisecond kernels
await replay(null, null);
const overhead = median([await replay(null, null), await replay(null, null), await replay(null, null)]);
const rows: { i: number; op: string; groups: number[]; ms: number }[] = [];
for (const [i, d] of recorded.entries()) {
  const bg = bindGroupOf(d);
  await replay(d, bg); // first use of the bind group
  rows.push({
    i,
    op: d.op,
    groups: [d.groups[0], d.groups[1] ?? 1, d.groups[2] ?? 1],
    ms: Math.max(0, (await replay(d, bg)) - overhead),
  });
}
device.quietWait = true;
const total = rows.reduce((s, r) => s + r.ms, 0);

/** Conv kernels' Params (shaders/conv.ts CONV_PARAMS): n, cin, h, w, cout, ho, wo, kh, kw, sh, … */
const CONV_OPS = ['conv2d', 'conv2dSmall', 'conv2dBackwardInput', 'conv2dBackwardInputSmall', 'conv2dBackwardWeight'];
const num = (d: Dispatch, name: string): number => Number(d.params[name] ?? 0);
/** Nominal FLOPs of a dispatch, or 0 where the Params do not say (every conv GEMM: 2·N·Cout·Ho·Wo·Cin·KH·KW). */
function flopsOf(d: Dispatch): number {
  const p = (name: string) => num(d, name);
  if (CONV_OPS.includes(d.op)) return 2 * p('n') * p('cout') * p('ho') * p('wo') * p('cin') * p('kh') * p('kw');
  if (d.op === 'matmul') return 2 * p('m') * p('n') * p('k') * p('batch');
  return 0;
}
/** A conv dispatch's layer: op, batch, channels, input size, kernel/stride. */
function layerOf(d: Dispatch): string {
  const p = (name: string) => num(d, name);
  return `${d.op} n${p('n')} ${p('cin')}→${p('cout')} ${p('h')}×${p('w')} k${p('kh')}×${p('kw')}/${p('sh')}`;
}
const gflops = (flops: number, ms: number) => (flops > 0 && ms > 0 ? round(flops / ms / 1e6, 2) : undefined);

emit({
  bench: cg ? 'profile_cg_step' : 'profile_step',
  size,
  batch,
  R,
  ...(cg ? { method } : {}),
  step_ms: round(stepMs, 1),
  dispatches: recorded.length,
  sum_of_dispatches_ms: round(total, 1),
  overhead_ms: round(overhead, 3),
  adapter: device.adapterName,
});
for (const r of [...rows].sort((a, b) => b.ms - a.ms).slice(0, 15)) {
  const d = recorded[r.i]!;
  emit({
    top: r.i,
    op: r.op,
    groups: r.groups,
    ms: round(r.ms, 3),
    share: round(r.ms / total),
    gflops: gflops(flopsOf(d), r.ms),
    params: d.params,
  });
}
/** Totals of the rows grouped by `key` (undefined: not grouped), largest first. */
function totals(key: (d: Dispatch) => string | undefined): [string, { ms: number; count: number; flops: number }][] {
  const by = new Map<string, { ms: number; count: number; flops: number }>();
  for (const r of rows) {
    const d = recorded[r.i]!;
    const k = key(d);
    if (k === undefined) continue;
    const e = by.get(k) ?? { ms: 0, count: 0, flops: 0 };
    e.ms += r.ms;
    e.count++;
    e.flops += flopsOf(d);
    by.set(k, e);
  }
  return [...by].sort((a, b) => b[1].ms - a[1].ms);
}
for (const [op, e] of totals((d) => d.op)) {
  emit({ op, count: e.count, ms: round(e.ms, 2), share: round(e.ms / total), gflops: gflops(e.flops, e.ms) });
}
/** Conv and pack dispatches by geometry (pack Params: rows m, reduction k). */
const layerKey = (d: Dispatch): string | undefined =>
  CONV_OPS.includes(d.op) ? layerOf(d) : d.op === 'conv2dPack' ? `conv2dPack ${num(d, 'm')}×${num(d, 'k')}` : undefined;
for (const [layer, e] of totals(layerKey)) {
  emit({ layer, count: e.count, ms: round(e.ms, 2), share: round(e.ms / total), gflops: gflops(e.flops, e.ms) });
}

ours.dispose();

// Destroying the device ends Dawn's polling, so the process exits as soon as the bench is done.
device.destroy();
