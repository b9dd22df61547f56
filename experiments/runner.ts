// One run of the sweep, start to summary, resumable at every point:
// - its summary exists → nothing to do;
// - its run directory holds a finished run (a final record) → only the summary is (re)built;
// - it holds latest.safetensors → training resumes from it (bit-identical to an uninterrupted
//   run, see train/run/trainer.ts), under the same config (checked);
// - it holds a run that never finished an epoch → it is removed and started again;
// - otherwise a fresh run.
// The run is `mmpareto train` with the plan's flags, parsed by the CLI's own parser, so a sweep
// run and a hand-typed one are the same computation. With keepEpochCheckpoints, every epoch's
// latest.safetensors is also copied to epoch-<E>.safetensors (for `mmpareto analyze`).
import { copyFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Device } from '../engine/index.ts';
import { loadModelState, readCheckpoint } from '../train/run/checkpoint.ts';
import { parseTrainArgs } from '../train/cli/main.ts';
import type { RunConfig } from '../train/run/config.ts';
import { evaluate } from '../train/run/evaluate.ts';
import { buildSetup } from '../train/run/setup.ts';
import { readRecords, type EvalRecord, type FinalRecord } from '../train/run/run-log.ts';
import { readRunConfig, runFiles } from '../train/run/run-dir.ts';
import { train, type ProgressState } from '../train/run/trainer.ts';
import { runDirOf, summaryPath, trainFlags, type PlannedRun } from './plan.ts';
import { buildSummary, pairingFingerprint, readSummary, writeSummary, type RunSummary } from './summary.ts';

export interface RunnerEvents {
  progress?(p: ProgressState): void;
  log?(line: string): void;
}

export interface ExecuteOptions {
  device: Device;
  runsDir: string;
  resultsDir: string;
  /** The code's git commit (recorded in the run directory and the summary). */
  commit: string;
  signal?: AbortSignal;
  events?: RunnerEvents;
}

export type RunState = 'summarized' | 'finished' | 'resumable' | 'unstarted';

/** Where a planned run stands, from its files alone. */
export function runState(run: PlannedRun, runsDir: string, resultsDir: string): RunState {
  if (existsSync(summaryPath(resultsDir, run))) return 'summarized';
  const files = runFiles(runDirOf(runsDir, run));
  if (existsSync(files.metrics) && readRecords(files.metrics).some((r) => r.type === 'final')) return 'finished';
  if (existsSync(files.latest)) return 'resumable';
  return 'unstarted';
}

/** The run's config as `mmpareto train <flags> --out DIR` would build it. */
export function runConfig(run: PlannedRun, runsDir: string): RunConfig {
  return parseTrainArgs([...trainFlags(run), '--out', runDirOf(runsDir, run)]);
}

/** The fields of a saved config.json that must match for a resume (everything but epochs, paths and stamps). */
function sameRun(a: RunConfig, b: RunConfig): string[] {
  const skip = new Set(['outDir', 'dataDir', 'version', 'device']);
  return (Object.keys(a) as (keyof RunConfig)[])
    .filter((k) => !skip.has(k) && a[k] !== b[k])
    .map((k) => `${k}: ${String(b[k])} in the run directory, ${String(a[k])} planned`);
}

/** sweep-run.json in a run directory: the commits that trained it and the steps where its segments started. */
interface RunMeta {
  commits: string[];
  segmentStarts: number[];
}

/** Trains (or resumes, or only summarizes) one planned run and writes its summary; returns it. */
export async function executeRun(run: PlannedRun, opts: ExecuteOptions): Promise<RunSummary> {
  const out = summaryPath(opts.resultsDir, run);
  if (existsSync(out)) return readSummary(out);
  const config = runConfig(run, opts.runsDir);
  const dir = config.outDir;
  const files = runFiles(dir);
  const metaPath = join(dir, 'sweep-run.json');
  const log = (s: string) => opts.events?.log?.(s);
  const state = runState(run, opts.runsDir, opts.resultsDir);
  if (state === 'unstarted' && existsSync(dir)) {
    log(`${dir}: no finished epoch to resume from; starting over`);
    rmSync(dir, { recursive: true, force: true });
  }
  if (state !== 'unstarted') {
    const diff = sameRun(config, readRunConfig(dir));
    if (diff.length)
      throw new Error(`${dir} holds a different run (${diff.join('; ')}); move it away or change the plan`);
  }
  const pairing = await pairingFingerprint(config);
  let final: FinalRecord | undefined;
  if (state !== 'finished') {
    const start = state === 'resumable' ? readCheckpoint(files.latest).meta.step : 0;
    final = await train(config, {
      device: opts.device,
      resume: state === 'resumable',
      signal: opts.signal,
      events: {
        log,
        progress: opts.events?.progress,
        epochEnd: (epoch, latest) => {
          recordMeta(metaPath, opts.commit, start);
          if (run.keepEpochCheckpoints) copyFileSync(latest, join(dir, `epoch-${epoch}.safetensors`));
        },
      },
    });
  }
  final ??= readRecords(files.metrics)
    .filter((r): r is FinalRecord => r.type === 'final')
    .pop()!;
  const finalTest = final.best_epoch === config.epochs ? final.test : await testLatest(config);
  if (!existsSync(metaPath)) recordMeta(metaPath, opts.commit, 0);
  const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as RunMeta;
  const summary = buildSummary({
    runDir: dir,
    budget: run.budget,
    finalTest,
    adapter: opts.device.adapterName,
    commits: meta.commits,
    pairing,
    segmentStarts: meta.segmentStarts,
  });
  writeSummary(out, summary);
  return summary;
}

/**
 * Adds the commit and the segment's first step to the run's sweep-run.json (a resumed run may span
 * commits). Written at each epoch's end, so a segment that never finished an epoch (and whose
 * steps are replayed) leaves no trace.
 */
function recordMeta(path: string, commit: string, segmentStart: number): void {
  const meta: RunMeta = existsSync(path)
    ? (JSON.parse(readFileSync(path, 'utf8')) as RunMeta)
    : { commits: [], segmentStarts: [] };
  if (!meta.commits.includes(commit)) meta.commits.push(commit);
  if (!meta.segmentStarts.includes(segmentStart)) meta.segmentStarts.push(segmentStart);
  writeFileSync(path, `${JSON.stringify(meta)}\n`);
}

/** The last epoch's weights (latest.safetensors) on the test split. */
async function testLatest(config: RunConfig): Promise<EvalRecord> {
  const ckpt = readCheckpoint(runFiles(config.outDir).latest);
  const setup = buildSetup(config);
  try {
    loadModelState(ckpt, setup.model);
    return await evaluate(setup, setup.dataset.test, 'test', ckpt.meta.epoch, ckpt.meta.step, 256);
  } finally {
    setup.model.dispose();
  }
}

/** Summary of an existing finished run directory (e.g. a pilot run trained by hand), for a given budget and commit. */
export async function summarizeRunDir(
  dir: string,
  budget: PlannedRun['budget'],
  commit: string,
  device: Device,
  out: string,
): Promise<RunSummary> {
  const config = readRunConfig(resolve(dir));
  config.outDir = resolve(dir);
  const recs = readRecords(runFiles(dir).metrics);
  const final = recs.filter((r): r is FinalRecord => r.type === 'final').pop();
  if (!final) throw new Error(`${dir}: the run has not finished (no final record)`);
  const finalTest = final.best_epoch === config.epochs ? final.test : await testLatest(config);
  const summary = buildSummary({
    runDir: dir,
    budget,
    finalTest,
    adapter: device.adapterName,
    commits: [commit],
    pairing: await pairingFingerprint(config),
    segmentStarts: [0],
  });
  writeSummary(out, summary);
  return summary;
}
