// The training loop: data set → model → per-loss gradients → integrator (MMPareto or a peer) →
// optimizer, all on the GPU. The host reads back only every `logEvery` steps (that many steps' losses
// and the integrator telemetry, one small map each) and at evaluation. Every epoch: evaluate
// the validation split, write `latest.safetensors` (and `best.safetensors` when validation
// improves); at the end, the best-by-validation weights are evaluated once on the test split.
//
// Determinism: initialisation comes from the seed, and epoch e's shuffle from (seed, e) alone,
// so a run resumed from the checkpoint of epoch e continues exactly as an uninterrupted run
// (tested bitwise in test/cli.test.ts).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AdamW, MultimodalStep, SGD, concat, crossEntropy, defaultGenerator, noGrad, reshape, tidy, type Device, type Tensor } from '../engine/index.ts';
import { loadModelState, loadTrainingState, readCheckpoint, saveCheckpoint } from './checkpoint.ts';
import type { RunConfig } from './config.ts';
import { buildSetup, evaluate, formatEval, score, type Setup } from './evaluate.ts';
import { Loader, disposeBatch } from './loader.ts';
import type { ProgressState } from './progress.ts';
import { writeFileAtomic } from './safetensors.ts';
import { appendRecord, readRecords, type FinalRecord, type RunRecord } from './run-log.ts';

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
});

/** Training stopped by `TrainOptions.signal` (Ctrl-C in the CLI) between two steps. */
export class TrainingInterrupted extends Error {}

export interface TrainOptions {
  device: Device;
  /** Aborting stops training before the next step (TrainingInterrupted); checkpoints stay as the last epoch wrote them. */
  signal?: AbortSignal;
  /** Continue the run in config.outDir from its latest checkpoint. */
  resume?: boolean;
  events?: TrainerEvents;
}

export async function train(config: RunConfig, opts: TrainOptions): Promise<FinalRecord> {
  const run = new TrainingRun(config, opts, prepareRunDir(config, opts.resume ?? false));
  try {
    return await run.execute();
  } finally {
    run.dispose();
  }
}

/** Creates (or checks) the run directory, then builds data and model; leaves no empty directory on failure. */
function prepareRunDir(config: RunConfig, resume: boolean): Setup {
  const files = runFiles(config.outDir);
  const created = !existsSync(config.outDir);
  try {
    mkdirSync(config.outDir, { recursive: true });
  } catch (e) {
    throw new Error(`cannot create the run directory ${config.outDir}: ${(e as Error).message}`);
  }
  if (!resume && (existsSync(files.metrics) || existsSync(files.latest))) {
    throw new Error(`${config.outDir} already holds a run (metrics.jsonl / latest.safetensors); pass --resume to continue it, or choose another --out`);
  }
  try {
    return buildSetup(config);
  } catch (e) {
    if (created) rmSync(config.outDir, { recursive: true, force: true });
    throw e;
  }
}

class TrainingRun {
  private readonly files: ReturnType<typeof runFiles>;
  private readonly optimizer: SGD | AdamW;
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
    this.step = new MultimodalStep({ method: config.method, encoders: groups, optimizer: this.optimizer, mainLoss: model.mainLoss, gamma: config.gamma, telemetrySteps: config.logEvery });
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
    writeFileSync(files.config, JSON.stringify({ ...config, version: VERSION, device: this.opts.device.adapterName }, null, 2) + '\n');
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

  /** Model, optimizer, integrator and generator state from latest.safetensors; the log cut back to it. */
  private resume(): void {
    const { files } = this;
    if (!existsSync(files.latest)) throw new Error(`--resume: ${files.latest} does not exist (nothing to resume)`);
    const ckpt = readCheckpoint(files.latest);
    loadTrainingState(ckpt, { model: this.setup.model, optimizer: this.optimizer, step: this.step });
    ({ epoch: this.epoch, step: this.globalStep, bestVal: this.bestVal, bestEpoch: this.bestEpoch } = ckpt.meta);
    if (ckpt.meta.rng.default) defaultGenerator.state = ckpt.meta.rng.default;
    // Drop what was logged after the checkpoint (a crash mid-epoch), so the log reads as one run.
    if (existsSync(files.metrics)) {
      const kept = readRecords(files.metrics).filter((r) => keepOnResume(r, this.epoch, this.globalStep));
      writeFileAtomic(files.metrics, new TextEncoder().encode(kept.map((r) => JSON.stringify(r) + '\n').join('')));
    }
    this.log(`resumed from ${files.latest}: epoch ${this.epoch}, step ${this.globalStep}`);
  }

  /** One epoch of steps; every logEvery steps (and at the end) one readback of the step losses and one of the telemetry. */
  private async trainEpoch(epoch: number): Promise<void> {
    const { config, setup: { model }, lossNames } = this;
    model.train();
    const pending: Tensor[] = []; // per-step loss vectors since the last log, on the GPU
    const pendingLr: number[] = [];
    let intervalStart = performance.now();
    let rate = 0;
    let lastLoss = NaN;
    const perEpoch = this.loader.batchesPerEpoch;
    for (const b of this.loader.batches(epoch)) {
      if (this.opts.signal?.aborted) {
        disposeBatch(b);
        for (const t of pending) t.dispose();
        const where = this.epoch > 0 ? `latest.safetensors holds epoch ${this.epoch}: continue with --resume` : 'no epoch finished yet, so there is no checkpoint to resume';
        throw new TrainingInterrupted(`interrupted at step ${this.globalStep} (epoch ${epoch + 1}); ${where}`);
      }
      if (config.lrSchedule === 'cosine') this.optimizer.lr = 0.5 * config.lr * (1 + Math.cos((Math.PI * this.globalStep) / this.totalSteps));
      const losses = tidy(() => {
        const out = model.logits(b.inputs);
        const l: Record<string, Tensor> = {};
        for (const n of lossNames) l[n] = crossEntropy(out[n]!, b.labels[model.targets[n]!]!);
        return l;
      });
      pending.push(noGrad(() => tidy(() => concat(lossNames.map((n) => reshape(losses[n]!, [1])), 0))));
      pendingLr.push(this.optimizer.lr);
      this.step.step(losses);
      for (const l of Object.values(losses)) l.dispose();
      disposeBatch(b);
      this.globalStep++;
      this.stepsThisRun++;
      if (pending.length === config.logEvery || b.index === perEpoch - 1) {
        const all = noGrad(() => concat(pending, 0));
        const values = (await all.toArray()) as Float32Array;
        all.dispose();
        for (const t of pending) t.dispose();
        const now = performance.now();
        rate = pending.length / ((now - intervalStart) / 1000);
        intervalStart = now;
        const first = this.globalStep - pending.length + 1;
        pendingLr.forEach((lr, k) => {
          const loss: Record<string, number> = {};
          lossNames.forEach((n, i) => (loss[n] = values[k * lossNames.length + i]!));
          appendRecord(this.files.metrics, { type: 'step', epoch: epoch + 1, step: first + k, steps: 1, loss, lr, time_s: (now - this.t0) / 1000 });
          if (!Object.values(loss).every(Number.isFinite)) throw new Error(`training diverged at step ${first + k}: losses ${JSON.stringify(loss)}`);
          lastLoss = loss[model.mainLoss]!;
        });
        pending.length = 0;
        pendingLr.length = 0;
        if (this.step.integrator) this.lastTelemetry = await logTelemetry(this.step, this.groupNames, this.files.metrics, this.lastTelemetry, (s) => this.log(s));
      }
      this.opts.events?.progress?.({ epoch: epoch + 1, epochs: config.epochs, step: b.index + 1, steps: perEpoch, loss: lastLoss, stepsPerSecond: rate, remaining: this.totalSteps - this.globalStep });
    }
  }

  dispose(): void {
    this.step.dispose();
    this.optimizer.dispose();
    this.setup.model.dispose();
  }
}

function keepOnResume(r: RunRecord, epoch: number, step: number): boolean {
  if (r.type === 'final') return false;
  if (r.type === 'eval') return r.epoch <= epoch;
  return r.step <= step;
}

async function logTelemetry(step: MultimodalStep, groups: string[], path: string, after: number, log: (s: string) => void): Promise<number> {
  const t = await step.integrator!.telemetry.read({ onNonFinite: 'return' });
  for (const nf of t.nonFinite) log(`warning: group '${groups[nf.group]}' had ${nf.count} step(s) with non-finite gradients (steps ${nf.firstStep + 1}…${nf.lastStep + 1}); those updates were skipped`);
  let last = after;
  for (const r of t.records) {
    const s = r.step + 1;
    if (s <= after) continue;
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
