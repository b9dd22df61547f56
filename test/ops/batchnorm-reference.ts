// The float64 references of batchNorm2d (forward, running statistics, backward) and the
// per-channel geometry for test/ops/batchnorm.test.ts.
import { BATCHNORM_SERIAL_MAX } from '../../shaders/batchnorm.ts';

export const U = 2 ** -24;
export const EPS = 1e-5;

export interface Geo {
  n: number;
  c: number;
  s: number;
}
export const geoOf = (shape: number[]): Geo => ({ n: shape[0]!, c: shape[1]!, s: (shape[2] ?? 1) * (shape[3] ?? 1) });
export const at = (g: Geo, n: number, c: number, s: number) => (n * g.c + c) * g.s + s;
/** Sequential depth of the kernels' per-channel sums (see the header). */
export const depth = (g: Geo) => (g.n * g.s <= BATCHNORM_SERIAL_MAX ? g.n * g.s : Math.ceil((g.n * g.s) / 64) + 68);

/** Per-channel batch mean and biased variance in float64 (two-pass). */
export function channelStats(
  x: Float64Array,
  g: Geo,
): { mean: Float64Array; varB: Float64Array; maxDev: Float64Array } {
  const mean = new Float64Array(g.c);
  const varB = new Float64Array(g.c);
  const maxDev = new Float64Array(g.c);
  const m = g.n * g.s;
  for (let c = 0; c < g.c; c++) {
    let s1 = 0;
    for (let n = 0; n < g.n; n++) for (let s = 0; s < g.s; s++) s1 += x[at(g, n, c, s)]!;
    mean[c] = s1 / m;
    let s2 = 0;
    for (let n = 0; n < g.n; n++)
      for (let s = 0; s < g.s; s++) {
        const d = x[at(g, n, c, s)]! - mean[c]!;
        s2 += d * d;
        maxDev[c] = Math.max(maxDev[c]!, Math.abs(d));
      }
    varB[c] = s2 / m;
  }
  return { mean, varB, maxDev };
}

interface BnRef {
  y: Float64Array;
  atol: Float64Array;
  mean: Float64Array;
  varB: Float64Array;
  invstd: Float64Array;
}

/** float64 batch_norm forward with per-element atol as derived in the header. */
export function bnRef(
  x: Float64Array,
  shape: number[],
  w: Float64Array | null,
  b: Float64Array | null,
  training: boolean,
  rm?: Float64Array,
  rv?: Float64Array,
): BnRef {
  const g = geoOf(shape);
  const st = channelStats(x, g);
  const mean = training ? st.mean : rm!;
  const varB = training ? st.varB : rv!;
  const invstd = varB.map((v) => 1 / Math.sqrt(v + EPS));
  const y = new Float64Array(x.length);
  const atol = new Float64Array(x.length);
  for (let n = 0; n < g.n; n++)
    for (let c = 0; c < g.c; c++) {
      const wc = w ? w[c]! : 1;
      const bc = b ? b[c]! : 0;
      let maxDev = 0;
      for (let s = 0; s < g.s; s++) maxDev = Math.max(maxDev, Math.abs(x[at(g, n, c, s)]! - mean[c]!));
      const tol =
        2 *
          U *
          Math.abs(wc) *
          invstd[c]! *
          (Math.abs(mean[c]!) + (3 * depth(g) + 8) * Math.max(maxDev, st.maxDev[c]!)) +
        8 * U * Math.abs(bc);
      for (let s = 0; s < g.s; s++) {
        const i = at(g, n, c, s);
        y[i] = (x[i]! - mean[c]!) * invstd[c]! * wc + bc;
        atol[i] = tol;
      }
    }
  return { y, atol, mean, varB, invstd };
}

/** float64 backward: dx, dweight, dbias for upstream gy, with the tolerances of the header. */
export function bnGradRef(
  x: Float64Array,
  gy: Float64Array,
  shape: number[],
  w: Float64Array,
  training: boolean,
  rm: Float64Array,
  rv: Float64Array,
) {
  const g = geoOf(shape);
  const ref = bnRef(x, shape, w, null, training, rm, rv);
  const m = g.n * g.s;
  const d = depth(g);
  const dx = new Float64Array(x.length);
  const dxTol = new Float64Array(x.length);
  const dw = new Float64Array(g.c);
  const db = new Float64Array(g.c);
  const dwTol = new Float64Array(g.c);
  const dbTol = new Float64Array(g.c);
  const maxDev = channelStats(x, g).maxDev;
  for (let c = 0; c < g.c; c++) {
    const idx: number[] = [];
    for (let n = 0; n < g.n; n++) for (let s = 0; s < g.s; s++) idx.push(at(g, n, c, s));
    const xhat = (i: number) => (x[i]! - ref.mean[c]!) * ref.invstd[c]!;
    let absG = 0;
    let absGx = 0;
    let maxXhat = 0;
    for (const i of idx) {
      db[c]! += gy[i]!;
      dw[c]! += gy[i]! * xhat(i);
      absG += Math.abs(gy[i]!);
      absGx += Math.abs(gy[i]! * xhat(i));
      maxXhat = Math.max(maxXhat, Math.abs(xhat(i)));
    }
    const k = w[c]! * ref.invstd[c]!;
    const meanErr = U * Math.abs(ref.mean[c]!) + 2 * d * U * maxDev[c]!;
    dbTol[c] = 4 * d * U * absG;
    dwTol[c] = 4 * d * U * absGx + 2 * meanErr * ref.invstd[c]! * Math.abs(db[c]!);
    for (const i of idx) {
      dx[i] = training ? k * (gy[i]! - db[c]! / m - (xhat(i) * dw[c]!) / m) : k * gy[i]!;
      dxTol[i] = 2 * U * Math.abs(k) * (d * (1 + maxXhat ** 2) + 16 * (1 + maxXhat));
    }
  }
  return { dx, dw, db, dxTol, dwTol, dbTol };
}
