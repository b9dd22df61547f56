// The short-time Fourier transform's magnitude, composed of engine ops: frames (frameSignal),
// then one matmul against a windowed DFT basis, then Re² + Im² (square, sum) and, for the
// magnitude, sqrt. Conventions of torch.stft (and librosa.stft): a periodic Hann window of
// nFft samples; with `center`, nFft/2 samples of padding on each side ('reflect' as torch's
// default, or 'constant' zeros as librosa ≥ 0.10), giving T = 1 + ⌊n/hop⌋ frames; onesided output
// with F = ⌊nFft/2⌋ + 1 bins, shape (F, T) (or (B, F, T) for a batch of signals).
//
// Differentiable through every op. As with sqrt, the gradient of the magnitude at a bin of exactly
// zero magnitude is not finite (PyTorch's abs backward uses 0 there); `power: 2` gives |X|², whose
// gradient is defined everywhere.
import { EngineError } from '../errors.ts';
import { tensor } from '../creation.ts';
import { tidy, type Tensor } from '../tensor.ts';
import { addScalar, frameSignal, log, matmul, reshape, sqrt, square, sum, type PadMode } from '../ops/index.ts';
import { dftMatrix, windowFunction } from './windows.ts';

export interface StftOptions {
  nFft: number;
  /** Samples between frames (default ⌊nFft/4⌋, as torch). */
  hop?: number;
  /** 'hann' (periodic, the default) or 'rectangular' (torch's window=None). */
  window?: 'hann' | 'rectangular';
  /** Pad nFft/2 samples on each side so that frame t is centred on sample t·hop (default true). */
  center?: boolean;
  /** Padding when centred: 'reflect' (default, as torch.stft) or 'constant' (zeros). */
  padMode?: PadMode;
  /** 1: magnitude |X| (default); 2: power |X|². */
  power?: 1 | 2;
}

const bases = new Map<string, Float32Array>();
/** (2F × nFft): the window folded into the DFT rows. */
function stftBasis(nFft: number, window: 'hann' | 'rectangular'): Float32Array {
  const key = `${nFft}|${window}`;
  let b = bases.get(key);
  if (!b) {
    const w = windowFunction(window, nFft);
    const m = dftMatrix(nFft, nFft);
    for (let i = 0; i < m.length; i++) m[i]! *= w[i % nFft]!;
    bases.set(key, (b = Float32Array.from(m)));
  }
  return b;
}

/** |STFT| of a signal (n) → (F, T), or of a batch (B, n) → (B, F, T); see the file header. */
export function stft(signal: Tensor, opts: StftOptions): Tensor {
  const op = 'stft';
  const { nFft } = opts;
  const hop = opts.hop ?? Math.floor(nFft / 4);
  const window = opts.window ?? 'hann';
  const center = opts.center ?? true;
  const power = opts.power ?? 1;
  if (!Number.isInteger(nFft) || nFft < 2) throw new EngineError(`${op}: nFft ${nFft} must be an integer >= 2`);
  if (!Number.isInteger(hop) || hop < 1) throw new EngineError(`${op}: hop ${hop} must be an integer >= 1`);
  if (window !== 'hann' && window !== 'rectangular')
    throw new EngineError(`${op}: window '${String(window)}' is not 'hann' or 'rectangular'`);
  if (power !== 1 && power !== 2) throw new EngineError(`${op}: power ${String(power)} is not 1 or 2`);
  if (signal.rank !== 1 && signal.rank !== 2)
    throw new EngineError(
      `${op}: expected a signal (n) or a batch of signals (B, n), got [${signal.shape.join(', ')}]`,
    );
  const pad = center ? Math.floor(nFft / 2) : 0;
  const bins = Math.floor(nFft / 2) + 1;
  return tidy(() => {
    const frames = frameSignal(signal, {
      frameLength: nFft,
      hop,
      padLeft: pad,
      padRight: pad,
      padMode: opts.padMode ?? 'reflect',
    });
    const basis = tensor(stftBasis(nFft, window), [2 * bins, nFft], { device: signal.device });
    const z = matmul(basis, frames, { transB: true }); // (2F, T) or (B, 2F, T)
    const t = frames.shape[frames.rank - 2]!;
    const lead = signal.rank === 2 ? [signal.shape[0]!] : [];
    const p = sum(reshape(square(z), [...lead, 2, bins, t]), lead.length); // Re² + Im²
    return power === 2 ? p : sqrt(p);
  });
}

/** The OGM-GE recipe's STFT: nFft 512, hop 353, periodic Hann, centred with reflect padding. */
export const OGM_GE_STFT = {
  nFft: 512,
  hop: 353,
  window: 'hann',
  center: true,
  padMode: 'reflect',
} as const satisfies StftOptions;

/**
 * log(|STFT| + 1e-7) with OGM-GE's settings (the CREMA-D baselines' spectrogram): 257 × 188 for
 * 3 s at 22,050 Hz (66,150 samples). (n) → (257, T) or (B, n) → (B, 257, T).
 */
export function ogmGeSpectrogram(signal: Tensor): Tensor {
  return tidy(() => log(addScalar(stft(signal, OGM_GE_STFT), 1e-7)));
}
