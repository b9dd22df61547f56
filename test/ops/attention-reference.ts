// The float64 reference of scaled_dot_product_attention (forward and gradients, with the
// bounds the tests' tolerances are built from) for test/ops/attention.test.ts.

export const U = 2 ** -24;

export interface Case {
  b: number;
  h: number;
  lq: number;
  lk: number;
  d: number;
  dv: number;
  scale?: number;
}

export interface Ref {
  out: Float64Array;
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  /** Largest Σ|terms| of one entry of out, dq, dk, dv (bounds for the tolerances). */
  mOut: number;
  mdq: number;
  mdk: number;
  mdv: number;
  /** max_ij scale·Σ_d |q_id·k_jd|. */
  sAbs: number;
}

/** Broadcasts a mask of shape `ms` (numpy rules) to (B, H, Lq, Lk). */
export function expandMask(m: Float64Array, ms: number[], c: Case): Float64Array {
  const full = [c.b, c.h, c.lq, c.lk];
  const shp = [...Array(4 - ms.length).fill(1), ...ms];
  const st = [0, 0, 0, 0];
  for (let d = 3, acc = 1; d >= 0; d--) {
    st[d] = shp[d] === 1 ? 0 : acc;
    acc *= shp[d]!;
  }
  const out = new Float64Array(c.b * c.h * c.lq * c.lk);
  let n = 0;
  for (let b = 0; b < full[0]!; b++)
    for (let h = 0; h < full[1]!; h++)
      for (let i = 0; i < full[2]!; i++)
        for (let j = 0; j < full[3]!; j++) out[n++] = m[b * st[0]! + h * st[1]! + i * st[2]! + j * st[3]!]!;
  return out;
}

/** float64 reference: forward, and the gradients for the cotangent g of out. All-(−inf) rows give 0. */
export function attnRef(
  c: Case,
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  mask: Float64Array | null,
  g: Float64Array,
): Ref {
  const { b: B, h: H, lq: Lq, lk: Lk, d: D, dv: Dv } = c;
  const scale = c.scale ?? 1 / Math.sqrt(D);
  const out = new Float64Array(B * H * Lq * Dv);
  const dq = new Float64Array(q.length),
    dk = new Float64Array(k.length),
    dv = new Float64Array(v.length);
  const adq = new Float64Array(q.length),
    adk = new Float64Array(k.length),
    adv = new Float64Array(v.length);
  let mOut = 0,
    sAbs = 0;
  for (let bh = 0; bh < B * H; bh++) {
    const Q = (i: number, d: number) => q[(bh * Lq + i) * D + d]!;
    const K = (j: number, d: number) => k[(bh * Lk + j) * D + d]!;
    const V = (j: number, d: number) => v[(bh * Lk + j) * Dv + d]!;
    const G = (i: number, d: number) => g[(bh * Lq + i) * Dv + d]!;
    for (let i = 0; i < Lq; i++) {
      const s = new Float64Array(Lk);
      for (let j = 0; j < Lk; j++) {
        let acc = 0,
          abs = 0;
        for (let d = 0; d < D; d++) {
          acc += Q(i, d) * K(j, d);
          abs += Math.abs(Q(i, d) * K(j, d));
        }
        sAbs = Math.max(sAbs, scale * abs);
        s[j] = acc * scale + (mask ? mask[(bh * Lq + i) * Lk + j]! : 0);
      }
      const m = Math.max(...s);
      if (m === -Infinity) continue; // all masked: out 0, gradients 0
      let l = 0;
      for (let j = 0; j < Lk; j++) l += Math.exp(s[j]! - m);
      const p = s.map((x) => Math.exp(x - m) / l);
      for (let e = 0; e < Dv; e++) {
        let acc = 0,
          abs = 0;
        for (let j = 0; j < Lk; j++) {
          acc += p[j]! * V(j, e);
          abs += Math.abs(p[j]! * V(j, e));
        }
        out[(bh * Lq + i) * Dv + e] = acc;
        mOut = Math.max(mOut, abs);
      }
      // dP_ij = Σ_e g_ie v_je, Δ_i = Σ_j p_ij dP_ij, dS = p ∘ (dP − Δ).
      const dp = new Float64Array(Lk),
        adp = new Float64Array(Lk);
      for (let j = 0; j < Lk; j++)
        for (let e = 0; e < Dv; e++) {
          dp[j] = dp[j]! + G(i, e) * V(j, e);
          adp[j] = adp[j]! + Math.abs(G(i, e) * V(j, e));
        }
      let delta = 0,
        adelta = 0;
      for (let j = 0; j < Lk; j++) {
        delta += p[j]! * dp[j]!;
        adelta += p[j]! * adp[j]!;
      }
      for (let j = 0; j < Lk; j++) {
        const ds = p[j]! * (dp[j]! - delta) * scale;
        const ads = p[j]! * (adp[j]! + adelta) * scale;
        for (let d = 0; d < D; d++) {
          dq[(bh * Lq + i) * D + d] = dq[(bh * Lq + i) * D + d]! + ds * K(j, d);
          adq[(bh * Lq + i) * D + d] = adq[(bh * Lq + i) * D + d]! + ads * Math.abs(K(j, d));
          dk[(bh * Lk + j) * D + d] = dk[(bh * Lk + j) * D + d]! + ds * Q(i, d);
          adk[(bh * Lk + j) * D + d] = adk[(bh * Lk + j) * D + d]! + ads * Math.abs(Q(i, d));
        }
        for (let e = 0; e < Dv; e++) {
          dv[(bh * Lk + j) * Dv + e] = dv[(bh * Lk + j) * Dv + e]! + p[j]! * G(i, e);
          adv[(bh * Lk + j) * Dv + e] = adv[(bh * Lk + j) * Dv + e]! + p[j]! * Math.abs(G(i, e));
        }
      }
    }
  }
  const mx = (a: Float64Array) => a.reduce((x, y) => Math.max(x, y), 0);
  return { out, dq, dk, dv, mOut, mdq: mx(adq), mdk: mx(adk), mdv: mx(adv), sAbs };
}
