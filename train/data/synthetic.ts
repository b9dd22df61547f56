// A tiny synthetic audio-visual set, generated deterministically from a seed, for tests and
// smoke runs that must finish in seconds. Each item has
// - `audio`: a 1×16×16 "spectrogram" (frequency × time): a class-specific frequency band whose
//   energy pulses at a class-specific rate, with a random per-item phase and band shift;
// - `visual`: a 3×16×16 "frame": a Gaussian blob of a class-specific colour at a class-specific
//   position on a circle, with per-item position jitter;
// each plus unit Gaussian noise. `audioStrength` / `visualStrength` scale the signal against that
// noise, so they set each modality's signal-to-noise ratio; the defaults make audio the clearly
// dominant modality, as in the paper's setting where one modality learns much faster.
import { Generator } from '../../engine/index.ts';
import { shuffleInPlace } from './seed.ts';

export const SYNTHETIC_SIDE = 16;
export const SYNTHETIC_DEFAULT_CLASSES = 4;
export const SYNTHETIC_MAX_CLASSES = 16;
export const DEFAULT_AUDIO_STRENGTH = 1.0;
export const DEFAULT_VISUAL_STRENGTH = 0.35;

export interface SyntheticAVOptions {
  n: number;
  classes?: number;
  seed: number;
  audioStrength?: number;
  visualStrength?: number;
}

export interface SyntheticAV {
  /** n × 1×16×16, row-major. */
  audio: Float32Array;
  /** n × 3×16×16, row-major. */
  visual: Float32Array;
  /** n labels in [0, classes), balanced (each class n/classes times, ±1). */
  labels: Int32Array;
}

export function syntheticAV(opts: SyntheticAVOptions): SyntheticAV {
  const { n, seed } = opts;
  const classes = opts.classes ?? SYNTHETIC_DEFAULT_CLASSES;
  const as = opts.audioStrength ?? DEFAULT_AUDIO_STRENGTH;
  const vs = opts.visualStrength ?? DEFAULT_VISUAL_STRENGTH;
  if (!Number.isInteger(n) || n < 0) throw new Error(`syntheticAV: n = ${n} must be a non-negative integer`);
  if (!Number.isInteger(classes) || classes < 2 || classes > SYNTHETIC_MAX_CLASSES) {
    throw new Error(`syntheticAV: classes = ${classes} must be an integer from 2 to ${SYNTHETIC_MAX_CLASSES}`);
  }
  for (const [k, v] of [
    ['audioStrength', as],
    ['visualStrength', vs],
  ] as const) {
    if (!Number.isFinite(v) || v < 0) throw new Error(`syntheticAV: ${k} = ${v} must be a finite number >= 0`);
  }
  if (!Number.isFinite(seed)) throw new Error(`syntheticAV: seed ${seed} is not a finite number`);
  const g = new Generator(seed);
  const S = SYNTHETIC_SIDE;
  const px = S * S;
  const labels = balancedLabels(n, classes, g);
  const audio = new Float32Array(n * px);
  const visual = new Float32Array(n * 3 * px);
  const bandGap = S / classes;
  const bandSigma = Math.max(0.6, 0.35 * bandGap);
  for (let i = 0; i < n; i++) {
    const y = labels[i]!;
    // Audio: band centred on row (y + ½)·gap (shifted up to ±¼ gap), pulsing (y mod 4)+1 times per 16 steps.
    const centre = (y + 0.5) * bandGap + (g.uniform() - 0.5) * 0.5 * bandGap;
    const rate = (2 * Math.PI * ((y % 4) + 1)) / S;
    const phase = 2 * Math.PI * g.uniform();
    const a = audio.subarray(i * px, (i + 1) * px);
    for (let f = 0; f < S; f++) {
      const band = Math.exp(-((f - centre) ** 2) / (2 * bandSigma * bandSigma));
      for (let t = 0; t < S; t++) a[f * S + t] = as * band * (0.5 + 0.5 * Math.cos(rate * t + phase)) + g.normal();
    }
    // Visual: blob of radius ~2.5 px at angle 2πy/classes on a circle of radius 4.5, jittered ±1 px.
    const angle = (2 * Math.PI * y) / classes;
    const cy = S / 2 - 0.5 + 4.5 * Math.sin(angle) + (2 * g.uniform() - 1);
    const cx = S / 2 - 0.5 + 4.5 * Math.cos(angle) + (2 * g.uniform() - 1);
    const rgb = hueColor(y / classes);
    const v = visual.subarray(i * 3 * px, (i + 1) * 3 * px);
    for (let ch = 0; ch < 3; ch++) {
      for (let r = 0; r < S; r++) {
        for (let x = 0; x < S; x++) {
          const blob = Math.exp(-((r - cy) ** 2 + (x - cx) ** 2) / (2 * 2.5 * 2.5));
          v[(ch * S + r) * S + x] = vs * rgb[ch]! * blob + g.normal();
        }
      }
    }
  }
  return { audio, visual, labels };
}

/** n labels, each class ⌊n/classes⌋ or ⌈n/classes⌉ times, in a random order. */
function balancedLabels(n: number, classes: number, g: Generator): Int32Array {
  return shuffleInPlace(
    Int32Array.from({ length: n }, (_, i) => i % classes),
    g,
  );
}

/** A fully saturated colour of hue h ∈ [0, 1) (HSV with s = v = 1). */
function hueColor(h: number): [number, number, number] {
  const k = (m: number) => (m + h * 6) % 6;
  const f = (m: number) => 1 - Math.max(0, Math.min(k(m), 4 - k(m), 1));
  return [f(5), f(3), f(1)];
}
