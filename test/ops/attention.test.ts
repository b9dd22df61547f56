// scaledDotProductAttention: forward against a float64 reference of
// torch.nn.functional.scaled_dot_product_attention (float attn_mask), gradients by gradcheck
// (central differences) and against the float64 gradient, the all-masked-row policy, bad input.
//
// Tolerances (u = 2^-24 ≈ 6e-8). Per row i the kernel forms s_ij = scale·Σ_d q_id·k_jd (+ mask):
// a D-term fma chain, error ≤ (D + 2)·u·S with S = max_ij scale·Σ_d |q_id·k_jd| (computed from the
// data below). p_ij = exp(s_ij − m)/l then carries a relative error of at most 2·(D + 2)·u·S (the
// score and the max), plus WGSL's exp (3 + 2|x| ULP, and |x|·e^x ≤ 1/e keeps that ≤ 4u absolute on
// each p) plus (Lk + 2)·u for the sum l and its division. out_i = Σ_j p_ij·v_j adds Lk·u·max|v|.
// So |out − ref| ≤ E·max|v| with E = 2·(D + 2)·S·u + (2·Lk + 8)·u; tests allow 4·E.
// Gradients are sums of products of such terms (dP = dO·Vᵀ is another Dv-term chain; Δ an
// Dv-term sum): each entry is off by at most 4·E_b·M, where E_b = E with D + Dv in place of D and
// Lq + Lk in place of Lk, and M = the largest Σ of absolute values of the terms summed for one
// gradient entry (computed by the reference, so no cancellation hides in it).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, check, randArray, rejects } from '../helpers.ts';
import { grad, liveTensors, releaseGraph, scaledDotProductAttention, tensor } from '../../engine/index.ts';
import { attentionTuning } from '../../engine/ops/attention.ts';
import { attnRef, type Case, expandMask, U } from './attention-reference.ts';

const test = suite('attention');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

/** The bound E of the header comment: `width` = D (forward) or D + Dv (backward), `len` = Lk or Lq + Lk. */
const errBound = (width: number, sAbs: number, len: number) => 2 * (width + 2) * sAbs * U + (2 * len + 8) * U;

const sizes = (c: Case) => [
  c.b * c.h * c.lq * c.d,
  c.b * c.h * c.lk * c.d,
  c.b * c.h * c.lk * c.dv,
  c.b * c.h * c.lq * c.dv,
];

interface Inputs {
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  g: Float64Array;
}
function inputsFor(c: Case, seed: number, lim = 1): Inputs {
  const [nq, nk, nv, no] = sizes(c);
  return {
    q: randArray(nq!, seed, -lim, lim),
    k: randArray(nk!, seed + 1, -lim, lim),
    v: randArray(nv!, seed + 2),
    g: randArray(no!, seed + 3),
  };
}

const f32 = (a: Float64Array) => Float32Array.from(a);

/** Forward and backward of one case against the reference; returns nothing, asserts. */
async function compareCase(
  c: Case,
  x: Inputs,
  mask: { data: Float64Array; shape: number[] } | null,
  what: string,
): Promise<void> {
  const opt = { requiresGrad: true };
  const q = tensor(f32(x.q), [c.b, c.h, c.lq, c.d], opt);
  const k = tensor(f32(x.k), [c.b, c.h, c.lk, c.d], opt);
  const v = tensor(f32(x.v), [c.b, c.h, c.lk, c.dv], opt);
  const gt = tensor(f32(x.g), [c.b, c.h, c.lq, c.dv]);
  const mt = mask ? tensor(f32(mask.data), mask.shape) : null;
  const out = scaledDotProductAttention(q, k, v, { mask: mt, ...(c.scale !== undefined ? { scale: c.scale } : {}) });
  assert.equal([...out.shape], [c.b, c.h, c.lq, c.dv], `${what}: shape`);
  const ref = attnRef(c, x.q, x.k, x.v, mask ? expandMask(mask.data, mask.shape, c) : null, x.g);
  const ef = errBound(c.d, ref.sAbs, c.lk);
  assertClose(await out.toArray(), ref.out, 0, 4 * ef * Math.max(ref.mOut, 1e-30), `${what}: out`);
  const [dq, dk, dv] = grad([out], [q, k, v], { gradOutputs: [gt] });
  const eb = errBound(c.d + c.dv, ref.sAbs, c.lq + c.lk);
  assertClose(await dq!.toArray(), ref.dq, 0, 4 * eb * Math.max(ref.mdq, 1e-30), `${what}: dq`);
  assertClose(await dk!.toArray(), ref.dk, 0, 4 * eb * Math.max(ref.mdk, 1e-30), `${what}: dk`);
  assertClose(await dv!.toArray(), ref.dv, 0, 4 * eb * Math.max(ref.mdv, 1e-30), `${what}: dv`);
  for (const t of [q, k, v, gt, out, dq!, dk!, dv!, ...(mt ? [mt] : [])]) t.dispose();
}

/** Gradcheck of q, k, v (the mask, if any, is a constant). */
async function gradcheckCase(
  c: Case,
  seed: number,
  mask: { data: Float64Array; shape: number[] } | null,
): Promise<void> {
  const x = inputsFor(c, seed);
  const mt = mask ? tensor(f32(mask.data), mask.shape) : null;
  await check(
    (q, k, v) =>
      scaledDotProductAttention(q!, k!, v!, { mask: mt, ...(c.scale !== undefined ? { scale: c.scale } : {}) }),
    [
      tensor(f32(x.q), [c.b, c.h, c.lq, c.d]),
      tensor(f32(x.k), [c.b, c.h, c.lk, c.d]),
      tensor(f32(x.v), [c.b, c.h, c.lk, c.dv]),
    ],
  );
  mt?.dispose();
}

/** Causal mask (Lq, Lk): key j hidden from query i when j > i + (Lk − Lq), with `fillValue`. */
function causal(lq: number, lk: number, fillValue: number): { data: Float64Array; shape: number[] } {
  const data = new Float64Array(lq * lk);
  for (let i = 0; i < lq; i++) for (let j = 0; j < lk; j++) data[i * lk + j] = j > i + (lk - lq) ? fillValue : 0;
  return { data, shape: [lq, lk] };
}

test('self-attention (L = 5, D = Dv = 4): forward and gradients against float64, gradcheck', async () => {
  const c = { b: 1, h: 2, lq: 5, lk: 5, d: 4, dv: 4 };
  await compareCase(c, inputsFor(c, 1), null, 'self');
  await gradcheckCase(c, 2, null);
});

test('cross-attention Lq = 5, Lk = 7, odd D = 3, Dv = 5 != D: forward, gradients, gradcheck', async () => {
  const c = { b: 2, h: 1, lq: 5, lk: 7, d: 3, dv: 5 };
  await compareCase(c, inputsFor(c, 3), null, 'cross');
  await gradcheckCase(c, 4, null);
});

test('D = 12, Dv = 8, Lq = 7, Lk = 5, explicit scale', async () => {
  const c = { b: 1, h: 2, lq: 7, lk: 5, d: 12, dv: 8, scale: 0.7 };
  await compareCase(c, inputsFor(c, 5), null, 'D=12');
  await gradcheckCase({ ...c, h: 1 }, 6, null);
});

test('rank-2 mask (Lq, Lk) and rank-4 mask (B, 1, Lq, Lk) broadcast over heads', async () => {
  const c = { b: 2, h: 2, lq: 5, lk: 7, d: 4, dv: 3 };
  const m2 = { data: randArray(5 * 7, 7, -2, 2), shape: [5, 7] };
  const m4 = { data: randArray(2 * 5 * 7, 8, -2, 2), shape: [2, 1, 5, 7] };
  await compareCase(c, inputsFor(c, 9), m2, 'rank-2 mask');
  await compareCase(c, inputsFor(c, 10), m4, 'rank-4 mask');
  await gradcheckCase({ ...c, b: 1, h: 1 }, 11, m2);
  await gradcheckCase({ ...c, b: 2, h: 1 }, 12, m4);
});

test('causal mask with −inf and with −1e9 entries', async () => {
  const c = { b: 1, h: 2, lq: 5, lk: 7, d: 4, dv: 4 };
  for (const fillValue of [-Infinity, -1e9]) {
    await compareCase(c, inputsFor(c, 13), causal(5, 7, fillValue), `causal ${fillValue}`);
    await gradcheckCase({ ...c, h: 1 }, 14, causal(5, 7, fillValue));
  }
  // Self-attention causal mask: query 0 sees only key 0, so its output is exactly v_0.
  const s = { b: 1, h: 1, lq: 6, lk: 6, d: 4, dv: 4 };
  await compareCase(s, inputsFor(s, 15), causal(6, 6, -Infinity), 'causal self');
});

test('large logits (scores ~ ±50) stay finite and accurate', async () => {
  const c = { b: 1, h: 2, lq: 5, lk: 7, d: 4, dv: 4, scale: 1 };
  // |q|, |k| up to 3.5: scores up to 4·3.5² = 49.
  const x = inputsFor(c, 16, 3.5);
  await compareCase(c, x, null, 'large logits');
  const ref = attnRef(c, x.q, x.k, x.v, null, x.g);
  assert.ok(ref.sAbs > 20, `scores reach ±${ref.sAbs.toFixed(1)}`);
  // Gradcheck with a smaller step: the softmax is steep at these logits.
  const y = inputsFor({ ...c, h: 1 }, 17, 3.5);
  await check(
    (q, k, v) => scaledDotProductAttention(q!, k!, v!, { scale: 1 }),
    [tensor(f32(y.q), [1, 1, 5, 4]), tensor(f32(y.k), [1, 1, 7, 4]), tensor(f32(y.v), [1, 1, 7, 4])],
    { eps: 1e-3, ulps: 256 },
  );
});

test('a query row masked with −inf at every key gives zeros and zero gradients (PyTorch: NaN)', async () => {
  const c = { b: 1, h: 1, lq: 4, lk: 5, d: 4, dv: 3 };
  const data = randArray(4 * 5, 18, -1, 1);
  for (let j = 0; j < 5; j++) data[2 * 5 + j] = -Infinity; // row 2 fully masked
  const mask = { data, shape: [4, 5] };
  await compareCase(c, inputsFor(c, 19), mask, 'all-masked row'); // the reference gives row 2 zeros
  const x = inputsFor(c, 19);
  const opt = { requiresGrad: true };
  const q = tensor(f32(x.q), [1, 1, 4, 4], opt);
  const k = tensor(f32(x.k), [1, 1, 5, 4], opt);
  const v = tensor(f32(x.v), [1, 1, 5, 3], opt);
  const mt = tensor(f32(data), [4, 5]);
  const out = scaledDotProductAttention(q, k, v, { mask: mt });
  const o = await out.toArray();
  assert.equal([...o.subarray(6, 9)], [0, 0, 0], 'row 2 is zero');
  assert.ok([...o].every(Number.isFinite), 'all finite');
  const gt = tensor(f32(x.g), [1, 1, 4, 3]);
  const [dq] = grad([out], [q], { gradOutputs: [gt] });
  const g = await dq!.toArray();
  assert.equal([...g.subarray(8, 12)], [0, 0, 0, 0], 'dq of row 2 is zero');
  assert.ok([...g].every(Number.isFinite), 'dq finite');
  await gradcheckCase(c, 20, mask);
  for (const t of [q, k, v, mt, gt, out, dq!]) t.dispose();
});

test('several key and query blocks (Lq = 37, Lk = 41 > 32-key blocks), D = 8, Dv = 4', async () => {
  const c = { b: 1, h: 2, lq: 37, lk: 41, d: 8, dv: 4 };
  await compareCase(c, inputsFor(c, 21), causal(37, 41, -Infinity), 'blocks, causal');
  await compareCase(c, inputsFor(c, 22), null, 'blocks');
});

test('D = 64: gradients against float64 (Lq = 9, Lk = 70) and gradcheck (Lq = 2, Lk = 3)', async () => {
  const c = { b: 1, h: 2, lq: 9, lk: 70, d: 64, dv: 64 };
  await compareCase(c, inputsFor(c, 23), { data: randArray(9 * 70, 24, -1, 1), shape: [9, 70] }, 'D=64');
  await gradcheckCase({ b: 1, h: 1, lq: 2, lk: 3, d: 64, dv: 4 }, 25, null);
});

test('wide heads with widths not divisible by 4 (D = 5, Dv = 38; D = 66, Dv = 36): unrolled scalar paths', async () => {
  const a = { b: 1, h: 1, lq: 3, lk: 70, d: 5, dv: 38 };
  await compareCase(a, inputsFor(a, 27), null, 'D=5, Dv=38');
  const w = { b: 1, h: 1, lq: 9, lk: 4, d: 66, dv: 36 };
  await compareCase(w, inputsFor(w, 28), null, 'D=66, Dv=36');
});

test('bigger forward: B = 2, H = 3, L = 197, D = 64 against float64', async () => {
  const c = { b: 2, h: 3, lq: 197, lk: 197, d: 64, dv: 64 };
  const x = inputsFor(c, 26);
  const [q, k, v] = [
    tensor(f32(x.q), [2, 3, 197, 64]),
    tensor(f32(x.k), [2, 3, 197, 64]),
    tensor(f32(x.v), [2, 3, 197, 64]),
  ];
  const out = scaledDotProductAttention(q, k, v);
  const ref = attnRef(c, x.q, x.k, x.v, null, x.g);
  assertClose(await out.toArray(), ref.out, 0, 4 * errBound(c.d, ref.sAbs, c.lk) * ref.mOut, 'L=197 out');
  for (const t of [q, k, v, out]) t.dispose();
});

test(
  'the recompute backward (used when the P/dS scratch would be too large): ' +
    'D = 64 and a masked case against float64',
  async () => {
    const saved = attentionTuning.scratchMaxFloats;
    attentionTuning.scratchMaxFloats = 0; // force the path that recomputes P and dS
    try {
      const c = { b: 1, h: 2, lq: 9, lk: 70, d: 64, dv: 64 };
      await compareCase(c, inputsFor(c, 40), null, 'recompute D=64');
      const cm = { b: 2, h: 2, lq: 5, lk: 7, d: 4, dv: 3 };
      await compareCase(cm, inputsFor(cm, 41), causal(5, 7, -Infinity), 'recompute causal');
    } finally {
      attentionTuning.scratchMaxFloats = saved;
    }
  },
);

test('bad input is refused at the call, naming the op and shapes', () => {
  const z = (s: number[], requiresGrad = false) =>
    tensor(new Float32Array(s.reduce((a, b) => a * b, 1)), s, { requiresGrad });
  const q = z([2, 3, 5, 4]);
  const k = z([2, 3, 7, 4]);
  const v = z([2, 3, 7, 6]);
  const op = 'scaledDotProductAttention';
  const kD = z([2, 3, 7, 5]),
    vL = z([2, 3, 6, 6]),
    kB = z([1, 3, 7, 4]),
    vH = z([2, 2, 7, 6]);
  const q3 = z([3, 5, 4]),
    k3 = z([3, 7, 4]),
    v3 = z([3, 7, 6]),
    vWide = z([2, 3, 7, 300]);
  const m56 = z([5, 6]),
    m3357 = z([3, 3, 5, 7]),
    m5 = z([1, 2, 3, 5, 7]),
    mGrad = z([5, 7], true);
  rejects(() => scaledDotProductAttention(q, kD, v), op, 'widths D', '[2, 3, 5, 4]', '[2, 3, 7, 5]');
  rejects(() => scaledDotProductAttention(q, k, vL), op, 'token counts Lk', '[2, 3, 6, 6]');
  rejects(() => scaledDotProductAttention(q, kB, v), op, 'batch and head', '[1, 3, 7, 4]');
  rejects(() => scaledDotProductAttention(q, k, vH), op, 'batch and head', '[2, 2, 7, 6]');
  rejects(() => scaledDotProductAttention(q3, k3, v3), op, '4-D', '[3, 5, 4]');
  rejects(() => scaledDotProductAttention(q, k, v, { mask: m56 }), op, 'mask [5, 6]', 'broadcast', '[2, 3, 5, 7]');
  rejects(() => scaledDotProductAttention(q, k, v, { mask: m3357 }), op, 'mask [3, 3, 5, 7]');
  rejects(() => scaledDotProductAttention(q, k, v, { mask: m5 }), op, 'mask [1, 2, 3, 5, 7]');
  rejects(() => scaledDotProductAttention(q, k, v, { mask: mGrad }), op, 'no gradient for masks');
  rejects(() => scaledDotProductAttention(q, k, v, { scale: NaN }), op, 'scale NaN');
  rejects(() => scaledDotProductAttention(q, k, vWide), op, 'above 256');
  for (const t of [kD, vL, kB, vH, q3, k3, v3, vWide, m56, m3357, m5, mGrad]) t.dispose();
  const qi = tensor(new Int32Array(2 * 3 * 5 * 4), [2, 3, 5, 4], { dtype: 'int32' });
  rejects(() => scaledDotProductAttention(qi, k, v), op, 'int32');
  for (const t of [q, k, v, qi]) t.dispose();
  rejects(() => scaledDotProductAttention(q, k, v), op, 'disposed');
});

test('a forward without backward leaves nothing behind once its graph is released', async () => {
  const opt = { requiresGrad: true };
  const q = tensor(f32(randArray(20, 30)), [1, 1, 5, 4], opt);
  const k = tensor(f32(randArray(28, 31)), [1, 1, 7, 4], opt);
  const out = scaledDotProductAttention(q, k, k);
  releaseGraph(out);
  for (const t of [q, k, out]) t.dispose();
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
