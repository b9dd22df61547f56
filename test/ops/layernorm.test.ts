// layerNorm: forward and backward against float64 references (widths 37, 192, 300, with and
// without affine parameters, a row with mean 1000 ± 0.5), gradcheck, bad input, no leaks.
//
// Tolerances (u = 2^-24). The kernel works on the row shifted by its first element x₀ (exact for
// the large-mean row by Sterbenz): m = mean(x − x₀) is a serial sum in 4 vec4 lanes (or 1), so at
// most k = D/4 + 3 roundings (D + 3 for the scalar path, D % 4 ≠ 0), each ≤ u·Σ|x − x₀|:
//   |Δm| ≤ k·u·M,  M = max|x − x₀|.
// The variance sum has relative error ≤ (k + 2)·u, so 1/std has ≤ ((k + 2)/2 + 3)·u (inverseSqrt:
// 2 ULP). Hence x̂ = ((x − x₀) − m)·r is within e = (k + 8)·u·(M·r + |x̂|), and y = x̂·w + b within
// |w|·e + 2u·|y|. The tests use the worst case over the tensor: atol = W·(k + 8)·u·(M·r + X̂).
// Backward: ĝ = g·w (G = max|ĝ|); mean ĝ and mean(ĝ·x̂) are k-term sums, so
//   |Δdx| ≤ r·[k·u·G·(1 + X̂) + G·e·(1 + X̂) + X̂·(k·u·G·X̂ + G·e)] ≤ 4·(k + 8)·u·r·G·(1 + X̂)·(1 + M·r + X̂)
// (a factor ~2 spare), and dw = Σ_rows g·x̂ (a serial sum of N/8 + 8 terms per slice, then 8 slices):
//   |Δdw| ≤ (N/8 + 8)·u·Σ|g·x̂| + Σ|g|·e,  |Δdb| ≤ (N/8 + 8)·u·Σ|g|.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, check, randArray, randTensor, throwsWith } from '../helpers.ts';
import { layerNorm, grad, tensor, liveTensors } from '../../engine/index.ts';

const test = suite('layernorm');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

const U = 2 ** -24;
const EPS = 1e-5;

interface LnRef {
  y: Float64Array;
  dx: Float64Array;
  dw: Float64Array;
  db: Float64Array;
  xhat: Float64Array;
  r: Float64Array;
}

/** float64 layer_norm over rows of length d, and its gradients for upstream g. */
function lnRef(
  x: Float64Array,
  d: number,
  w: Float64Array | null,
  b: Float64Array | null,
  g: Float64Array,
  eps = EPS,
): LnRef {
  const n = x.length / d;
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(d);
  const db = new Float64Array(d);
  const xhat = new Float64Array(x.length);
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const row = x.subarray(i * d, (i + 1) * d);
    const mu = row.reduce((a, v) => a + v, 0) / d;
    const v = row.reduce((a, t) => a + (t - mu) ** 2, 0) / d;
    r[i] = 1 / Math.sqrt(v + eps);
    let sg = 0;
    let sgx = 0;
    for (let j = 0; j < d; j++) {
      const k = i * d + j;
      xhat[k] = (row[j]! - mu) * r[i]!;
      y[k] = xhat[k]! * (w ? w[j]! : 1) + (b ? b[j]! : 0);
      const gh = g[k]! * (w ? w[j]! : 1);
      sg += gh;
      sgx += gh * xhat[k]!;
      dw[j]! += g[k]! * xhat[k]!;
      db[j]! += g[k]!;
    }
    for (let j = 0; j < d; j++) {
      const k = i * d + j;
      dx[k] = r[i]! * (g[k]! * (w ? w[j]! : 1) - sg / d - xhat[k]! * (sgx / d));
    }
  }
  return { y, dx, dw, db, xhat, r };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** Worst-case bounds from the header: [k + 8, M·r + X̂ (max over rows), X̂, r]. */
function bounds(x: Float64Array, d: number, ref: LnRef): { k8: number; e1: number; xh: number; r: number } {
  const k = d % 4 === 0 ? d / 4 + 3 : d + 3;
  let e1 = 0;
  for (let i = 0; i < ref.r.length; i++) {
    const row = x.subarray(i * d, (i + 1) * d);
    e1 = Math.max(e1, maxAbs(row.map((v) => v - row[0]!)) * ref.r[i]!);
  }
  const xh = maxAbs(ref.xhat);
  return { k8: k + 8, e1: e1 + xh, xh, r: maxAbs(ref.r) };
}

async function forwardBackwardCase(
  shape: number[],
  affine: 'none' | 'weight' | 'both',
  x: Float64Array,
  what: string,
): Promise<void> {
  const d = shape[shape.length - 1]!;
  const n = x.length / d;
  const xt = tensor(Float32Array.from(x), shape, { requiresGrad: true });
  const [wt, w] = affine === 'none' ? [null, null] : randTensor([d], 7 + d, 0.5, 2);
  const [bt, b] = affine === 'both' ? randTensor([d], 8 + d, -1, 1) : [null, null];
  wt?.requireGrad();
  bt?.requireGrad();
  const [gt, g] = randTensor(shape, 9 + d, -1, 1);
  const ref = lnRef(x, d, w, b, g);
  const y = layerNorm(xt, wt, bt);
  const bd = bounds(x, d, ref);
  const wmax = w ? maxAbs(w) : 1;
  assertClose(await y.toArray(), ref.y, 2 * U, wmax * bd.k8 * U * bd.e1, `${what}: forward`);
  const params = [xt, ...(wt ? [wt] : []), ...(bt ? [bt] : [])];
  const grads = grad([y], params, { gradOutputs: [gt] });
  const gmax = maxAbs(g) * wmax;
  assertClose(
    await grads[0]!.toArray(),
    ref.dx,
    0,
    4 * bd.k8 * U * bd.r * gmax * (1 + bd.xh) * (1 + bd.e1),
    `${what}: dx`,
  );
  const k = n / 8 + 8;
  if (wt) {
    let sgx = 0;
    let sg = 0;
    for (let i = 0; i < x.length; i++) {
      sgx += Math.abs(g[i]! * ref.xhat[i]!);
      sg += Math.abs(g[i]!);
    }
    assertClose(await grads[1]!.toArray(), ref.dw, 0, k * U * sgx + sg * bd.k8 * U * bd.e1, `${what}: dweight`);
  }
  if (bt) {
    let sg = 0;
    for (let i = 0; i < x.length; i++) sg += Math.abs(g[i]!);
    assertClose(await grads[2]!.toArray(), ref.db, 0, k * U * sg, `${what}: dbias`);
  }
  for (const t of [y, gt, ...params, ...grads]) t.dispose();
}

test('forward and backward against float64: widths 37, 192, 300, with and without affine', async () => {
  for (const d of [37, 192, 300])
    for (const affine of ['none', 'weight', 'both'] as const) {
      const shape = d === 192 ? [2, 3, d] : [5, d];
      await forwardBackwardCase(
        shape,
        affine,
        randArray(shape[0]! * (shape.length === 3 ? 3 : 1) * d, d + 100, -2, 3),
        `D=${d}, ${affine}`,
      );
    }
});

test('rows with a large mean (1000 ± 0.5) keep full precision', async () => {
  for (const d of [37, 192]) {
    const x = randArray(4 * d, 200 + d, 999.5, 1000.5);
    for (const affine of ['none', 'both'] as const)
      await forwardBackwardCase([4, d], affine, x, `mean 1000, D=${d}, ${affine}`);
  }
});

test('many rows (1576 × 192, the MBT shape) against float64', async () => {
  const [n, d] = [1576, 192];
  await forwardBackwardCase([n, d], 'both', randArray(n * d, 300, -3, 3), `${n}×${d}`);
});

test('eps and constant rows: y = b, finite gradients', async () => {
  const d = 8;
  const x = tensor(
    Float32Array.from({ length: 2 * d }, (_, i) => (i < d ? 5 : -3)),
    [2, d],
    { requiresGrad: true },
  );
  const b = tensor(Float32Array.from(randArray(d, 400)), [d]);
  const y = layerNorm(x, null, b, { eps: 1e-3 });
  assertClose(
    await y.toArray(),
    [...(await b.toArray()), ...(await b.toArray())],
    0,
    0,
    'constant rows give the bias exactly',
  );
  const gy = tensor(Float32Array.from(randArray(2 * d, 401)), [2, d]);
  const [g] = grad([y], [x], { gradOutputs: [gy] });
  assert.ok([...(await g!.toArray())].every(Number.isFinite), 'finite gradient');
  for (const t of [x, b, y, gy, g!]) t.dispose();
});

test('gradient subsets: only the inputs that require grad get (and launch) a gradient', async () => {
  const [n, d] = [6, 20];
  const x = randArray(n * d, 450, -2, 2);
  const [wt, w] = randTensor([d], 451, 0.5, 2);
  const [bt, b] = randTensor([d], 452);
  const [gt, g] = randTensor([n, d], 453);
  const ref = lnRef(x, d, w, b, g);
  const bd = bounds(x, d, ref);
  let sg = 0;
  for (const v of g) sg += Math.abs(v);
  // x and bias require grad, weight does not: dx and dbias only.
  const xt = tensor(Float32Array.from(x), [n, d], { requiresGrad: true });
  bt.requireGrad();
  const y = layerNorm(xt, wt, bt);
  const [dx, db] = grad([y], [xt, bt], { gradOutputs: [gt] });
  assertClose(
    await dx!.toArray(),
    ref.dx,
    0,
    4 * bd.k8 * U * bd.r * maxAbs(g) * maxAbs(w) * (1 + bd.xh) * (1 + bd.e1),
    'dx',
  );
  assertClose(await db!.toArray(), ref.db, 0, (n / 8 + 8) * U * sg, 'dbias');
  // Only the weight requires grad (x is a constant): dweight alone.
  const xc = tensor(Float32Array.from(x), [n, d]);
  bt.requireGrad(false);
  wt.requireGrad();
  const y2 = layerNorm(xc, wt, bt);
  const d0 = xc.device.batcher.stats.dispatches;
  const [dw] = grad([y2], [wt], { gradOutputs: [gt] });
  assert.is(xc.device.batcher.stats.dispatches - d0, 1, 'one kernel: dweight only');
  let sgx = 0;
  for (let i = 0; i < g.length; i++) sgx += Math.abs(g[i]! * ref.xhat[i]!);
  assertClose(await dw!.toArray(), ref.dw, 0, (n / 8 + 8) * U * sgx + sg * bd.k8 * U * bd.e1, 'dweight');
  for (const t of [wt, bt, gt, xt, y, dx!, db!, xc, y2, dw!]) t.dispose();
});

test('gradcheck (x, weight, bias; vec4 and scalar widths)', async () => {
  let seed = 500;
  for (const d of [12, 37]) {
    const mk = (shape: number[], lo = -1, hi = 1) => randTensor(shape, seed++, lo, hi)[0];
    await check((x, w, b) => layerNorm(x!, w!, b!), [mk([3, d], -2, 2), mk([d], 0.5, 2), mk([d])]);
    await check((x, w) => layerNorm(x!, w!, null, { eps: 1e-3 }), [mk([2, d], -2, 2), mk([d], 0.5, 2)]);
    await check((x) => layerNorm(x!, null, null), [mk([2, 2, d], -2, 2)]);
  }
});

test('bad input is refused before any dispatch, naming the op and shapes', () => {
  const x = tensor(new Float32Array(12), [3, 4]);
  const w3 = tensor(new Float32Array(3), [3]);
  const w22 = tensor(new Float32Array(4), [2, 2]);
  const w4 = tensor(new Float32Array(4), [4]);
  const s = tensor(new Float32Array(1), []);
  const n = liveTensors.count;
  throwsWith(() => layerNorm(x, w3, null), 'layerNorm', 'weight [3]', '[3, 4]', 'expected [4]');
  throwsWith(() => layerNorm(x, w4, w22), 'layerNorm', 'bias [2, 2]', '[3, 4]');
  throwsWith(() => layerNorm(x, null, null, { eps: -1 }), 'layerNorm', 'eps -1');
  throwsWith(() => layerNorm(s, null, null), 'layerNorm', 'scalar');
  assert.is(liveTensors.count, n, 'nothing allocated');
  for (const t of [x, w3, w22, w4, s]) t.dispose();
  throwsWith(() => layerNorm(x, null, null), 'layerNorm', 'disposed');
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
