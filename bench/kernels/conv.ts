// conv2d throughput: our three implicit-GEMM kernels (forward, input gradient, weight gradient)
// against tfjs-webgpu 4.22 on the same Dawn device, interleaved in one process (medians of
// several rounds), then our three passes at every conv shape of ResNet-18 (batch 4, 112² input).
// Effective GFLOP/s = 2·N·Cout·Ho·Wo·Cin·kh·kw per pass. Run: npx tsx bench/kernels/conv.ts [--quick]
import '../../train/node.ts'; // Dawn as the default GPU
import { init, randn, type Tensor } from '../../engine/index.ts';
import { conv2dKernels } from '../../engine/ops/conv.ts';
import { tf, tfjsOn, tfSync } from '../tfjs/backend.ts';
import { emit, median, round } from '../util.ts';

const device = await init();
const adapter = device.adapterName;
const quick = process.argv.includes('--quick');

/** Milliseconds per run for `reps` back-to-back runs between two syncs (ours). */
async function timeOurs(run: () => Tensor[], reps: number): Promise<number> {
  await device.sync();
  const outs: Tensor[] = [];
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) outs.push(...run());
  await device.sync();
  const ms = (performance.now() - t0) / reps;
  for (const o of outs) o.dispose();
  return ms;
}

/** The same for tfjs: waits for the last result (tfjs executes its queue in order). */
async function timeTf(run: () => tf.Tensor, reps: number): Promise<number> {
  await device.sync();
  const outs: tf.Tensor[] = [];
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) outs.push(run());
  await tfSync(outs[outs.length - 1]!);
  const ms = (performance.now() - t0) / reps;
  for (const o of outs) o.dispose();
  return ms;
}

type Sampler = (reps: number) => Promise<number>;

/** Warms every sampler up, picks reps to last ~targetMs, then interleaves `rounds` rounds. */
async function compare(
  samplers: Record<string, Sampler>,
  rounds: number,
  targetMs: number,
): Promise<Record<string, number>> {
  const reps: Record<string, number> = {};
  for (const [k, s] of Object.entries(samplers)) {
    await s(1); // compile
    reps[k] = Math.max(1, Math.min(10, Math.round(targetMs / (await s(1)))));
  }
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(samplers).map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) for (const [k, s] of Object.entries(samplers)) samples[k]!.push(await s(reps[k]!));
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
}

interface Shape {
  name: string;
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  k: number;
  s: number;
  p: number;
}

function flops(c: Shape): number {
  const ho = Math.floor((c.h + 2 * c.p - c.k) / c.s) + 1;
  const wo = Math.floor((c.w + 2 * c.p - c.k) / c.s) + 1;
  return 2 * c.n * c.cout * ho * wo * c.cin * c.k * c.k;
}

/** Our three passes at one shape: x, w, gy tensors and a sampler per pass. */
function ours(c: Shape) {
  const x = randn([c.n, c.cin, c.h, c.w]);
  const w = randn([c.cout, c.cin, c.k, c.k]);
  const k = conv2dKernels(x, w, { stride: c.s, padding: c.p });
  const gy = randn(k.outShape);
  const samplers: Record<string, Sampler> = {
    forward: (r) => timeOurs(() => [k.forward()], r),
    input_grad: (r) => timeOurs(() => [k.inputGrad(gy)], r),
    weight_grad: (r) => timeOurs(() => [k.weightGrad(gy)[0]], r),
  };
  return {
    samplers,
    dispose: () => {
      for (const t of [x, w, gy]) t.dispose();
    },
  };
}

/** tfjs's three kernels at one shape in NHWC (its fastest layout), filter HWIO. */
function theirs(c: Shape) {
  const ho = Math.floor((c.h + 2 * c.p - c.k) / c.s) + 1;
  const wo = Math.floor((c.w + 2 * c.p - c.k) / c.s) + 1;
  const x = tf.randomNormal([c.n, c.h, c.w, c.cin]) as tf.Tensor4D;
  const f = tf.randomNormal([c.k, c.k, c.cin, c.cout]) as tf.Tensor4D;
  const dy = tf.randomNormal([c.n, ho, wo, c.cout]) as tf.Tensor4D;
  const attrs = { strides: [c.s, c.s] as [number, number], pad: c.p, dataFormat: 'NHWC' as const };
  const run = (name: string, inputs: Record<string, tf.Tensor>, extra: object) =>
    tf.engine().runKernel(name, inputs as never, { ...attrs, ...extra } as never) as tf.Tensor;
  const samplers: Record<string, Sampler> = {
    forward: (r) => timeTf(() => tf.conv2d(x, f, c.s, c.p), r),
    input_grad: (r) =>
      timeTf(() => run('Conv2DBackpropInput', { dy, filter: f }, { inputShape: [c.n, c.h, c.w, c.cin] }), r),
    weight_grad: (r) =>
      timeTf(() => run('Conv2DBackpropFilter', { x, dy }, { filterShape: [c.k, c.k, c.cin, c.cout] }), r),
  };
  return {
    samplers,
    dispose: () => {
      for (const t of [x, f, dy]) t.dispose();
    },
  };
}

const PASSES = ['forward', 'input_grad', 'weight_grad'] as const;

// 1. The shape, against tfjs.
await tfjsOn(device);
const main: Shape = { name: 'conv3x3_64_56', n: 8, cin: 64, h: 56, w: 56, cout: 64, k: 3, s: 1, p: 1 };
{
  const a = ours(main);
  const b = theirs(main);
  const samplers: Record<string, Sampler> = {};
  for (const p of PASSES) {
    samplers[`ours_${p}`] = a.samplers[p]!;
    samplers[`tfjs_${p}`] = b.samplers[p]!;
  }
  const ms = await compare(samplers, quick ? 3 : 5, 400);
  const f = flops(main);
  let oursTotal = 0;
  let tfTotal = 0;
  for (const p of PASSES) {
    const o = ms[`ours_${p}`]!;
    const t = ms[`tfjs_${p}`]!;
    oursTotal += o;
    tfTotal += t;
    emit({
      bench: 'conv',
      shape: main.name,
      pass: p,
      ours_ms: round(o, 1),
      tfjs_ms: round(t, 1),
      ratio: round(o / t),
      ours_gflops: round(f / (o * 1e6), 2),
      tfjs_gflops: round(f / (t * 1e6), 2),
      adapter,
    });
  }
  emit({
    bench: 'conv',
    shape: main.name,
    pass: 'total',
    ours_ms: round(oursTotal, 1),
    tfjs_ms: round(tfTotal, 1),
    ratio: round(oursTotal / tfTotal),
    target_ratio: 0.3,
    adapter,
  });
  a.dispose();
  b.dispose();
}

// 2. ResNet-18's convolutions at batch 4, 112² input (after the stem and max pool: 28², 14², 7², 4²).
const resnet: Shape[] = [
  { name: 'stem_7x7s2_3_64_112', n: 4, cin: 3, h: 112, w: 112, cout: 64, k: 7, s: 2, p: 3 },
  { name: 'l1_3x3_64_64_28', n: 4, cin: 64, h: 28, w: 28, cout: 64, k: 3, s: 1, p: 1 },
  { name: 'l2_3x3s2_64_128_28', n: 4, cin: 64, h: 28, w: 28, cout: 128, k: 3, s: 2, p: 1 },
  { name: 'l2_3x3_128_128_14', n: 4, cin: 128, h: 14, w: 14, cout: 128, k: 3, s: 1, p: 1 },
  { name: 'l2_ds1x1s2_64_128_28', n: 4, cin: 64, h: 28, w: 28, cout: 128, k: 1, s: 2, p: 0 },
  { name: 'l3_3x3s2_128_256_14', n: 4, cin: 128, h: 14, w: 14, cout: 256, k: 3, s: 2, p: 1 },
  { name: 'l3_3x3_256_256_7', n: 4, cin: 256, h: 7, w: 7, cout: 256, k: 3, s: 1, p: 1 },
  { name: 'l3_ds1x1s2_128_256_14', n: 4, cin: 128, h: 14, w: 14, cout: 256, k: 1, s: 2, p: 0 },
  { name: 'l4_3x3s2_256_512_7', n: 4, cin: 256, h: 7, w: 7, cout: 512, k: 3, s: 2, p: 1 },
  { name: 'l4_3x3_512_512_4', n: 4, cin: 512, h: 4, w: 4, cout: 512, k: 3, s: 1, p: 1 },
  { name: 'l4_ds1x1s2_256_512_7', n: 4, cin: 256, h: 7, w: 7, cout: 512, k: 1, s: 2, p: 0 },
];
for (const c of resnet) {
  const a = ours(c);
  const ms = await compare(a.samplers, quick ? 2 : 3, 150);
  const f = flops(c);
  const out: Record<string, unknown> = { bench: 'conv_resnet18', shape: c.name, batch: c.n, gflop: round(f / 1e9, 3) };
  for (const p of PASSES) out[`${p}_gflops`] = round(f / (ms[p]! * 1e6), 2);
  for (const p of PASSES) out[`${p}_ms`] = round(ms[p]!, 2);
  emit({ ...out, adapter });
  a.dispose();
}
device.destroy();
