// Transformer pieces: a pre-LN encoder block and a patch embedding. Residual adds are plain
// `add`s (compositions, not fused kernels).
import { EngineError } from '../errors.ts';
import { add, permute, reshape } from '../ops/index.ts';
import type { Tensor } from '../tensor.ts';
import type { Generator } from '../random.ts';
import { Layer } from './module.ts';
import { Conv2d, Dropout, GELU, LayerNorm, Linear } from './layers.ts';
import { MultiheadAttention, type AttentionCallOptions } from './attention.ts';
import type { InitOptions } from './init.ts';

export interface TransformerBlockOptions extends InitOptions {
  /** Hidden width of the MLP (default 4·width). */
  mlpDim?: number;
  dropout?: number;
  eps?: number;
  /** GELU form (default exact erf). */
  approximate?: 'none' | 'tanh';
  /** Generator for dropout masks (default: the engine's default generator). */
  dropoutGenerator?: Generator;
}

/**
 * Pre-LN encoder layer with the names of torch.nn.TransformerEncoderLayer(batch_first=True,
 * norm_first=True, activation='gelu'):
 *   x = x + dropout1(self_attn(norm1(x)));  x = x + dropout2(linear2(dropout(gelu(linear1(norm2(x)))))).
 */
export class TransformerBlock extends Layer {
  readonly selfAttn: MultiheadAttention;
  readonly linear1: Linear;
  readonly linear2: Linear;
  readonly norm1: LayerNorm;
  readonly norm2: LayerNorm;
  private readonly act: GELU;
  private readonly drops: [Dropout, Dropout, Dropout];
  constructor(
    readonly width: number,
    readonly heads: number,
    opts: TransformerBlockOptions = {},
  ) {
    super();
    const mlp = opts.mlpDim ?? 4 * width;
    const p = opts.dropout ?? 0;
    this.selfAttn = this.child('self_attn', new MultiheadAttention(width, heads, opts));
    this.linear1 = this.child('linear1', new Linear(width, mlp, opts));
    this.linear2 = this.child('linear2', new Linear(mlp, width, opts));
    this.norm1 = this.child('norm1', new LayerNorm(width, opts.eps ?? 1e-5));
    this.norm2 = this.child('norm2', new LayerNorm(width, opts.eps ?? 1e-5));
    this.act = new GELU(opts.approximate ?? 'none');
    this.drops = [0, 1, 2].map(() => new Dropout(p, opts.dropoutGenerator)) as [Dropout, Dropout, Dropout];
  }
  override train(mode = true): this {
    super.train(mode);
    for (const d of this.drops) d.train(mode);
    return this;
  }
  forward(x: Tensor, opts: AttentionCallOptions = {}): Tensor {
    if (x.rank !== 3 || x.shape[2] !== this.width)
      throw new EngineError(`TransformerBlock: input [${x.shape.join(', ')}] is not (batch, tokens, ${this.width})`);
    const chain = (h: Tensor, fns: ((t: Tensor) => Tensor)[]): Tensor => {
      let cur = h;
      for (const f of fns) {
        const next = f(cur);
        if (cur !== h && next !== cur) cur.dispose();
        cur = next;
      }
      return cur;
    };
    const a = chain(x, [
      (t) => this.norm1.forward(t),
      (t) => this.selfAttn.forward(t, t, t, opts),
      (t) => this.drops[0].forward(t),
    ]);
    const x1 = add(x, a);
    if (a !== x) a.dispose();
    const m = chain(x1, [
      (t) => this.norm2.forward(t),
      (t) => this.linear1.forward(t),
      (t) => this.act.forward(t),
      (t) => this.drops[1].forward(t),
      (t) => this.linear2.forward(t),
      (t) => this.drops[2].forward(t),
    ]);
    const out = add(x1, m);
    x1.dispose();
    if (m !== x1) m.dispose();
    return out;
  }
}

/**
 * Non-overlapping patches of an image or spectrogram (B, C, H, W) embedded by a conv with
 * kernel = stride = patch (timm's PatchEmbed, weight name `proj`), flattened to (B, N, E)
 * with N = ⌊H/ph⌋·⌊W/pw⌋ in row-major patch order.
 */
export class PatchEmbed extends Layer {
  readonly proj: Conv2d;
  readonly patch: [number, number];
  constructor(
    readonly inChannels: number,
    readonly width: number,
    patch: number | [number, number],
    opts: InitOptions = {},
  ) {
    super();
    this.patch = typeof patch === 'number' ? [patch, patch] : patch;
    this.proj = this.child('proj', new Conv2d(inChannels, width, this.patch, { ...opts, stride: this.patch }));
  }
  /** Number of tokens for an input of height h and width w. */
  tokens(h: number, w: number): number {
    return Math.floor(h / this.patch[0]) * Math.floor(w / this.patch[1]);
  }
  forward(x: Tensor): Tensor {
    if (x.rank !== 4 || x.shape[1] !== this.inChannels)
      throw new EngineError(`PatchEmbed: input [${x.shape.join(', ')}] is not (batch, ${this.inChannels}, H, W)`);
    if (x.shape[2]! < this.patch[0] || x.shape[3]! < this.patch[1])
      throw new EngineError(
        `PatchEmbed: input [${x.shape.join(', ')}] is smaller than one ${this.patch.join('×')} patch`,
      );
    const y = this.proj.forward(x);
    const [b, e, gh, gw] = y.shape as [number, number, number, number];
    const r = reshape(y, [b, e, gh * gw]);
    y.dispose();
    const t = permute(r, [0, 2, 1]);
    r.dispose();
    return t;
  }
}
