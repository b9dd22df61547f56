// The training loop: data set → model → per-loss gradients → integrator (MMPareto or a peer) →
// optimizer, all on the GPU. The host reads back only every `logEvery` steps (the summed losses
// and the integrator telemetry, one small map each) and at evaluation. Every epoch: evaluate
// the validation split, write `latest.safetensors` (and `best.safetensors` when validation
// improves); at the end, the best-by-validation weights are evaluated once on the test split.
//
// Determinism: initialisation comes from the seed, and epoch e's shuffle from (seed, e) alone,
// so a run resumed from the checkpoint of epoch e continues exactly as an uninterrupted run
// (tested bitwise in test/cli.test.ts).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AdamW, MultimodalStep, SGD, concat, crossEntropy, defaultGenerator, noGrad, reshape, tidy,
  type Device, type Tensor,
} from '../engine/index.ts';
import type { TrainableModel } from '../models/multimodal.ts';
import { buildModel } from '../models/registry.ts';
import { loadModelState, loadTrainingState, readCheckpoint, saveCheckpoint } from './checkpoint.ts';
import type { RunConfig } from './config.ts';
import type { Dataset, Split } from './dataset.ts';
import { buildDataset } from './datasets-registry.ts';
import { Loader, disposeBatch, normalizationStats } from './loader.ts';
import { accuracy, argmaxRows, confusionMatrix, macroF1 } from './metrics.ts';
import type { ProgressState } from './progress.ts';
import { appendRecord, readRecords, type EvalRecord, type FinalRecord, type RunRecord } from './run-log.ts';

export const VERSION = '0.1.0';

export interface TrainerEvents {
  progress?(p: ProgressState): void;
  /** Human-readable lines: epoch summaries, warnings. */
  log?(line: string): void;
}

/** Files of a run directory. */
export const runFiles = (dir: string) => ({
  config: join(dir, 'config.json'),
  metrics: join(dir, 'metrics.jsonl'),
  latest: join(dir, 'latest.safetensors'),
  best: join(dir, 'best.safetensors'),
});

/** A data set and model built from a config: what both training and `mmpareto eval` need. */
export interface Setup {
  dataset: Dataset;
  model: TrainableModel;
  normalize: Record<string, { mean: number[]; std: number[] }>;
}

export function buildSetup(config: RunConfig): Setup {
  const dataset = buildDataset(config.dataset, { seed: config.seed, dataDir: config.dataDir, trainLimit: config.trainLimit, valSize: config.valSize });
  if (config.batchSize > dataset.train.n) throw new Error(`--batch-size ${config.batchSize} is larger than the training split (${dataset.train.n} items)`);
  const model = buildModel(config.model, dataset, { seed: config.seed, fusion: config.fusion });
  return { dataset, model, normalize: normalizationStats(dataset.train, dataset.inputs) };
}

/** Host-side cross-entropy of one row (float64, max-shifted). */
function rowLoss(logits: Float32Array, row: number, classes: number, offset: number, stride: number, label: number): number {
  let mx = -Infinity;
  for (let c = 0; c < classes; c++) mx = Math.max(mx, logits[row * stride + offset + c]!);
  let s = 0;
  for (let c = 0; c < classes; c++) s += Math.exp(logits[row * stride + offset + c]! - mx);
  return Math.log(s) + mx - logits[row * stride + offset + label]!;
}

/** Evaluates every logits head of `model` on a split: mean loss, accuracy, macro-F1, main confusion matrix. */
export async function evaluate(setup: Setup, split: Split, which: EvalRecord['split'], epoch: number, step: number, batchSize: number): Promise<EvalRecord> {
  const { model, dataset } = setup;
  const wasTraining = model.training;
  model.eval();
  const names = Object.keys(model.targets);
  const classes = names.map((n) => dataset.tasks[model.targets[n]!]!);
  const stride = classes.reduce((a, b) => a + b, 0);
  const preds = names.map(() => new Int32Array(split.n));
  const truth = names.map(() => new Int32Array(split.n));
  const lossSum = names.map(() => 0);
  const loader = new Loader(split, dataset, { batchSize: Math.min(batchSize, split.n), shuffle: false, seed: 0, dropLast: false, normalize: setup.normalize });
  let at = 0;
  for (const b of loader.batches(0)) {
    const cat = noGrad(() => tidy(() => {
      const out = model.logits(b.inputs);
      return concat(names.map((n) => out[n]!), 1);
    }));
    // Unshuffled batches: the labels are the split's own host arrays, in order (no readback).
    const labelArrays = names.map((n) => split.labels[model.targets[n]!]!.subarray(at, at + b.size));
    const logits = (await cat.toArray()) as Float32Array;
    cat.dispose();
    disposeBatch(b);
    let offset = 0;
    names.forEach((_, h) => {
      const rows = argmaxRows(Float32Array.from({ length: b.size * classes[h]! }, (_, i) => logits[Math.floor(i / classes[h]!) * stride + offset + (i % classes[h]!)]!), classes[h]!);
      for (let r = 0; r < b.size; r++) {
        const y = labelArrays[h]![r]!;
        preds[h]![at + r] = rows[r]!;
        truth[h]![at + r] = y;
        lossSum[h]! += rowLoss(logits, r, classes[h]!, offset, stride, y);
      }
      offset += classes[h]!;
    });
    at += b.size;
  }
  model.train(wasTraining);
  const rec: EvalRecord = { type: 'eval', epoch, step, split: which, loss: {}, acc: {}, macro_f1: {}, confusion: [] };
  names.forEach((n, h) => {
    const cm = confusionMatrix(preds[h]!, truth[h]!, classes[h]!);
    rec.loss[n] = lossSum[h]! / split.n;
    rec.acc[n] = accuracy(preds[h]!, truth[h]!);
    rec.macro_f1[n] = macroF1(cm);
    if (n === model.mainLoss) rec.confusion = cm;
  });
  return rec;
}

/** The validation score that selects the best epoch: multimodal accuracy, or the mean over tasks. */
export function score(r: EvalRecord): number {
  if (r.acc.mm !== undefined) return r.acc.mm;
  const v = Object.values(r.acc);
  return v.reduce((a, b) => a + b, 0) / v.length;
}

export function formatEval(r: EvalRecord): string {
  return Object.entries(r.acc).map(([n, a]) => `${n} ${(100 * a).toFixed(2)}%`).join(' ');
}

export interface TrainOptions {
  device: Device;
  /** Continue the run in config.outDir from its latest checkpoint. */
  resume?: boolean;
  events?: TrainerEvents;
}

export async function train(config: RunConfig, opts: TrainOptions): Promise<FinalRecord> {
  const files = runFiles(config.outDir);
  const events = opts.events ?? {};
  const log = (s: string) => events.log?.(s);
  try {
    mkdirSync(config.outDir, { recursive: true });
  } catch (e) {
    throw new Error(`cannot create the run directory ${config.outDir}: ${(e as Error).message}`);
  }
  if (!opts.resume && (existsSync(files.metrics) || existsSync(files.latest))) {
    throw new Error(`${config.outDir} already holds a run (metrics.jsonl / latest.safetensors); pass --resume to continue it, or choose another --out`);
  }
  const setup = buildSetup(config);
  const { dataset, model } = setup;
  log(`data: ${dataset.description}`);
  log(`model: ${config.model} (${model.numParameters().toLocaleString('en-US')} parameters), method ${config.method}, ${config.optimizer} lr ${config.lr}`);
  const params = model.parameters();
  const optimizer = config.optimizer === 'adamw'
    ? new AdamW(params, { lr: config.lr, weightDecay: config.weightDecay })
    : new SGD(params, { lr: config.lr, momentum: config.momentum, weightDecay: config.weightDecay });
  const groups = model.encoderGroups();
  const groupNames = Object.keys(groups);
  const step = new MultimodalStep({ method: config.method, encoders: groups, optimizer, mainLoss: model.mainLoss, gamma: config.gamma, telemetrySteps: config.logEvery });
  const loader = new Loader(dataset.train, dataset, { batchSize: config.batchSize, shuffle: true, seed: config.seed, dropLast: true, normalize: setup.normalize });
  const perEpoch = loader.batchesPerEpoch;
  const totalSteps = perEpoch * config.epochs;
  const lossNames = Object.keys(model.targets);

  let startEpoch = 0;
  let globalStep = 0;
  let bestVal = -Infinity;
  let bestEpoch = 0;
  const configJson = JSON.stringify(config);
  if (opts.resume) {
    if (!existsSync(files.latest)) throw new Error(`--resume: ${files.latest} does not exist (nothing to resume)`);
    const ckpt = readCheckpoint(files.latest);
    loadTrainingState(ckpt, { model, optimizer, step });
    ({ epoch: startEpoch, step: globalStep, bestVal, bestEpoch } = ckpt.meta);
    if (ckpt.meta.rng.default) defaultGenerator.state = ckpt.meta.rng.default;
    // Drop what was logged after the checkpoint (a crash mid-epoch), so the log reads as one run.
    if (existsSync(files.metrics)) {
      const kept = readRecords(files.metrics).filter((r) => keepOnResume(r, startEpoch, globalStep));
      writeFileSync(files.metrics, kept.map((r) => JSON.stringify(r) + '\n').join(''));
    }
    log(`resumed from ${files.latest}: epoch ${startEpoch}, step ${globalStep}`);
  }
  writeFileSync(files.config, JSON.stringify({ ...config, version: VERSION, device: opts.device.adapterName }, null, 2) + '\n');

  const t0 = performance.now();
  let stepsThisRun = 0;
  let lastLogged = globalStep;
  try {
    for (let epoch = startEpoch; epoch < config.epochs; epoch++) {
      model.train();
      const pending: Tensor[] = []; // per-step loss vectors since the last log, on the GPU
      const pendingLr: number[] = [];
      let intervalStart = performance.now();
      let rate = 0;
      let lastLoss = NaN;
      for (const b of loader.batches(epoch)) {
        if (config.lrSchedule === 'cosine') optimizer.lr = 0.5 * config.lr * (1 + Math.cos((Math.PI * globalStep) / totalSteps));
        const losses = tidy(() => {
          const out = model.logits(b.inputs);
          const l: Record<string, Tensor> = {};
          for (const n of lossNames) l[n] = crossEntropy(out[n]!, b.labels[model.targets[n]!]!);
          return l;
        });
        pending.push(noGrad(() => tidy(() => concat(lossNames.map((n) => reshape(losses[n]!, [1])), 0))));
        pendingLr.push(optimizer.lr);
        step.step(losses);
        for (const l of Object.values(losses)) l.dispose();
        disposeBatch(b);
        globalStep++;
        stepsThisRun++;
        if (pending.length === config.logEvery || b.index === perEpoch - 1) {
          // Every step's losses, read back with one map per interval.
          const all = noGrad(() => concat(pending, 0));
          const values = (await all.toArray()) as Float32Array;
          all.dispose();
          const now = performance.now();
          rate = pending.length / ((now - intervalStart) / 1000);
          intervalStart = now;
          const first = globalStep - pending.length + 1;
          pending.forEach((t, k) => {
            const loss: Record<string, number> = {};
            lossNames.forEach((n, i) => (loss[n] = values[k * lossNames.length + i]!));
            appendRecord(files.metrics, { type: 'step', epoch: epoch + 1, step: first + k, steps: 1, loss, lr: pendingLr[k]!, time_s: (now - t0) / 1000 });
            if (!Object.values(loss).every(Number.isFinite)) throw new Error(`training diverged at step ${first + k}: losses ${JSON.stringify(loss)}`);
            lastLoss = loss[model.mainLoss]!;
            t.dispose();
          });
          pending.length = 0;
          pendingLr.length = 0;
          if (step.integrator) lastLogged = await logTelemetry(step, groupNames, files.metrics, lastLogged, log);
        }
        events.progress?.({ epoch: epoch + 1, epochs: config.epochs, step: b.index + 1, steps: perEpoch, loss: lastLoss, stepsPerSecond: rate, remaining: totalSteps - globalStep });
      }
      const val = await evaluate(setup, dataset.val, 'val', epoch + 1, globalStep, 256);
      appendRecord(files.metrics, val);
      const improved = score(val) > bestVal;
      if (improved) [bestVal, bestEpoch] = [score(val), epoch + 1];
      const meta = { epoch: epoch + 1, step: globalStep, bestVal, bestEpoch, rng: { default: defaultGenerator.state }, config: configJson };
      if (improved) await saveCheckpoint(files.best, { model }, meta);
      await saveCheckpoint(files.latest, { model, optimizer, step }, meta);
      const secs = (performance.now() - t0) / 1000;
      log(`epoch ${epoch + 1}/${config.epochs}: val ${formatEval(val)}${improved ? ' (best)' : ''} | ${secs.toFixed(1)} s`);
    }
    // Test once, with the best-by-validation weights.
    const best = readCheckpoint(existsSync(files.best) ? files.best : files.latest);
    loadModelState(best, model);
    log(`testing epoch ${best.meta.epoch} (best by validation) on ${dataset.test.n} test items…`);
    const test = await evaluate(setup, dataset.test, 'test', best.meta.epoch, best.meta.step, 256);
    const wall = (performance.now() - t0) / 1000;
    const final: FinalRecord = { type: 'final', best_epoch: bestEpoch, best_val: bestVal, test, wall_s: wall, steps_per_s: stepsThisRun / wall };
    appendRecord(files.metrics, final);
    return final;
  } finally {
    step.dispose();
    optimizer.dispose();
    model.dispose();
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

export function removeRun(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
