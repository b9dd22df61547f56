// NonFiniteGuard: NaN/±Inf detection for training steps that never wait on the GPU. Each step
// checks its losses, its gradients (or, with a gradient integrator, the groups' Gram finiteness)
// and BatchNorm's refused running-stat updates, on the GPU, before any update runs; every update
// kernel of the step reads the verdict. A bad step changes nothing: parameters, optimizer state,
// and the protected tensors (BatchNorm running statistics, integrator state, restored from a
// backup) stay as they were before it. In 'stop' mode the first bad step also halts the guard, so
// the steps the host records before its next readback are dropped as well, and the state on the
// GPU is the state before the bad step until reset(). read() fetches the verdicts with one map.
//
// Usage (MultimodalStep does this when given `guard`):
//   const guard = new NonFiniteGuard(device, { mode: 'stop', protect: modelBuffers });
//   per step: forward; backward; guard.checkLosses(losses); guard.checkTensors(grads, indices);
//             opt.step(guard); guard.end();
//   every N steps: const r = await guard.read(); if (r.halted) … r.first.step, r.first.reasons
import { NONFINITE_COUNTERS, type Device } from '../device.ts';
import { EngineError } from '../errors.ts';
import { empty, type Tensor } from '../tensor.ts';
import { fill } from '../ops/elementwise.ts';
import type { Optimizer } from '../optim.ts';
import {
  GUARD,
  GUARD_LOSSES_PER_DISPATCH,
  GUARD_REASON,
  NOT_APPLIED,
  guardEndKernel,
  guardFoldKernel,
  guardLossesKernel,
  guardRollbackKernel,
  guardTensorKernel,
} from '../../shaders/guard.ts';

export type NonFiniteReason = keyof typeof GUARD_REASON;

export interface NonFiniteGuardOptions {
  /**
   * 'stop' (default): the first bad step drops every later update until reset(). 'skip': only bad steps are dropped.
   */
  mode?: 'stop' | 'skip';
  /** Tensors that change outside the optimizer (BatchNorm running statistics): restored when a step is dropped. */
  protect?: readonly Tensor[];
  /** Steps whose verdicts read() can list (a ring): at least the steps between two reads. Default 64. */
  ringSteps?: number;
}

export interface GuardedStep {
  step: number;
  /** Why it was bad (empty: it was fine, but dropped because the guard had halted). */
  reasons: NonFiniteReason[];
  applied: boolean;
}

export interface GuardReadout {
  /** 'stop' mode after a bad step: no update runs until reset(). */
  halted: boolean;
  /** Bad steps over the guard's life (since the last reset()). */
  badSteps: number;
  /**
   * The first bad step: which losses (indices as given to checkLosses), the lowest bad tensor index (checkTensors), the
   * lowest bad group (integrator).
   */
  first: {
    step: number;
    reasons: NonFiniteReason[];
    losses: number[];
    tensor: number | null;
    group: number | null;
  } | null;
  lastBad: number | null;
  /** Steps ended since the previous read() (the last ringSteps of them) that were bad or dropped. */
  dropped: GuardedStep[];
}

const reasonsOf = (bits: number): NonFiniteReason[] =>
  (Object.keys(GUARD_REASON) as NonFiniteReason[]).filter((r) => (bits & GUARD_REASON[r]) !== 0);
const NONE = 0xffffffff;

export class NonFiniteGuard {
  readonly mode: 'stop' | 'skip';
  readonly ringSteps: number;
  /** Index of the next step end() closes (set it when resuming a count, e.g. to the global step). */
  step = 0;
  private readonly status: Tensor;
  private readonly protected = new Map<Tensor, Tensor>(); // tensor → backup
  private readonly optimizers = new Set<Optimizer>();
  /** Host side of the ring: per step, how each optimizer's step counts advanced (to rewind dropped steps). */
  private readonly counts = new Map<number, Map<Optimizer, number[]>>();
  private lastCounts = new Map<Optimizer, number[]>();
  private readUpTo = 0; // steps < readUpTo were reported by read()
  private disposed = false;

  constructor(
    readonly device: Device,
    opts: NonFiniteGuardOptions = {},
  ) {
    const mode = opts.mode ?? 'stop';
    if (mode !== 'stop' && mode !== 'skip')
      throw new EngineError(`NonFiniteGuard: mode must be 'stop' or 'skip', got '${String(mode)}'`);
    const ring = opts.ringSteps ?? 64;
    if (!Number.isInteger(ring) || ring < 1)
      throw new EngineError(`NonFiniteGuard: ringSteps must be an integer >= 1, got ${ring}`);
    this.mode = mode;
    this.ringSteps = ring;
    this.status = fill([GUARD.ring + 2 * ring], 0, device, 'int32');
    this.runEnd(true);
    this.protect(opts.protect ?? []);
  }

  /** The status buffer (bound read-only by guarded update kernels). */
  get statusBuffer(): GPUBuffer {
    return this.status.buffer('NonFiniteGuard');
  }

  /** Adds tensors restored on a dropped step, backing up their current values. */
  protect(tensors: readonly Tensor[]): void {
    this.live('protect');
    for (const t of tensors) {
      if (t.device !== this.device) throw new EngineError(`NonFiniteGuard.protect: ${t} lives on another device`);
      if (this.protected.has(t)) continue;
      const backup = empty(t.shape, t.dtype, this.device);
      this.protected.set(t, backup);
      this.device.batcher.copy(t.buffer('NonFiniteGuard.protect'), 0, backup.rawBuffer, 0, Math.max(4, t.size * 4));
    }
  }
  isProtected(t: Tensor): boolean {
    return this.protected.has(t);
  }

  /** Backs up the protected tensors again (after loading them from a checkpoint). */
  snapshot(): void {
    this.live('snapshot');
    for (const [t, b] of this.protected)
      this.device.batcher.copy(t.buffer('NonFiniteGuard.snapshot'), 0, b.rawBuffer, 0, Math.max(4, t.size * 4));
  }

  /** Rewinds `opt`'s host step counts (AdamW) for the steps this guard drops. */
  trackOptimizer(opt: Optimizer): void {
    if (opt.stepCounts && !this.optimizers.has(opt)) {
      this.optimizers.add(opt);
      this.lastCounts.set(opt, [...opt.stepCounts]);
    }
  }

  /**
   * Checks scalar losses (bit j of the report's loss list = losses[j]) and BatchNorm's refused updates. Call once per
   * step.
   */
  checkLosses(losses: readonly Tensor[]): void {
    this.live('checkLosses');
    if (losses.length > 32)
      throw new EngineError(`NonFiniteGuard.checkLosses: at most 32 losses, got ${losses.length}`);
    for (let base = 0; base === 0 || base < losses.length; base += GUARD_LOSSES_PER_DISPATCH) {
      const part = losses.slice(base, base + GUARD_LOSSES_PER_DISPATCH);
      for (const l of part)
        if (l.size !== 1 || l.dtype !== 'float32')
          throw new EngineError(`NonFiniteGuard.checkLosses: expected float32 scalars, got ${l}`);
      this.device.dispatch({
        kernel: guardLossesKernel,
        variant: { n: part.length },
        params: { base, counter: NONFINITE_COUNTERS.batchNorm },
        bindings: {
          status: this.status.rawBuffer,
          counters: this.device.nonFiniteCounters,
          loss: part.map((l) => l.buffer('NonFiniteGuard.checkLosses')),
        },
      });
    }
  }

  /**
   * Checks tensors (gradients) for NaN/±Inf; a bad one is reported by its index in `indices` (default its position).
   * Nulls are skipped.
   */
  checkTensors(tensors: readonly (Tensor | null | undefined)[], indices?: readonly number[]): void {
    this.live('checkTensors');
    tensors.forEach((t, k) => {
      if (!t || t.size === 0) return;
      if (t.dtype !== 'float32') throw new EngineError(`NonFiniteGuard.checkTensors: ${t} is not float32`);
      const n4 = Math.ceil(t.size / 4);
      this.device.dispatch({
        kernel: guardTensorKernel,
        params: { n: t.size, n4, index: indices?.[k] ?? k },
        bindings: { status: this.status.rawBuffer, xs: t.buffer('NonFiniteGuard.checkTensors') },
      });
    });
  }

  /**
   * For a gradient integrator, after its solve: groups whose valid flag (word `valid` of each
   * `stride`-float block of `state`) is 0 make the step bad, and a dropped step clears every flag.
   */
  foldGroups(state: Tensor, groups: number, stride: number, valid: number): void {
    this.live('foldGroups');
    this.device.dispatch({
      kernel: guardFoldKernel,
      params: { groups, stride, valid },
      bindings: { status: this.status.rawBuffer, state: state.buffer('NonFiniteGuard.foldGroups') },
    });
  }

  /** Closes the step: restores or backs up the protected tensors, records the verdict, halts in 'stop' mode. */
  end(): void {
    this.live('end');
    for (const [t, b] of this.protected) {
      const n4 = Math.ceil(t.size / 4);
      this.device.dispatch({
        kernel: guardRollbackKernel,
        params: { n4 },
        bindings: { status: this.status.rawBuffer, xs: t.buffer('NonFiniteGuard.end'), backup: b.rawBuffer },
      });
    }
    this.runEnd(false);
    if (this.optimizers.size) {
      const deltas = new Map<Optimizer, number[]>();
      for (const opt of this.optimizers) {
        const now = opt.stepCounts!;
        const before = this.lastCounts.get(opt)!;
        deltas.set(
          opt,
          now.map((c, i) => c - (before[i] ?? 0)),
        );
        this.lastCounts.set(opt, [...now]);
      }
      this.counts.set(this.step, deltas);
      this.counts.delete(this.step - this.ringSteps);
    }
    this.step++;
  }

  /**
   * Reads the verdicts (one buffer map). Steps dropped since the last read have their optimizers'
   * host step counts rewound, so AdamW's next bias correction counts only the applied steps.
   */
  async read(): Promise<GuardReadout> {
    this.live('read');
    const u = new Uint32Array(
      await this.device.batcher.read(this.statusBuffer, this.status.size * 4, 0, 'NonFiniteGuard.read'),
    );
    const firstStep = u[GUARD.first]!;
    const opt = (v: number) => (v === NONE ? null : v);
    const dropped: GuardedStep[] = [];
    const upTo = this.step;
    for (let s = Math.max(this.readUpTo, upTo - this.ringSteps); s < upTo; s++) {
      const r = GUARD.ring + 2 * (s % this.ringSteps);
      if (u[r] !== s + 1) continue;
      const flags = u[r + 1]!;
      if (flags === 0) continue;
      dropped.push({ step: s, reasons: reasonsOf(flags), applied: (flags & NOT_APPLIED) === 0 });
      if ((flags & NOT_APPLIED) !== 0) this.rewind(s);
    }
    this.readUpTo = upTo;
    for (const s of this.counts.keys()) if (s < upTo - this.ringSteps) this.counts.delete(s);
    return {
      halted: u[GUARD.halt] !== 0,
      badSteps: u[GUARD.count]!,
      first:
        firstStep === 0
          ? null
          : {
              step: firstStep - 1,
              reasons: reasonsOf(u[GUARD.firstReasons]!),
              losses: Array.from({ length: 32 }, (_, j) => j).filter((j) => (u[GUARD.firstLosses]! >>> j) & 1),
              tensor: opt(u[GUARD.firstTensor]!),
              group: opt(u[GUARD.firstGroup]!),
            },
      lastBad: u[GUARD.last] === 0 ? null : u[GUARD.last]! - 1,
      dropped,
    };
  }

  /** Clears the halt, the counters and the ring (after the host dealt with a bad step). */
  reset(): void {
    this.live('reset');
    this.runEnd(true);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.status.dispose();
    for (const b of this.protected.values()) b.dispose();
    this.protected.clear();
  }

  private rewind(step: number): void {
    const deltas = this.counts.get(step);
    if (!deltas) return;
    for (const [opt, d] of deltas) {
      const c = opt.stepCounts!;
      d.forEach((x, i) => {
        c[i]! -= x;
      });
      const last = this.lastCounts.get(opt)!;
      d.forEach((x, i) => {
        last[i] = (last[i] ?? 0) - x;
      });
    }
    this.counts.delete(step);
  }

  private runEnd(reset: boolean): void {
    this.device.dispatch({
      kernel: guardEndKernel,
      params: {
        step: this.step,
        stop: this.mode === 'stop' ? 1 : 0,
        ring: this.ringSteps,
        reset: reset ? 1 : 0,
        counter: NONFINITE_COUNTERS.batchNorm,
      },
      bindings: { status: this.status.rawBuffer, counters: this.device.nonFiniteCounters },
    });
  }

  private live(op: string): void {
    if (this.disposed) throw new EngineError(`NonFiniteGuard.${op}: the guard was disposed`);
  }
}
