// float64 references for the spectrogram ops, written step by step from torch.stft's and
// torchaudio.compliance.kaldi.fbank's definitions (independently of engine/audio, which folds
// the steps into matrices), plus per-element bounds on the float32 error of the GPU's result.
// u = 2⁻²⁴. A float32 dot product of m terms Σ a_k·b_k with b_k rounded once from float64 errs by
// at most (m + 1)·u·Σ|a_k·b_k| (recursive-summation bound; the tiled kernel sums in blocks, which
// only lowers it). WGSL's log errs by at most 2⁻²¹ absolute on [0.5, 2] and 3 ULP elsewhere.
export const U = 2 ** -24;
const LOG_ABS = 2 ** -21;

export function pad(x: Float64Array, left: number, right: number, mode: 'reflect' | 'constant'): Float64Array {
  const n = x.length;
  const out = new Float64Array(n + left + right);
  for (let q = 0; q < out.length; q++) {
    let p = q - left;
    if (p >= 0 && p < n) out[q] = x[p]!;
    else if (mode === 'reflect') {
      if (p < 0) p = -p;
      if (p >= n) p = 2 * (n - 1) - p;
      out[q] = x[p]!;
    }
  }
  return out;
}

/** Frames (T × L) of an already padded signal. */
export function frames(x: Float64Array, len: number, hop: number): Float64Array[] {
  const out: Float64Array[] = [];
  for (let t = 0; t * hop + len <= x.length; t++) out.push(x.slice(t * hop, t * hop + len));
  return out;
}

/** Direct DFT of a frame zero-padded to nFft: [re, im] per bin 0…⌊nFft/2⌋. */
function dft(frame: Float64Array, nFft: number): [Float64Array, Float64Array] {
  const bins = Math.floor(nFft / 2) + 1;
  const re = new Float64Array(bins);
  const im = new Float64Array(bins);
  for (let f = 0; f < bins; f++) {
    let a = 0;
    let b = 0;
    for (let k = 0; k < frame.length; k++) {
      const ang = (2 * Math.PI * ((f * k) % nFft)) / nFft;
      a += frame[k]! * Math.cos(ang);
      b -= frame[k]! * Math.sin(ang);
    }
    re[f] = a;
    im[f] = b;
  }
  return [re, im];
}

export interface StftRef {
  bins: number;
  frames: number;
  /** |X| as (F × T), row-major. */
  mag: Float64Array;
  /** Per element: a bound on |GPU − mag|. */
  bound: Float64Array;
}

/** torch.stft(x, nFft, hop, window=hann_window(nFft) (periodic), center, pad_mode).abs(). */
export function stftRef(x: Float64Array, nFft: number, hop: number, center: boolean, mode: 'reflect' | 'constant'): StftRef {
  const w = Float64Array.from({ length: nFft }, (_, k) => 0.5 - 0.5 * Math.cos((2 * Math.PI * k) / nFft));
  const p = center ? pad(x, nFft / 2, nFft / 2, mode) : x;
  const fr = frames(p, nFft, hop);
  const bins = nFft / 2 + 1;
  const mag = new Float64Array(bins * fr.length);
  const bound = new Float64Array(mag.length);
  fr.forEach((f, t) => {
    const wf = f.map((v, k) => v * w[k]!);
    const s = wf.reduce((a, v) => a + Math.abs(v), 0);
    const [re, im] = dft(wf, nFft);
    for (let b = 0; b < bins; b++) {
      const m = Math.hypot(re[b]!, im[b]!);
      mag[b * fr.length + t] = m;
      // Re and Im each err by (nFft + 1)·u·s; squaring, adding and sqrt add ~4 roundings of |X|.
      bound[b * fr.length + t] = 2 * (nFft + 1) * U * s + 4 * U * m;
    }
  });
  return { bins, frames: fr.length, mag, bound };
}

/** A bound on |log(a') − log(a)| given |a' − a| ≤ da and a float32 log of the result. */
export function logBound(a: number, da: number, floor: number): number {
  const lo = Math.max(a - da, floor);
  return da / lo + LOG_ABS + 3 * 2 * U * Math.abs(Math.log(a));
}

export interface FbankRefOptions {
  sampleRate: number;
  nMels: number;
  frameLengthMs: number;
  frameShiftMs: number;
  preemphasis: number;
  removeDcOffset: boolean;
  window: 'hanning' | 'povey';
}

/** torchaudio.compliance.kaldi.fbank(x[None], dither=0, …): (T × nMels) log energies and bounds. */
export function fbankRef(x: Float64Array, o: FbankRefOptions): { frames: number; out: Float64Array; bound: Float64Array } {
  const W = Math.trunc(o.sampleRate * o.frameLengthMs * 0.001);
  const S = Math.trunc(o.sampleRate * o.frameShiftMs * 0.001);
  let N = 1;
  while (N < W) N *= 2;
  const win = Float64Array.from({ length: W }, (_, k) => {
    const h = 0.5 - 0.5 * Math.cos((2 * Math.PI * k) / (W - 1));
    return o.window === 'povey' ? h ** 0.85 : h;
  });
  // Mel banks (num_bins × N/2), then a zero Nyquist column.
  const mel = (f: number) => 1127 * Math.log(1 + f / 700);
  const lo = mel(20);
  const hi = mel(o.sampleRate / 2);
  const d = (hi - lo) / (o.nMels + 1);
  const F = N / 2 + 1;
  const banks = Array.from({ length: o.nMels }, (_, m) => Float64Array.from({ length: F }, (_, f) => {
    if (f === F - 1) return 0;
    const v = mel((o.sampleRate / N) * f);
    const up = (v - (lo + m * d)) / d;
    const down = (lo + (m + 2) * d - v) / d;
    return Math.max(0, Math.min(up, down));
  }));
  const fr = frames(x, W, S);
  const out = new Float64Array(fr.length * o.nMels);
  const bound = new Float64Array(out.length);
  fr.forEach((f0, t) => {
    let f = Float64Array.from(f0);
    if (o.removeDcOffset) {
      const mean = f.reduce((a, v) => a + v, 0) / W;
      f = f.map((v) => v - mean);
    }
    const pre = f.map((v, j) => v - o.preemphasis * f[Math.max(0, j - 1)]!);
    const g = pre.map((v, k) => v * win[k]!);
    const [re, im] = dft(g, N);
    const power = re.map((r, b) => r * r + im[b]! * im[b]!);
    // The GPU's spectrum: Σ_k x_k·M_kf with |M_kf| ≤ 2·(1 + c) (window ≤ 1, pre-emphasis ≤ 1 + c,
    // mean removal at most doubles): Re, Im err by δ = (W + 1)·u·2(1 + c)·Σ|x_k| each.
    const delta = (W + 1) * U * 2 * (1 + o.preemphasis) * f0.reduce((a, v) => a + Math.abs(v), 0);
    for (let m = 0; m < o.nMels; m++) {
      let e = 0;
      let de = 0;
      for (let b = 0; b < F; b++) {
        const wgt = banks[m]![b]!;
        e += wgt * power[b]!;
        de += wgt * (2 * (Math.abs(re[b]!) + Math.abs(im[b]!)) * delta + 2 * delta * delta + 3 * U * power[b]!);
      }
      de += (F + 2) * U * e; // the filterbank matmul (weights rounded once) and the floor's two roundings
      const eps = 2 ** -23;
      out[t * o.nMels + m] = Math.log(Math.max(e, eps));
      bound[t * o.nMels + m] = logBound(Math.max(e, eps), de, eps);
    }
  });
  return { frames: fr.length, out, bound };
}
