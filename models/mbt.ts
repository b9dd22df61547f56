// MBT, the Multimodal Bottleneck Transformer (Nagrani et al., NeurIPS 2021): every modality
// has its own patch embedding, CLS token, positional embedding and transformer layers. The
// first `uniLayers` layers see only their own modality; in each of the last `fusionLayers`
// layers, modality m runs its layer over [its tokens ; the B shared bottleneck tokens], and the
// next bottleneck is the mean over modalities of their updated bottleneck tokens — the only
// path between modalities. Outputs: each modality's CLS feature after a final LayerNorm, and
// optionally fused logits (the mean of per-modality heads' logits, or one head on the
// concatenated CLS features).
//
// Parameter count, with width E, MLP width F, M modalities, modality m of C_m channels, patch
// ph×pw and N_m patches, L = uniLayers + fusionLayers, nb bottlenecks, K classes:
//   per layer        4E² + 4E (attention: in_proj 3E×E + 3E, out_proj E×E + E)
//                  + 2EF + F + E (MLP) + 4E (two LayerNorms)       = 4E² + 2EF + 9E + F
//   per modality     E·C_m·ph·pw + E (patch_embed) + E (cls_token) + (N_m + 1)·E (pos_embed)
//                  + L·(4E² + 2EF + 9E + F) + 2E (norm)
//   shared           nb·E (bottleneck)
//   heads            'mean-logits': M·(E·K + K);  'concat': M·E·K + K;  none without numClasses.
import {
  EngineError,
  add,
  concat,
  expand,
  mulScalar,
  reshape,
  slice,
  Generator,
  type Tensor,
} from '../engine/index.ts';
import {
  LayerNorm,
  Linear,
  Module,
  ModuleDict,
  ModuleList,
  PatchEmbed,
  TransformerBlock,
  truncNormal,
} from '../engine/nn/index.ts';

export interface ModalitySpec {
  /** Input (B, channels, height, width): an image or a (frequency × time) spectrogram. */
  channels: number;
  height: number;
  width: number;
  patch: number | [number, number];
}

export interface MBTSize {
  width: number;
  heads: number;
  mlpDim: number;
  uniLayers: number;
  fusionLayers: number;
  bottlenecks: number;
}

export interface MBTConfig extends Partial<MBTSize> {
  /** Two or more named modalities. */
  modalities: Record<string, ModalitySpec>;
  /** With a class count, the model has heads and returns fused logits. */
  numClasses?: number;
  /**
   * 'mean-logits' (default): one head per modality, logits averaged; 'concat': one head on the concatenated CLS
   * features.
   */
  fusion?: 'mean-logits' | 'concat';
  dropout?: number;
  seed?: number;
}

/** A small model that trains on a software GPU (the defaults), and ViT-B/16's sizes for real GPUs. */
export const MBT_TINY: MBTSize = { width: 64, heads: 4, mlpDim: 128, uniLayers: 6, fusionLayers: 2, bottlenecks: 4 };
export const MBT_VIT_BASE: MBTSize = {
  width: 768,
  heads: 12,
  mlpDim: 3072,
  uniLayers: 10,
  fusionLayers: 2,
  bottlenecks: 4,
};

export interface MBTOutput {
  /** Per modality: the CLS token after the final LayerNorm, (B, width). */
  features: Record<string, Tensor>;
  /** Per modality logits (B, K) in 'mean-logits' mode with numClasses, else empty. */
  modalityLogits: Record<string, Tensor>;
  /** Fused logits (B, K) when numClasses is set, else null. */
  logits: Tensor | null;
}

/** One modality's stream: patch embedding, CLS, positions, its L layers and a final norm. */
class Stream extends Module {
  readonly patchEmbed: PatchEmbed;
  readonly clsToken: Tensor;
  readonly posEmbed: Tensor;
  readonly layers: TransformerBlock[];
  readonly norm: LayerNorm;
  readonly tokens: number;
  constructor(
    readonly spec: ModalitySpec,
    size: MBTSize,
    dropout: number,
    generator: Generator,
  ) {
    super();
    const e = size.width;
    this.patchEmbed = this.child('patch_embed', new PatchEmbed(spec.channels, e, spec.patch, { generator }));
    this.tokens = this.patchEmbed.tokens(spec.height, spec.width);
    if (this.tokens < 1)
      throw new EngineError(`MBT: a ${spec.height}×${spec.width} input has no ${String(spec.patch)} patch`);
    this.clsToken = this.param('cls_token', truncNormal([1, 1, e], 0.02, generator));
    this.posEmbed = this.param('pos_embed', truncNormal([1, this.tokens + 1, e], 0.02, generator));
    const list = this.child('layers', new ModuleList<TransformerBlock>());
    for (let i = 0; i < size.uniLayers + size.fusionLayers; i++)
      list.add(new TransformerBlock(e, size.heads, { mlpDim: size.mlpDim, dropout, generator }));
    this.layers = list.items;
    this.norm = this.child('norm', new LayerNorm(e, 1e-6));
  }
  /** (B, C, H, W) → (B, 1 + N, E): [CLS ; patches] + positions. */
  embed(x: Tensor): Tensor {
    const p = this.patchEmbed.forward(x);
    const [b, n, e] = p.shape as [number, number, number];
    const cls = expand(this.clsToken, [b, 1, e]);
    const t = concat([cls, p], 1);
    cls.dispose();
    p.dispose();
    const out = add(t, this.posEmbed);
    t.dispose();
    if (n !== this.tokens) throw new EngineError(`MBT: internal token count ${n} != ${this.tokens}`);
    return out;
  }
}

export class MBT extends Module {
  readonly size: MBTSize;
  readonly names: string[];
  readonly streams: Record<string, Stream> = {};
  readonly bottleneck: Tensor;
  readonly heads: Record<string, Linear> = {};
  readonly head: Linear | null = null;
  readonly fusion: 'mean-logits' | 'concat';

  constructor(readonly config: MBTConfig) {
    super();
    const size: MBTSize = {
      ...MBT_TINY,
      ...Object.fromEntries(Object.entries(config).filter(([k, v]) => k in MBT_TINY && v !== undefined)),
    };
    this.size = size;
    this.names = Object.keys(config.modalities);
    if (this.names.length < 2)
      throw new EngineError(`MBT: needs at least 2 modalities, got ${this.names.length} (${this.names.join(', ')})`);
    for (const n of this.names)
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(n)) throw new EngineError(`MBT: modality name '${n}' is not an identifier`);
    if (size.width % size.heads !== 0)
      throw new EngineError(`MBT: width ${size.width} is not divisible by ${size.heads} heads`);
    for (const [k, v] of Object.entries(size)) {
      if (!Number.isInteger(v) || v < (k === 'uniLayers' || k === 'fusionLayers' ? 0 : 1))
        throw new EngineError(
          `MBT: ${k} must be a ${k.endsWith('Layers') ? 'non-negative' : 'positive'} integer, got ${v}`,
        );
    }
    this.fusion = config.fusion ?? 'mean-logits';
    const generator = new Generator(config.seed ?? 0);
    const streams = this.child('modalities', new ModuleDict<Stream>());
    for (const n of this.names)
      this.streams[n] = streams.set(n, new Stream(config.modalities[n]!, size, config.dropout ?? 0, generator));
    this.bottleneck = this.param('bottleneck', truncNormal([1, size.bottlenecks, size.width], 0.02, generator));
    const k = config.numClasses;
    if (k !== undefined) {
      if (!Number.isInteger(k) || k < 1) throw new EngineError(`MBT: numClasses must be a positive integer, got ${k}`);
      if (this.fusion === 'concat')
        this.head = this.child('head', new Linear(this.names.length * size.width, k, { generator }));
      else {
        const heads = this.child('heads', new ModuleDict<Linear>());
        for (const n of this.names) this.heads[n] = heads.set(n, new Linear(size.width, k, { generator }));
      }
    }
  }

  /** The parameter count of the formula in this file's header (what numParameters() must equal). */
  static expectedParameters(config: MBTConfig): number {
    const s: MBTSize = {
      ...MBT_TINY,
      ...Object.fromEntries(Object.entries(config).filter(([k, v]) => k in MBT_TINY && v !== undefined)),
    };
    const e = s.width;
    const f = s.mlpDim;
    const perLayer = 4 * e * e + 2 * e * f + 9 * e + f;
    const names = Object.keys(config.modalities);
    let total = s.bottlenecks * e;
    for (const n of names) {
      const m = config.modalities[n]!;
      const [ph, pw] = typeof m.patch === 'number' ? [m.patch, m.patch] : m.patch;
      const tokens = Math.floor(m.height / ph) * Math.floor(m.width / pw);
      total += e * m.channels * ph * pw + e + e + (tokens + 1) * e + (s.uniLayers + s.fusionLayers) * perLayer + 2 * e;
    }
    const k = config.numClasses;
    if (k !== undefined)
      total += (config.fusion ?? 'mean-logits') === 'concat' ? names.length * e * k + k : names.length * (e * k + k);
    return total;
  }

  forward(inputs: Record<string, Tensor>): MBTOutput {
    for (const n of Object.keys(inputs))
      if (!this.streams[n])
        throw new EngineError(`MBT: unknown modality '${n}' (the model has ${this.names.join(', ')})`);
    let batch = -1;
    for (const n of this.names) {
      const x = inputs[n];
      const m = this.config.modalities[n]!;
      if (!x)
        throw new EngineError(`MBT: modality '${n}' is missing from the input (expected ${this.names.join(', ')})`);
      if (x.rank !== 4 || x.shape[1] !== m.channels || x.shape[2] !== m.height || x.shape[3] !== m.width) {
        throw new EngineError(
          `MBT: modality '${n}' input [${x.shape.join(', ')}] is not (batch, ${m.channels}, ${m.height}, ${m.width})`,
        );
      }
      if (batch >= 0 && x.shape[0] !== batch)
        throw new EngineError(`MBT: modality '${n}' has batch ${x.shape[0]}, others ${batch}`);
      batch = x.shape[0]!;
    }
    const { uniLayers, fusionLayers, bottlenecks: nb, width: e } = this.size;
    const tokens: Record<string, Tensor> = {};
    for (const n of this.names) {
      const s = this.streams[n]!;
      let h = s.embed(inputs[n]!);
      for (let i = 0; i < uniLayers; i++) h = replace(h, s.layers[i]!.forward(h));
      tokens[n] = h;
    }
    let z = expand(this.bottleneck, [batch, nb, e]);
    for (let l = 0; l < fusionLayers; l++) {
      let zSum: Tensor | null = null;
      for (const n of this.names) {
        const s = this.streams[n]!;
        const t = tokens[n]!;
        const len = t.shape[1]!;
        const joint = concat([t, z], 1);
        const y = s.layers[uniLayers + l]!.forward(joint);
        joint.dispose();
        t.dispose();
        tokens[n] = slice(y, [0, 0, 0], [batch, len, e]);
        const zm = slice(y, [0, len, 0], [batch, len + nb, e]);
        y.dispose();
        zSum = zSum ? replace(zSum, add(zSum, zm)) : zm;
        if (zSum !== zm) zm.dispose();
      }
      z.dispose();
      z = mulScalar(zSum!, 1 / this.names.length);
      zSum!.dispose();
    }
    z.dispose();
    const features: Record<string, Tensor> = {};
    for (const n of this.names) {
      const cls = slice(tokens[n]!, [0, 0, 0], [batch, 1, e]);
      tokens[n]!.dispose();
      const c2 = reshape(cls, [batch, e]);
      cls.dispose();
      features[n] = replace(c2, this.streams[n]!.norm.forward(c2));
    }
    const modalityLogits: Record<string, Tensor> = {};
    let logits: Tensor | null = null;
    if (this.head) {
      const cat = concat(
        this.names.map((n) => features[n]!),
        1,
      );
      logits = this.head.forward(cat);
      cat.dispose();
    } else if (this.config.numClasses !== undefined) {
      for (const n of this.names) modalityLogits[n] = this.heads[n]!.forward(features[n]!);
      const ls = this.names.map((n) => modalityLogits[n]!);
      let acc = add(ls[0]!, ls[1]!);
      for (const l of ls.slice(2)) acc = replace(acc, add(acc, l));
      logits = mulScalar(acc, 1 / ls.length);
      acc.dispose();
    }
    return { features, modalityLogits, logits };
  }
}

/** Disposes `old` (the graph keeps what backward needs) and returns `next`. */
function replace(old: Tensor, next: Tensor): Tensor {
  if (next !== old) old.dispose();
  return next;
}
