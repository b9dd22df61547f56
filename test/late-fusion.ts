// A small two-encoder late-fusion model for the per-loss gradient and integrator tests:
// per encoder conv → batchnorm(train) → relu → conv → global average pool; the features are
// concatenated into a linear multimodal head, and each encoder has its own linear head.
import { adaptiveAvgPool2d, concat, crossEntropy, relu, reshape, Generator, type Tensor } from '../engine/index.ts';
import { BatchNorm2d, Conv2d, Linear, Module } from '../engine/nn/index.ts';

export class TinyEncoder extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  constructor(inChannels: number, width: number, generator: Generator) {
    super();
    this.conv1 = this.child('conv1', new Conv2d(inChannels, width, 3, { padding: 1, generator }));
    this.bn1 = this.child('bn1', new BatchNorm2d(width));
    this.conv2 = this.child('conv2', new Conv2d(width, width, 3, { stride: 2, padding: 1, generator }));
  }
  forward(x: Tensor): Tensor {
    const h = this.conv2.forward(relu(this.bn1.forward(this.conv1.forward(x))));
    const p = adaptiveAvgPool2d(h, 1);
    return reshape(p, [x.shape[0]!, -1]);
  }
}

export class LateFusion extends Module {
  readonly audio: TinyEncoder;
  readonly visual: TinyEncoder;
  readonly head: Linear;
  readonly headAudio: Linear;
  readonly headVisual: Linear;
  constructor(readonly width = 4, readonly classes = 3, seed = 0) {
    super();
    const generator = new Generator(seed);
    this.audio = this.child('audio', new TinyEncoder(1, width, generator));
    this.visual = this.child('visual', new TinyEncoder(3, width, generator));
    this.head = this.child('head', new Linear(2 * width, classes, { generator }));
    this.headAudio = this.child('head_audio', new Linear(width, classes, { generator }));
    this.headVisual = this.child('head_visual', new Linear(width, classes, { generator }));
  }
  /** The three losses of the paper's setting from one forward (call inside tidy). */
  losses(a: Tensor, v: Tensor, y: Tensor): { mm: Tensor; audio: Tensor; visual: Tensor } {
    const fa = this.audio.forward(a);
    const fv = this.visual.forward(v);
    return {
      mm: crossEntropy(this.head.forward(concat([fa, fv], 1)), y),
      audio: crossEntropy(this.headAudio.forward(fa), y),
      visual: crossEntropy(this.headVisual.forward(fv), y),
    };
  }
}
