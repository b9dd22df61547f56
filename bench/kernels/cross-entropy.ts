// Fused cross-entropy forward + backward at batch 64 × 1000 classes (mean reduction): ours against
// tfjs-webgpu 4.22's tf.losses.softmaxCrossEntropy (one-hot labels, mean over the batch) with
// tf.valueAndGrad, on the same Dawn device, interleaved round by round in one process; medians.
// A second line times layerNorm (affine) and exact GELU forward + backward at (8·197, 192), the MBT
// activation shape, against tfjs composed from its own ops (tf.moments / tf.erf) with tf.grads
// (informative: tfjs has no fused layer norm or GELU).
// Usage: tsx bench/kernels/cross-entropy.ts [rounds, default 7]
import '../../train/node.ts'; // Dawn as the default GPU
import { crossEntropy, gelu, grad, init, layerNorm, randn, tensor, type Tensor } from '../../engine/index.ts';
import { tf, tfjsOn, tfSync } from '../tfjs/backend.ts';
import { emit, median, round } from '../util.ts';

const rounds = Number(process.argv[2] ?? 7);
const device = await init();
await tfjsOn(device);

/** ms per step for `reps` steps between two waits for our queue. */
async function timeOurs(step: () => Tensor[], reps: number): Promise<number> {
  await device.sync();
  const outs: Tensor[] = [];
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) outs.push(...step());
  await device.sync();
  const ms = (performance.now() - t0) / reps;
  for (const t of outs) t.dispose();
  return ms;
}

/** ms per step for `reps` tfjs steps, up to the completion of the last one. */
async function timeTf(step: () => tf.Tensor[], reps: number): Promise<number> {
  await device.sync();
  const outs: tf.Tensor[] = [];
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) outs.push(...step());
  await tfSync(outs[outs.length - 1]!);
  const ms = (performance.now() - t0) / reps;
  for (const t of outs) t.dispose();
  return ms;
}

/** Warms both up (shader compilation), then interleaves `rounds` samples of each; medians in ms. */
async function compare(ours: () => Tensor[], theirs: () => tf.Tensor[], reps: number): Promise<[number, number]> {
  await timeOurs(ours, 2);
  await timeTf(theirs, 2);
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < rounds; r++) {
    a.push(await timeOurs(ours, reps));
    b.push(await timeTf(theirs, reps));
  }
  return [median(a), median(b)];
}

// ---- cross-entropy, 64 × 1000, mean ----
{
  const [n, c] = [64, 1000];
  const labelsArr = Int32Array.from({ length: n }, (_, i) => (i * 37) % c);
  const x = randn([n, c]).requireGrad();
  const labels = tensor(labelsArr, [n], { dtype: 'int32' });
  const ours = () => {
    const loss = crossEntropy(x, labels);
    const [g] = grad([loss], [x]);
    return [loss, g!];
  };
  const tx = tf.randomNormal([n, c]);
  const onehot = tf.oneHot(tf.tensor1d(labelsArr, 'int32'), c).toFloat();
  const lossOf = (l: tf.Tensor) => tf.losses.softmaxCrossEntropy(onehot, l);
  const vg = tf.valueAndGrad(lossOf);
  const theirs = () => {
    const { value, grad: g } = vg(tx);
    return [value, g];
  };
  const [oursMs, tfMs] = await compare(ours, theirs, 10);
  emit({
    bench: 'cross_entropy_fwd_bwd',
    batch: n,
    classes: c,
    reduction: 'mean',
    rounds,
    ours_ms: round(oursMs),
    tfjs_ms: round(tfMs),
    ratio: round(oursMs / tfMs),
    adapter: device.adapterName,
  });
  for (const t of [x, labels]) t.dispose();
  for (const t of [tx, onehot]) t.dispose();
}

// ---- layerNorm (affine) and exact GELU at (8·197, 192) ----
{
  const [n, d] = [8 * 197, 192];
  const x = randn([n, d]).requireGrad();
  const w = randn([d]).requireGrad();
  const b = randn([d]).requireGrad();
  const gy = randn([n, d]);
  const lnOurs = () => {
    const y = layerNorm(x, w, b);
    const gs = grad([y], [x, w, b], { gradOutputs: [gy] });
    return [y, ...gs];
  };
  const geluOurs = () => {
    const y = gelu(x);
    const gs = grad([y], [x], { gradOutputs: [gy] });
    return [y, ...gs];
  };
  const [tx, tw, tb, tgy] = [
    tf.randomNormal([n, d]),
    tf.randomNormal([d]),
    tf.randomNormal([d]),
    tf.randomNormal([n, d]),
  ];
  const lnTf = (a: tf.Tensor, wt: tf.Tensor, bt: tf.Tensor) => {
    const { mean, variance } = tf.moments(a, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(a, mean), tf.rsqrt(tf.add(variance, 1e-5))), wt), bt);
  };
  const lnGrads = tf.grads((a, wt, bt) => lnTf(a!, wt!, bt!));
  const lnTheirs = () => tf.tidy(() => [lnTf(tx, tw, tb), ...lnGrads([tx, tw, tb], tgy)]);
  const geluTf = (a: tf.Tensor) => tf.mul(tf.mul(a, 0.5), tf.add(tf.erf(tf.mul(a, Math.SQRT1_2)), 1));
  const geluGrad = tf.grad(geluTf);
  const geluTheirs = () => tf.tidy(() => [geluTf(tx), geluGrad(tx, tgy)]);
  const [lnOursMs, lnTfMs] = await compare(lnOurs, lnTheirs, 5);
  const [geluOursMs, geluTfMs] = await compare(geluOurs, geluTheirs, 5);
  emit({
    bench: 'layernorm_gelu_fwd_bwd',
    rows: n,
    width: d,
    rounds,
    layernorm_ours_ms: round(lnOursMs),
    layernorm_tfjs_ms: round(lnTfMs),
    layernorm_ratio: round(lnOursMs / lnTfMs),
    gelu_ours_ms: round(geluOursMs),
    gelu_tfjs_ms: round(geluTfMs),
    gelu_ratio: round(geluOursMs / geluTfMs),
    adapter: device.adapterName,
  });
  for (const t of [x, w, b, gy]) t.dispose();
  for (const t of [tx, tw, tb, tgy]) t.dispose();
}
device.destroy();
