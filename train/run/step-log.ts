// What the host reads back of training, every `logEvery` steps and at the end of an epoch: the
// pending steps' losses (one map), the NonFiniteGuard's verdicts (one map) and the integrator's
// telemetry, appended to metrics.jsonl. A step the guard dropped is logged as skipped; when the
// guard halted (onNonFinite 'stop'), the steps after the bad one were never applied and are not
// logged, and the caller stops the run with `describe`'s account of what went wrong.
import {
  concat,
  noGrad,
  reshape,
  tidy,
  type AdamW,
  type GuardReadout,
  type MultimodalStep,
  type NonFiniteGuard,
  type SGD,
  type Tensor,
} from '../../engine/index.ts';
import type { TrainableModel } from '../../models/multimodal.ts';
import { appendRecord, type StepRecord } from './run-log.ts';

export interface StepLogContext {
  /** metrics.jsonl of the run. */
  metrics: string;
  model: TrainableModel;
  optimizer: SGD | AdamW;
  step: MultimodalStep;
  guard: NonFiniteGuard;
  log(line: string): void;
}

/** A step recorded on the GPU whose losses and verdict the host has not read yet. */
interface PendingStep {
  losses: Tensor;
  lr: number;
}

/** What a readback found: the last main loss logged, and the guard's halt (onNonFinite 'stop'). */
export interface Readback {
  last: number | undefined;
  halt?: { first: NonNullable<GuardReadout['first']>; losses: Record<string, number> | undefined };
}

const fmtLoss = (v: number) => (Number.isFinite(v) ? v.toFixed(4) : String(v)); // NaN, Infinity: never JSON's null

export class StepLog {
  /** Telemetry is logged for the steps after this one (1-based). */
  lastTelemetry = 0;
  private readonly pending: PendingStep[] = [];
  private readonly lossNames: string[];
  private readonly groupNames: string[];

  constructor(private readonly c: StepLogContext) {
    this.lossNames = Object.keys(c.model.targets);
    this.groupNames = Object.keys(c.step.opts.encoders);
  }

  /** Steps recorded since the last readback. */
  get size(): number {
    return this.pending.length;
  }

  /** Keeps a step's losses (concatenated on the GPU, nothing read back) and its learning rate. */
  push(losses: Record<string, Tensor>, lr: number): void {
    const names = this.lossNames;
    this.pending.push({
      losses: noGrad(() =>
        tidy(() =>
          concat(
            names.map((n) => reshape(losses[n]!, [1])),
            0,
          ),
        ),
      ),
      lr,
    });
  }

  /** Disposes the steps not read back (training stopped by an error). */
  discard(): void {
    for (const p of this.pending) p.losses.dispose();
    this.pending.length = 0;
  }

  /**
   * Reads back the pending steps' losses and the guard's verdicts (one map each), logs them and
   * the telemetry. `globalStep` counts the steps recorded so far; `t0` is when the run (re)started
   * (performance.now()).
   */
  async flush(epoch: number, globalStep: number, t0: number): Promise<Readback> {
    const { lossNames, pending, c } = this;
    if (!pending.length) return { last: undefined };
    const all = noGrad(() =>
      concat(
        pending.map((p) => p.losses),
        0,
      ),
    );
    const values = (await all.toArray()) as Float32Array;
    all.dispose();
    const verdict = await c.guard.read();
    const dropped = new Map(verdict.dropped.map((d) => [d.step, d]));
    const haltAt = verdict.halted ? verdict.first!.step : Infinity; // 0-based global step
    const first = globalStep - pending.length; // 0-based index of pending[0]
    const time = (performance.now() - t0) / 1000;
    let last: number | undefined;
    const lossesOf = (k: number) => Object.fromEntries(lossNames.map((n, i) => [n, values[k * lossNames.length + i]!]));
    pending.forEach((p, k) => {
      const s = first + k;
      if (s > haltAt) return; // dropped by the halt: never applied, not logged
      const loss = lossesOf(k);
      const rec: StepRecord = { type: 'step', epoch: epoch + 1, step: s + 1, steps: 1, loss, lr: p.lr, time_s: time };
      if (dropped.get(s)?.applied === false) rec.skipped = true;
      appendRecord(c.metrics, rec);
      if (!rec.skipped) last = loss[c.model.mainLoss];
    });
    for (const p of pending) p.losses.dispose();
    const stepLosses = new Map(pending.map((_, k) => [first + k, lossesOf(k)]));
    pending.length = 0;
    if (c.step.integrator) this.lastTelemetry = await this.logTelemetry(Math.min(haltAt + 1, globalStep));
    if (verdict.halted) return { last, halt: { first: verdict.first!, losses: stepLosses.get(haltAt) } };
    const skipped = verdict.dropped.filter((d) => !d.applied);
    if (skipped.length) {
      const what = skipped
        .slice(0, 5)
        .map((d) => `step ${d.step + 1} (${this.describe(d.reasons, stepLosses.get(d.step), null, null)})`)
        .join('; ');
      c.log(
        `warning: ${skipped.length} step(s) dropped for non-finite values (--on-nonfinite skip): ` +
          `${what}${skipped.length > 5 ? '; …' : ''}`,
      );
    }
    return { last };
  }

  /** What went wrong in a step, in words: losses (NaN printed as NaN), gradients and where, BatchNorm. */
  describe(
    reasons: readonly string[],
    losses: Record<string, number> | undefined,
    tensor: number | null,
    group: number | null,
  ): string {
    const parts: string[] = [];
    if (losses) {
      const bad = Object.entries(losses).filter(([, v]) => !Number.isFinite(v));
      const ok = Object.entries(losses).filter(([, v]) => Number.isFinite(v));
      const list = (es: [string, number][]) => es.map(([n, v]) => `${n} ${fmtLoss(v)}`).join(', ');
      if (bad.length)
        parts.push(`non-finite loss${bad.length > 1 ? 'es' : ''} ${list(bad)}${ok.length ? ` (${list(ok)})` : ''}`);
    }
    if (reasons.includes('gradient')) {
      const names = this.c.model.namedParameters().map(([k]) => k);
      const groups = this.c.model.encoderGroups();
      let where = '';
      if (group !== null && this.groupNames[group]) where = ` in encoder '${this.groupNames[group]}'`;
      else if (tensor !== null && names[tensor]) {
        const p = this.c.optimizer.params[tensor]!;
        const g = Object.entries(groups).find(([, ps]) => ps.includes(p))?.[0];
        where = ` in ${g ? `encoder '${g}'` : 'the heads'} (first: ${names[tensor]})`;
      }
      parts.push(`non-finite gradients${where}`);
    }
    if (reasons.includes('batchNorm')) parts.push('non-finite BatchNorm batch statistics (running statistics kept)');
    return parts.join('; ') || 'dropped after an earlier non-finite step';
  }

  /**
   * Appends the telemetry records of steps lastTelemetry+1..upTo (1-based); the non-finite steps are reported by the
   * guard.
   */
  private async logTelemetry(upTo: number): Promise<number> {
    const t = await this.c.step.integrator!.telemetry.read({ onNonFinite: 'return' });
    const after = this.lastTelemetry;
    let last = after;
    for (const r of t.records) {
      const s = r.step + 1;
      if (s <= after || s > upTo) continue;
      appendRecord(this.c.metrics, {
        type: 'telemetry',
        step: s,
        group: this.groupNames[r.group]!,
        cos: r.cos,
        alpha: r.alpha,
        norm_m: r.normM,
        norm_u: r.normU,
        norm_h: r.normH,
        scale: r.scale,
        conflict: r.conflict,
        non_finite: r.nonFinite,
      });
      last = Math.max(last, s);
    }
    return last;
  }
}
