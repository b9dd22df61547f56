// scaledDotProductAttention: softmax(Q·Kᵀ·scale + mask)·V over the last two axes of (B, H, L, D)
// tensors, with the semantics of torch.nn.functional.scaled_dot_product_attention with a float
// attn_mask (no dropout, no is_causal: pass a causal mask). One fused forward kernel that keeps the
// (Lq × Lk) scores in workgroup memory (shaders/attention.ts) and saves the per-row logsumexp; the
// backward recomputes P from it in two kernels (shaders/attention-backward.ts).
// Policy for a query row whose mask is −inf at every key: its output is 0 and so are its
// gradients (PyTorch gives NaN). A finite mask (e.g. −1e9 everywhere) is an ordinary softmax.
// The mask gets no gradient; a mask that requires grad is refused.
import { EngineError } from '../errors.ts';
import { isGradEnabled, record, type Rule } from '../graph.ts';
import type { Tensor } from '../tensor.ts';
import { ATTN_MAX_WIDTH, ATTN_TM, attentionForwardKernel, attentionWorkgroupSize } from '../../shaders/attention.ts';
import {
  attentionBackwardKeyKernel,
  attentionBackwardKeyScratchKernel,
  attentionBackwardQueryKernel,
} from '../../shaders/attention-backward.ts';
import {
  broadcastShapes,
  broadcastStrides,
  checkFloat,
  checkLive,
  checkSameDevice,
  fmt,
  NINF_BITS,
  output,
} from './common.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    attention: { scale: number };
  }
}

export interface AttentionOptions {
  /** Additive float32 mask, broadcastable (numpy rules, rank ≤ 4) to (B, H, Lq, Lk); −inf hides a key. */
  mask?: Tensor | null;
  /** Multiplies Q·Kᵀ (default 1/√D). */
  scale?: number;
}

/**
 * Above this many floats per scratch buffer (64 MiB; WebGPU's default binding limit is 128 MiB) the backward recomputes
 * P and dS instead.
 */
export const attentionTuning = { scratchMaxFloats: 1 << 24 };
const PINF_BITS = 0x7f800000;

interface Dims {
  b: number;
  h: number;
  lq: number;
  lk: number;
  d: number;
  dv: number;
}

/** Params: shapes, mask strides over (B, H, Lq, Lk) (0 where broadcast, all 0 without a mask), ±inf bits, scale. */
function params(s: Dims, mask: Tensor | null | undefined, scale: number) {
  const [mb, mh, mq, mk] = mask ? broadcastStrides(mask.shape, [s.b, s.h, s.lq, s.lk]) : [0, 0, 0, 0];
  return {
    lq: s.lq,
    lk: s.lk,
    d: s.d,
    dv: s.dv,
    heads: s.h,
    mb: mb!,
    mh: mh!,
    mq: mq!,
    mk: mk!,
    ninf: NINF_BITS,
    pinf: PINF_BITS,
    tm: ATTN_TM,
    scale,
    batch: s.b,
  };
}

function dimsOf(q: Tensor, k: Tensor, v: Tensor): Dims {
  return { b: q.shape[0]!, h: q.shape[1]!, lq: q.shape[2]!, lk: k.shape[2]!, d: q.shape[3]!, dv: v.shape[3]! };
}

function checkInputs(
  op: string,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask: Tensor | null | undefined,
  scale: number,
): void {
  const all = mask ? [q, k, v, mask] : [q, k, v];
  checkLive(op, ...all);
  checkFloat(op, ...all);
  checkSameDevice(op, ...all);
  const shapes = `q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)}`;
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4)
    throw new EngineError(`${op}: q, k and v must be 4-D (B, H, L, D), got ${shapes}`);
  const [b, h, lq, d] = q.shape as [number, number, number, number];
  const [bk, hk, lk, dk] = k.shape as [number, number, number, number];
  const [bv, hv, lv, dv] = v.shape as [number, number, number, number];
  if (bk !== b || bv !== b || hk !== h || hv !== h)
    throw new EngineError(`${op}: batch and head dimensions of q, k and v differ: ${shapes}`);
  if (dk !== d) throw new EngineError(`${op}: q and k have different widths D (${d} vs ${dk}): ${shapes}`);
  if (lv !== lk) throw new EngineError(`${op}: k and v have different token counts Lk (${lk} vs ${lv}): ${shapes}`);
  if (b * h * lq * lk * d * dv === 0) throw new EngineError(`${op}: empty input: ${shapes}`);
  if (d > ATTN_MAX_WIDTH || dv > ATTN_MAX_WIDTH)
    throw new EngineError(`${op}: head widths above ${ATTN_MAX_WIDTH} are not supported: ${shapes}`);
  if (h > 65535 || b > 65535 || Math.ceil(Math.max(lq, lk) / ATTN_TM) > 65535)
    throw new EngineError(`${op}: too many rows for one dispatch: ${shapes}`);
  if (typeof scale !== 'number' || !Number.isFinite(scale))
    throw new EngineError(`${op}: scale ${scale} is not a finite number (${shapes})`);
  if (mask) {
    const want = [b, h, lq, lk];
    const bad = () =>
      new EngineError(
        `${op}: mask ${fmt(mask.shape)} cannot be broadcast to ${fmt(want)} (B, H, Lq, Lk) for ${shapes}`,
      );
    if (mask.rank < 1 || mask.rank > 4) throw bad();
    let to: number[];
    try {
      to = broadcastShapes(op, mask.shape, want);
    } catch {
      throw bad();
    }
    if (to.join() !== want.join()) throw bad();
    if (mask.requiresGrad && isGradEnabled())
      throw new EngineError(`${op}: mask ${fmt(mask.shape)} requires grad, but there is no gradient for masks`);
  }
}

/** softmax(q·kᵀ·scale + mask)·v: q (B, H, Lq, D), k (B, H, Lk, D), v (B, H, Lk, Dv) → (B, H, Lq, Dv). */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const op = 'scaledDotProductAttention';
  const mask = opts.mask ?? null;
  const scale = opts.scale ?? 1 / Math.sqrt(q.shape[q.rank - 1] ?? 1);
  checkInputs(op, q, k, v, mask, scale);
  const s = dimsOf(q, k, v);
  const dev = q.device;
  const out = output(dev, [s.b, s.h, s.lq, s.dv]);
  const lse = output(dev, [s.b, s.h, s.lq]);
  const wg = attentionWorkgroupSize(s.dv);
  const unroll = wg >= 16; // the unrolled kernel is faster at Dv = 64 but slower to compile
  const masked = mask ? { mask: mask.rawBuffer } : {};
  dev.dispatch({
    kernel: attentionForwardKernel,
    variant: { vecD: unroll && s.d % 4 === 0, vecDv: unroll && s.dv % 4 === 0, masked: !!mask, wg, unroll },
    params: params(s, mask, scale),
    bindings: { q: q.rawBuffer, k: k.rawBuffer, v: v.rawBuffer, out: out.rawBuffer, lse: lse.rawBuffer, ...masked },
  });
  // Backward needs the output itself (Δ = rowsum(dO ∘ O)), so it is saved beside lse.
  const y = record(out, {
    op: 'attention',
    inputs: [q, k, v],
    attrs: { scale },
    saved: mask ? [lse, out, mask] : [lse, out],
  });
  lse.dispose(); // the graph (if any) retains its storage
  return y;
}

/** vec4 bindings (vecD, vecDv) only with the unrolled kernels (WG ≥ 16): the rolled ones load scalars. */
function backwardVariant(cols: number, s: Dims): [boolean, boolean] {
  const unroll = attentionWorkgroupSize(cols) >= 16;
  return [unroll && s.d % 4 === 0, unroll && s.dv % 4 === 0];
}

export const attentionRules = {
  attention: ({ inputs: [q, k, v], saved: [lse, o, mask], attrs: { scale } }, go) => {
    const s = dimsOf(q!, k!, v!);
    const dev = q!.device;
    const p = params(s, mask, scale);
    const dq = output(dev, q!.shape);
    const dk = output(dev, k!.shape);
    const dv = output(dev, v!.shape);
    const m = mask ? { mask: mask.rawBuffer } : {};
    // The query kernel leaves P and dS in scratch (rows padded to 8 keys) so the key kernel need not
    // recompute S and dP: 5 matmul-sized passes instead of 7.
    const lkp = Math.ceil(s.lk / ATTN_TM) * ATTN_TM;
    const useScratch = s.b * s.h * s.lq * lkp <= attentionTuning.scratchMaxFloats;
    const pscr = useScratch ? output(dev, [s.b * s.h, s.lq, lkp]) : null;
    const dsscr = useScratch ? output(dev, [s.b * s.h, s.lq, lkp]) : null;
    const delta = useScratch ? null : output(dev, [s.b, s.h, s.lq]); // Δ for attentionBackwardKey
    const wgQuery = attentionWorkgroupSize(s.d);
    const [vecD, vecDv] = backwardVariant(s.d, s);
    dev.dispatch({
      kernel: attentionBackwardQueryKernel,
      params: p,
      variant: { vecD, vecDv, masked: !!mask, wg: wgQuery, unroll: wgQuery >= 16, scratch: useScratch },
      bindings: {
        q: q!.rawBuffer,
        k: k!.rawBuffer,
        v: v!.rawBuffer,
        o: o!.rawBuffer,
        go: go.rawBuffer,
        lse: lse!.rawBuffer,
        dq: dq.rawBuffer,
        ...m,
        ...(pscr && dsscr ? { pscr: pscr.rawBuffer, dsscr: dsscr.rawBuffer } : { delta: delta!.rawBuffer }),
      },
    });
    const wgKey = attentionWorkgroupSize(Math.max(s.d, s.dv));
    if (pscr && dsscr) {
      dev.dispatch({
        kernel: attentionBackwardKeyScratchKernel,
        variant: { vecD: s.d % 4 === 0, vecDv: s.dv % 4 === 0, wg: wgKey },
        params: p,
        bindings: {
          q: q!.rawBuffer,
          go: go.rawBuffer,
          pscr: pscr.rawBuffer,
          dsscr: dsscr.rawBuffer,
          dk: dk.rawBuffer,
          dv: dv.rawBuffer,
        },
      });
      pscr.dispose();
      dsscr.dispose();
    } else {
      const [vd, vdv] = backwardVariant(Math.max(s.d, s.dv), s);
      dev.dispatch({
        kernel: attentionBackwardKeyKernel,
        variant: { vecD: vd, vecDv: vdv, masked: !!mask, wg: wgKey, unroll: wgKey >= 16 },
        params: p,
        bindings: {
          q: q!.rawBuffer,
          k: k!.rawBuffer,
          v: v!.rawBuffer,
          go: go.rawBuffer,
          lse: lse!.rawBuffer,
          delta: delta!.rawBuffer,
          dk: dk.rawBuffer,
          dv: dv.rawBuffer,
          ...m,
        },
      });
    }
    delta?.dispose();
    return [dq, dk, dv];
  },
} satisfies { attention: Rule<'attention'> };
