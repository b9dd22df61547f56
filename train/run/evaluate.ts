// Evaluation of a model on a split (every epoch on validation, once on test, and `mmpareto
// eval`): per head, mean cross-entropy, accuracy and macro-F1, and the main head's confusion
// matrix. Batches are read back whole (one map per batch); labels come from the host split.
import { concat, noGrad, tidy } from '../../engine/index.ts';
import type { Split } from '../data/dataset.ts';
import { Loader, disposeBatch } from '../data/loader.ts';
import { accuracy, argmaxRows, confusionMatrix, macroF1 } from './metrics.ts';
import type { EvalRecord } from './run-log.ts';
import type { Setup } from './setup.ts';

/** Host-side cross-entropy of one row (float64, max-shifted). */
function rowLoss(
  logits: Float32Array,
  row: number,
  classes: number,
  offset: number,
  stride: number,
  label: number,
): number {
  let mx = -Infinity;
  for (let c = 0; c < classes; c++) mx = Math.max(mx, logits[row * stride + offset + c]!);
  let s = 0;
  for (let c = 0; c < classes; c++) s += Math.exp(logits[row * stride + offset + c]! - mx);
  return Math.log(s) + mx - logits[row * stride + offset + label]!;
}

/** Evaluates every logits head of `model` on a split: mean loss, accuracy, macro-F1, main confusion matrix. */
export async function evaluate(
  setup: Setup,
  split: Split,
  which: EvalRecord['split'],
  epoch: number,
  step: number,
  batchSize: number,
): Promise<EvalRecord> {
  const { model, dataset } = setup;
  const wasTraining = model.training;
  model.eval();
  const names = Object.keys(model.targets);
  const classes = names.map((n) => dataset.tasks[model.targets[n]!]!);
  const stride = classes.reduce((a, b) => a + b, 0);
  const preds = names.map(() => new Int32Array(split.n));
  const truth = names.map(() => new Int32Array(split.n));
  const lossSum = names.map(() => 0);
  const loader = new Loader(split, dataset, {
    batchSize: Math.min(batchSize, split.n),
    shuffle: false,
    seed: 0,
    dropLast: false,
    normalize: setup.normalize,
  });
  let at = 0;
  for (const b of loader.batches(0)) {
    const cat = noGrad(() =>
      tidy(() => {
        const out = model.logits(b.inputs);
        return concat(
          names.map((n) => out[n]!),
          1,
        );
      }),
    );
    // Unshuffled batches: the labels are the split's own host arrays, in order (no readback).
    const labelArrays = names.map((n) => split.labels[model.targets[n]!]!.subarray(at, at + b.size));
    const logits = (await cat.toArray()) as Float32Array;
    cat.dispose();
    disposeBatch(b);
    let offset = 0;
    names.forEach((_, h) => {
      const rows = argmaxRows(
        Float32Array.from(
          { length: b.size * classes[h]! },
          (_, i) => logits[Math.floor(i / classes[h]!) * stride + offset + (i % classes[h]!)]!,
        ),
        classes[h]!,
      );
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
  return Object.entries(r.acc)
    .map(([n, a]) => `${n} ${(100 * a).toFixed(2)}%`)
    .join(' ');
}
