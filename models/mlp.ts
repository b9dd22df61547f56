// A plain multilayer perceptron from engine ops (tanh hidden layers), initialised like
// torch.nn.Linear: U(-1/√in, 1/√in) for weights and biases.
import { Generator, linear, rand, tanh, type Tensor } from '../engine/index.ts';

export class MLP {
  readonly weights: Tensor[] = [];
  readonly biases: Tensor[] = [];
  constructor(sizes: readonly number[], seed = 0) {
    const generator = new Generator(seed);
    for (let i = 0; i + 1 < sizes.length; i++) {
      const bound = 1 / Math.sqrt(sizes[i]!);
      const opts = { generator, low: -bound, high: bound, requiresGrad: true };
      this.weights.push(rand([sizes[i + 1]!, sizes[i]!], opts));
      this.biases.push(rand([sizes[i + 1]!], opts));
    }
  }
  get parameters(): Tensor[] {
    return [...this.weights, ...this.biases];
  }
  forward(x: Tensor): Tensor {
    let h = x;
    this.weights.forEach((w, i) => {
      const y = linear(h, w, this.biases[i]);
      h = i + 1 < this.weights.length ? tanh(y) : y;
    });
    return h;
  }
}
