// crossEntropy: forward against a float64 reference of torch.nn.functional.cross_entropy
// (class-index targets), backward by gradcheck and against the float64 gradient, bad input.
// Tolerances (u = 2^-24 ≈ 6e-8). Per row the kernel computes −log p_c = (m − x_c) + log Σ exp(x_k − m):
//  - m − x_c is one rounding: u·|m − x_c| (exact, by Sterbenz, when x_c and m are close);
//  - Σ exp(x_k − m) ∈ [1, C]: each exp is a few ULPs (WGSL: 3 + 2|x| ULP, and terms with large |x|
//    are below u relative to the sum), plus C roundings of the sum, so its relative error is
//    ≲ (C + 8)·u; log then adds 2^-21 absolute (WGSL's log accuracy near 1) on top of that;
//  - the smoothing term sums C non-negative products w_c·(−log p_c): another C·u relative.
//  So a row loss is within rtol·|ℓ| + atol with rtol = 4·(C + 8)·u ≈ 3.6e-6 for C = 7 and
//  atol = 4·2^-21·max(w) (≈ 1.9e-6·max w), a factor 4 above the bounds for the products by
//  (1 − ε), w_y and ε/C. 'sum' adds N·u relative (positive terms); 'mean' a few more u for the
//  division: rtol grows by (N + 4)·u. Large logits (±1000) only enter through m − x_c, whose
//  error is relative, so the same rtol holds: losses of ~2000 are good to ~1e-2 absolute only
//  because float32 itself cannot do better (u·2000 ≈ 1.2e-4 per rounding).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, check, device, randArray, rejects } from '../helpers.ts';
import {
  crossEntropy,
  grad,
  releaseGraph,
  tensor,
  liveTensors,
  type Tensor,
  type CrossEntropyOptions,
} from '../../engine/index.ts';

const test = suite('cross-entropy');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

const U = 2 ** -24;
const N = 5;
const C = 7;
type Red = 'mean' | 'sum' | 'none';

interface Ref {
  rows: Float64Array;
  out: Float64Array;
  grad: Float64Array; // d(Σ over the reduced output)/dx
}

/** float64 reference of F.cross_entropy(x, y, weight=w, reduction, label_smoothing=eps). */
function ceRef(
  x: Float64Array,
  n: number,
  c: number,
  y: readonly number[],
  red: Red,
  eps: number,
  w?: Float64Array,
): Ref {
  const wt = (k: number) => (w ? w[k]! : 1);
  const rows = new Float64Array(n);
  const grad = new Float64Array(n * c);
  let denom = 0;
  const p = new Float64Array(c);
  for (let i = 0; i < n; i++) {
    const r = x.subarray(i * c, (i + 1) * c);
    const m = Math.max(...r);
    let s = 0;
    for (let k = 0; k < c; k++) s += Math.exp(r[k]! - m);
    const ls = Math.log(s);
    const nlp = (k: number) => m - r[k]! + ls;
    let smooth = 0;
    let wsum = 0;
    for (let k = 0; k < c; k++) {
      smooth += wt(k) * nlp(k);
      wsum += wt(k);
      p[k] = Math.exp(r[k]! - m - ls);
    }
    const yi = y[i]!;
    rows[i] = (1 - eps) * wt(yi) * nlp(yi) + (eps / c) * smooth;
    denom += wt(yi);
    const a = (1 - eps) * wt(yi) + (eps / c) * wsum;
    for (let k = 0; k < c; k++) grad[i * c + k] = p[k]! * a - (k === yi ? (1 - eps) * wt(yi) : 0) - (eps / c) * wt(k);
  }
  let total = 0;
  for (const v of rows) total += v;
  const scale = red === 'mean' ? 1 / denom : 1;
  if (red === 'mean') for (let k = 0; k < grad.length; k++) grad[k]! *= scale;
  const out = red === 'none' ? rows : Float64Array.of(total * scale);
  return { rows, out, grad };
}

function labelsOf(n: number, c: number, seed: number): number[] {
  return Array.from(randArray(n, seed, 0, c), (v) => Math.min(c - 1, Math.floor(v)));
}
const int32 = (v: readonly number[]) => tensor(Int32Array.from(v), [v.length]);

function tolFor(red: Red, c: number, n: number, w?: Float64Array): [number, number] {
  const wmax = w ? Math.max(...w) : 1;
  const rtol = 4 * (c + 8) * U + (red === 'none' ? 0 : (n + 4) * U);
  return [rtol, 4 * 2 ** -21 * wmax];
}

async function fwdCase(
  x: Float64Array,
  y: number[],
  red: Red,
  eps: number,
  w: Float64Array | undefined,
  what: string,
): Promise<void> {
  const lt = tensor(Float32Array.from(x), [N, C]);
  const yt = int32(y);
  const wt = w ? tensor(Float32Array.from(w), [C]) : undefined;
  const opts: CrossEntropyOptions = { reduction: red, labelSmoothing: eps, ...(wt ? { weight: wt } : {}) };
  const out = crossEntropy(lt, yt, opts);
  const ref = ceRef(x, N, C, y, red, eps, w);
  assert.equal([...out.shape], red === 'none' ? [N] : [], `${what}: shape`);
  const [rtol, atol] = tolFor(red, C, N, w);
  assertClose(await out.toArray(), ref.out, rtol, atol, what);
  for (const t of [lt, yt, out, ...(wt ? [wt] : [])]) t.dispose();
}

test('forward: reductions × smoothing × class weights (N=5, C=7) against float64', async () => {
  const x = randArray(N * C, 11, -3, 3);
  const y = labelsOf(N, C, 12);
  const w = randArray(C, 13, 0.5, 2);
  for (const red of ['mean', 'sum', 'none'] as const)
    for (const eps of [0, 0.1, 0.75])
      for (const weight of [undefined, w])
        await fwdCase(x, y, red, eps, weight, `${red}, ε=${eps}, ${weight ? 'weighted' : 'unweighted'}`);
});

test('forward: large logits ±50 and ±1000 stay finite and accurate', async () => {
  const w = randArray(C, 23, 0.5, 2);
  for (const [lim, seed] of [
    [50, 20],
    [1000, 21],
  ] as const) {
    const x = randArray(N * C, seed, -lim, lim);
    const y = labelsOf(N, C, seed + 10);
    for (const red of ['mean', 'sum', 'none'] as const)
      for (const eps of [0, 0.2])
        for (const weight of [undefined, w])
          await fwdCase(x, y, red, eps, weight, `±${lim}, ${red}, ε=${eps}, ${weight ? 'weighted' : 'unweighted'}`);
  }
});

test('exact values for large logits', async () => {
  // row 0: label at the max, others 2000 and 1000 below: exp underflows to 0, loss exactly 0.
  // row 1: label 2000 below the max: loss exactly 2000. row 2: label 1000 below: exactly 1000.
  // row 3: two tied maxima at 1000: loss ln 2. row 4: all 30 (label 1): loss ln C (C = 3 here).
  const x = tensor([1000, -1000, 0, 1000, -1000, 0, 1000, -1000, 0, 1000, 1000, -1000, 30, 30, 30], [5, 3]);
  const y = int32([0, 1, 2, 0, 1]);
  const out = crossEntropy(x, y, { reduction: 'none' });
  const v = await out.toArray();
  assert.is(v[0], 0);
  assert.is(v[1], 2000);
  assert.is(v[2], 1000);
  // log near 2 and 3: WGSL allows 3 ULP (|log| ≥ 0.5 outside [0.5, 2]) or 2^-21 absolute.
  assertClose([v[3]!, v[4]!], [Math.LN2, Math.log(3)], 0, 2 ** -21, 'ln 2, ln 3');
  // The gradient is softmax − onehot, finite: [0,0,0], [1,-1,0], [1,0,-1], [-.5,.5,0], [1/3,-2/3,1/3].
  const xg = tensor(await x.toArray(), [5, 3], { requiresGrad: true });
  const s = crossEntropy(xg, y, { reduction: 'sum' });
  const [g] = grad([s], [xg]);
  assertClose(
    await g!.toArray(),
    [0, 0, 0, 1, -1, 0, 1, 0, -1, -0.5, 0.5, 0, 1 / 3, -2 / 3, 1 / 3],
    0,
    4 * U,
    'gradient',
  );
  for (const t of [x, y, out, xg, s, g!]) t.dispose();
});

test('backward against the float64 gradient, including ±1000 logits', async () => {
  const w = randArray(C, 33, 0.5, 2);
  for (const [lim, seed] of [
    [3, 30],
    [1000, 31],
  ] as const) {
    const x = randArray(N * C, seed, -lim, lim);
    const y = labelsOf(N, C, seed + 10);
    for (const red of ['mean', 'sum'] as const)
      for (const eps of [0, 0.3])
        for (const weight of [undefined, w]) {
          const lt = tensor(Float32Array.from(x), [N, C], { requiresGrad: true });
          const yt = int32(y);
          const wt = weight ? tensor(Float32Array.from(weight), [C]) : undefined;
          const out = crossEntropy(lt, yt, { reduction: red, labelSmoothing: eps, ...(wt ? { weight: wt } : {}) });
          const [g] = grad([out], [lt]);
          const ref = ceRef(x, N, C, y, red, eps, weight);
          // Each entry is p·A − t with p = exp((x − m) − ls). p's absolute error is at most
          // (3 + 2|a|)·u·p from WGSL's exp (a = its argument), 2·u·|a|·p from rounding a, and ls's
          // error ((C + 8)·u + 2^-21 ≈ 23·u for C = 7); since |a|·p = |a|·e^a ≤ 1/e, that is ≲ 28·u in all,
          // for ±1000 logits too. Times A ≤ max w, plus two roundings: atol = 64·u·max w (a factor 2 spare;
          // measured ≤ 2.1·u). A misplaced term would be off by ≥ (ε/C)·min w or p·A, far above this.
          const wmax = weight ? Math.max(...weight) : 1;
          assertClose(
            await g!.toArray(),
            ref.grad,
            0,
            64 * U * wmax,
            `grad ±${lim}, ${red}, ε=${eps}, ${weight ? 'weighted' : 'unweighted'}`,
          );
          for (const t of [lt, yt, out, g!, ...(wt ? [wt] : [])]) t.dispose();
        }
  }
});

test('gradcheck (moderate logits)', async () => {
  const y = int32(labelsOf(N, C, 40));
  const w = tensor(Float32Array.from(randArray(C, 41, 0.5, 2)), [C]);
  let seed = 42;
  for (const red of ['mean', 'sum', 'none'] as const)
    for (const eps of [0, 0.25])
      for (const weight of [undefined, w]) {
        const x = tensor(Float32Array.from(randArray(N * C, seed++, -2, 2)), [N, C]);
        await check(
          (l) => crossEntropy(l!, y, { reduction: red, labelSmoothing: eps, ...(weight ? { weight } : {}) }),
          [x],
        );
      }
  y.dispose();
  w.dispose();
});

test('bad input is refused at the call, naming the op and shapes', () => {
  const x = tensor(new Float32Array(N * C), [N, C]);
  const x3 = tensor(new Float32Array(N * C), [1, N, C]);
  const y = int32([0, 1, 2, 3, 4]);
  const yf = tensor(new Float32Array(N), [N]);
  const y4 = int32([0, 1, 2, 3]);
  const w = tensor(new Float32Array(C), [C]);
  const w6 = tensor(new Float32Array(C - 1), [C - 1]);
  const wg = tensor(new Float32Array(C), [C], { requiresGrad: true });
  rejects(() => crossEntropy(x3, y), 'crossEntropy', '2-D', '[1, 5, 7]');
  rejects(() => crossEntropy(x, yf), 'crossEntropy', 'non-integer labels', 'float32', '[5]');
  rejects(() => crossEntropy(x, y4), 'crossEntropy', 'labels [4]', '[5, 7]');
  rejects(() => crossEntropy(x, y, { weight: w6 }), 'crossEntropy', 'weight [6]', '[5, 7]');
  rejects(() => crossEntropy(x, y, { weight: wg }), 'crossEntropy', 'requires grad');
  rejects(() => crossEntropy(x, y, { labelSmoothing: 1 }), 'crossEntropy', 'labelSmoothing 1', '[5, 7]');
  rejects(() => crossEntropy(x, y, { labelSmoothing: -0.1 }), 'crossEntropy', 'labelSmoothing -0.1');
  rejects(() => crossEntropy(x, y, { labelSmoothing: NaN }), 'crossEntropy', 'labelSmoothing NaN');
  rejects(() => crossEntropy(x, y, { reduction: 'avg' as Red }), 'crossEntropy', "'avg'");
  rejects(() => crossEntropy(y as Tensor, y), 'crossEntropy', 'int32');
  for (const t of [x, x3, y, yf, y4, w, w6, wg]) t.dispose();
  rejects(() => crossEntropy(x, y), 'crossEntropy', 'disposed');
});

/** Labels whose values the host does not know (as if computed on the GPU): no host range check. */
function gpuLabels(v: readonly number[]): Tensor {
  const t = int32(v);
  t.valueRange = null;
  return t;
}

test('labels from host data outside [0, C) throw before any dispatch', () => {
  const x = tensor(Float32Array.from(randArray(N * C, 52)), [N, C]);
  for (const bad of [
    [0, C, 2, 1, 0],
    [0, 1, -1, 2, 3],
  ]) {
    const y = int32(bad);
    const before = device.batcher.stats.dispatches;
    rejects(() => crossEntropy(x, y), 'crossEntropy', `labels outside [0, ${C})`, `found ${bad.includes(-1) ? -1 : C}`);
    assert.is(device.batcher.stats.dispatches, before);
    y.dispose();
  }
  x.dispose();
});

test(
  'a label outside [0, ' + 'C) computed on the GPU gives NaN loss and NaN gradient row, never a finite value',
  async () => {
    const x = tensor(Float32Array.from(randArray(N * C, 50, -2, 2)), [N, C], { requiresGrad: true });
    const y = gpuLabels([0, C, 2, -1, 6]);
    const w = tensor(Float32Array.from(randArray(C, 51, 0.5, 2)), [C]);
    const rows = crossEntropy(x, y, { reduction: 'none' });
    const r = await rows.toArray();
    assert.ok(Number.isNaN(r[1]) && Number.isNaN(r[3]), `rows 1 and 3 NaN: ${[...r]}`);
    assert.ok(
      [0, 2, 4].every((i) => Number.isFinite(r[i])),
      'other rows finite',
    );
    for (const opts of [
      {},
      { reduction: 'sum' },
      { weight: w },
      { labelSmoothing: 0.1, weight: w },
    ] as CrossEntropyOptions[]) {
      const l = crossEntropy(x, y, opts);
      assert.ok(Number.isNaN((await l.toArray())[0]), `reduced loss NaN for ${JSON.stringify(Object.keys(opts))}`);
      const [g] = grad([l], [x]);
      const gv = await g!.toArray();
      for (let i = 0; i < N; i++) {
        const row = [...gv.subarray(i * C, (i + 1) * C)];
        // The bad rows are NaN; a weighted mean also divides every row by the NaN Σ w_y (all NaN).
        if (i === 1 || i === 3 || (opts.weight && !opts.reduction))
          assert.ok(row.every(Number.isNaN), `grad row ${i} NaN`);
        else assert.ok(row.every(Number.isFinite), `grad row ${i} finite`);
      }
      l.dispose();
      g!.dispose();
    }
    releaseGraph(rows);
    rows.dispose();
    for (const t of [x, y, w]) t.dispose();
  },
);

/**
 * Forward (every reduction, ε, weights) and backward (mean/sum) against float64 at (n, c) with the
 * given labels. Forward tolerances are tolFor's (derived for any C above). Gradient: as in the
 * backward test, p's error is exp's 5·u plus ls's ((C + 8)·u + 2^-21 = (C + 16)·u), so
 * atol = 2·(C + 32)·u·max w keeps that test's factor-2 margin (it gives 78·u for C = 7).
 */
async function layoutCases(n: number, c: number, y: number[], lim: number, seed: number, what: string): Promise<void> {
  const x = randArray(n * c, seed, -lim, lim);
  const w = randArray(c, seed + 1, 0.5, 2);
  for (const red of ['mean', 'sum', 'none'] as const)
    for (const eps of [0, 0.3])
      for (const weight of [undefined, w]) {
        const lt = tensor(Float32Array.from(x), [n, c], { requiresGrad: true });
        const yt = int32(y);
        const wt = weight ? tensor(Float32Array.from(weight), [c]) : undefined;
        const tag = `${what} ±${lim}, ${red}, ε=${eps}, ${weight ? 'weighted' : 'unweighted'}`;
        const out = crossEntropy(lt, yt, { reduction: red, labelSmoothing: eps, ...(wt ? { weight: wt } : {}) });
        const ref = ceRef(x, n, c, y, red, eps, weight);
        const [rtol, atol] = tolFor(red, c, n, weight);
        assertClose(await out.toArray(), ref.out, rtol, atol, `forward ${tag}`);
        if (red !== 'none') {
          const [g] = grad([out], [lt]);
          const wmax = weight ? Math.max(...weight) : 1;
          assertClose(await g!.toArray(), ref.grad, 0, 2 * (c + 32) * U * wmax, `grad ${tag}`);
          g!.dispose();
        }
        for (const t of [lt, yt, out, ...(wt ? [wt] : [])]) t.dispose();
      }
}

test('vec4 rows (C % 4 == 0): labels in every lane of a vec4, ±3 and ±1000', async () => {
  const y = [0, 5, 2, 7, 3]; // positions 0, 1, 2, 3, 3 within their vec4
  await layoutCases(5, 8, y, 3, 60, 'C=8');
  await layoutCases(5, 8, y, 1000, 62, 'C=8');
});

test('few long rows (one workgroup per row: C ≥ 64·N and C ≥ 4096), vec4 and scalar, with a tail block', async () => {
  // C = 4096 (vec4): the labels' vec4s fall on lanes 63 and 52 of the 64. C = 4099 (scalar): 4098
  // is in the partial last block of 64 columns.
  await layoutCases(2, 4096, [4095, 1234], 3, 70, 'C=4096');
  await layoutCases(2, 4099, [4098, 70], 3, 72, 'C=4099');
});

test('out-of-range labels give NaN rows in the vec4 and one-workgroup-per-row layouts too', async () => {
  for (const [n, c, y] of [
    [4, 8, [0, 8, 3, -1]],
    [2, 4096, [-1, 17]],
    [2, 4099, [4099, 4098]],
  ] as const) {
    const x = tensor(Float32Array.from(randArray(n * c, 80, -2, 2)), [n, c], { requiresGrad: true });
    const yt = gpuLabels(y);
    const rows = crossEntropy(x, yt, { reduction: 'none' });
    const ones = tensor(new Float32Array(n).fill(1), [n]);
    const [g] = grad([rows], [x], { gradOutputs: [ones] });
    const r = await rows.toArray();
    const gv = await g!.toArray();
    for (let i = 0; i < n; i++) {
      const bad = y[i]! < 0 || y[i]! >= c;
      const row = [...gv.subarray(i * c, (i + 1) * c)];
      assert.ok(bad ? Number.isNaN(r[i]) : Number.isFinite(r[i]), `C=${c} loss row ${i}`);
      assert.ok(bad ? row.every(Number.isNaN) : row.every(Number.isFinite), `C=${c} grad row ${i}`);
    }
    for (const t of [x, yt, ones, rows, g!]) t.dispose();
  }
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
