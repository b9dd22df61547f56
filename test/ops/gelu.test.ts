// gelu (exact erf form and tanh approximation): forward and backward against float64 references
// over [−6, 6] (scalar and vec4 kernels), the large-|x| limits (→ x and → 0, never NaN),
// gradcheck, bad input, no leaks.
//
// Tolerances (u = 2^-24), per element, from the kernel's error budget (shaders/gelu.ts):
//  - exact: erfc is Abramowitz–Stegun 7.1.26, absolute error ≤ 1.5e-7; its float32 evaluation
//    (t, a degree-5 Horner polynomial, exp(−z²) with z² rounded: (3 + 2z² + z²)·u relative on a
//    factor ≤ 1) adds ≤ 16u + 3z²·u·erfc(z). So Φ is within 7.5e-8 + 8u + 1.5z²·u·Φ(−|x|), and
//    gelu = x·Φ within |x|·(7.5e-8 + 8u + 1.5z²·u·Φ(−|x|)) + 2u·|gelu|.
//    Backward adds x·φ(x), whose exp has (4 + 2x²)·u relative error: |Δ| ≤ |g|·(7.5e-8 + 16u +
//    (4 + 2x²)·u·|x·φ| + 1.5z²·u·Φ(−|x|)) + 4u·|dx|.
//  - tanh: a = √(2/π)(x + 0.044715x³) carries ≤ 6u·|a| relative error; σ(2a) from e^(−2|a|) has
//    relative error ≤ (2|a|·6u + (3 + 4|a|)·u + 4u) ≤ (8 + 16|a|)·u, and so has 1 − σ; y = x·σ(2a)
//    within (9 + 16|a|)·u·|y|. Backward: every term within 2·(8 + 16|a|)·u + 8u relative, summed
//    over |s| + |2x·s(1 − s)·a'|.
// A wrong form (tanh vs erf differ by up to 4.7e-4) or a wrong derivative is far outside these.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { check, randTensor, throwsWith } from '../helpers.ts';
import { gelu, grad, tensor, liveTensors } from '../../engine/index.ts';

const test = suite('gelu');
let live0 = 0;
test.before(() => void (live0 = liveTensors.count));

const U = 2 ** -24;
const SQRT2 = Math.SQRT2;
const K = Math.sqrt(2 / Math.PI);

/**
 * erfc(z) in float64 for z >= 0: Maclaurin series of erf below 2 (terms ≤ e^4: ~1e-15 absolute), Lentz continued
 * fraction above.
 */
function erfc64(z: number): number {
  if (z < 2) {
    let term = z;
    let sum = z;
    for (let n = 1; n < 80; n++) {
      term *= (-z * z) / n;
      sum += term / (2 * n + 1);
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(z) = e^(−z²)/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + ...))))
  let f = z;
  let c = z;
  let d = 0;
  for (let k = 1; k < 300; k++) {
    const a = k / 2;
    d = z + a * d;
    d = 1 / d;
    c = z + a / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
}
/** Φ(x) = ½·erfc(−x/√2), with no cancellation on either side. */
const phi64 = (x: number) => (x >= 0 ? 1 - 0.5 * erfc64(x / SQRT2) : 0.5 * erfc64(-x / SQRT2));
const pdf64 = (x: number) => Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);

function refExact(x: number): [number, number] {
  return [x * phi64(x), phi64(x) + x * pdf64(x)];
}
function refTanh(x: number): [number, number] {
  const a = K * (x + 0.044715 * x ** 3);
  const t = Math.tanh(a);
  return [0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * K * (1 + 3 * 0.044715 * x * x)];
}

/** Per-element tolerances [forward, backward/|g|] of the header. */
function tolExact(x: number, y: number, dy: number): [number, number] {
  const z2 = (x * x) / 2;
  const tail = 1.5 * z2 * U * phi64(-Math.abs(x));
  return [
    Math.abs(x) * (7.5e-8 + 8 * U + tail) + 2 * U * Math.abs(y),
    7.5e-8 + 16 * U + (4 + 2 * x * x) * U * Math.abs(x * pdf64(x)) + tail + 4 * U * Math.abs(dy),
  ];
}
function tolTanh(x: number, y: number): [number, number] {
  const a = Math.abs(K * (x + 0.044715 * x ** 3));
  const s = 0.5 * (1 + Math.tanh(a));
  const ap = K * (1 + 3 * 0.044715 * x * x);
  return [(9 + 16 * a) * U * Math.abs(y), (2 * (8 + 16 * a) + 8) * U * (s + Math.abs(2 * x * s * (1 - s) * ap))];
}

function assertWithin(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: ArrayLike<number>,
  what: string,
): void {
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i]! - expected[i]!);
    if (!(err <= tol[i]!))
      assert.unreachable(
        `${what}: element ${i}: got ${actual[i]}, expected ${expected[i]} (|err| ${err} > tol ${tol[i]})`,
      );
  }
}

async function compare(approximate: 'none' | 'tanh', xs: Float64Array, gs: Float64Array, what: string): Promise<void> {
  const x = tensor(Float32Array.from(xs), [xs.length], { requiresGrad: true });
  const g = tensor(Float32Array.from(gs), [xs.length]);
  const y = gelu(x, { approximate });
  const [dx] = grad([y], [x], { gradOutputs: [g] });
  const ref = Array.from(xs, (v) => (approximate === 'none' ? refExact(v) : refTanh(v)));
  const tols = Array.from(xs, (v, i) =>
    approximate === 'none' ? tolExact(v, ref[i]![0], ref[i]![1]) : tolTanh(v, ref[i]![0]),
  );
  assertWithin(
    await y.toArray(),
    ref.map((r) => r[0]),
    tols.map((t) => t[0]),
    `${what}: forward`,
  );
  assertWithin(
    await dx!.toArray(),
    ref.map((r, i) => r[1] * gs[i]!),
    tols.map((t, i) => t[1] * Math.abs(gs[i]!)),
    `${what}: backward`,
  );
  for (const t of [x, g, y, dx!]) t.dispose();
}

test('both forms over [−6, 6] against float64 (scalar and vec4 kernels)', async () => {
  for (const n of [1201, 1200]) {
    const xs = Float64Array.from(Float32Array.from({ length: n }, (_, i) => -6 + (12 * i) / (n - 1)));
    const gs = Float64Array.from(Float32Array.from({ length: n }, (_, i) => 0.5 + Math.sin(i)));
    for (const approximate of ['none', 'tanh'] as const) await compare(approximate, xs, gs, `${approximate}, n=${n}`);
  }
});

test('large |x|: gelu → x and → 0, derivative → 1 and → 0, never NaN', async () => {
  const xs = [8, 10, 30, 1e4, 1e10, -8, -10, -30, -1e4, -1e10];
  for (const approximate of ['none', 'tanh'] as const) {
    const x = tensor(xs, [xs.length], { requiresGrad: true });
    const y = gelu(x, { approximate });
    const ones = tensor(new Float32Array(xs.length).fill(1), [xs.length]);
    const [dx] = grad([y], [x], { gradOutputs: [ones] });
    const yv = await y.toArray();
    const dv = await dx!.toArray();
    for (let i = 0; i < xs.length; i++) {
      const what = `${approximate}: x = ${xs[i]}`;
      if (xs[i]! > 0) {
        assert.is(yv[i], xs[i], `${what}: gelu(x) = x`);
        assert.is(dv[i], 1, `${what}: gelu'(x) = 1`);
      } else {
        // Exact values are below 1e-14 (Φ(−8) = 6e-16); erf 7.1.26's tail and float32 underflow give ≤ |x|·1e-15.
        assert.ok(Math.abs(yv[i]!) <= Math.abs(xs[i]!) * 1e-15, `${what}: |gelu(x)| = ${yv[i]} ≈ 0`);
        assert.ok(Math.abs(dv[i]!) <= 1e-12, `${what}: gelu'(x) = ${dv[i]} ≈ 0`);
      }
    }
    for (const t of [x, ones, y, dx!]) t.dispose();
  }
});

test('gradcheck (both forms, scalar and vec4 sizes)', async () => {
  let seed = 600;
  for (const approximate of ['none', 'tanh'] as const)
    for (const shape of [[7], [2, 4]])
      await check((x) => gelu(x!, { approximate }), [randTensor(shape, seed++, -3, 3)[0]]);
});

test('bad input', () => {
  const x = tensor([1, 2], [2]);
  const n = liveTensors.count;
  throwsWith(() => gelu(x, { approximate: 'erf' as 'none' }), 'gelu', "'erf'", '[2]');
  assert.is(liveTensors.count, n, 'nothing allocated');
  x.dispose();
  throwsWith(() => gelu(x), 'gelu', 'disposed');
});

test('no tensor leaked by this file', () => {
  assert.is(liveTensors.count, live0);
});

test.run();
