// The basic layers, each a thin module over one functional op, with PyTorch's parameter
// names, shapes and default initialisation.
import { EngineError } from '../errors.ts';
import { fill } from '../ops/elementwise.ts';
import {
  relu,
  linear,
  reshape,
  conv2d,
  batchNorm2d,
  maxPool2d,
  adaptiveAvgPool2d,
  layerNorm,
  gelu,
  dropout,
  type Conv2dOptions,
  type Pool2dOptions,
} from '../ops/index.ts';
import { getDevice, type Tensor } from '../tensor.ts';
import { tensor } from '../creation.ts';
import type { Generator } from '../random.ts';
import { Layer } from './module.ts';
import { defaultWeight, fans, uniform, type InitOptions } from './init.ts';

const pair = (v: number | [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : v);

/** torch.nn.Linear: weight (out, in), bias (out). */
export class Linear extends Layer {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: InitOptions & { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.param('weight', defaultWeight([outFeatures, inFeatures], opts));
    this.bias =
      opts.bias === false ? null : this.param('bias', uniform([outFeatures], 1 / Math.sqrt(inFeatures), opts));
  }
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias ?? undefined);
  }
}

export interface Conv2dModuleOptions extends InitOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  bias?: boolean;
}

/** torch.nn.Conv2d (groups = 1): weight (out, in, kh, kw), bias (out). */
export class Conv2d extends Layer {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  private readonly conv: Conv2dOptions;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: number | [number, number],
    opts: Conv2dModuleOptions = {},
  ) {
    super();
    const [kh, kw] = pair(kernelSize);
    const shape = [outChannels, inChannels, kh, kw];
    this.weight = this.param('weight', defaultWeight(shape, opts));
    this.bias =
      opts.bias === false ? null : this.param('bias', uniform([outChannels], 1 / Math.sqrt(fans(shape)[0]), opts));
    this.conv = { stride: opts.stride ?? 1, padding: opts.padding ?? 0, dilation: opts.dilation ?? 1 };
  }
  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, this.conv);
  }
}

/**
 * torch.nn.BatchNorm2d (also takes (N, C) input as BatchNorm1d): weight, bias, running_mean, running_var,
 * num_batches_tracked.
 */
export class BatchNorm2d extends Layer {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  private readonly tracked: Tensor;
  private batches = 0;
  constructor(
    readonly numFeatures: number,
    readonly opts: { eps?: number; momentum?: number } = {},
  ) {
    super();
    const dev = getDevice();
    this.weight = this.param('weight', fill([numFeatures], 1, dev));
    this.bias = this.param('bias', fill([numFeatures], 0, dev));
    this.runningMean = this.buffer('running_mean', fill([numFeatures], 0, dev));
    this.runningVar = this.buffer('running_var', fill([numFeatures], 1, dev));
    // PyTorch keeps an int64 counter; int32 here (it only counts training batches).
    // Uploaded (not a fill dispatch), so the queue writes in forward() stay in order with it.
    this.tracked = this.buffer('num_batches_tracked', tensor(Int32Array.of(0), [], { device: dev }));
  }
  protected override stateLoaded(name: string, value: Float32Array | Int32Array | null): void {
    // The counter lives on the host; a GPU-to-GPU load (value null) cannot be seen here without
    // a readback, so then counting goes on from this module's own value.
    if (name === 'num_batches_tracked' && value) this.batches = value[0]!;
  }
  forward(x: Tensor): Tensor {
    if (this.training) {
      this.batches++;
      const v = Int32Array.of(this.batches);
      this.tracked.device.writeBuffer('BatchNorm2d', this.tracked.buffer('BatchNorm2d'), v);
    }
    return batchNorm2d(x, this.weight, this.bias, this.runningMean, this.runningVar, {
      training: this.training,
      eps: this.opts.eps,
      momentum: this.opts.momentum,
    });
  }
}

export class ReLU extends Layer {
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}

export class GELU extends Layer {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
  }
  forward(x: Tensor): Tensor {
    return gelu(x, { approximate: this.approximate });
  }
}

export class Dropout extends Layer {
  constructor(
    readonly p = 0.5,
    readonly generator?: Generator,
  ) {
    super();
    if (!(p >= 0 && p <= 1)) throw new EngineError(`Dropout: p must be in [0, 1], got ${p}`);
  }
  forward(x: Tensor): Tensor {
    return dropout(x, this.p, { training: this.training, generator: this.generator });
  }
}

export class MaxPool2d extends Layer {
  constructor(readonly opts: Pool2dOptions) {
    super();
  }
  forward(x: Tensor): Tensor {
    return maxPool2d(x, this.opts);
  }
}

export class AdaptiveAvgPool2d extends Layer {
  constructor(readonly outputSize: number | [number, number]) {
    super();
  }
  forward(x: Tensor): Tensor {
    return adaptiveAvgPool2d(x, this.outputSize);
  }
}

/** Flattens every axis after the first: (N, ...) → (N, prod). */
export class Flatten extends Layer {
  forward(x: Tensor): Tensor {
    return reshape(x, [x.shape[0]!, -1]);
  }
}

/** torch.nn.LayerNorm over the last axis: weight (D) = 1, bias (D) = 0. */
export class LayerNorm extends Layer {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
  ) {
    super();
    const dev = getDevice();
    this.weight = this.param('weight', fill([dim], 1, dev));
    this.bias = this.param('bias', fill([dim], 0, dev));
  }
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, { eps: this.eps });
  }
}
