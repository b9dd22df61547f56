// The benches' two-encoder late-fusion model: the project's LateFusionClassifier over ResNet-18
// audio (1 channel) and visual (3 channel) encoders, concat → multimodal head, one head per
// encoder; losses() gives the paper's three losses from one forward.
import { crossEntropy, type Tensor } from '../engine/index.ts';
import { LateFusionClassifier } from '../models/late-fusion.ts';
import { ResNet18 } from '../models/resnet.ts';

export class TwoEncoders extends LateFusionClassifier {
  constructor(classes: number) {
    super({
      encoders: {
        audio: { module: new ResNet18({ inChannels: 1, seed: 1 }), features: 512 },
        visual: { module: new ResNet18({ inChannels: 3, seed: 2 }), features: 512 },
      },
      classes,
      seed: 3,
    });
  }
  /** L_m, L_audio, L_visual from one forward (call inside tidy). */
  losses(a: Tensor, v: Tensor, y: Tensor): Record<'mm' | 'audio' | 'visual', Tensor> {
    const out = this.logits({ audio: a, visual: v });
    return { mm: crossEntropy(out.mm!, y), audio: crossEntropy(out.audio!, y), visual: crossEntropy(out.visual!, y) };
  }
}
