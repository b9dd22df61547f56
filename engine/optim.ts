// Optimizers as shaders: parameters and state are updated in place on the GPU.
import { EngineError } from './device.ts';
import { fill } from './ops/elementwise.ts';
import { grid1d, launch } from './ops/kernel.ts';
import type { Tensor } from './tensor.ts';
import { SGD_MOMENTUM } from '../shaders/optim.ts';

export interface SGDOptions {
  lr: number;
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/** torch.optim.SGD: momentum buffers start at zero, so the first step applies g (dampening 0). */
export class SGD {
  readonly params: readonly Tensor[];
  private readonly buffers: Tensor[];
  constructor(params: readonly Tensor[], readonly opts: SGDOptions) {
    if (!(opts.lr > 0)) throw new EngineError(`SGD: lr must be > 0, got ${opts.lr}`);
    for (const p of params) if (!p.requiresGrad || p.node) throw new EngineError(`SGD: ${p} is not a leaf tensor with requiresGrad`);
    this.params = params;
    this.buffers = params.map((p) => fill(p.shape, 0, p.device));
  }

  /** Applies one update from each parameter's .grad (parameters without a gradient are skipped). */
  step(): void {
    const { lr, momentum = 0, weightDecay = 0, nesterov = false } = this.opts;
    this.params.forEach((p, i) => {
      if (!p.grad) return;
      launch(p.device, {
        op: 'sgd', code: SGD_MOMENTUM, buffers: [p.buffer('sgd'), p.grad.buffer('sgd'), this.buffers[i]!.rawBuffer],
        u32: [p.size, nesterov ? 1 : 0], f32: [lr, momentum, weightDecay], groups: grid1d(p.size),
      });
    });
  }

  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  dispose(): void {
    for (const b of this.buffers) b.dispose();
  }
}
