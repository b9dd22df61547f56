// The CG-MNIST encoder of PMR (Fan et al., CVPR 2023), which MMPareto reuses for its
// Colored-and-gray-MNIST experiments. Layer sizes follow the `convnet` of the authors' public
// code (fanyunfeng-bit/Modal-Imbalance-PMR, models/basic_model.py), with the same parameter
// names so checkpoints line up:
//   bn0 (batchnorm on the raw input) → conv1 5×5 in→32 (stride 1, pad 2) → relu
//   → maxpool 3×3 (stride 2, pad 1) → conv2 3×3 32→32 (stride 1, pad 1) → relu
//   → conv3 3×3 32→64 (stride 2, pad 1) → relu → conv4 3×3 64→64 (stride 1, pad 1) → relu
//   → global average pool → fc 64→512.
// The authors pool with AvgPool2d(7), which is global on 28×28 items; a global (adaptive 1×1)
// pool is the same there and also accepts other item sizes (e.g. 28×56).
import { EngineError, Generator, adaptiveAvgPool2d, maxPool2d, relu, reshape, type Tensor } from '../engine/index.ts';
import { BatchNorm2d, Conv2d, Linear, Module } from '../engine/nn/index.ts';

export interface CGEncoderOptions {
  /** Channels of the item image: 1 (gray) or 3 (colour), any positive integer. */
  inChannels: number;
  /** Seed of the generator that draws the initial weights (default 0); ignored with `generator`. */
  seed?: number;
  /** Draw the initial weights from this generator instead (it advances). */
  generator?: Generator;
}

export class CGEncoder extends Module {
  /** Width of the feature vector `forward` returns. */
  static readonly featureDim = 512;
  readonly features = CGEncoder.featureDim;
  readonly inChannels: number;
  readonly bn0: BatchNorm2d;
  readonly conv1: Conv2d;
  readonly conv2: Conv2d;
  readonly conv3: Conv2d;
  readonly conv4: Conv2d;
  readonly fc: Linear;

  constructor(opts: CGEncoderOptions) {
    super();
    const c = opts.inChannels;
    if (!Number.isInteger(c) || c < 1)
      throw new EngineError(`CGEncoder: inChannels must be a positive integer, got ${c}`);
    this.inChannels = c;
    const generator = opts.generator ?? new Generator(opts.seed ?? 0);
    this.bn0 = this.child('bn0', new BatchNorm2d(c));
    this.conv1 = this.child('conv1', new Conv2d(c, 32, 5, { stride: 1, padding: 2, generator }));
    this.conv2 = this.child('conv2', new Conv2d(32, 32, 3, { stride: 1, padding: 1, generator }));
    this.conv3 = this.child('conv3', new Conv2d(32, 64, 3, { stride: 2, padding: 1, generator }));
    this.conv4 = this.child('conv4', new Conv2d(64, 64, 3, { stride: 1, padding: 1, generator }));
    this.fc = this.child('fc', new Linear(64, CGEncoder.featureDim, { generator }));
  }

  /** (N, C, H, W) images → (N, 512) features. */
  forward(x: Tensor): Tensor {
    if (x.rank !== 4 || x.shape[1] !== this.inChannels) {
      throw new EngineError(
        `CGEncoder: input [${x.shape.join(', ')}] is not (batch, ${this.inChannels}, height, width)`,
      );
    }
    const steps: ((t: Tensor) => Tensor)[] = [
      (t) => this.bn0.forward(t),
      (t) => this.conv1.forward(t),
      relu,
      (t) => maxPool2d(t, { kernelSize: 3, stride: 2, padding: 1 }),
      (t) => this.conv2.forward(t),
      relu,
      (t) => this.conv3.forward(t),
      relu,
      (t) => this.conv4.forward(t),
      relu,
      (t) => adaptiveAvgPool2d(t, 1),
      (t) => reshape(t, [x.shape[0]!, 64]),
      (t) => this.fc.forward(t),
    ];
    // Intermediates are disposed as soon as the next step ran (the graph keeps what backward needs).
    let h = x;
    for (const f of steps) {
      const next = f(h);
      if (h !== x && next !== h) h.dispose();
      h = next;
    }
    return h;
  }
}
