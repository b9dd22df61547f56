// Attention forward + backward at the shape (batch 8, 197 tokens, width 192, 3 heads: q, k, v
// of (8, 3, 197, 64)): our fused kernels against tfjs-webgpu 4.22 composed from its own ops
// (matMul with transposeB, mul by the scale, softmax, matMul; gradients via tf.grads), on the same
// Dawn device, interleaved round by round; medians. Prints one JSON line.
// Run: npx tsx bench/kernels/attention.ts
import '../../train/node.ts'; // Dawn as the default GPU
import { grad, init, randn, scaledDotProductAttention, type Tensor } from '../../engine/index.ts';
import { emit, median, round } from '../util.ts';
import { tf, tfjsOn, tfSync } from '../tfjs/backend.ts';

const [B, H, L, D] = [8, 3, 197, 64];
const ROUNDS = Number(process.env.ROUNDS ?? 7);
const device = await init();
await tfjsOn(device);

const shape = [B, H, L, D];
const q = randn(shape, { requiresGrad: true });
const k = randn(shape, { requiresGrad: true });
const v = randn(shape, { requiresGrad: true });
const gOut = randn(shape);
const hostOf = async (t: Tensor) => Float32Array.from(await t.toArray());
const tq = tf.tensor(await hostOf(q), shape);
const tk = tf.tensor(await hostOf(k), shape);
const tv = tf.tensor(await hostOf(v), shape);
const tg = tf.tensor(await hostOf(gOut), shape);
const scale = 1 / Math.sqrt(D);

/** Ours: forward (and backward) recorded, then device.sync(). */
async function ours(backward: boolean): Promise<number> {
  await device.sync();
  const t0 = performance.now();
  const out = scaledDotProductAttention(q, k, v);
  if (backward) {
    const gs = grad([out], [q, k, v], { gradOutputs: [gOut] });
    await device.sync();
    for (const g of gs) g!.dispose();
  } else await device.sync();
  const ms = performance.now() - t0;
  out.dispose();
  return ms;
}

const tfAttention = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor): tf.Tensor =>
  tf.matMul(tf.softmax(tf.mul(tf.matMul(a, b, false, true), scale)), c);
const tfGrads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tfAttention(a, b, c));

async function tfjs(backward: boolean): Promise<number> {
  await tfSync(tq);
  const t0 = performance.now();
  if (backward) {
    const gs = tfGrads([tq, tk, tv], tg);
    await tfSync(gs[2]!);
    const ms = performance.now() - t0;
    tf.dispose(gs);
    return ms;
  }
  const out = tf.tidy(() => tfAttention(tq, tk, tv));
  await tfSync(out);
  const ms = performance.now() - t0;
  out.dispose();
  return ms;
}

// Warm up (compiles every pipeline on both sides), then interleave.
for (const bw of [false, true]) {
  await ours(bw);
  await tfjs(bw);
}
const s = { ours: [] as number[], tfjs: [] as number[], oursFwd: [] as number[], tfjsFwd: [] as number[] };
for (let r = 0; r < ROUNDS; r++) {
  s.ours.push(await ours(true));
  s.tfjs.push(await tfjs(true));
  s.oursFwd.push(await ours(false));
  s.tfjsFwd.push(await tfjs(false));
}
const [o, t, of, tf_] = [median(s.ours), median(s.tfjs), median(s.oursFwd), median(s.tfjsFwd)];
emit({
  bench: 'attention_fwd_bwd',
  shape: [B, H, L, D],
  rounds: ROUNDS,
  ours_ms: round(o, 2),
  tfjs_ms: round(t, 2),
  ratio: round(o / t),
  ours_fwd_ms: round(of, 2),
  tfjs_fwd_ms: round(tf_, 2),
  fwd_ratio: round(of / tf_),
  adapter: device.adapterName,
});
for (const x of [q, k, v, gOut]) x.dispose();
tf.dispose([tq, tk, tv, tg]);
device.destroy();
