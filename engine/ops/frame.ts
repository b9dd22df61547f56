// frameSignal: overlapping frames of 1-D signals, the first step of every short-time transform
// (torch: F.pad(x, (left, right), mode).unfold(-1, frameLength, hop)). Differentiable: the
// backward is the overlap-add of the frames' gradients onto the samples they read
// (shaders/frame.ts).
import { EngineError } from '../errors.ts';
import { record, type Rule } from '../graph.ts';
import type { Tensor } from '../tensor.ts';
import { frameBackwardKernel, frameKernel } from '../../shaders/frame.ts';
import { checkFloat, checkLive, fmt, output } from './common.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    frameSignal: { frameLength: number; hop: number; padLeft: number; reflect: boolean };
  }
}

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
export function frameCount(
  n: number,
  o: Required<Pick<FrameOptions, 'frameLength' | 'hop' | 'padLeft' | 'padRight'>>,
): number {
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
  if (x.rank !== 1 && x.rank !== 2)
    throw new EngineError(`${op}: expected a signal (n) or a batch of signals (B, n), got ${fmt(x.shape)}`);
  if (!isCount(len, 1) || !isCount(hop, 1))
    throw new EngineError(`${op}: frameLength ${len} and hop ${hop} must be integers >= 1`);
  if (!isCount(padLeft, 0) || !isCount(padRight, 0))
    throw new EngineError(`${op}: padLeft ${padLeft} and padRight ${padRight} must be integers >= 0`);
  if (padMode !== 'reflect' && padMode !== 'constant')
    throw new EngineError(`${op}: padMode '${String(padMode)}' is not 'reflect' or 'constant'`);
  const n = x.shape[x.rank - 1]!;
  const batch = x.rank === 2 ? x.shape[0]! : 1;
  if (n < 1) throw new EngineError(`${op}: the signal ${fmt(x.shape)} is empty`);
  if (padMode === 'reflect' && (padLeft >= n || padRight >= n)) {
    throw new EngineError(
      `${op}: reflect padding (${padLeft}, ${padRight}) must be shorter than the signal (${n} samples); pad the ` +
        `signal first or use padMode 'constant'`,
    );
  }
  const frames = frameCount(n, { frameLength: len, hop, padLeft, padRight });
  if (frames < 1)
    throw new EngineError(
      `${op}: a signal of ${n} samples padded by (${padLeft}, ${padRight}) is shorter than one frame of ${len}`,
    );
  const y = output(x.device, x.rank === 2 ? [batch, frames, len] : [frames, len]);
  const reflect = padMode === 'reflect' ? 1 : 0;
  const padded = (frames - 1) * hop + len;
  x.device.dispatch({
    kernel: frameKernel,
    params: { total: y.size, n, frames, len, hop, pad_left: padLeft, reflect, padded },
    bindings: { src: x.rawBuffer, dst: y.rawBuffer },
  });
  return record(y, { op, inputs: [x], attrs: { frameLength: len, hop, padLeft, reflect: reflect === 1 } });
}

export const frameRules = {
  frameSignal: ({ inputs: [x], attrs }, gy) => {
    const gx = output(gy.device, x!.shape);
    const n = x!.shape[x!.rank - 1]!;
    const frames = gy.shape[gy.rank - 2]!;
    const padded = (frames - 1) * attrs.hop + attrs.frameLength;
    const { frameLength: len, hop, padLeft: pad_left } = attrs;
    const reflect = attrs.reflect ? 1 : 0;
    gy.device.dispatch({
      kernel: frameBackwardKernel,
      params: { total: gx.size, n, frames, len, hop, pad_left, reflect, padded },
      bindings: { src: gy.rawBuffer, dst: gx.rawBuffer },
    });
    return [gx];
  },
} satisfies { frameSignal: Rule<'frameSignal'> };
