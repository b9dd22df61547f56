// Modules: registration order and names, state dicts, train/eval, and the composite layers
// (MultiheadAttention, the pre-LN TransformerBlock) against float64 references built from
// the modules' own weights.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, randTensor, throwsWith } from '../helpers.ts';
import { liveTensors, sum, tensor, tidy, Generator, type Tensor } from '../../engine/index.ts';
import {
  BatchNorm2d,
  Conv2d,
  Linear,
  MultiheadAttention,
  ReLU,
  Sequential,
  TransformerBlock,
} from '../../engine/nn/index.ts';

const test = suite('nn modules');
const host = async (t: Tensor) => Float64Array.from(await t.toArray());

test('state dict: PyTorch names and order (own params, own buffers, then children)', () => {
  const m = new Sequential(new Conv2d(3, 4, 3, { bias: false }), new BatchNorm2d(4), new ReLU(), new Linear(4, 2));
  assert.equal(
    [...m.stateDict().keys()],
    [
      '0.weight',
      '1.weight',
      '1.bias',
      '1.running_mean',
      '1.running_var',
      '1.num_batches_tracked',
      '3.weight',
      '3.bias',
    ],
  );
  assert.equal(
    m.namedParameters().map(([n]) => n),
    ['0.weight', '1.weight', '1.bias', '3.weight', '3.bias'],
  );
  assert.is(m.numParameters(), 4 * 3 * 9 + 4 + 4 + 2 * 4 + 2);
  assert.ok(m.parameters().every((p) => p.requiresGrad));
  assert.ok(m.namedBuffers().every(([, b]) => !b.requiresGrad));
  m.dispose();
});

test('train() / eval() reach every descendant', () => {
  const bn = new BatchNorm2d(2);
  const m = new Sequential(new Sequential(bn));
  assert.ok(bn.training);
  m.eval();
  assert.not.ok(bn.training);
  m.train();
  assert.ok(bn.training);
  m.dispose();
});

test('loadStateDict copies values and refuses unknown keys, missing keys and wrong shapes', async () => {
  const a = new Linear(3, 2, { generator: new Generator(1) });
  const b = new Linear(3, 2, { generator: new Generator(2) });
  b.loadStateDict(a.stateDict());
  assert.equal(await b.weight.toArray(), await a.weight.toArray());
  b.loadStateDict(new Map([['bias', Float32Array.of(5, 6)]]), false);
  assert.equal([...(await b.bias!.toArray())], [5, 6]);
  throwsWith(
    () =>
      b.loadStateDict(
        new Map([
          ['bias', Float32Array.of(1, 2)],
          ['nope', Float32Array.of(1)],
        ]),
        false,
      ),
    'unexpected keys nope',
  );
  throwsWith(() => b.loadStateDict(new Map([['bias', Float32Array.of(1, 2)]])), 'missing keys weight');
  throwsWith(() => b.loadStateDict(new Map([['bias', Float32Array.of(1, 2, 3)]]), false), "'bias' has 3 values", '[2]');
  a.dispose();
  b.dispose();
});

test('Linear and Conv2d initialise like PyTorch: U(±1/√fan_in)', async () => {
  const l = new Linear(50, 40, { generator: new Generator(3) });
  const w = await host(l.weight);
  const bound = 1 / Math.sqrt(50);
  assert.ok(w.every((v) => Math.abs(v) <= bound));
  const m2 = w.reduce((s, v) => s + v * v, 0) / w.length; // uniform variance bound²/3
  assert.ok(Math.abs(m2 - (bound * bound) / 3) < (0.1 * (bound * bound)) / 3, `variance ${m2}`);
  const c = new Conv2d(3, 8, 5, { generator: new Generator(4) });
  assert.ok((await host(c.weight)).every((v) => Math.abs(v) <= 1 / Math.sqrt(75)));
  l.dispose();
  c.dispose();
});

// ---- float64 references --------------------------------------------------------------
/** y[r, o] = Σ_i x[r, i]·w[o, i] + b[o]. */
function linearRef(
  x: Float64Array,
  rows: number,
  w: Float64Array,
  b: Float64Array | null,
  out: number,
  inp: number,
  wOff = 0,
  bOff = 0,
): Float64Array {
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < out; o++) {
      let s = b ? b[bOff + o]! : 0;
      for (let i = 0; i < inp; i++) s += x[r * inp + i]! * w[(wOff + o) * inp + i]!;
      y[r * out + o] = s;
    }
  return y;
}

interface MhaWeights {
  wIn: Float64Array;
  bIn: Float64Array;
  wOut: Float64Array;
  bOut: Float64Array;
}
async function mhaWeights(m: MultiheadAttention): Promise<MhaWeights> {
  return {
    wIn: await host(m.inProjWeight),
    bIn: await host(m.inProjBias),
    wOut: await host(m.outProj.weight),
    bOut: await host(m.outProj.bias!),
  };
}

/** nn.MultiheadAttention(batch_first) in float64: q, k, v projections, per-head softmax(q·kᵀ/√d + mask)·v, out_proj. */
function mhaRef(
  p: MhaWeights,
  e: number,
  h: number,
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  b: number,
  lq: number,
  lk: number,
  mask: Float64Array | null,
): Float64Array {
  const Q = linearRef(q, b * lq, p.wIn, p.bIn, e, e, 0, 0);
  const K = linearRef(k, b * lk, p.wIn, p.bIn, e, e, e, e);
  const V = linearRef(v, b * lk, p.wIn, p.bIn, e, e, 2 * e, 2 * e);
  const d = e / h;
  const o = new Float64Array(b * lq * e);
  for (let bi = 0; bi < b; bi++)
    for (let hi = 0; hi < h; hi++)
      for (let i = 0; i < lq; i++) {
        const s = new Float64Array(lk);
        for (let j = 0; j < lk; j++) {
          let dot = 0;
          for (let c = 0; c < d; c++) dot += Q[(bi * lq + i) * e + hi * d + c]! * K[(bi * lk + j) * e + hi * d + c]!;
          s[j] = dot / Math.sqrt(d) + (mask ? mask[i * lk + j]! : 0);
        }
        const mx = Math.max(...s);
        let z = 0;
        for (let j = 0; j < lk; j++) z += s[j] = Math.exp(s[j]! - mx);
        for (let c = 0; c < d; c++) {
          let acc = 0;
          for (let j = 0; j < lk; j++) acc += (s[j]! / z) * V[(bi * lk + j) * e + hi * d + c]!;
          o[(bi * lq + i) * e + hi * d + c] = acc;
        }
      }
  return linearRef(o, b * lq, p.wOut, p.bOut, e, e);
}

// Tolerance: every output is a few chained float32 dot products of length ≤ 32 on O(1) values
// (projections, scores, softmax, weighted sum, out_proj); each loses ~len·u ≈ 32·6e-8 relative,
// amplified by at most the sum of |terms| — 2e-5 absolute + 1e-4 relative covers it with margin.
test('MultiheadAttention (self, and cross with a mask) matches a float64 reference', async () => {
  const e = 12;
  const h = 3;
  const m = new MultiheadAttention(e, h, { generator: new Generator(5) });
  const w = await mhaWeights(m);
  const [x, xh] = randTensor([2, 5, e], 6);
  const y = m.forward(x);
  assert.equal(y.shape, [2, 5, e]);
  assertClose(await y.toArray(), mhaRef(w, e, h, xh, xh, xh, 2, 5, 5, null), 1e-4, 2e-5, 'self');
  const [kv, kvh] = randTensor([2, 7, e], 7);
  const maskH = Float64Array.from({ length: 5 * 7 }, (_, i) => (i % 3 === 0 ? -1e9 : 0));
  const mask = tensor(Float32Array.from(maskH), [5, 7]);
  const c = m.forward(x, kv, kv, { attnMask: mask });
  assertClose(await c.toArray(), mhaRef(w, e, h, xh, kvh, kvh, 2, 5, 7, maskH), 1e-4, 2e-5, 'cross');
  for (const t of [x, y, kv, mask, c]) t.dispose();
  m.dispose();
});

test('MultiheadAttention: the fused self-attention path equals the separate projections', async () => {
  const m = new MultiheadAttention(8, 2, { generator: new Generator(8) });
  const [x] = randTensor([3, 4, 8], 9);
  const [x2] = randTensor([3, 4, 8], 9); // same values, other tensors: the separate q/k/v path
  const [x3] = randTensor([3, 4, 8], 9);
  const a = m.forward(x);
  const b = m.forward(x, x2, x3);
  // Same float32 operations in another order of GEMM columns: equal to a few ulp.
  assertClose(await a.toArray(), await b.toArray(), 1e-6, 1e-6, 'paths');
  for (const t of [x, x2, x3, a, b]) t.dispose();
  m.dispose();
});

test('MultiheadAttention and TransformerBlock refuse bad widths and inputs', () => {
  throwsWith(() => new MultiheadAttention(10, 3), 'width 10 is not divisible by 3 heads');
  const m = new MultiheadAttention(8, 2);
  const [x] = randTensor([2, 4, 6], 1);
  throwsWith(() => m.forward(x), 'query [2, 4, 6] is not (batch, tokens, 8)');
  const [q] = randTensor([2, 4, 8], 2);
  const [k] = randTensor([2, 5, 8], 3);
  const [v] = randTensor([2, 6, 8], 4);
  throwsWith(() => m.forward(q, k, v), 'different token counts');
  const blk = new TransformerBlock(8, 2);
  throwsWith(() => blk.forward(x), 'TransformerBlock: input [2, 4, 6]');
  for (const t of [x, q, k, v]) t.dispose();
  m.dispose();
  blk.dispose();
});

function layerNormRef(
  x: Float64Array,
  rows: number,
  d: number,
  g: Float64Array,
  b: Float64Array,
  eps: number,
): Float64Array {
  const y = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    let mu = 0;
    for (let i = 0; i < d; i++) mu += x[r * d + i]!;
    mu /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[r * d + i]! - mu) ** 2;
    const inv = 1 / Math.sqrt(v / d + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = (x[r * d + i]! - mu) * inv * g[i]! + b[i]!;
  }
  return y;
}
function erf(x: number): number {
  // Maclaurin series (|x| ≤ 3) — exact to ~1e-15 for the arguments here.
  let term = x;
  let s = x;
  for (let n = 1; n < 80; n++) {
    term *= (-x * x) / n;
    s += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * s;
}

test('TransformerBlock (pre-LN, exact GELU) matches a float64 reference', async () => {
  const e = 8;
  const blk = new TransformerBlock(e, 2, { mlpDim: 16, generator: new Generator(10) });
  const [x, xh] = randTensor([2, 3, e], 11);
  const y = blk.forward(x);
  const rows = 6;
  const w = await mhaWeights(blk.selfAttn);
  const ln1 = layerNormRef(xh, rows, e, await host(blk.norm1.weight), await host(blk.norm1.bias), 1e-5);
  const a = mhaRef(w, e, 2, ln1, ln1, ln1, 2, 3, 3, null);
  const x1 = xh.map((v, i) => v + a[i]!);
  const ln2 = layerNormRef(x1, rows, e, await host(blk.norm2.weight), await host(blk.norm2.bias), 1e-5);
  const hmid = linearRef(ln2, rows, await host(blk.linear1.weight), await host(blk.linear1.bias!), 16, e).map(
    (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
  );
  const m = linearRef(hmid, rows, await host(blk.linear2.weight), await host(blk.linear2.bias!), e, 16);
  // Layer norm divides by a std of ~0.5: the attention tolerance above doubled.
  assertClose(
    await y.toArray(),
    x1.map((v, i) => v + m[i]!),
    2e-4,
    4e-5,
    'block',
  );
  x.dispose();
  y.dispose();
  blk.dispose();
});

test('modules leak nothing across a forward + backward', async () => {
  const before = liveTensors.count;
  const blk = new TransformerBlock(8, 2, { mlpDim: 16 });
  const [x] = randTensor([2, 3, 8], 12);
  const loss = tidy(() => sum(blk.forward(x)));
  loss.backward();
  await loss.item();
  for (const p of blk.parameters()) assert.ok(p.grad, 'every block parameter gets a gradient');
  loss.dispose();
  x.dispose();
  blk.dispose();
  assert.is(liveTensors.count, before);
});

test.run();
