// Spectrograms as engine ops (browser-safe): torch.stft's magnitude, OGM-GE's log spectrogram,
// and torchaudio's Kaldi-compatible log mel filterbank.
export { stft, ogmGeSpectrogram, OGM_GE_STFT, type StftOptions } from './stft.ts';
export { kaldiFbank, kaldiFrameGeometry, kaldiMelBanks, KALDI_EPSILON, type KaldiFbankOptions } from './kaldi.ts';
export { windowFunction, dftMatrix, type WindowName } from './windows.ts';
