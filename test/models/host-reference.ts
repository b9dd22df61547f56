// Float64 host references for the model tests (NCHW, torch semantics): convolution, max pooling,
// batchnorm, linear, and the whole CG-MNIST encoder (cgReference).
import type { Tensor } from '../../engine/index.ts';
import type { CGEncoder } from '../../models/cg-encoder.ts';

export const host = async (t: Tensor) => Float64Array.from(await t.toArray());
export type Arr = Float64Array;
export type Shape4 = [number, number, number, number];

export function conv(
  x: Arr,
  [n, c, h, w]: Shape4,
  wt: Arr,
  o: number,
  k: number,
  b: Arr,
  stride: number,
  pad: number,
): [Arr, Shape4] {
  const oh = Math.floor((h + 2 * pad - k) / stride) + 1;
  const ow = Math.floor((w + 2 * pad - k) / stride) + 1;
  const y = new Float64Array(n * o * oh * ow);
  for (let ni = 0; ni < n; ni++)
    for (let oi = 0; oi < o; oi++)
      for (let yi = 0; yi < oh; yi++)
        for (let xi = 0; xi < ow; xi++) {
          let s = b[oi]!;
          for (let ci = 0; ci < c; ci++)
            for (let ky = 0; ky < k; ky++)
              for (let kx = 0; kx < k; kx++) {
                const iy = yi * stride - pad + ky;
                const ix = xi * stride - pad + kx;
                if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                  s += x[((ni * c + ci) * h + iy) * w + ix]! * wt[((oi * c + ci) * k + ky) * k + kx]!;
              }
          y[((ni * o + oi) * oh + yi) * ow + xi] = s;
        }
  return [y, [n, o, oh, ow]];
}
export const reluH = (x: Arr): Arr => x.map((v) => Math.max(0, v));
export function maxPool(x: Arr, [n, c, h, w]: Shape4, k: number, stride: number, pad: number): [Arr, Shape4] {
  const oh = Math.floor((h + 2 * pad - k) / stride) + 1;
  const ow = Math.floor((w + 2 * pad - k) / stride) + 1;
  const y = new Float64Array(n * c * oh * ow);
  for (let p = 0; p < n * c; p++)
    for (let yi = 0; yi < oh; yi++)
      for (let xi = 0; xi < ow; xi++) {
        let m = -Infinity;
        for (let ky = 0; ky < k; ky++)
          for (let kx = 0; kx < k; kx++) {
            const iy = yi * stride - pad + ky;
            const ix = xi * stride - pad + kx;
            if (iy >= 0 && iy < h && ix >= 0 && ix < w) m = Math.max(m, x[(p * h + iy) * w + ix]!);
          }
        y[(p * oh + yi) * ow + xi] = m;
      }
  return [y, [n, c, oh, ow]];
}
/** Batchnorm with the given per-channel mean/var (training: the batch's, biased variance). */
export function batchNorm(x: Arr, [n, c, h, w]: Shape4, g: Arr, b: Arr, stats?: [Arr, Arr]): Arr {
  const hw = h * w;
  const y = new Float64Array(x.length);
  for (let ci = 0; ci < c; ci++) {
    let mean = 0;
    let v = 0;
    if (stats) [mean, v] = [stats[0][ci]!, stats[1][ci]!];
    else {
      for (let ni = 0; ni < n; ni++) for (let i = 0; i < hw; i++) mean += x[(ni * c + ci) * hw + i]!;
      mean /= n * hw;
      for (let ni = 0; ni < n; ni++) for (let i = 0; i < hw; i++) v += (x[(ni * c + ci) * hw + i]! - mean) ** 2;
      v /= n * hw;
    }
    for (let ni = 0; ni < n; ni++)
      for (let i = 0; i < hw; i++) {
        const j = (ni * c + ci) * hw + i;
        y[j] = ((x[j]! - mean) / Math.sqrt(v + 1e-5)) * g[ci]! + b[ci]!;
      }
  }
  return y;
}
/** x (n, i) · wᵀ + b with w (o, i). */
export function linearH(x: Arr, n: number, i: number, w: Arr, o: number, b: Arr): Arr {
  const y = new Float64Array(n * o);
  for (let r = 0; r < n; r++)
    for (let c = 0; c < o; c++) {
      let s = b[c]!;
      for (let k = 0; k < i; k++) s += x[r * i + k]! * w[c * i + k]!;
      y[r * o + c] = s;
    }
  return y;
}
export async function cgReference(e: CGEncoder, x: Arr, shape: Shape4, stats?: [Arr, Arr]): Promise<Arr> {
  const sd = e.stateDict();
  const p = (k: string) => host(sd.get(k)!);
  let h = batchNorm(x, shape, await p('bn0.weight'), await p('bn0.bias'), stats);
  let s = shape;
  [h, s] = conv(h, s, await p('conv1.weight'), 32, 5, await p('conv1.bias'), 1, 2);
  [h, s] = maxPool(reluH(h), s, 3, 2, 1);
  [h, s] = conv(h, s, await p('conv2.weight'), 32, 3, await p('conv2.bias'), 1, 1);
  [h, s] = conv(reluH(h), s, await p('conv3.weight'), 64, 3, await p('conv3.bias'), 2, 1);
  [h, s] = conv(reluH(h), s, await p('conv4.weight'), 64, 3, await p('conv4.bias'), 1, 1);
  h = reluH(h);
  const [n, c, hh, ww] = s;
  const pooled = new Float64Array(n * c);
  for (let q = 0; q < n * c; q++)
    for (let i = 0; i < hh * ww; i++) pooled[q] = pooled[q]! + h[q * hh * ww + i]! / (hh * ww);
  return linearH(pooled, n, 64, await p('fc.weight'), 512, await p('fc.bias'));
}
