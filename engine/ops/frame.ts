// frameSignal: overlapping frames of 1-D signals, the first step of every short-time transform
// (torch: F.pad(x, (left, right), mode).unfold(-1, frameLength, hop)). Differentiable: the
// backward is the overlap-add of the frames' gradients onto the samples they read
// (shaders/frame.ts).
import { record } from '../autograd.ts';
import { EngineError } from '../device.ts';
import type { Rule } from '../rules.ts';
import type { Tensor } from '../tensor.ts';
import { frameBackwardShader, frameShader } from '../../shaders/frame.ts';
import { checkFloat, checkLive, fmt, grid1d, launch, output } from './kernel.ts';

export type PadMode = 'reflect' | 'constant';

export interface FrameOptions {
  frameLength: number;
  hop: number;
  /** Samples of padding before the signal (default 0). */
  padLeft?: number;
  /** Samples of padding after the signal (default 0). */
  padRight?: number;
  /** 'constant' (zeros, the default) or 'reflect' (mirrored about the end samples, as torch's reflect pad). */
  padMode?: PadMode;
}

const isCount = (v: number, min: number) => Number.isInteger(v) && v >= min;

/** The number of frames `frameSignal` gives for a signal of n samples. */
export function frameCount(n: number, o: Required<Pick<FrameOptions, 'frameLength' | 'hop' | 'padLeft' | 'padRight'>>): number {
  const padded = n + o.padLeft + o.padRight;
  return padded < o.frameLength ? 0 : 1 + Math.floor((padded - o.frameLength) / o.hop);
}

/**
 * Frames of a signal (n) or a batch of signals (B, n): (T, L) or (B, T, L), frame t holding the
 * padded signal's samples [t·hop, t·hop + L), T = 1 + ⌊(n + padLeft + padRight − L)/hop⌋.
 */
export function frameSignal(x: Tensor, opts: FrameOptions): Tensor {
  const op = 'frameSignal';
  checkLive(op, x);
  checkFloat(op, x);
  const { frameLength: len, hop } = opts;
  const padLeft = opts.padLeft ?? 0;
  const padRight = opts.padRight ?? 0;
  const padMode = opts.padMode ?? 'constant';
  if (x.rank !== 1 && x.rank !== 2) throw new EngineError(`${op}: expected a signal (n) or a batch of signals (B, n), got ${fmt(x.shape)}`);
  if (!isCount(len, 1) || !isCount(hop, 1)) throw new EngineError(`${op}: frameLength ${len} and hop ${hop} must be integers >= 1`);
  if (!isCount(padLeft, 0) || !isCount(padRight, 0)) throw new EngineError(`${op}: padLeft ${padLeft} and padRight ${padRight} must be integers >= 0`);
  if (padMode !== 'reflect' && padMode !== 'constant') throw new EngineError(`${op}: padMode '${String(padMode)}' is not 'reflect' or 'constant'`);
  const n = x.shape[x.rank - 1]!;
  const batch = x.rank === 2 ? x.shape[0]! : 1;
  if (n < 1) throw new EngineError(`${op}: the signal ${fmt(x.shape)} is empty`);
  if (padMode === 'reflect' && (padLeft >= n || padRight >= n)) {
    throw new EngineError(`${op}: reflect padding (${padLeft}, ${padRight}) must be shorter than the signal (${n} samples); pad the signal first or use padMode 'constant'`);
  }
  const frames = frameCount(n, { frameLength: len, hop, padLeft, padRight });
  if (frames < 1) throw new EngineError(`${op}: a signal of ${n} samples padded by (${padLeft}, ${padRight}) is shorter than one frame of ${len}`);
  const y = output(x.device, x.rank === 2 ? [batch, frames, len] : [frames, len]);
  const reflect = padMode === 'reflect' ? 1 : 0;
  const padded = (frames - 1) * hop + len;
  launch(x.device, {
    op, code: frameShader(), buffers: [x.rawBuffer, y.rawBuffer],
    u32: [y.size, n, frames, len, hop, padLeft, reflect, padded], groups: grid1d(y.size),
  });
  return record(op, [x], y, { frameLength: len, hop, padLeft, reflect: reflect === 1 });
}

export const frameRules = {
  frameSignal: ({ inputs: [x], attrs }, gy) => {
    const gx = output(gy.device, x!.shape);
    const n = x!.shape[x!.rank - 1]!;
    const frames = gy.shape[gy.rank - 2]!;
    const padded = (frames - 1) * attrs.hop + attrs.frameLength;
    launch(gy.device, {
      op: 'frameSignalBackward', code: frameBackwardShader(), buffers: [gy.rawBuffer, gx.rawBuffer],
      u32: [gx.size, n, frames, attrs.frameLength, attrs.hop, attrs.padLeft, attrs.reflect ? 1 : 0, padded], groups: grid1d(gx.size),
    });
    return [gx];
  },
} satisfies { frameSignal: Rule<'frameSignal'> };
