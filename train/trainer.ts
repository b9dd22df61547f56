// The training loop: data set → model → per-loss gradients → integrator (MMPareto or a peer) →
// optimizer, all on the GPU. The host reads back only every `logEvery` steps (that many steps' losses
// and the integrator telemetry, one small map each) and at evaluation. Every epoch: evaluate
// the validation split, write `latest.safetensors` (and `best.safetensors` when validation
// improves); at the end, the best-by-validation weights are evaluated once on the test split.
//
// Determinism: initialisation comes from the seed, and epoch e's shuffle from (seed, e) alone,
// so a run resumed from the checkpoint of epoch e continues exactly as an uninterrupted run
// (tested bitwise in test/cli.test.ts).
//
// Faults (docs/RELIABILITY.md): the run directory is locked for the run (train/run-dir.ts); every
// file is written whole or not at all (train/files.ts); a NonFiniteGuard checks every step on the
// GPU, and at the first non-finite loss or gradient the run stops (config.onNonFinite 'stop',
// NonFiniteError) with nothing of that step or the later ones applied, or drops such steps
// ('skip'); an abort (Ctrl-C) stops after the step in progress.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  AdamW, MultimodalStep, NonFiniteGuard, SGD, concat, defaultGenerator, noGrad, reshape, tidy,
  type Device, type GuardReadout, type Tensor,
} from '../engine/index.ts';
import { loadModelState, loadTrainingState, readCheckpoint, saveCheckpoint } from './checkpoint.ts';
import type { RunConfig } from './config.ts';
import { buildSetup, evaluate, formatEval, score, type Setup } from './evaluate.ts';
import { ensureDir, removeCreated, writeFileAtomic } from './files.ts';
import { Loader, disposeBatch } from './loader.ts';
import type { ProgressState } from './progress.ts';
import { lockRunDir, removeTemporaryFiles, type RunLock } from './run-dir.ts';
import { appendRecord, readRecords, type FinalRecord, type RunRecord, type StepRecord } from './run-log.ts';

export const VERSION = '0.1.0';

export interface TrainerEvents {
  progress?(p: ProgressState): void;
  /** Human-readable lines: epoch summaries, warnings. */
  log?(line: string): void;
  /** After epoch `epoch` (1-based) wrote its checkpoints: latest.safetensors holds it (experiments/ keeps copies). */
  epochEnd?(epoch: number, latest: string): void;
}

/** Files of a run directory. */
export const runFiles = (dir: string) => ({
  config: join(dir, 'config.json'),
  metrics: join(dir, 'metrics.jsonl'),
  latest: join(dir, 'latest.safetensors'),
  best: join(dir, 'best.safetensors'),
  /** The state before the step a non-finite stop dropped (for inspection; not resumable). */
  nonFinite: join(dir, 'nonfinite.safetensors'),
});

/** Training stopped by `TrainOptions.signal` (Ctrl-C in the CLI) after a step. */
export class TrainingInterrupted extends Error {}

/** Training stopped at a non-finite loss or gradient (onNonFinite 'stop'); `step` is 1-based. */
export class NonFiniteError extends Error {
  constructor(message: string, readonly step: number) {
    super(message);
  }
}

export interface TrainOptions {
  device: Device;
  /** Aborting stops training after the step in progress (TrainingInterrupted); checkpoints stay as the last epoch wrote them. */
  signal?: AbortSignal;
  /** Continue the run in config.outDir from its latest checkpoint (or start it over if it has none yet). */
  resume?: boolean;
  events?: TrainerEvents;
  /** A data set and model already built (your own data; tests); default buildSetup(config). */
  setup?: Setup;
}

export async function train(config: RunConfig, opts: TrainOptions): Promise<FinalRecord> {
  const { setup, lock, created } = prepareRunDir(config, opts);
  let run: TrainingRun;
  try {
    run = new TrainingRun(config, opts, setup);
  } catch (e) {
    lock.release();
    if (!opts.setup) setup.model.dispose();
    removeCreated(created);
    throw e;
  }
  try {
    return await run.execute();
  } finally {
    run.dispose();
    lock.release();
  }
}

/**
 * Creates (or checks) the run directory, takes its lock, clears a crashed run's temporary files,
 * then builds data and model; on failure releases the lock and leaves no directory it created.
 */
function prepareRunDir(config: RunConfig, opts: TrainOptions): { setup: Setup; lock: RunLock; created: string[] } {
  const files = runFiles(config.outDir);
  const log = (s: string) => opts.events?.log?.(s);
  const { created } = ensureDir(config.outDir, `--out ${config.outDir}`);
  let lock: RunLock | null = null;
  try {
    lock = lockRunDir(config.outDir, opts.resume ? 'train --resume' : 'train', log);
    const gone = removeTemporaryFiles(config.outDir);
    if (gone.length) log(`removed ${gone.length} temporary file(s) an interrupted run left: ${gone.join(', ')}`);
    if (!opts.resume && existsSync(files.latest)) {
      throw new Error(`${config.outDir} already holds a run (latest.safetensors); pass --resume to continue it, or choose another --out`);
    }
    if (!opts.resume && existsSync(files.metrics)) {
      throw new Error(`${config.outDir} holds a run that stopped before its first checkpoint (metrics.jsonl, no latest.safetensors); pass --resume to start it over, or choose another --out`);
    }
    return { setup: opts.setup ?? buildSetup(config), lock, created };
  } catch (e) {
    lock?.release();
    removeCreated(created);
    throw e;
  }
}

/** A step recorded on the GPU whose losses and verdict the host has not read yet. */
interface PendingStep {
  losses: Tensor;
  lr: number;
}

const fmtLoss = (v: number) => (Number.isFinite(v) ? v.toFixed(4) : String(v)); // NaN, Infinity: never JSON's null

class TrainingRun {
  private readonly files: ReturnType<typeof runFiles>;
  private readonly optimizer: SGD | AdamW;
  private readonly guard: NonFiniteGuard;
  private readonly step: MultimodalStep;
  private readonly loader: Loader;
  private readonly groupNames: string[];
  private readonly lossNames: string[];
  private readonly totalSteps: number;
  private epoch = 0; // epochs completed
  private globalStep = 0;
  private bestVal = -Infinity;
  private bestEpoch = 0;
  private lastTelemetry = 0;
  private stepsThisRun = 0;
  private t0 = performance.now();

  constructor(private readonly config: RunConfig, private readonly opts: TrainOptions, private readonly setup: Setup) {
    const { dataset, model } = setup;
    this.files = runFiles(config.outDir);
    this.log(`data: ${dataset.description}`);
    this.log(`model: ${config.model} (${model.numParameters().toLocaleString('en-US')} parameters), method ${config.method}, ${config.optimizer} lr ${config.lr}`);
    const params = model.parameters();
    this.optimizer = config.optimizer === 'adamw'
      ? new AdamW(params, { lr: config.lr, weightDecay: config.weightDecay })
      : new SGD(params, { lr: config.lr, momentum: config.momentum, weightDecay: config.weightDecay });
    const groups = model.encoderGroups();
    this.groupNames = Object.keys(groups);
    // BatchNorm running statistics: restored if a step is dropped (num_batches_tracked counts every training batch, as a forward counter).
    const running = model.namedBuffers().filter(([k]) => !k.endsWith('num_batches_tracked')).map(([, t]) => t);
    this.guard = new NonFiniteGuard(opts.device, { mode: config.onNonFinite ?? 'stop', protect: running, ringSteps: config.logEvery });
    this.step = new MultimodalStep({
      method: config.method, encoders: groups, optimizer: this.optimizer, mainLoss: model.mainLoss, gamma: config.gamma, telemetrySteps: config.logEvery, guard: this.guard,
    });
    this.loader = new Loader(dataset.train, dataset, { batchSize: config.batchSize, shuffle: true, seed: config.seed, dropLast: true, normalize: setup.normalize });
    this.totalSteps = this.loader.batchesPerEpoch * config.epochs;
    this.lossNames = Object.keys(model.targets);
  }

  private log(s: string): void {
    this.opts.events?.log?.(s);
  }

  async execute(): Promise<FinalRecord> {
    const { config, files, setup } = this;
    if (this.opts.resume) this.resume();
    this.guard.step = this.globalStep;
    writeFileAtomic(files.config, new TextEncoder().encode(JSON.stringify({ ...config, version: VERSION, device: this.opts.device.adapterName }, null, 2) + '\n'));
    this.t0 = performance.now();
    this.lastTelemetry = this.globalStep;
    while (this.epoch < config.epochs) {
      await this.trainEpoch(this.epoch);
      this.epoch++;
      const val = await evaluate(setup, setup.dataset.val, 'val', this.epoch, this.globalStep, 256);
      appendRecord(files.metrics, val);
      const improved = score(val) > this.bestVal;
      if (improved) [this.bestVal, this.bestEpoch] = [score(val), this.epoch];
      const meta = { epoch: this.epoch, step: this.globalStep, bestVal: this.bestVal, bestEpoch: this.bestEpoch, rng: { default: defaultGenerator.state }, config: JSON.stringify(config) };
      if (improved) await saveCheckpoint(files.best, { model: setup.model }, meta);
      await saveCheckpoint(files.latest, { model: setup.model, optimizer: this.optimizer, step: this.step }, meta);
      this.opts.events?.epochEnd?.(this.epoch, files.latest);
      this.log(`epoch ${this.epoch}/${config.epochs}: val ${formatEval(val)}${improved ? ' (best)' : ''} | ${((performance.now() - this.t0) / 1000).toFixed(1)} s`);
    }
    // Test once, with the best-by-validation weights.
    const best = readCheckpoint(existsSync(files.best) ? files.best : files.latest);
    loadModelState(best, setup.model);
    this.log(`testing epoch ${best.meta.epoch} (best by validation) on ${setup.dataset.test.n} test items…`);
    const test = await evaluate(setup, setup.dataset.test, 'test', best.meta.epoch, best.meta.step, 256);
    const wall = (performance.now() - this.t0) / 1000;
    const final: FinalRecord = { type: 'final', best_epoch: this.bestEpoch, best_val: this.bestVal, test, wall_s: wall, steps_per_s: this.stepsThisRun / wall };
    appendRecord(files.metrics, final);
    return final;
  }

  /**
   * Model, optimizer, integrator and generator state from latest.safetensors; the log cut back to
   * it. A run that stopped before its first checkpoint starts over (its log and a best.safetensors
   * written just before the crash are removed).
   */
  private resume(): void {
    const { files } = this;
    if (!existsSync(files.latest)) {
      for (const f of [files.metrics, files.best]) rmSync(f, { force: true });
      this.log(`no checkpoint yet in ${this.config.outDir} (the run stopped during its first epoch): starting it over`);
      return;
    }
    const ckpt = readCheckpoint(files.latest);
    if (ckpt.meta.epoch > this.config.epochs) throw new Error(`--resume: the run has finished ${ckpt.meta.epoch} epochs; --epochs ${this.config.epochs} would undo them`);
    if (ckpt.meta.epoch === this.config.epochs && existsSync(files.metrics) && readRecords(files.metrics).some((r) => r.type === 'final')) {
      throw new Error(`--resume: the run already finished its ${ckpt.meta.epoch} epochs; raise --epochs to train on`);
    }
    loadTrainingState(ckpt, { model: this.setup.model, optimizer: this.optimizer, step: this.step });
    this.guard.snapshot(); // the loaded running statistics and integrator state are the rollback point
    ({ epoch: this.epoch, step: this.globalStep, bestVal: this.bestVal, bestEpoch: this.bestEpoch } = ckpt.meta);
    if (ckpt.meta.rng.default) defaultGenerator.state = ckpt.meta.rng.default;
    // Drop what was logged after the checkpoint (a crash mid-epoch), so the log reads as one run.
    if (existsSync(files.metrics)) {
      const kept = readRecords(files.metrics).filter((r) => keepOnResume(r, this.epoch, this.globalStep));
      writeFileAtomic(files.metrics, new TextEncoder().encode(kept.map((r) => JSON.stringify(r) + '\n').join('')));
    }
    this.log(`resumed from ${files.latest}: epoch ${this.epoch}, step ${this.globalStep}`);
  }

  /**
   * One epoch of steps; every logEvery steps (and at the end) one readback of the step losses, the
   * guard's verdicts and the telemetry. Between steps the event loop runs (Ctrl-C is seen after
   * the step in progress, not at the next readback).
   */
  private async trainEpoch(epoch: number): Promise<void> {
    const { config, setup: { model }, lossNames } = this;
    model.train();
    const pending: PendingStep[] = []; // steps since the last readback, their loss vectors on the GPU
    let intervalStart = performance.now();
    let rate = 0;
    let lastLoss = NaN;
    const perEpoch = this.loader.batchesPerEpoch;
    try {
      for (const b of this.loader.batches(epoch)) {
        if (this.opts.signal?.aborted) {
          disposeBatch(b);
          await this.flush(epoch, pending);
          throw new TrainingInterrupted(this.interruptedMessage(epoch, b.index));
        }
        if (config.lrSchedule === 'cosine') this.optimizer.lr = 0.5 * config.lr * (1 + Math.cos((Math.PI * this.globalStep) / this.totalSteps));
        const losses = tidy(() => model.losses(b));
        pending.push({ losses: noGrad(() => tidy(() => concat(lossNames.map((n) => reshape(losses[n]!, [1])), 0))), lr: this.optimizer.lr });
        this.step.step(losses);
        for (const l of Object.values(losses)) l.dispose();
        disposeBatch(b);
        this.globalStep++;
        this.stepsThisRun++;
        if (pending.length === config.logEvery || b.index === perEpoch - 1) {
          const n = pending.length;
          lastLoss = (await this.flush(epoch, pending)) ?? lastLoss;
          const now = performance.now();
          rate = n / ((now - intervalStart) / 1000);
          intervalStart = now;
        }
        this.opts.events?.progress?.({ epoch: epoch + 1, epochs: config.epochs, step: b.index + 1, steps: perEpoch, loss: lastLoss, stepsPerSecond: rate, remaining: this.totalSteps - this.globalStep });
        await new Promise<void>((r) => setImmediate(r)); // let a signal handler run
      }
    } finally {
      for (const p of pending) p.losses.dispose();
    }
  }

  /**
   * Reads back the pending steps' losses and the guard's verdicts (one map each), logs them and
   * the telemetry; throws NonFiniteError when the guard halted. Returns the last main loss logged.
   */
  private async flush(epoch: number, pending: PendingStep[]): Promise<number | undefined> {
    if (!pending.length) return undefined;
    const { lossNames, setup: { model } } = this;
    const all = noGrad(() => concat(pending.map((p) => p.losses), 0));
    const values = (await all.toArray()) as Float32Array;
    all.dispose();
    const verdict = await this.guard.read();
    const dropped = new Map(verdict.dropped.map((d) => [d.step, d]));
    const haltAt = verdict.halted ? verdict.first!.step : Infinity; // 0-based global step
    const first = this.globalStep - pending.length; // 0-based index of pending[0]
    const time = (performance.now() - this.t0) / 1000;
    let last: number | undefined;
    const lossesOf = (k: number) => Object.fromEntries(lossNames.map((n, i) => [n, values[k * lossNames.length + i]!]));
    pending.forEach((p, k) => {
      const s = first + k;
      if (s > haltAt) return; // dropped by the halt: never applied, not logged
      const loss = lossesOf(k);
      const rec: StepRecord = { type: 'step', epoch: epoch + 1, step: s + 1, steps: 1, loss, lr: p.lr, time_s: time };
      if (dropped.get(s)?.applied === false) rec.skipped = true;
      appendRecord(this.files.metrics, rec);
      if (!rec.skipped) last = loss[model.mainLoss];
    });
    for (const p of pending) p.losses.dispose();
    const stepLosses = new Map(pending.map((_, k) => [first + k, lossesOf(k)]));
    pending.length = 0;
    if (this.step.integrator) this.lastTelemetry = await logTelemetry(this.step, this.groupNames, this.files.metrics, this.lastTelemetry, Math.min(haltAt + 1, this.globalStep));
    if (verdict.halted) await this.stopAtNonFinite(verdict, stepLosses.get(haltAt), epoch);
    const skipped = verdict.dropped.filter((d) => !d.applied);
    if (skipped.length) {
      const what = skipped.slice(0, 5).map((d) => `step ${d.step + 1} (${this.describe(d.reasons, stepLosses.get(d.step), null, null)})`).join('; ');
      this.log(`warning: ${skipped.length} step(s) dropped for non-finite values (--on-nonfinite skip): ${what}${skipped.length > 5 ? '; …' : ''}`);
    }
    return last;
  }

  /** What went wrong in a step, in words: losses (NaN printed as NaN), gradients and where, BatchNorm. */
  private describe(reasons: readonly string[], losses: Record<string, number> | undefined, tensor: number | null, group: number | null): string {
    const parts: string[] = [];
    if (losses) {
      const bad = Object.entries(losses).filter(([, v]) => !Number.isFinite(v));
      const ok = Object.entries(losses).filter(([, v]) => Number.isFinite(v));
      if (bad.length) parts.push(`non-finite loss${bad.length > 1 ? 'es' : ''} ${bad.map(([n, v]) => `${n} ${fmtLoss(v)}`).join(', ')}${ok.length ? ` (${ok.map(([n, v]) => `${n} ${fmtLoss(v)}`).join(', ')})` : ''}`);
    }
    if (reasons.includes('gradient')) {
      const names = this.setup.model.namedParameters().map(([k]) => k);
      const groups = this.setup.model.encoderGroups();
      let where = '';
      if (group !== null && this.groupNames[group]) where = ` in encoder '${this.groupNames[group]}'`;
      else if (tensor !== null && names[tensor]) {
        const p = this.optimizer.params[tensor]!;
        const g = Object.entries(groups).find(([, ps]) => ps.includes(p))?.[0];
        where = ` in ${g ? `encoder '${g}'` : 'the heads'} (first: ${names[tensor]})`;
      }
      parts.push(`non-finite gradients${where}`);
    }
    if (reasons.includes('batchNorm')) parts.push('non-finite BatchNorm batch statistics (running statistics kept)');
    return parts.join('; ') || 'dropped after an earlier non-finite step';
  }

  /** onNonFinite 'stop': saves the state before the bad step for inspection and throws NonFiniteError. */
  private async stopAtNonFinite(v: GuardReadout, losses: Record<string, number> | undefined, epoch: number): Promise<never> {
    const f = v.first!;
    const s = f.step + 1;
    const after = this.globalStep - s;
    const dir = this.config.outDir;
    let saved: string;
    try {
      const meta = { epoch: this.epoch, step: f.step, bestVal: this.bestVal, bestEpoch: this.bestEpoch, rng: { default: defaultGenerator.state }, config: JSON.stringify(this.config) };
      await saveCheckpoint(this.files.nonFinite, { model: this.setup.model, optimizer: this.optimizer, step: this.step }, meta);
      saved = `the weights, optimizer state and running statistics before it are in ${this.files.nonFinite} (mmpareto eval ${dir} --checkpoint ${this.files.nonFinite})`;
    } catch (e) {
      saved = `saving the state before it failed: ${(e as Error).message}`;
    }
    const resume = this.epoch > 0
      ? `latest.safetensors holds epoch ${this.epoch}: 'mmpareto train --resume --out ${dir}' continues from there`
      : `no epoch finished yet: 'mmpareto train --resume --out ${dir}' starts the run over`;
    throw new NonFiniteError(
      `training stopped at step ${s} (epoch ${epoch + 1}): ${this.describe(f.reasons, losses, f.tensor, f.group)}. ` +
        `Nothing of step ${s}${after ? ` or of the ${after} step(s) after it` : ''} was applied; ${saved}. ` +
        `${resume} (with a lower --lr if training diverged, or --on-nonfinite skip to drop such steps instead).`,
      s,
    );
  }

  private interruptedMessage(epoch: number, batch: number): string {
    const dir = this.config.outDir;
    const repeat = batch > 0 ? `, repeating the ${batch} step(s) of epoch ${epoch + 1} done so far (with identical results)` : '';
    const where = this.epoch > 0
      ? `latest.safetensors holds epoch ${this.epoch}: 'mmpareto train --resume --out ${dir}' continues from there${repeat}`
      : `no epoch finished yet, so there is no checkpoint: 'mmpareto train --resume --out ${dir}' starts the run over`;
    return `interrupted after step ${this.globalStep} (epoch ${epoch + 1}, batch ${batch} of ${this.loader.batchesPerEpoch}); ${where}`;
  }

  dispose(): void {
    this.step.dispose();
    this.guard.dispose();
    this.optimizer.dispose();
    if (!this.opts.setup) this.setup.model.dispose();
  }
}

function keepOnResume(r: RunRecord, epoch: number, step: number): boolean {
  if (r.type === 'final') return false;
  if (r.type === 'eval') return r.epoch <= epoch;
  return r.step <= step;
}

/** Appends the telemetry records of steps after..upTo (1-based); the non-finite steps are reported by the guard. */
async function logTelemetry(step: MultimodalStep, groups: string[], path: string, after: number, upTo: number): Promise<number> {
  const t = await step.integrator!.telemetry.read({ onNonFinite: 'return' });
  let last = after;
  for (const r of t.records) {
    const s = r.step + 1;
    if (s <= after || s > upTo) continue;
    appendRecord(path, {
      type: 'telemetry', step: s, group: groups[r.group]!, cos: r.cos, alpha: r.alpha, norm_m: r.normM, norm_u: r.normU,
      norm_h: r.normH, scale: r.scale, conflict: r.conflict, non_finite: r.nonFinite,
    });
    last = Math.max(last, s);
  }
  return last;
}

/** Reads a run directory's config.json. */
export function readRunConfig(dir: string): RunConfig {
  const path = runFiles(dir).config;
  if (!existsSync(path)) throw new Error(`${dir} is not a run directory (no config.json)`);
  return JSON.parse(readFileSync(path, 'utf8')) as RunConfig;
}
