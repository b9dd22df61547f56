// Parameter initialisers with PyTorch's default formulas, drawn from a seedable Generator.
import { rand, randn, tensor } from '../creation.ts';
import type { Generator } from '../random.ts';
import type { Tensor } from '../tensor.ts';

export interface InitOptions {
  generator?: Generator;
}

/** U(−bound, bound). */
export function uniform(shape: readonly number[], bound: number, opts: InitOptions = {}): Tensor {
  return rand(shape, { low: -bound, high: bound, generator: opts.generator });
}

/** fan_in and fan_out of a weight shaped (out, in, ...kernel), as torch.nn.init._calculate_fan_in_and_fan_out. */
export function fans(shape: readonly number[]): [number, number] {
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return [(shape[1] ?? 1) * receptive, shape[0]! * receptive];
}

/** torch's default for Linear/Conv weights, kaiming_uniform_(a=√5): U(±1/√fan_in); biases use the same bound. */
export function defaultWeight(shape: readonly number[], opts: InitOptions = {}): Tensor {
  return uniform(shape, 1 / Math.sqrt(fans(shape)[0]), opts);
}

/** kaiming_normal_(mode='fan_out', nonlinearity='relu'): N(0, 2/fan_out), torchvision's conv init. */
export function kaimingNormalFanOut(shape: readonly number[], opts: InitOptions = {}): Tensor {
  return randn(shape, { std: Math.sqrt(2 / fans(shape)[1]), generator: opts.generator });
}

/** xavier_uniform_: U(±√(6/(fan_in + fan_out))). */
export function xavierUniform(shape: readonly number[], opts: InitOptions = {}): Tensor {
  const [i, o] = fans(shape);
  return uniform(shape, Math.sqrt(6 / (i + o)), opts);
}

/** trunc_normal_(std) truncated at ±2 std (ViT's position/CLS init), by rejection. */
export function truncNormal(shape: readonly number[], std: number, generator: Generator): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let z: number;
    do z = generator.normal();
    while (Math.abs(z) > 2);
    a[i] = z * std;
  }
  return tensor(a, shape);
}
