// maxPool2d, avgPool2d, adaptiveAvgPool2d: forward against float64 references of
// torch.nn.functional's max_pool2d / avg_pool2d / adaptive_avg_pool2d, backward against float64
// gradients and gradcheck, deterministic max-pool ties, bad input, no leaks.
// Tolerances (u = 2^-24 ≈ 6e-8): max pool forward is exact (a selection). Its backward sums at
// most ⌈kh/sh⌉·⌈kw/sw⌉ upstream values |gy| ≤ 1 (signs mixed): 4·u per term, absolute. Averages sum at most k² (or a
// bin's) values ≤ 1 in magnitude and divide once: (k² + 1)·u·max|x| ≤ 64·u absolute here;
// the gathers in backward add at most ⌈k/s⌉²·k² such terms: 64·u again.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, check, randArray, rejects } from '../helpers.ts';
import {
  adaptiveAvgPool2d,
  avgPool2d,
  grad,
  liveTensors,
  maxPool2d,
  tensor,
  type Pool2dOptions,
} from '../../engine/index.ts';

const test = suite('pool');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

const U = 2 ** -24;
type P2 = [number, number];
const pair = (v: number | P2 | undefined, d: P2): P2 => (v === undefined ? d : typeof v === 'number' ? [v, v] : v);

interface Win {
  y0: number;
  y1: number;
  x0: number;
  x1: number;
  div: number;
}
interface PoolRef {
  oh: number;
  ow: number;
  y: Float64Array;
  arg: Int32Array;
  dx: Float64Array;
}

/**
 * float64 pooling over (P, H, W) planes: `win(oy, ox)` gives the clipped window and divisor.
 * Returns the output (max or mean), max's first argmax, and dx for upstream gy (if given).
 */
function poolRef(
  x: Float64Array,
  shape: number[],
  oh: number,
  ow: number,
  win: (oy: number, ox: number) => Win,
  kind: 'max' | 'avg',
  gy?: Float64Array,
): PoolRef {
  const [n, c, h, w] = shape as [number, number, number, number];
  const y = new Float64Array(n * c * oh * ow);
  const arg = new Int32Array(y.length);
  const dx = new Float64Array(x.length);
  for (let p = 0; p < n * c; p++)
    for (let oy = 0; oy < oh; oy++)
      for (let ox = 0; ox < ow; ox++) {
        const o = (p * oh + oy) * ow + ox;
        const wd = win(oy, ox);
        let best = -Infinity;
        let bi = wd.y0 * w + wd.x0;
        let s = 0;
        for (let yy = wd.y0; yy < wd.y1; yy++)
          for (let xx = wd.x0; xx < wd.x1; xx++) {
            const v = x[p * h * w + yy * w + xx]!;
            s += v;
            if (v > best) [best, bi] = [v, yy * w + xx];
          }
        y[o] = kind === 'max' ? best : s / wd.div;
        arg[o] = bi;
        if (!gy) continue;
        if (kind === 'max') dx[p * h * w + bi]! += gy[o]!;
        else
          for (let yy = wd.y0; yy < wd.y1; yy++)
            for (let xx = wd.x0; xx < wd.x1; xx++) dx[p * h * w + yy * w + xx]! += gy[o]! / wd.div;
      }
  return { oh, ow, y, arg, dx };
}

function windowRef(shape: number[], opts: Pool2dOptions, includePad: boolean) {
  const [h, w] = [shape[2]!, shape[3]!];
  const [kh, kw] = pair(opts.kernelSize, [1, 1]);
  const [sh, sw] = pair(opts.stride, [kh, kw]);
  const [ph, pw] = pair(opts.padding, [0, 0]);
  const oh = Math.floor((h + 2 * ph - kh) / sh) + 1;
  const ow = Math.floor((w + 2 * pw - kw) / sw) + 1;
  const win = (oy: number, ox: number): Win => {
    const wy = oy * sh - ph;
    const wx = ox * sw - pw;
    const r = { y0: Math.max(wy, 0), y1: Math.min(wy + kh, h), x0: Math.max(wx, 0), x1: Math.min(wx + kw, w), div: 0 };
    r.div = includePad
      ? (Math.min(wy + kh, h + ph) - wy) * (Math.min(wx + kw, w + pw) - wx)
      : (r.y1 - r.y0) * (r.x1 - r.x0);
    return r;
  };
  return { oh, ow, win };
}

function adaptiveRef(shape: number[], oh: number, ow: number) {
  const [h, w] = [shape[2]!, shape[3]!];
  return (oy: number, ox: number): Win => {
    const r = {
      y0: Math.floor((oy * h) / oh),
      y1: Math.ceil(((oy + 1) * h) / oh),
      x0: Math.floor((ox * w) / ow),
      x1: Math.ceil(((ox + 1) * w) / ow),
      div: 0,
    };
    r.div = (r.y1 - r.y0) * (r.x1 - r.x0);
    return r;
  };
}

const sizeOf = (s: number[]) => s.reduce((a, b) => a * b, 1);
/** Distinct values k·0.1 in shuffled order: no two within a finite-difference step (no max ties). */
function distinct(n: number, seed: number): Float64Array {
  const r = randArray(n, seed);
  const order = [...r.keys()].sort((a, b) => r[a]! - r[b]!);
  const out = new Float64Array(n);
  order.forEach((idx, k) => {
    out[idx] = Math.fround(0.1 * (k - n / 2));
  });
  return out;
}

// [shape, options]: stride ≠ kernel, padding 1, odd/even/non-square, ResNet's 3×3/2 pad 1.
// Max-pool backward: a stride above 1 takes the block kernel (one s_h × s_w block of elements per
// invocation: 2×2, 2×1, 3×2 and 1×2 blocks here, and planes of 81 to 400 blocks, more than one
// workgroup); stride 1 the per-element kernel.
const CASES: [number[], Pool2dOptions][] = [
  [[2, 3, 7, 6], { kernelSize: 3, stride: 2, padding: 1 }],
  [[1, 2, 8, 5], { kernelSize: 2 }],
  [[2, 2, 9, 7], { kernelSize: [3, 2], stride: [2, 1], padding: [1, 0] }],
  [[1, 3, 6, 6], { kernelSize: 3, stride: 1, padding: 1 }],
  [[2, 4, 16, 16], { kernelSize: 3, stride: 2, padding: 1 }],
  [[1, 1, 5, 4], { kernelSize: [4, 3], stride: [3, 2] }],
  [[1, 2, 5, 150], { kernelSize: [2, 3], stride: [1, 2], padding: [0, 1] }], // rows wider than a workgroup
  [[1, 2, 6, 7], { kernelSize: 4, stride: 1, padding: 2 }], // 4 windows per axis: the loop (not unrolled) kernels
  [[2, 3, 40, 40], { kernelSize: 2, stride: 2 }], // planes of 1600 (256-lane workgroups)
];

test('maxPool2d forward and argmax-routed backward against float64', async () => {
  let seed = 10;
  for (const [shape, opts] of CASES) {
    const x = distinct(sizeOf(shape), seed++);
    const { oh, ow, win } = windowRef(shape, opts, true);
    const gy = randArray(shape[0]! * shape[1]! * oh * ow, seed++);
    const ref = poolRef(x, shape, oh, ow, win, 'max', gy);
    const xt = tensor(Float32Array.from(x), shape, { requiresGrad: true });
    const y = maxPool2d(xt, opts);
    assert.equal([...y.shape], [shape[0], shape[1], oh, ow], `shape ${JSON.stringify(opts)}`);
    assertClose(await y.toArray(), ref.y, 0, 0, `max [${shape}] ${JSON.stringify(opts)}`);
    const gyt = tensor(Float32Array.from(gy), y.shape);
    const [dx] = grad([y], [xt], { gradOutputs: [gyt] });
    const [kh, kw] = pair(opts.kernelSize, [1, 1]);
    const [sh, sw] = pair(opts.stride, [kh, kw]);
    const overlap = Math.ceil(kh / sh) * Math.ceil(kw / sw); // windows that can share an input element
    assertClose(await dx!.toArray(), ref.dx, 0, 4 * U * overlap, `max grad [${shape}] ${JSON.stringify(opts)}`);
    for (const t of [xt, y, gyt, dx!]) t.dispose();
  }
});

test('maxPool2d ties: the first maximum in row-major window order gets the whole gradient', async () => {
  // Constant input: every window's gradient goes to its first (clipped) element.
  const shape = [1, 2, 5, 6];
  const opts: Pool2dOptions = { kernelSize: 3, stride: 2, padding: 1 };
  const { oh, ow, win } = windowRef(shape, opts, true);
  const ones = new Float64Array(sizeOf(shape)).fill(1);
  const gy = Float64Array.from({ length: 2 * oh * ow }, (_, i) => i + 1);
  const ref = poolRef(ones, shape, oh, ow, win, 'max', gy);
  for (let run = 0; run < 2; run++) {
    const xt = tensor(Float32Array.from(ones), shape, { requiresGrad: true });
    const y = maxPool2d(xt, opts);
    const gyt = tensor(Float32Array.from(gy), y.shape);
    const [dx] = grad([y], [xt], { gradOutputs: [gyt] });
    assert.equal([...(await dx!.toArray())], [...ref.dx], `constant input, run ${run}`);
    for (const t of [xt, y, gyt, dx!]) t.dispose();
  }
  // Two 2×2 windows, each with two equal maxima. Window 1 = {0, 5 @1, 5 @4, 3}: index 1 first.
  // Window 2 = {1, 2, 4 @6, 4 @7}: index 6. The tie goes by window order, not by value position.
  const g = tensor([10, 20], [1, 1, 1, 2]);
  const xt = tensor([0, 5, 1, 2, 5, 3, 4, 4], [1, 1, 2, 4], { requiresGrad: true });
  const y = maxPool2d(xt, { kernelSize: 2 });
  const [dx] = grad([y], [xt], { gradOutputs: [g] });
  assert.equal([...(await y.toArray())], [5, 4]);
  assert.equal([...(await dx!.toArray())], [0, 10, 0, 0, 0, 0, 20, 0]);
  // Window 1 = {7 @0, 1, 7 @4, 0}: index 0. Window 2 = {2, 9 @3, 9 @6, 4}: row 0 comes first, so
  // index 3 wins although index 6 lies in an earlier column.
  const xt2 = tensor([7, 1, 2, 9, 7, 0, 9, 4], [1, 1, 2, 4], { requiresGrad: true });
  const y2 = maxPool2d(xt2, { kernelSize: 2 });
  const [dx2] = grad([y2], [xt2], { gradOutputs: [g] });
  assert.equal([...(await dx2!.toArray())], [10, 0, 0, 20, 0, 0, 0, 0]);
  for (const t of [g, xt, y, dx!, xt2, y2, dx2!]) t.dispose();
});

test('avgPool2d forward and backward against float64 (countIncludePad true and false)', async () => {
  let seed = 40;
  for (const [shape, opts] of CASES)
    for (const includePad of [true, false]) {
      const x = randArray(sizeOf(shape), seed++);
      const { oh, ow, win } = windowRef(shape, opts, includePad);
      const gy = randArray(shape[0]! * shape[1]! * oh * ow, seed++);
      const ref = poolRef(x, shape, oh, ow, win, 'avg', gy);
      const xt = tensor(Float32Array.from(x), shape, { requiresGrad: true });
      const y = avgPool2d(xt, { ...opts, countIncludePad: includePad });
      const what = `avg [${shape}] ${JSON.stringify(opts)} includePad ${includePad}`;
      assertClose(await y.toArray(), ref.y, 0, 64 * U, what);
      const gyt = tensor(Float32Array.from(gy), y.shape);
      const [dx] = grad([y], [xt], { gradOutputs: [gyt] });
      assertClose(await dx!.toArray(), ref.dx, 0, 64 * U, `grad ${what}`);
      for (const t of [xt, y, gyt, dx!]) t.dispose();
    }
});

// Output 1×1 takes the global-average backward kernel (gy[plane] / (H·W)); the others the bin gathers.
test(
  'adaptiveAvgPool2d forward and backward against float64: ' + '1×1, 7×5 → 3×2, upsampling 3×4 → 5×7 and 2×3 → 7×9',
  async () => {
    let seed = 70;
    for (const [shape, out] of [
      [
        [2, 3, 7, 5],
        [1, 1],
      ],
      [
        [2, 3, 7, 5],
        [3, 2],
      ],
      [
        [1, 2, 3, 4],
        [5, 7],
      ],
      [
        [2, 2, 8, 8],
        [4, 4],
      ],
      [
        [1, 2, 6, 9],
        [4, 5],
      ],
      [
        [1, 2, 2, 3],
        [7, 9],
      ],
      [
        [1, 2, 40, 40],
        [3, 3],
      ],
    ] as [number[], P2][]) {
      const x = randArray(sizeOf(shape), seed++);
      const gy = randArray(shape[0]! * shape[1]! * out[0] * out[1], seed++);
      const ref = poolRef(x, shape, out[0], out[1], adaptiveRef(shape, out[0], out[1]), 'avg', gy);
      const xt = tensor(Float32Array.from(x), shape, { requiresGrad: true });
      const y = adaptiveAvgPool2d(xt, out[0] === out[1] ? out[0] : out);
      assert.equal([...y.shape], [shape[0], shape[1], ...out]);
      assertClose(await y.toArray(), ref.y, 0, 64 * U, `adaptive [${shape}] → [${out}]`);
      const gyt = tensor(Float32Array.from(gy), y.shape);
      const [dx] = grad([y], [xt], { gradOutputs: [gyt] });
      assertClose(await dx!.toArray(), ref.dx, 0, 64 * U, `adaptive grad [${shape}] → [${out}]`);
      for (const t of [xt, y, gyt, dx!]) t.dispose();
    }
  },
);

test('gradcheck: max (distinct values), avg (both divisors), adaptive', async () => {
  let seed = 90;
  for (const [shape, opts] of CASES.slice(0, 4)) {
    await check((x) => maxPool2d(x!, opts), [tensor(Float32Array.from(distinct(sizeOf(shape), seed++)), shape)]);
    for (const countIncludePad of [true, false]) {
      await check(
        (x) => avgPool2d(x!, { ...opts, countIncludePad }),
        [tensor(Float32Array.from(randArray(sizeOf(shape), seed++)), shape)],
      );
    }
  }
  for (const out of [1, [3, 2], [4, 6]] as (number | P2)[]) {
    await check(
      (x) => adaptiveAvgPool2d(x!, out),
      [tensor(Float32Array.from(randArray(2 * 2 * 7 * 5, seed++)), [2, 2, 7, 5])],
    );
  }
});

test('bad input is refused before any dispatch, naming the op and shapes', () => {
  const x = tensor(new Float32Array(2 * 3 * 4 * 5), [2, 3, 4, 5]);
  const x3 = tensor(new Float32Array(3 * 4 * 5), [3, 4, 5]);
  rejects(() => maxPool2d(x3, { kernelSize: 2 }), 'maxPool2d', '4-D', '[3, 4, 5]');
  rejects(() => avgPool2d(x3, { kernelSize: 2 }), 'avgPool2d', '4-D', '[3, 4, 5]');
  rejects(() => adaptiveAvgPool2d(x3, 1), 'adaptiveAvgPool2d', '4-D', '[3, 4, 5]');
  rejects(() => maxPool2d(x, { kernelSize: 6 }), 'maxPool2d', 'larger than the padded input', '[2, 3, 4, 5]');
  rejects(
    () => avgPool2d(x, { kernelSize: [3, 8], padding: 1 }),
    'avgPool2d',
    'larger than the padded input',
    '[2, 3, 4, 5]',
  );
  rejects(
    () => maxPool2d(x, { kernelSize: 3, padding: 2 }),
    'maxPool2d',
    'padding [2,2]',
    'at most half',
    '[2, 3, 4, 5]',
  );
  rejects(() => avgPool2d(x, { kernelSize: [2, 4], padding: [1, 3] }), 'avgPool2d', 'at most half');
  rejects(() => maxPool2d(x, { kernelSize: 2, stride: 0 }), 'maxPool2d', 'stride');
  rejects(() => maxPool2d(x, { kernelSize: 1.5 }), 'maxPool2d', 'kernelSize');
  rejects(() => adaptiveAvgPool2d(x, [0, 2]), 'adaptiveAvgPool2d', 'outputSize', '[2, 3, 4, 5]');
  x.dispose();
  x3.dispose();
  rejects(() => maxPool2d(x, { kernelSize: 2 }), 'maxPool2d', 'disposed');
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
