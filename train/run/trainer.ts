// The training loop: data set → model → per-loss gradients → integrator (MMPareto or a peer) →
// optimizer, all on the GPU; the objects come from the config in train/run/setup.ts. The host
// reads back only every `logEvery` steps (train/run/step-log.ts: that many steps' losses, the
// guard's verdicts and the integrator telemetry, one small map each) and at evaluation. Every epoch: evaluate
// the validation split, write `latest.safetensors` (and `best.safetensors` when validation
// improves); at the end, the best-by-validation weights are evaluated once on the test split.
//
// Determinism: initialisation comes from the seed, and epoch e's shuffle from (seed, e) alone,
// so a run resumed from the checkpoint of epoch e continues exactly as an uninterrupted run
// (tested bitwise in test/train/cli.test.ts).
//
// Faults (docs/RELIABILITY.md): the run directory is locked for the run (train/run/run-dir.ts); every
// file is written whole or not at all (train/io/files.ts); a NonFiniteGuard checks every step on the
// GPU, and at the first non-finite loss or gradient the run stops (config.onNonFinite 'stop',
// NonFiniteError) with nothing of that step or the later ones applied, or drops such steps
// ('skip'); an abort (Ctrl-C) stops after the step in progress.
import { existsSync, rmSync } from 'node:fs';
import { defaultGenerator, tidy, type Device } from '../../engine/index.ts';
import { removeCreated, writeFileAtomic } from '../io/files.ts';
import { disposeBatch } from '../data/loader.ts';
import { loadModelState, loadTrainingState, readCheckpoint, saveCheckpoint } from './checkpoint.ts';
import { VERSION, type RunConfig } from './config.ts';
import { evaluate, formatEval, score } from './evaluate.ts';
import { openRunDir, runFiles } from './run-dir.ts';
import { appendRecord, keptOnResume, readRecords, type FinalRecord } from './run-log.ts';
import { buildSetup, buildTraining, type Setup, type Training } from './setup.ts';
import { StepLog, type Readback } from './step-log.ts';

/** Where training is, for a progress bar (train/cli/progress.ts) or a sweep's log. */
export interface ProgressState {
  epoch: number;
  epochs: number;
  step: number; // within the epoch
  steps: number; // per epoch
  loss: number;
  stepsPerSecond: number;
  /** Remaining optimizer steps of the whole run. */
  remaining: number;
}

export interface TrainerEvents {
  progress?(p: ProgressState): void;
  /** Human-readable lines: epoch summaries, warnings. */
  log?(line: string): void;
  /** After epoch `epoch` (1-based) wrote its checkpoints: latest.safetensors holds it (experiments/ keeps copies). */
  epochEnd?(epoch: number, latest: string): void;
}

/** Training stopped by `TrainOptions.signal` (Ctrl-C in the CLI) after a step. */
export class TrainingInterrupted extends Error {}

/** Training stopped at a non-finite loss or gradient (onNonFinite 'stop'); `step` is 1-based. */
export class NonFiniteError extends Error {
  constructor(
    message: string,
    readonly step: number,
  ) {
    super(message);
  }
}

export interface TrainOptions {
  device: Device;
  /**
   * Aborting stops training after the step in progress (TrainingInterrupted); checkpoints stay as the last epoch wrote
   * them.
   */
  signal?: AbortSignal;
  /** Continue the run in config.outDir from its latest checkpoint (or start it over if it has none yet). */
  resume?: boolean;
  events?: TrainerEvents;
  /** A data set and model already built (your own data; tests); default buildSetup(config). */
  setup?: Setup;
}

/**
 * Trains a run: takes the run directory (train/run/run-dir.ts), builds data and model from the
 * config unless given, then runs the epochs; on a failed start releases the lock and leaves no
 * directory it created.
 */
export async function train(config: RunConfig, opts: TrainOptions): Promise<FinalRecord> {
  const { lock, created } = openRunDir(config.outDir, opts.resume === true, (s) => opts.events?.log?.(s));
  let setup: Setup | undefined;
  let run: TrainingRun;
  try {
    setup = opts.setup ?? buildSetup(config);
    run = new TrainingRun(config, opts, setup);
  } catch (e) {
    lock.release();
    if (setup && !opts.setup) setup.model.dispose();
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
 * One run of `train`: the optimizer, guard, MultimodalStep and loader built from the config
 * (train/run/setup.ts), the epochs, an evaluation and checkpoints after each, the test at the end.
 */
class TrainingRun {
  private readonly files: ReturnType<typeof runFiles>;
  private readonly t: Training;
  private readonly stepLog: StepLog;
  private readonly totalSteps: number;
  private epoch = 0; // epochs completed
  private globalStep = 0;
  private bestVal = -Infinity;
  private bestEpoch = 0;
  private stepsThisRun = 0;
  private t0 = performance.now();

  constructor(
    private readonly config: RunConfig,
    private readonly opts: TrainOptions,
    private readonly setup: Setup,
  ) {
    const { dataset, model } = setup;
    this.files = runFiles(config.outDir);
    this.log(`data: ${dataset.description}`);
    this.log(
      `model: ${config.model} (${model.numParameters().toLocaleString('en-US')} parameters), method ` +
        `${config.method}, ${config.optimizer} lr ${config.lr}`,
    );
    this.t = buildTraining(config, setup, opts.device);
    this.totalSteps = this.t.loader.batchesPerEpoch * config.epochs;
    this.stepLog = new StepLog({ metrics: this.files.metrics, model, ...this.t, log: (s) => this.log(s) });
  }

  private log(s: string): void {
    this.opts.events?.log?.(s);
  }

  /** What a checkpoint holds besides the tensors: where the run is, the best epoch, the generator, the config. */
  private meta(step: number) {
    return {
      epoch: this.epoch,
      step,
      bestVal: this.bestVal,
      bestEpoch: this.bestEpoch,
      rng: { default: defaultGenerator.state },
      config: JSON.stringify(this.config),
    };
  }

  async execute(): Promise<FinalRecord> {
    const { config, files, setup } = this;
    if (this.opts.resume) this.resume();
    this.t.guard.step = this.globalStep;
    writeFileAtomic(
      files.config,
      new TextEncoder().encode(
        `${JSON.stringify({ ...config, version: VERSION, device: this.opts.device.adapterName }, null, 2)}\n`,
      ),
    );
    this.t0 = performance.now();
    this.stepLog.lastTelemetry = this.globalStep;
    while (this.epoch < config.epochs) {
      await this.trainEpoch(this.epoch);
      this.epoch++;
      const val = await evaluate(setup, setup.dataset.val, 'val', this.epoch, this.globalStep, 256);
      appendRecord(files.metrics, val);
      const improved = score(val) > this.bestVal;
      if (improved) [this.bestVal, this.bestEpoch] = [score(val), this.epoch];
      const meta = this.meta(this.globalStep);
      if (improved) await saveCheckpoint(files.best, { model: setup.model }, meta);
      await saveCheckpoint(files.latest, { model: setup.model, optimizer: this.t.optimizer, step: this.t.step }, meta);
      this.opts.events?.epochEnd?.(this.epoch, files.latest);
      this.log(
        `epoch ${this.epoch}/${config.epochs}: val ${formatEval(val)}${improved ? ' (best)' : ''} | ` +
          `${((performance.now() - this.t0) / 1000).toFixed(1)} s`,
      );
    }
    // Test once, with the best-by-validation weights.
    const best = readCheckpoint(existsSync(files.best) ? files.best : files.latest);
    loadModelState(best, setup.model);
    this.log(`testing epoch ${best.meta.epoch} (best by validation) on ${setup.dataset.test.n} test items…`);
    const test = await evaluate(setup, setup.dataset.test, 'test', best.meta.epoch, best.meta.step, 256);
    const wall = (performance.now() - this.t0) / 1000;
    const final: FinalRecord = {
      type: 'final',
      best_epoch: this.bestEpoch,
      best_val: this.bestVal,
      test,
      wall_s: wall,
      steps_per_s: this.stepsThisRun / wall,
    };
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
    if (ckpt.meta.epoch > this.config.epochs)
      throw new Error(
        `--resume: the run has finished ${ckpt.meta.epoch} epochs; --epochs ${this.config.epochs} would undo them`,
      );
    if (
      ckpt.meta.epoch === this.config.epochs &&
      existsSync(files.metrics) &&
      readRecords(files.metrics).some((r) => r.type === 'final')
    ) {
      throw new Error(`--resume: the run already finished its ${ckpt.meta.epoch} epochs; raise --epochs to train on`);
    }
    loadTrainingState(ckpt, { model: this.setup.model, optimizer: this.t.optimizer, step: this.t.step });
    this.t.guard.snapshot(); // the loaded running statistics and integrator state are the rollback point
    ({ epoch: this.epoch, step: this.globalStep, bestVal: this.bestVal, bestEpoch: this.bestEpoch } = ckpt.meta);
    if (ckpt.meta.rng.default) defaultGenerator.state = ckpt.meta.rng.default;
    // Drop what was logged after the checkpoint (a crash mid-epoch), so the log reads as one run.
    if (existsSync(files.metrics)) {
      const kept = readRecords(files.metrics).filter((r) => keptOnResume(r, this.epoch, this.globalStep));
      writeFileAtomic(files.metrics, new TextEncoder().encode(kept.map((r) => `${JSON.stringify(r)}\n`).join('')));
    }
    this.log(`resumed from ${files.latest}: epoch ${this.epoch}, step ${this.globalStep}`);
  }

  /**
   * One epoch of steps; every logEvery steps (and at the end) one readback of the step losses, the
   * guard's verdicts and the telemetry. Between steps the event loop runs (Ctrl-C is seen after
   * the step in progress, not at the next readback).
   */
  private async trainEpoch(epoch: number): Promise<void> {
    const {
      config,
      setup: { model },
      t: { loader, optimizer, step },
      stepLog,
    } = this;
    model.train();
    let intervalStart = performance.now();
    let rate = 0;
    let lastLoss = NaN;
    const perEpoch = loader.batchesPerEpoch;
    try {
      for (const b of loader.batches(epoch)) {
        if (this.opts.signal?.aborted) {
          disposeBatch(b);
          await this.readBack(epoch);
          throw new TrainingInterrupted(this.interruptedMessage(epoch, b.index));
        }
        if (config.lrSchedule === 'cosine')
          optimizer.lr = 0.5 * config.lr * (1 + Math.cos((Math.PI * this.globalStep) / this.totalSteps));
        const losses = tidy(() => model.losses(b));
        stepLog.push(losses, optimizer.lr);
        step.step(losses);
        for (const l of Object.values(losses)) l.dispose();
        disposeBatch(b);
        this.globalStep++;
        this.stepsThisRun++;
        if (stepLog.size === config.logEvery || b.index === perEpoch - 1) {
          const n = stepLog.size;
          lastLoss = (await this.readBack(epoch)) ?? lastLoss;
          const now = performance.now();
          rate = n / ((now - intervalStart) / 1000);
          intervalStart = now;
        }
        this.opts.events?.progress?.({
          epoch: epoch + 1,
          epochs: config.epochs,
          step: b.index + 1,
          steps: perEpoch,
          loss: lastLoss,
          stepsPerSecond: rate,
          remaining: this.totalSteps - this.globalStep,
        });
        await this.opts.device.throttle(); // keep the GPU queue shallow between readbacks
        await new Promise<void>((r) => setImmediate(r)); // let a signal handler run
      }
    } finally {
      stepLog.discard();
    }
  }

  /** The step log's readback; throws NonFiniteError when the guard halted. Returns the last main loss logged. */
  private async readBack(epoch: number): Promise<number | undefined> {
    const r = await this.stepLog.flush(epoch, this.globalStep, this.t0);
    if (r.halt) await this.stopAtNonFinite(r.halt, epoch);
    return r.last;
  }

  /** onNonFinite 'stop': saves the state before the bad step for inspection and throws NonFiniteError. */
  private async stopAtNonFinite({ first: f, losses }: NonNullable<Readback['halt']>, epoch: number): Promise<never> {
    const s = f.step + 1;
    const after = this.globalStep - s;
    const dir = this.config.outDir;
    let saved: string;
    try {
      await saveCheckpoint(
        this.files.nonFinite,
        { model: this.setup.model, optimizer: this.t.optimizer, step: this.t.step },
        this.meta(f.step),
      );
      saved =
        `the weights, optimizer state and running statistics before it are in ${this.files.nonFinite} ` +
        `(mmpareto eval ${dir} --checkpoint ${this.files.nonFinite})`;
    } catch (e) {
      saved = `saving the state before it failed: ${(e as Error).message}`;
    }
    const resume =
      this.epoch > 0
        ? `latest.safetensors holds epoch ${this.epoch}: 'mmpareto train --resume --out ${dir}' continues from there`
        : `no epoch finished yet: 'mmpareto train --resume --out ${dir}' starts the run over`;
    throw new NonFiniteError(
      `training stopped at step ${s} (epoch ${epoch + 1}): ` +
        `${this.stepLog.describe(f.reasons, losses, f.tensor, f.group)}. ` +
        `Nothing of step ${s}${after ? ` or of the ${after} step(s) after it` : ''} was applied; ${saved}. ` +
        `${resume} (with a lower --lr if training diverged, or --on-nonfinite skip to drop such steps instead).`,
      s,
    );
  }

  private interruptedMessage(epoch: number, batch: number): string {
    const dir = this.config.outDir;
    const repeat =
      batch > 0 ? `, repeating the ${batch} step(s) of epoch ${epoch + 1} done so far (with identical results)` : '';
    const where =
      this.epoch > 0
        ? `latest.safetensors holds epoch ${this.epoch}: 'mmpareto train --resume --out ${dir}' continues from ` +
          `there${repeat}`
        : `no epoch finished yet, so there is no checkpoint: ` +
          `'mmpareto train --resume --out ${dir}' starts the run over`;
    return (
      `interrupted after step ${this.globalStep} (epoch ${epoch + 1}, batch ${batch} of ` +
      `${this.t.loader.batchesPerEpoch}); ${where}`
    );
  }

  dispose(): void {
    this.t.step.dispose();
    this.t.guard.dispose();
    this.t.optimizer.dispose();
    if (!this.opts.setup) this.setup.model.dispose();
  }
}
