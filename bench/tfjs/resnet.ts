// ResNet-18 (+ a 10-class fc) written with tfjs-core ops in NHWC, tfjs's native layout, for
// the training-step comparison. Same architecture and FLOPs as models/resnet.ts: 7×7/2 stem,
// 3×3/2 max pool, BasicBlocks [2,2,2,2] with 1×1/2 downsamples, batch-statistics batchnorm,
// global average pool; cross-entropy and SGD with momentum 0.9. (Running batchnorm statistics
// are not tracked here: a few tiny elementwise ops that do not change the comparison.)
import { tf } from './backend.ts';

type Var = tf.Variable;

export class TfResNet18 {
  private readonly vars: Var[] = [];
  private readonly optimizer = tf.train.momentum(0.01, 0.9);
  private readonly stem: { w: Var; g: Var; b: Var };
  private readonly blocks: {
    c1: Var;
    g1: Var;
    b1: Var;
    c2: Var;
    g2: Var;
    b2: Var;
    down: { w: Var; g: Var; b: Var } | null;
    stride: number;
  }[] = [];
  private readonly fc: { w: Var; b: Var };

  constructor(inChannels: number, classes: number) {
    const conv = (k: number, i: number, o: number) =>
      this.v(tf.randomNormal([k, k, i, o], 0, Math.sqrt(2 / (k * k * o))));
    const bn = (c: number) => ({ g: this.v(tf.ones([c])), b: this.v(tf.zeros([c])) });
    this.stem = { w: conv(7, inChannels, 64), ...bn(64) };
    let inPlanes = 64;
    for (const [planes, stride] of [
      [64, 1],
      [128, 2],
      [256, 2],
      [512, 2],
    ] as const) {
      for (let j = 0; j < 2; j++) {
        const s = j === 0 ? stride : 1;
        const n1 = bn(planes);
        const n2 = bn(planes);
        const down = s !== 1 || inPlanes !== planes ? { w: conv(1, inPlanes, planes), ...bn(planes) } : null;
        this.blocks.push({
          c1: conv(3, inPlanes, planes),
          g1: n1.g,
          b1: n1.b,
          c2: conv(3, planes, planes),
          g2: n2.g,
          b2: n2.b,
          down,
          stride: s,
        });
        inPlanes = planes;
      }
    }
    this.fc = {
      w: this.v(tf.randomUniform([512, classes], -1 / Math.sqrt(512), 1 / Math.sqrt(512))),
      b: this.v(tf.zeros([classes])),
    };
  }

  private v(t: tf.Tensor): Var {
    const v = tf.variable(t);
    t.dispose();
    this.vars.push(v);
    return v;
  }

  private static bn(x: tf.Tensor4D, g: Var, b: Var): tf.Tensor4D {
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    return tf.batchNorm4d(x, mean as tf.Tensor1D, variance as tf.Tensor1D, b as tf.Tensor1D, g as tf.Tensor1D, 1e-5);
  }

  private static conv(x: tf.Tensor4D, w: Var, stride: number, pad: number): tf.Tensor4D {
    return tf.conv2d(
      x,
      w as tf.Tensor4D,
      stride,
      pad === 0
        ? 'valid'
        : [
            [0, 0],
            [pad, pad],
            [pad, pad],
            [0, 0],
          ],
    );
  }

  forward(x: tf.Tensor4D): tf.Tensor2D {
    const C = TfResNet18;
    let h = tf.relu(C.bn(C.conv(x, this.stem.w, 2, 3), this.stem.g, this.stem.b));
    h = tf.maxPool(h, 3, 2, 1);
    for (const k of this.blocks) {
      let y = tf.relu(C.bn(C.conv(h, k.c1, k.stride, 1), k.g1, k.b1));
      y = C.bn(C.conv(y, k.c2, 1, 1), k.g2, k.b2);
      const id = k.down ? C.bn(C.conv(h, k.down.w, k.stride, 0), k.down.g, k.down.b) : h;
      h = tf.relu(tf.add(y, id)) as tf.Tensor4D;
    }
    const f = tf.mean(h, [1, 2]) as tf.Tensor2D;
    return tf.add(tf.matMul(f, this.fc.w as tf.Tensor2D), this.fc.b);
  }

  /** One SGD step on (x NHWC, one-hot labels); returns the loss scalar (caller disposes). */
  step(x: tf.Tensor4D, onehot: tf.Tensor2D): tf.Scalar {
    return this.optimizer.minimize(
      () => tf.losses.softmaxCrossEntropy(onehot, this.forward(x)) as tf.Scalar,
      true,
      this.vars,
    )!;
  }

  dispose(): void {
    for (const v of this.vars) v.dispose();
    this.optimizer.dispose();
  }
}
