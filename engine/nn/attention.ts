// torch.nn.MultiheadAttention (batch_first = true): in_proj_weight (3E, E) with the q, k, v
// projections as row blocks, in_proj_bias (3E), out_proj (Linear E → E); heads split the
// width. Self-attention (query = key = value) projects all three with one GEMM.
import { EngineError } from '../errors.ts';
import { linear, permute, reshape, slice, scaledDotProductAttention } from '../ops/index.ts';
import { fill } from '../ops/elementwise.ts';
import { getDevice, type Tensor } from '../tensor.ts';
import { Module } from './module.ts';
import { Linear } from './layers.ts';
import { xavierUniform, type InitOptions } from './init.ts';

const fmt = (t: Tensor) => `[${t.shape.join(', ')}]`;

export interface AttentionCallOptions {
  /** Additive float mask broadcastable to (B, heads, Lq, Lk), e.g. (Lq, Lk). */
  attnMask?: Tensor | null;
}

export class MultiheadAttention extends Module {
  readonly inProjWeight: Tensor;
  readonly inProjBias: Tensor;
  readonly outProj: Linear;
  readonly headDim: number;
  constructor(
    readonly embedDim: number,
    readonly numHeads: number,
    opts: InitOptions = {},
  ) {
    super();
    if (!Number.isInteger(embedDim) || !Number.isInteger(numHeads) || numHeads < 1 || embedDim % numHeads !== 0) {
      throw new EngineError(`MultiheadAttention: width ${embedDim} is not divisible by ${numHeads} heads`);
    }
    this.headDim = embedDim / numHeads;
    // PyTorch: xavier_uniform_ on the stacked (3E, E) matrix, zero biases (out_proj's too).
    this.inProjWeight = this.param('in_proj_weight', xavierUniform([3 * embedDim, embedDim], opts));
    this.inProjBias = this.param('in_proj_bias', fill([3 * embedDim], 0, getDevice()));
    this.outProj = this.child('out_proj', new Linear(embedDim, embedDim, opts));
    const b = this.outProj.bias!;
    b.device.writeBuffer('MultiheadAttention', b.buffer('MultiheadAttention'), new Float32Array(embedDim));
  }

  /** (B, L, E) → (B, L, H, Dh) → (B, H, L, Dh). */
  private heads(x: Tensor): Tensor {
    const [b, l] = x.shape as [number, number];
    const r = reshape(x, [b, l, this.numHeads, this.headDim]);
    const p = permute(r, [0, 2, 1, 3]);
    r.dispose();
    return p;
  }

  /** query (B, Lq, E), key and value (B, Lk, E) → (B, Lq, E). */
  forward(query: Tensor, key: Tensor = query, value: Tensor = key, opts: AttentionCallOptions = {}): Tensor {
    const e = this.embedDim;
    for (const [n, t] of [
      ['query', query],
      ['key', key],
      ['value', value],
    ] as const) {
      if (t.rank !== 3 || t.shape[2] !== e)
        throw new EngineError(`MultiheadAttention: ${n} ${fmt(t)} is not (batch, tokens, ${e})`);
    }
    if (key.shape[0] !== query.shape[0] || value.shape[0] !== query.shape[0]) {
      throw new EngineError(
        `MultiheadAttention: batch sizes differ: query ${fmt(query)}, key ${fmt(key)}, value ${fmt(value)}`,
      );
    }
    if (key.shape[1] !== value.shape[1])
      throw new EngineError(`MultiheadAttention: key ${fmt(key)} and value ${fmt(value)} have different token counts`);
    const w = this.inProjWeight;
    const b = this.inProjBias;
    const project = (x: Tensor, i: number): Tensor => {
      const wi = slice(w, [i * e, 0], [(i + 1) * e, e]);
      const bi = slice(b, [i * e], [(i + 1) * e]);
      const y = linear(x, wi, bi);
      wi.dispose();
      bi.dispose();
      const h = this.heads(y);
      y.dispose();
      return h;
    };
    let q: Tensor, k: Tensor, v: Tensor;
    if (query === key && key === value) {
      // One (B·L, E) × (E, 3E) GEMM, then split heads: (B, L, 3, H, Dh) → (3, B, H, L, Dh).
      const [bs, l] = query.shape as [number, number];
      const qkv = linear(query, w, b);
      const r = reshape(qkv, [bs, l, 3, this.numHeads, this.headDim]);
      const p = permute(r, [2, 0, 3, 1, 4]);
      [q, k, v] = [0, 1, 2].map((i) => {
        const s = slice(p, [i, 0, 0, 0, 0], [i + 1, bs, this.numHeads, l, this.headDim]);
        const out = reshape(s, [bs, this.numHeads, l, this.headDim]);
        s.dispose();
        return out;
      }) as [Tensor, Tensor, Tensor];
      qkv.dispose();
      r.dispose();
      p.dispose();
    } else {
      q = project(query, 0);
      k = project(key, 1);
      v = project(value, 2);
    }
    const o = scaledDotProductAttention(q, k, v, { mask: opts.attnMask ?? null });
    q.dispose();
    k.dispose();
    v.dispose();
    const [bs, lq] = query.shape as [number, number];
    const t = permute(o, [0, 2, 1, 3]);
    o.dispose();
    const merged = reshape(t, [bs, lq, e]);
    t.dispose();
    const out = this.outProj.forward(merged);
    merged.dispose();
    return out;
  }
}
