// The benches' two-encoder late-fusion model: ResNet-18 audio (1 channel) and visual (3 channel)
// encoders, concat → linear multimodal head, one linear head per encoder; the paper's three losses.
import { concat, crossEntropy, type Tensor } from '../engine/index.ts';
import { Linear, Module } from '../engine/nn/index.ts';
import { ResNet18 } from '../models/resnet.ts';

export class TwoEncoders extends Module {
  readonly audio = this.child('audio', new ResNet18({ inChannels: 1, seed: 1 }));
  readonly visual = this.child('visual', new ResNet18({ inChannels: 3, seed: 2 }));
  readonly head: Linear;
  readonly headAudio: Linear;
  readonly headVisual: Linear;
  constructor(classes: number) {
    super();
    this.head = this.child('head', new Linear(1024, classes));
    this.headAudio = this.child('head_audio', new Linear(512, classes));
    this.headVisual = this.child('head_visual', new Linear(512, classes));
  }
  /** L_m, L_audio, L_visual from one forward (call inside tidy). */
  losses(a: Tensor, v: Tensor, y: Tensor): Record<'mm' | 'audio' | 'visual', Tensor> {
    const fa = this.audio.forward(a);
    const fv = this.visual.forward(v);
    return {
      mm: crossEntropy(this.head.forward(concat([fa, fv], 1)), y),
      audio: crossEntropy(this.headAudio.forward(fa), y),
      visual: crossEntropy(this.headVisual.forward(fv), y),
    };
  }
}
