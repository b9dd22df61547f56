// Log mel filterbank energies as torchaudio.compliance.kaldi.fbank computes them (Kaldi's
// compute-fbank-feats) with dither 0, snip_edges true, use_log_fbank true, and use_energy false
// (so raw_energy and energy_floor, which only shape the energy column, have no effect):
//   frames of W = ⌊sr·frameLengthMs/1000⌋ samples every S = ⌊sr·frameShiftMs/1000⌋ samples, only
//   frames that fit (T = 1 + ⌊(n − W)/S⌋; a signal shorter than W is an error, as in torchaudio);
//   per frame: subtract its mean (removeDcOffset), pre-emphasis x_j −= c·x_{j−1} (x_{−1} := x_0),
//   the window (Kaldi's symmetric 'hanning', 'povey' = hanning^0.85, 'hamming' or 'rectangular'),
//   zero-padding to the next power of two N, the power spectrum |rfft|² (or the magnitude);
//   mel energies through Kaldi's triangular filters, equally spaced on mel = 1127·ln(1 + f/700)
//   between lowFreq and highFreq (≤ 0: offset from Nyquist), over bins 0…N/2 − 1 (the Nyquist
//   bin gets weight 0); log(max(E, ε)) with ε = 2⁻²³ (float32 epsilon).
// Output (T, nMels), or (B, T, nMels) for a batch of signals (B, n).
//
// Composition: mean removal, pre-emphasis and the window are one linear map A of each frame,
// and the DFT another, C; the host folds them in float64 into one (W × 2F) matrix (C·A)ᵀ, so a
// frame's spectrum is one matmul row. Then Re² + Im², a matmul with the filterbank, and
// log(relu(E − ε) + ε) for the floor (within one rounding of max(E, ε)). Differentiable.
import { EngineError } from '../errors.ts';
import { tensor } from '../creation.ts';
import { tidy, type Tensor } from '../tensor.ts';
import { addScalar, frameSignal, log, matmul, relu, reshape, sqrt, square, sum } from '../ops/index.ts';
import { dftMatrix, windowFunction } from './windows.ts';

export interface KaldiFbankOptions {
  sampleRate: number;
  /** Mel bins (default 23, torchaudio's; most audio-visual recipes use 128). */
  nMels?: number;
  frameLengthMs?: number;
  frameShiftMs?: number;
  /** Pre-emphasis coefficient in [0, 1] (default 0.97). */
  preemphasis?: number;
  removeDcOffset?: boolean;
  /** Default 'povey' (Kaldi's); AST-style recipes use 'hanning'. */
  window?: 'hanning' | 'povey' | 'hamming' | 'rectangular';
  /** Hz (default 20). */
  lowFreq?: number;
  /** Hz; ≤ 0 means that far below Nyquist (default 0 = Nyquist). */
  highFreq?: number;
  /** Zero-pad each frame to a power of two (default true). */
  roundToPowerOfTwo?: boolean;
  /** Power spectrum (default true) or magnitude. */
  usePower?: boolean;
}

/** float32 machine epsilon: Kaldi's floor before the log. */
export const KALDI_EPSILON = 2 ** -23;

/** The frame geometry of a Kaldi recipe: window W, shift S, FFT size N (torchaudio's integer rounding). */
export function kaldiFrameGeometry(
  sampleRate: number,
  frameLengthMs = 25,
  frameShiftMs = 10,
  roundToPowerOfTwo = true,
): { window: number; shift: number; nFft: number } {
  const window = Math.trunc(sampleRate * frameLengthMs * 0.001);
  const shift = Math.trunc(sampleRate * frameShiftMs * 0.001);
  const nFft = roundToPowerOfTwo ? 2 ** Math.ceil(Math.log2(Math.max(1, window))) : window;
  return { window, shift, nFft };
}

const melScale = (f: number) => 1127 * Math.log(1 + f / 700);

/** Kaldi's mel filterbank as an (F × nMels) matrix, F = nFft/2 + 1 (the Nyquist row is 0). */
export function kaldiMelBanks(
  nMels: number,
  nFft: number,
  sampleRate: number,
  lowFreq: number,
  highFreq: number,
): Float64Array {
  const nyquist = sampleRate / 2;
  const high = highFreq <= 0 ? highFreq + nyquist : highFreq;
  if (!(nMels > 3 && Number.isInteger(nMels)))
    throw new EngineError(`kaldiFbank: nMels ${nMels} must be an integer > 3`);
  if (!(lowFreq >= 0 && lowFreq < nyquist && high > 0 && high <= nyquist && lowFreq < high)) {
    throw new EngineError(
      `kaldiFbank: lowFreq ${lowFreq} and highFreq ${highFreq} (${high} Hz) must satisfy 0 <= low < high <= ` +
        `Nyquist (${nyquist} Hz)`,
    );
  }
  const bins = nFft / 2 + 1;
  const binWidth = sampleRate / nFft;
  const mLow = melScale(lowFreq);
  const delta = (melScale(high) - mLow) / (nMels + 1);
  const out = new Float64Array(bins * nMels);
  for (let m = 0; m < nMels; m++) {
    const left = mLow + m * delta;
    const centre = mLow + (m + 1) * delta;
    const right = mLow + (m + 2) * delta;
    for (let f = 0; f < bins - 1; f++) {
      const mel = melScale(binWidth * f);
      const w = Math.min((mel - left) / (centre - left), (right - mel) / (right - centre));
      out[f * nMels + m] = Math.max(0, w);
    }
  }
  return out;
}

/** (W × 2F): frame ↦ [Re X ; Im X] after mean removal, pre-emphasis and the window, folded. */
function frameBasis(
  w: number,
  nFft: number,
  window: NonNullable<KaldiFbankOptions['window']>,
  preemph: number,
  removeDc: boolean,
): Float32Array {
  const win = windowFunction(window, w);
  const c = dftMatrix(nFft, w); // (2F × W): only the first W samples are non-zero after padding
  const rows = c.length / w;
  const out = new Float32Array(w * rows);
  const row = new Float64Array(w);
  for (let j = 0; j < rows; j++) {
    // Row j of C·diag(win)·P·D, where P is pre-emphasis and D the mean removal.
    for (let k = 0; k < w; k++) {
      const cw = (i: number) => c[j * w + i]! * win[i]!;
      row[k] = cw(k) * (k === 0 ? 1 - preemph : 1) - (k + 1 < w ? preemph * cw(k + 1) : 0);
    }
    if (removeDc) {
      let mean = 0;
      for (let k = 0; k < w; k++) mean += row[k]!;
      mean /= w;
      for (let k = 0; k < w; k++) row[k]! -= mean;
    }
    for (let k = 0; k < w; k++) out[k * rows + j] = row[k]!;
  }
  return out;
}

const cache = new Map<string, Float32Array>();
function cached(key: string, build: () => Float32Array): Float32Array {
  let v = cache.get(key);
  if (!v) cache.set(key, (v = build()));
  return v;
}

/** Log mel filterbank energies of a signal (n) → (T, nMels), or of a batch (B, n) → (B, T, nMels). */
export function kaldiFbank(signal: Tensor, opts: KaldiFbankOptions): Tensor {
  const op = 'kaldiFbank';
  const sr = opts.sampleRate;
  const nMels = opts.nMels ?? 23;
  const preemph = opts.preemphasis ?? 0.97;
  const removeDc = opts.removeDcOffset ?? true;
  const window = opts.window ?? 'povey';
  const usePower = opts.usePower ?? true;
  if (!(sr > 0 && Number.isFinite(sr))) throw new EngineError(`${op}: sampleRate ${sr} must be a positive number`);
  if (!(preemph >= 0 && preemph <= 1)) throw new EngineError(`${op}: preemphasis ${preemph} must be in [0, 1]`);
  if (!['hanning', 'povey', 'hamming', 'rectangular'].includes(window))
    throw new EngineError(`${op}: window '${String(window)}' is not 'hanning', 'povey', 'hamming' or 'rectangular'`);
  if (signal.rank !== 1 && signal.rank !== 2)
    throw new EngineError(
      `${op}: expected a signal (n) or a batch of signals (B, n), got [${signal.shape.join(', ')}]`,
    );
  const g = kaldiFrameGeometry(sr, opts.frameLengthMs, opts.frameShiftMs, opts.roundToPowerOfTwo ?? true);
  if (g.window < 2 || g.shift < 1)
    throw new EngineError(
      `${op}: frameLengthMs/frameShiftMs give a window of ${g.window} and a shift of ${g.shift} samples at ${sr} ` +
        `Hz (need >= 2 and >= 1)`,
    );
  if (g.nFft % 2 !== 0)
    throw new EngineError(`${op}: the FFT size ${g.nFft} must be even; use roundToPowerOfTwo or change frameLengthMs`);
  const n = signal.shape[signal.rank - 1]!;
  if (n < g.window)
    throw new EngineError(
      `${op}: the signal has ${n} samples, fewer than one ${g.window}-sample window (${opts.frameLengthMs ?? 25} ` +
        `ms at ${sr} Hz); pad or repeat it first`,
    );
  const lowFreq = opts.lowFreq ?? 20;
  const highFreq = opts.highFreq ?? 0;
  const bins = g.nFft / 2 + 1;
  const basis = cached(`basis|${g.window}|${g.nFft}|${window}|${preemph}|${removeDc}`, () =>
    frameBasis(g.window, g.nFft, window, preemph, removeDc),
  );
  const mel = cached(`mel|${nMels}|${g.nFft}|${sr}|${lowFreq}|${highFreq}`, () =>
    Float32Array.from(kaldiMelBanks(nMels, g.nFft, sr, lowFreq, highFreq)),
  );
  return tidy(() => {
    const frames = frameSignal(signal, { frameLength: g.window, hop: g.shift }); // (…, T, W)
    const z = matmul(frames, tensor(basis, [g.window, 2 * bins], { device: signal.device })); // (…, T, 2F)
    const t = frames.shape[frames.rank - 2]!;
    const lead = signal.rank === 2 ? [signal.shape[0]!, t] : [t];
    const p = sum(reshape(square(z), [...lead, 2, bins]), lead.length); // Re² + Im²
    const spectrum = usePower ? p : sqrt(p);
    const energies = matmul(spectrum, tensor(mel, [bins, nMels], { device: signal.device }));
    return log(addScalar(relu(addScalar(energies, -KALDI_EPSILON)), KALDI_EPSILON));
  });
}
