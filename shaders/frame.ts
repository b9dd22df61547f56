// Framing a batch of 1-D signals (B, n) into overlapping frames (B, T, L): frame t holds the
// padded signal's samples [t·hop, t·hop + L). The padded signal is the signal with `pad_left`
// samples before it and enough after it, either zeros ('constant') or the signal mirrored about
// its end samples without repeating them ('reflect': …, x2, x1 | x0, x1, …, x[n−1] | x[n−2], …),
// as torch.nn.functional.pad's reflect mode. The host checks that one reflection suffices
// (pad_left, pad_right < n).
//
// - frameSignal: one invocation per output element, a gather.
// - frameSignalBackward (overlap-add): one invocation per input sample i, summing the upstream
//   gradient of every frame element that read it. Sample i sits at padded position q = i + pad_left,
//   and, when reflecting, also at q = pad_left − i (1 ≤ i ≤ pad_left) and q = pad_left + 2(n−1) − i
//   (the right mirror). Position q lies in frames t = ⌈(q − L + 1)/hop⌉ … ⌊q/hop⌋ (clipped to
//   [0, T)), at offset q − t·hop. A gather again: deterministic, no atomics.
import { flatKernel } from './common.ts';

/** Both kernels: `total` outputs, signals of n samples, `frames` frames of `len` samples every `hop`. */
const PARAMS = {
  total: 'u32',
  n: 'u32',
  frames: 'u32',
  len: 'u32',
  hop: 'u32',
  pad_left: 'u32',
  reflect: 'u32',
  padded: 'u32',
} as const;
const BINDINGS = { src: { read: 'f32' }, dst: { write: 'f32' } } as const;

export const frameKernel = flatKernel({
  name: 'frameSignal',
  variant: {},
  params: PARAMS,
  bindings: BINDINGS,
  main: () => `  if (i >= params.total) { return; }
  let per_signal = params.frames * params.len;
  let b = i / per_signal;
  let r = i - b * per_signal;
  let t = r / params.len;
  let k = r - t * params.len;
  // Signed position in the unpadded signal.
  var p = i32(t * params.hop + k) - i32(params.pad_left);
  let n = i32(params.n);
  let inside = p >= 0 && p < n;
  if (params.reflect == 1u) {
    p = select(p, -p, p < 0);
    p = select(p, 2 * (n - 1) - p, p >= n);
  }
  let v = src[b * params.n + u32(clamp(p, 0, n - 1))];
  dst[i] = select(0.0, v, inside || params.reflect == 1u);`,
  count: (p) => p.total,
});

export const frameBackwardKernel = flatKernel({
  name: 'frameSignalBackward',
  variant: {},
  params: PARAMS,
  bindings: BINDINGS,
  prelude: () => `// Sum of gy over the frame elements at padded position q of signal b.
fn gather(b: u32, q: u32) -> f32 {
  let len = params.len;
  let hop = params.hop;
  var t0 = 0u;
  if (q + 1u > len) { t0 = (q + 1u - len + hop - 1u) / hop; }
  let t1 = min(q / hop, params.frames - 1u);
  var s = 0.0;
  for (var t = t0; t <= t1; t++) {
    s += src[(b * params.frames + t) * len + q - t * hop];
  }
  return s;
}`,
  main: () => `  if (i >= params.total) { return; }
  let b = i / params.n;
  let x = i - b * params.n;
  var s = gather(b, x + params.pad_left);
  if (params.reflect == 1u) {
    if (x >= 1u && x <= params.pad_left) { s += gather(b, params.pad_left - x); }
    let right = params.pad_left + 2u * (params.n - 1u) - x;
    if (x + 1u < params.n && right < params.padded) { s += gather(b, right); }
  }
  dst[i] = s;`,
  count: (p) => p.total,
});
