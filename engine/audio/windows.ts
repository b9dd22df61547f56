// Window functions (float64), in torch's and Kaldi's conventions:
// - periodic Hann (torch.hann_window's default, used by torch.stft and librosa): 0.5 − 0.5·cos(2πk/N);
// - symmetric Hann (Kaldi's 'hanning', torch.hann_window(periodic=False)): 0.5 − 0.5·cos(2πk/(N − 1));
// - Kaldi's 'povey': the symmetric Hann to the power 0.85 (zero at both ends);
// - Kaldi's 'hamming': 0.54 − 0.46·cos(2πk/(N − 1)); 'rectangular': ones.
// A window of length 1 is [1], as torch's.
export type WindowName = 'hann' | 'hanning' | 'povey' | 'hamming' | 'rectangular';

export function windowFunction(name: WindowName, n: number): Float64Array {
  const w = new Float64Array(n);
  if (n === 1) return w.fill(1);
  for (let k = 0; k < n; k++) {
    const sym = (2 * Math.PI * k) / (n - 1);
    switch (name) {
      case 'hann':
        w[k] = 0.5 - 0.5 * Math.cos((2 * Math.PI * k) / n);
        break;
      case 'hanning':
        w[k] = 0.5 - 0.5 * Math.cos(sym);
        break;
      case 'povey':
        w[k] = (0.5 - 0.5 * Math.cos(sym)) ** 0.85;
        break;
      case 'hamming':
        w[k] = 0.54 - 0.46 * Math.cos(sym);
        break;
      case 'rectangular':
        w[k] = 1;
        break;
    }
  }
  return w;
}

/**
 * The real DFT of a frame of `len` samples zero-padded to `nFft`, as a (2F × len) matrix with
 * F = ⌊nFft/2⌋ + 1: rows 0…F−1 give Re X_f = Σ_k x_k cos(2πfk/nFft), rows F…2F−1 give
 * Im X_f = −Σ_k x_k sin(2πfk/nFft). Angles are reduced exactly ((f·k) mod nFft) before the cosine.
 */
export function dftMatrix(nFft: number, len: number): Float64Array {
  const bins = Math.floor(nFft / 2) + 1;
  const m = new Float64Array(2 * bins * len);
  for (let f = 0; f < bins; f++) {
    for (let k = 0; k < len; k++) {
      const a = (2 * Math.PI * ((f * k) % nFft)) / nFft;
      m[f * len + k] = Math.cos(a);
      m[(bins + f) * len + k] = -Math.sin(a);
    }
  }
  return m;
}
