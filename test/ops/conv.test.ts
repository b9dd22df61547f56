// conv2d: forward against a float64 reference of torch.nn.functional.conv2d (groups = 1),
// gradients by gradcheck on small shapes and against float64 reference backward formulas on a
// larger case, bad input, no leaks.
// Tolerances (u = 2^-24 ≈ 6e-8). Every output (forward y, dx, dW, db) is a float32 sum of K products
// of float32 inputs, accumulated by fma in a fixed order: the error is at most K·u·Σ|terms|
// (recursive summation bound, γ_K ≈ K·u) plus one rounding of the bias add. The tests use
// atol = 2·K·u·max|term sum| computed per case from the data (see `tol`), with rtol = 4·u for the
// final roundings; a misplaced tap or a missing term is off by a whole product, far above that.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, check, randTensor, rejects } from '../helpers.ts';
import { conv2d, grad, liveTensors, tensor, type Conv2dOptions } from '../../engine/index.ts';

const test = suite('conv');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

const U = 2 ** -24;

interface Geo {
  n: number;
  c: number;
  h: number;
  w: number;
  o: number;
  kh: number;
  kw: number;
  s: [number, number];
  p: [number, number];
  d: [number, number];
  ho: number;
  wo: number;
}
const pairOf = (v: number | [number, number] | undefined, dflt: number): [number, number] =>
  v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : v;

function geo(xs: number[], ws: number[], opts: Conv2dOptions): Geo {
  const [n, c, h, w] = xs as [number, number, number, number];
  const [o, , kh, kw] = ws as [number, number, number, number];
  const s = pairOf(opts.stride, 1);
  const p = pairOf(opts.padding, 0);
  const d = pairOf(opts.dilation, 1);
  const ho = Math.floor((h + 2 * p[0] - d[0] * (kh - 1) - 1) / s[0]) + 1;
  const wo = Math.floor((w + 2 * p[1] - d[1] * (kw - 1) - 1) / s[1]) + 1;
  return { n, c, h, w, o, kh, kw, s, p, d, ho, wo };
}

/** Calls f(yIndex, xIndex, wIndex, oc) for every valid tap of the convolution (float64 host loops). */
function taps(g: Geo, f: (yi: number, xi: number, wi: number, oc: number) => void): void {
  for (let n = 0; n < g.n; n++)
    for (let oc = 0; oc < g.o; oc++)
      for (let oh = 0; oh < g.ho; oh++)
        for (let ow = 0; ow < g.wo; ow++) {
          const yi = ((n * g.o + oc) * g.ho + oh) * g.wo + ow;
          for (let ci = 0; ci < g.c; ci++)
            for (let i = 0; i < g.kh; i++) {
              const ih = oh * g.s[0] - g.p[0] + i * g.d[0];
              if (ih < 0 || ih >= g.h) continue;
              for (let j = 0; j < g.kw; j++) {
                const iw = ow * g.s[1] - g.p[1] + j * g.d[1];
                if (iw < 0 || iw >= g.w) continue;
                f(yi, ((n * g.c + ci) * g.h + ih) * g.w + iw, ((oc * g.c + ci) * g.kh + i) * g.kw + j, oc);
              }
            }
        }
}

/** Reference forward y and Σ|terms| per output (for the tolerance). */
function refForward(
  g: Geo,
  x: Float64Array,
  w: Float64Array,
  b?: Float64Array,
): { y: Float64Array; mag: Float64Array } {
  const size = g.n * g.o * g.ho * g.wo;
  const y = new Float64Array(size);
  const mag = new Float64Array(size);
  taps(g, (yi, xi, wi) => {
    y[yi]! += x[xi]! * w[wi]!;
    mag[yi]! += Math.abs(x[xi]! * w[wi]!);
  });
  if (b)
    for (let i = 0; i < size; i++) {
      const oc = Math.floor(i / (g.ho * g.wo)) % g.o;
      y[i]! += b[oc]!;
      mag[i]! += Math.abs(b[oc]!);
    }
  return { y, mag };
}

/** Reference backward for upstream gy: dx, dW, db and the Σ|terms| of each. */
function refBackward(g: Geo, x: Float64Array, w: Float64Array, gy: Float64Array) {
  const dx = new Float64Array(x.length),
    dxm = new Float64Array(x.length);
  const dw = new Float64Array(w.length),
    dwm = new Float64Array(w.length);
  const db = new Float64Array(g.o),
    dbm = new Float64Array(g.o);
  taps(g, (yi, xi, wi) => {
    dx[xi]! += gy[yi]! * w[wi]!;
    dxm[xi]! += Math.abs(gy[yi]! * w[wi]!);
    dw[wi]! += gy[yi]! * x[xi]!;
    dwm[wi]! += Math.abs(gy[yi]! * x[xi]!);
  });
  for (let i = 0; i < gy.length; i++) {
    const oc = Math.floor(i / (g.ho * g.wo)) % g.o;
    db[oc]! += gy[i]!;
    dbm[oc]! += Math.abs(gy[i]!);
  }
  return { dx, dxm, dw, dwm, db, dbm };
}

/** [rtol, atol] for sums of k products whose absolute values sum to at most max(mag). */
function tol(k: number, mag: Float64Array): [number, number] {
  return [4 * U, 2 * (k + 1) * U * Math.max(...mag)];
}

interface Case {
  x: number[];
  w: number[];
  bias: boolean;
  opts: Conv2dOptions;
  what: string;
}
const cases: Case[] = [
  { x: [1, 2, 5, 5], w: [3, 2, 3, 3], bias: true, opts: { padding: 1 }, what: '3×3 s1 p1 odd' },
  { x: [2, 3, 6, 6], w: [5, 3, 3, 3], bias: false, opts: { stride: 2, padding: 1 }, what: '3×3 s2 p1 even, batch 2' },
  { x: [1, 2, 7, 9], w: [9, 2, 1, 1], bias: true, opts: {}, what: '1×1 s1 p0, Cout 9' },
  { x: [2, 3, 6, 5], w: [4, 3, 1, 1], bias: false, opts: { stride: 2 }, what: '1×1 s2 downsample' },
  { x: [1, 2, 9, 8], w: [2, 2, 7, 7], bias: true, opts: { stride: 2, padding: 3 }, what: '7×7 s2 p3 stem' },
  {
    x: [1, 2, 6, 8],
    w: [3, 2, 2, 3],
    bias: true,
    opts: { stride: [2, 1], padding: [0, 1] },
    what: 'non-square kernel and stride, Wo = 8',
  },
  { x: [1, 2, 7, 6], w: [2, 2, 3, 3], bias: false, opts: { padding: 2, dilation: 2 }, what: 'dilation 2' },
  {
    x: [2, 1, 5, 8],
    w: [3, 1, 3, 2],
    bias: true,
    opts: { stride: [1, 3], padding: [1, 0], dilation: [1, 2] },
    what: 'mixed per-axis geometry',
  },
  { x: [1, 3, 4, 4], w: [2, 3, 4, 4], bias: false, opts: {}, what: 'kernel = input (1×1 output)' },
  {
    x: [2, 2, 5, 11],
    w: [5, 2, 3, 3],
    bias: true,
    opts: { padding: 1 },
    what: '3×3 s1 p1, rows of 11 (row quads, last one partial)',
  },
  {
    x: [1, 2, 8, 9],
    w: [3, 2, 3, 5],
    bias: false,
    opts: { stride: [2, 1], padding: [1, 2] },
    what: 'stride 2 × 1, 3×5 kernel, width 9',
  },
  // One to three input channels: dx by runs of neighbours along a row, all channels per invocation
  // (convInputGradRunsKernel).
  {
    x: [2, 1, 6, 9],
    w: [3, 1, 5, 5],
    bias: true,
    opts: { padding: 2 },
    what: 'one input channel, 5×5 p2 (dx by runs)',
  },
  {
    x: [1, 2, 5, 34],
    w: [2, 2, 3, 3],
    bias: false,
    opts: { stride: [2, 1], padding: 1, dilation: [2, 1] },
    what: 'two input channels, rows of 34 (dx in three runs per row, the last partial), stride and dilation along h',
  },
  {
    x: [1, 3, 5, 8],
    w: [2, 3, 3, 3],
    bias: true,
    opts: { stride: [2, 1], padding: 1 },
    what: 'three input channels, stride 2 × 1 (dx by runs, two row phases)',
  },
  // Tiny images (≤ 16 pixels in all: shaders/conv-small.ts, taps that hit nothing skipped).
  {
    x: [4, 3, 1, 1],
    w: [5, 3, 3, 3],
    bias: true,
    opts: { padding: 1 },
    what: 'tiny: 1×1 maps, batch 4 (only the centre tap hits)',
  },
  {
    x: [2, 3, 2, 3],
    w: [6, 3, 3, 3],
    bias: false,
    opts: { stride: 2, padding: 1 },
    what: 'tiny: 2×3 maps, stride 2 (dx phases)',
  },
  {
    x: [1, 2, 3, 4],
    w: [3, 2, 3, 2],
    bias: true,
    opts: { stride: [2, 1], padding: [1, 0], dilation: [1, 2] },
    what: 'tiny: mixed per-axis geometry',
  },
];

async function forwardCase(c: Case, seed: number): Promise<void> {
  const g = geo(c.x, c.w, c.opts);
  const [xt, xh] = randTensor(c.x, seed);
  const [wt, wh] = randTensor(c.w, seed + 1);
  const [bt, bh] = c.bias ? randTensor([c.w[0]!], seed + 2) : [null, undefined];
  const y = conv2d(xt, wt, bt, c.opts);
  assert.equal([...y.shape], [g.n, g.o, g.ho, g.wo], `${c.what}: shape`);
  const ref = refForward(g, xh, wh, bh);
  const [rtol, atol] = tol(g.c * g.kh * g.kw, ref.mag);
  assertClose(await y.toArray(), ref.y, rtol, atol, c.what);
  for (const t of [xt, wt, y, ...(bt ? [bt] : [])]) t.dispose();
}

test('forward against float64: strides 1/2, padding 0/1/3, 1×1/3×3/7×7, dilation, bias', async () => {
  let seed = 100;
  for (const c of cases) await forwardCase(c, (seed += 10));
});

cases.forEach((c, i) => {
  test(`gradcheck dx, dW${c.bias ? ', db' : ''}: ${c.what}`, async () => {
    let seed = 200 + 10 * i;
    const ins = [
      randTensor(c.x, seed++)[0],
      randTensor(c.w, seed++)[0],
      ...(c.bias ? [randTensor([c.w[0]!], seed++)[0]] : []),
    ];
    await check((x, w, b) => conv2d(x!, w!, b ?? null, c.opts), ins);
  });
});

test('larger case: Cout 19 (not a tile multiple), 21×18 input, stride 2: dx, dW, db against float64', async () => {
  const opts: Conv2dOptions = { stride: 2, padding: 1 };
  const xs = [3, 6, 21, 18];
  const ws = [19, 6, 3, 3];
  const g = geo(xs, ws, opts);
  const [xt0, xh] = randTensor(xs, 300);
  const [wt0, wh] = randTensor(ws, 301);
  const [bt0, bh] = randTensor([19], 302);
  const [gyt, gyh] = randTensor([g.n, g.o, g.ho, g.wo], 303);
  const x = tensor(await xt0.toArray(), xs, { requiresGrad: true });
  const w = tensor(await wt0.toArray(), ws, { requiresGrad: true });
  const b = tensor(await bt0.toArray(), [19], { requiresGrad: true });
  const y = conv2d(x, w, b, opts);
  const f = refForward(g, xh, wh, bh);
  assertClose(await y.toArray(), f.y, ...tol(6 * 9, f.mag), 'forward');
  const [dx, dw, db] = grad([y], [x, w, b], { gradOutputs: [gyt] });
  const r = refBackward(g, xh, wh, gyh);
  // dx sums ≤ Cout·kh·kw terms; dW and db sum N·Ho·Wo terms (split into slices, then summed).
  assertClose(await dx!.toArray(), r.dx, ...tol(19 * 9, r.dxm), 'dx');
  assertClose(await dw!.toArray(), r.dw, ...tol(g.n * g.ho * g.wo, r.dwm), 'dW');
  assertClose(await db!.toArray(), r.db, ...tol(g.n * g.ho * g.wo, r.dbm), 'db');
  for (const t of [xt0, wt0, bt0, gyt, x, w, b, y, dx!, dw!, db!]) t.dispose();
});

test('larger stride-1 case (several column workgroups, split weight-gradient reduction) against float64', async () => {
  const opts: Conv2dOptions = { padding: 1 };
  const xs = [2, 4, 40, 36];
  const ws = [10, 4, 3, 3];
  const g = geo(xs, ws, opts);
  const [xt0, xh] = randTensor(xs, 400);
  const [wt0, wh] = randTensor(ws, 401);
  const [gyt, gyh] = randTensor([g.n, g.o, g.ho, g.wo], 402);
  const x = tensor(await xt0.toArray(), xs, { requiresGrad: true });
  const w = tensor(await wt0.toArray(), ws, { requiresGrad: true });
  const y = conv2d(x, w, null, opts);
  const f = refForward(g, xh, wh);
  assertClose(await y.toArray(), f.y, ...tol(4 * 9, f.mag), 'forward');
  const [dx, dw] = grad([y], [x, w], { gradOutputs: [gyt] });
  const r = refBackward(g, xh, wh, gyh);
  assertClose(await dx!.toArray(), r.dx, ...tol(10 * 9, r.dxm), 'dx');
  assertClose(await dw!.toArray(), r.dw, ...tol(g.n * g.ho * g.wo, r.dwm), 'dW');
  for (const t of [xt0, wt0, gyt, x, w, y, dx!, dw!]) t.dispose();
});

test(
  'CG-FMNIST encoder shapes at batch 2: 5×5 conv on 1 and 3 channels at 28×28 (dx by runs, dW over 25/75 ' +
    'columns), 3×3 over 32 channels (dW over 288 columns) against float64',
  async () => {
    const shapes: [number[], number[], Conv2dOptions][] = [
      [[2, 1, 28, 28], [8, 1, 5, 5], { padding: 2 }],
      [[2, 3, 28, 28], [8, 3, 5, 5], { padding: 2 }],
      [[2, 32, 10, 9], [8, 32, 3, 3], { padding: 1 }],
      [[2, 32, 10, 9], [8, 32, 3, 3], { stride: 2, padding: 1 }],
    ];
    let seed = 600;
    for (const [xs, ws, opts] of shapes) {
      const g = geo(xs, ws, opts);
      const [xt0, xh] = randTensor(xs, seed++);
      const [wt0, wh] = randTensor(ws, seed++);
      const [bt0, bh] = randTensor([ws[0]!], seed++);
      const [gyt, gyh] = randTensor([g.n, g.o, g.ho, g.wo], seed++);
      const x = tensor(await xt0.toArray(), xs, { requiresGrad: true });
      const w = tensor(await wt0.toArray(), ws, { requiresGrad: true });
      const b = tensor(await bt0.toArray(), [ws[0]!], { requiresGrad: true });
      const y = conv2d(x, w, b, opts);
      const f = refForward(g, xh, wh, bh);
      const k = g.c * g.kh * g.kw;
      assertClose(await y.toArray(), f.y, ...tol(k, f.mag), `forward [${xs}] [${ws}]`);
      const [dx, dw, db] = grad([y], [x, w, b], { gradOutputs: [gyt] });
      const r = refBackward(g, xh, wh, gyh);
      assertClose(await dx!.toArray(), r.dx, ...tol(g.o * g.kh * g.kw, r.dxm), `dx [${xs}] [${ws}]`);
      assertClose(await dw!.toArray(), r.dw, ...tol(g.n * g.ho * g.wo, r.dwm), `dW [${xs}] [${ws}]`);
      assertClose(await db!.toArray(), r.db, ...tol(g.n * g.ho * g.wo, r.dbm), `db [${xs}] [${ws}]`);
      for (const t of [xt0, wt0, bt0, gyt, x, w, b, y, dx!, dw!, db!]) t.dispose();
    }
  },
);

test(
  'tiny images, many channels (split-K partial sums, ' +
    'rows not a multiple of 4): forward, dx, dW, db against float64',
  async () => {
    const opts: Conv2dOptions = { padding: 1 };
    const xs = [4, 40, 2, 2];
    const ws = [70, 40, 3, 3];
    const g = geo(xs, ws, opts);
    const [xt0, xh] = randTensor(xs, 500);
    const [wt0, wh] = randTensor(ws, 501);
    const [bt0, bh] = randTensor([70], 502);
    const [gyt, gyh] = randTensor([g.n, g.o, g.ho, g.wo], 503);
    const x = tensor(await xt0.toArray(), xs, { requiresGrad: true });
    const w = tensor(await wt0.toArray(), ws, { requiresGrad: true });
    const b = tensor(await bt0.toArray(), [70], { requiresGrad: true });
    const y = conv2d(x, w, b, opts);
    const f = refForward(g, xh, wh, bh);
    // Split-K only regroups the same K terms (slice partials, then their sum): the γ_K bound holds.
    assertClose(await y.toArray(), f.y, ...tol(40 * 9, f.mag), 'forward');
    const [dx, dw, db] = grad([y], [x, w, b], { gradOutputs: [gyt] });
    const r = refBackward(g, xh, wh, gyh);
    assertClose(await dx!.toArray(), r.dx, ...tol(70 * 9, r.dxm), 'dx');
    assertClose(await dw!.toArray(), r.dw, ...tol(g.n * g.ho * g.wo, r.dwm), 'dW');
    assertClose(await db!.toArray(), r.db, ...tol(g.n * g.ho * g.wo, r.dbm), 'db');
    for (const t of [xt0, wt0, bt0, gyt, x, w, b, y, dx!, dw!, db!]) t.dispose();
  },
);

test('only the gradients asked for: weight alone, bias alone', async () => {
  const opts: Conv2dOptions = { stride: 2, padding: 1 };
  const xs = [2, 3, 9, 10];
  const ws = [6, 3, 3, 3];
  const g = geo(xs, ws, opts);
  const [xt, xh] = randTensor(xs, 410);
  const [wt0, wh] = randTensor(ws, 411);
  const [bt0] = randTensor([6], 412);
  const [gyt, gyh] = randTensor([g.n, g.o, g.ho, g.wo], 413);
  const r = refBackward(g, xh, wh, gyh);
  const w = tensor(await wt0.toArray(), ws, { requiresGrad: true });
  const y = conv2d(xt, w, bt0, opts); // x and b need no gradient: no dx kernel, no bias sum
  const [dw] = grad([y], [w], { gradOutputs: [gyt] });
  assertClose(await dw!.toArray(), r.dw, ...tol(g.n * g.ho * g.wo, r.dwm), 'dW');
  const b = tensor(await bt0.toArray(), [6], { requiresGrad: true });
  const y2 = conv2d(xt, wt0, b, opts);
  const [db] = grad([y2], [b], { gradOutputs: [gyt] });
  assertClose(await db!.toArray(), r.db, ...tol(g.n * g.ho * g.wo, r.dbm), 'db');
  for (const t of [xt, wt0, bt0, gyt, w, y, dw!, b, y2, db!]) t.dispose();
});

test('bad input is refused before any dispatch, naming the shapes', () => {
  const x = tensor(new Float32Array(2 * 3 * 5 * 5), [2, 3, 5, 5]);
  const x3 = tensor(new Float32Array(3 * 5 * 5), [3, 5, 5]);
  const w = tensor(new Float32Array(4 * 3 * 3 * 3), [4, 3, 3, 3]);
  const w2 = tensor(new Float32Array(4 * 2 * 3 * 3), [4, 2, 3, 3]);
  const w3 = tensor(new Float32Array(4 * 3 * 3), [4, 3, 3]);
  const w7 = tensor(new Float32Array(4 * 3 * 7 * 7), [4, 3, 7, 7]);
  const b5 = tensor(new Float32Array(5), [5]);
  rejects(() => conv2d(x3, w), 'conv2d', '4-D', '[3, 5, 5]');
  rejects(() => conv2d(x, w3), 'conv2d', '4-D', '[4, 3, 3]');
  rejects(() => conv2d(x, w2), 'conv2d', 'channel mismatch', '[2, 3, 5, 5]', '[4, 2, 3, 3]');
  rejects(() => conv2d(x, w7), 'conv2d', 'larger than the padded input', '[2, 3, 5, 5]', '[4, 3, 7, 7]');
  rejects(() => conv2d(x, w7, null, { padding: 0, dilation: 1 }), 'conv2d', 'larger');
  rejects(() => conv2d(x, w, null, { dilation: 3 }), 'conv2d', 'larger', 'dilation 3×3');
  rejects(() => conv2d(x, w, b5), 'conv2d', 'bias [5]', '[4, 3, 3, 3]');
  rejects(() => conv2d(x, w, null, { stride: 0 }), 'conv2d', 'stride', '[2, 3, 5, 5]');
  rejects(() => conv2d(x, w, null, { stride: [1, -2] }), 'conv2d', 'stride');
  rejects(() => conv2d(x, w, null, { dilation: 0 }), 'conv2d', 'dilation');
  rejects(() => conv2d(x, w, null, { padding: -1 }), 'conv2d', 'padding', 'non-negative');
  rejects(() => conv2d(x, w, null, { padding: 1.5 }), 'conv2d', 'padding');
  rejects(() => conv2d(x, w, null, { groups: 2 }), 'conv2d', 'groups > 1 not supported');
  for (const t of [x, x3, w, w2, w3, w7, b5]) t.dispose();
  rejects(() => conv2d(x, w), 'conv2d', 'disposed');
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
