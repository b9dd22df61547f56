// ResNet-18 (He et al. 2016) with torchvision's parameter names and shapes, without `fc`:
// the paper's encoder for audio (1-channel spectrograms) and video (RGB frames folded into
// the batch, features averaged over time). Returns 512-d features.
import { EngineError, Generator, add, mean, relu, reshape, type Tensor } from '../engine/index.ts';
import {
  AdaptiveAvgPool2d,
  BatchNorm2d,
  Conv2d,
  Layer,
  MaxPool2d,
  Module,
  ReLU,
  Sequential,
  kaimingNormalFanOut,
} from '../engine/nn/index.ts';

/** conv3×3 → bn → relu → conv3×3 → bn, plus the identity (or a 1×1 conv + bn downsample), → relu. */
export class BasicBlock extends Layer {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | null;
  constructor(inPlanes: number, planes: number, stride: number, generator: Generator) {
    super();
    const conv = (i: number, o: number, k: number, s: number) =>
      new Conv2d(i, o, k, { stride: s, padding: k === 3 ? 1 : 0, bias: false, generator });
    this.conv1 = this.child('conv1', conv(inPlanes, planes, 3, stride));
    this.bn1 = this.child('bn1', new BatchNorm2d(planes));
    this.conv2 = this.child('conv2', conv(planes, planes, 3, 1));
    this.bn2 = this.child('bn2', new BatchNorm2d(planes));
    this.downsample =
      stride !== 1 || inPlanes !== planes
        ? this.child('downsample', new Sequential(conv(inPlanes, planes, 1, stride), new BatchNorm2d(planes)))
        : null;
  }
  forward(x: Tensor): Tensor {
    const steps: ((t: Tensor) => Tensor)[] = [
      (t) => this.conv1.forward(t),
      (t) => this.bn1.forward(t),
      relu,
      (t) => this.conv2.forward(t),
      (t) => this.bn2.forward(t),
    ];
    let h = x;
    for (const f of steps) {
      const next = f(h);
      if (h !== x) h.dispose();
      h = next;
    }
    const identity = this.downsample ? this.downsample.forward(x) : x;
    const sum = add(h, identity);
    h.dispose();
    if (identity !== x) identity.dispose();
    const out = relu(sum);
    sum.dispose();
    return out;
  }
}

export interface ResNet18Options {
  /** Input channels: 1 for spectrograms, 3 for RGB frames (default 3). */
  inChannels?: number;
  /** Seed of the generator that draws the initial weights (default 0). */
  seed?: number;
}

export class ResNet18 extends Module {
  static readonly featureDim = 512;
  readonly inChannels: number;
  readonly stem: Sequential;
  readonly layers: Sequential[];
  private readonly pool = new AdaptiveAvgPool2d(1);

  constructor(opts: ResNet18Options = {}) {
    super();
    this.inChannels = opts.inChannels ?? 3;
    const generator = new Generator(opts.seed ?? 0);
    // The stem's modules are registered on the model itself, as torchvision names them.
    const conv1 = this.child(
      'conv1',
      new Conv2d(this.inChannels, 64, 7, { stride: 2, padding: 3, bias: false, generator }),
    );
    const bn1 = this.child('bn1', new BatchNorm2d(64));
    const maxpool = new MaxPool2d({ kernelSize: 3, stride: 2, padding: 1 });
    this.stem = new Sequential(conv1, bn1, new ReLU(), maxpool);
    const plan: [number, number][] = [
      [64, 1],
      [128, 2],
      [256, 2],
      [512, 2],
    ];
    let inPlanes = 64;
    this.layers = plan.map(([planes, stride], i) => {
      const layer = new Sequential(
        new BasicBlock(inPlanes, planes, stride, generator),
        new BasicBlock(planes, planes, 1, generator),
      );
      inPlanes = planes;
      return this.child(`layer${i + 1}`, layer);
    });
    // torchvision's init: kaiming_normal_(fan_out, relu) for convs; batchnorm weight 1, bias 0 (their constructors'
    // default).
    for (const [name, p] of this.namedParameters()) {
      if (p.rank !== 4) continue;
      const w = kaimingNormalFanOut(p.shape, { generator });
      p.device.batcher.copy(w.buffer(name), 0, p.buffer(name), 0, p.size * 4);
      w.dispose();
    }
  }

  /** (N, C, H, W) images → (N, 512) features; (B, T, C, H, W) frames go through forwardFrames. */
  forward(x: Tensor): Tensor {
    if (x.rank === 5) return this.forwardFrames(x);
    if (x.rank !== 4 || x.shape[1] !== this.inChannels) {
      throw new EngineError(`ResNet18: input [${x.shape.join(', ')}] is not (batch, ${this.inChannels}, H, W)`);
    }
    let h = this.stem.forward(x);
    for (const layer of this.layers) {
      const next = layer.forward(h);
      h.dispose();
      h = next;
    }
    const pooled = this.pool.forward(h);
    h.dispose();
    const f = reshape(pooled, [x.shape[0]!, ResNet18.featureDim]);
    pooled.dispose();
    return f;
  }

  /** (B, T, C, H, W) frames → (B, 512): the T frames are folded into the batch and their features averaged. */
  forwardFrames(x: Tensor): Tensor {
    if (x.rank !== 5 || x.shape[2] !== this.inChannels) {
      throw new EngineError(`ResNet18: frames [${x.shape.join(', ')}] are not (batch, time, ${this.inChannels}, H, W)`);
    }
    const [b, t, c, h, w] = x.shape as [number, number, number, number, number];
    const folded = reshape(x, [b * t, c, h, w]);
    const f = this.forward(folded);
    folded.dispose();
    const ft = reshape(f, [b, t, ResNet18.featureDim]);
    f.dispose();
    const out = mean(ft, 1);
    ft.dispose();
    return out;
  }
}
