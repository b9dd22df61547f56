// The benches' two-encoder late-fusion model: the project's LateFusionClassifier over ResNet-18
// audio (1 channel) and visual (3 channel) encoders, concat → multimodal head, one head per
// encoder; its losses(batch) gives the paper's three losses (mm, audio, visual) from one forward.
import { LateFusionClassifier } from '../../models/late-fusion.ts';
import { ResNet18 } from '../../models/resnet.ts';

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
}
