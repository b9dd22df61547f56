// A run directory's metrics.jsonl: one JSON object per line, appended as training goes (a
// crash loses at most the line being written; a full disk none: a failed append is cut back). The record types below
// are the whole format;
// `mmpareto report` reads them back.
import { readFileSync } from 'node:fs';
import { appendWhole } from '../io/files.ts';

/** Training losses of one step (written every N steps, one record per step), or their mean over `steps` steps. */
export interface StepRecord {
  type: 'step';
  epoch: number;
  /** Global optimizer step count after this interval (1-based). */
  step: number;
  steps: number;
  /** Loss name → mean over the interval, e.g. { mm, gray, color } or { left, right }. */
  loss: Record<string, number>;
  lr: number;
  /** Seconds since the run (or the resumed run) started. */
  time_s: number;
  /**
   * --on-nonfinite skip dropped this step (a non-finite loss or gradient): nothing was applied; non-finite losses are
   * null.
   */
  skipped?: boolean;
}

/** One integrator telemetry record: one step, one encoder group (paper Fig. 1a, 1d). */
export interface TelemetryLine {
  type: 'telemetry';
  step: number;
  /** Group (encoder) name, e.g. 'gray'. */
  group: string;
  cos: number;
  alpha: number;
  norm_m: number;
  norm_u: number;
  norm_h: number;
  scale: number;
  conflict: boolean;
  non_finite: boolean;
}

/** Evaluation of one split at the end of an epoch (or of a checkpoint, from `mmpareto eval`). */
export interface EvalRecord {
  type: 'eval';
  epoch: number;
  step: number;
  split: 'train' | 'val' | 'test';
  /** Logits name → mean cross-entropy. */
  loss: Record<string, number>;
  /** Logits name → accuracy in [0, 1] ('mm' is the multimodal accuracy; one per modality head or task). */
  acc: Record<string, number>;
  /** Logits name → macro-F1. */
  macro_f1: Record<string, number>;
  /** Confusion matrix of the main logits (rows true, columns predicted). */
  confusion: number[][];
}

/** Written once at the end: the best epoch by validation and its test evaluation. */
export interface FinalRecord {
  type: 'final';
  best_epoch: number;
  best_val: number;
  test: EvalRecord;
  wall_s: number;
  steps_per_s: number;
}

export type RunRecord = StepRecord | TelemetryLine | EvalRecord | FinalRecord;

export function appendRecord(path: string, r: RunRecord): void {
  appendWhole(path, `${JSON.stringify(r)}\n`);
}

/** Whether a record stays when a run resumes from the checkpoint at (epoch, step): what came after it is dropped. */
export function keptOnResume(r: RunRecord, epoch: number, step: number): boolean {
  if (r.type === 'final') return false;
  if (r.type === 'eval') return r.epoch <= epoch;
  return r.step <= step;
}

/** Reads metrics.jsonl; a torn last line (a crash mid-write) is skipped, any other bad line throws. */
export function readRecords(path: string): RunRecord[] {
  const lines = readFileSync(path, 'utf8').split('\n');
  const out: RunRecord[] = [];
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    try {
      out.push(JSON.parse(line) as RunRecord);
    } catch (e) {
      if (i === lines.length - 1) return; // no newline after it: torn by a crash
      throw new Error(`${path}:${i + 1}: not a JSON record (${(e as Error).message})`);
    }
  });
  return out;
}
