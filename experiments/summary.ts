// A finished run's summary: the small JSON the sweep writes to experiments/results and commits
// (run directories, with checkpoints and per-step logs, stay out of git). It holds what the
// results page needs: the best-by-validation and the final epoch's validation and test metrics
// per head, the validation curve (the pilot's convergence check), a binned training-loss curve,
// integrator telemetry statistics with a binned cos β / |g| series (Fig. 1a), wall time, steps/s,
// the adapter, the code's git commit, and the pairing fingerprints (a hash of the initial
// weights and one of the training data and its per-epoch order: equal for every method of a seed).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { RunConfig } from '../train/run/config.ts';
import { buildSetup } from '../train/run/setup.ts';
import { Loader } from '../train/data/loader.ts';
import { binnedMeans } from '../train/report/report.ts';
import { loadRun } from '../train/report/run-data.ts';
import type { EvalRecord } from '../train/run/run-log.ts';
import { writeFileAtomic } from '../train/io/files.ts';
import { budgetLabel, type Budget } from './plan.ts';

export const SUMMARY_VERSION = 1;
/** Points of the binned training-loss and telemetry series. */
export const SERIES_POINTS = 50;

export interface Metrics {
  loss: Record<string, number>;
  acc: Record<string, number>;
  macro_f1: Record<string, number>;
}

export interface EpochMetrics {
  epoch: number;
  step: number;
  val: Metrics;
  test: Metrics;
}

export interface TelemetrySummary {
  /** Logged steps (one record per step). */
  steps: number;
  cosMean: number;
  /** Share of steps with cos β < 0. */
  conflictFraction: number;
  normM: { mean: number; median: number };
  normU: { mean: number; median: number };
  /** mean |g_u| / mean |g_m| over the steps. */
  normRatio: number;
  alphaMean: number;
  scaleMean: number;
  nonFiniteSteps: number;
  /** Binned over steps: [last step of the bin, mean cos, share cos < 0, mean |g_m|, mean |g_u|]. */
  series: [number, number, number, number, number][];
}

export interface RunSummary {
  type: 'run-summary';
  version: number;
  dataset: string;
  model: string;
  method: string;
  seed: number;
  budget: Budget & { label: string };
  /** The run's config.json without machine paths (outDir, dataDir). */
  config: Omit<RunConfig, 'outDir' | 'dataDir'>;
  steps: number;
  best: EpochMetrics;
  final: EpochMetrics;
  /** Validation after every epoch. */
  valCurve: {
    epoch: number;
    step: number;
    acc: Record<string, number>;
    macro_f1: Record<string, number>;
    loss: Record<string, number>;
  }[];
  /** Binned training losses: [last step of the bin, { loss name → mean }]. */
  trainLoss: [number, Record<string, number>][];
  /** Encoder group → telemetry statistics; null for methods without an integrator (uniform, one-joint-loss). */
  telemetry: Record<string, TelemetrySummary> | null;
  /** Training wall time summed over the run's segments (a resumed run has several), excluding the final tests. */
  wall: { train_s: number; segments: number; steps_per_s: number; note: string };
  adapter: string;
  /** git commit(s) of the code that trained the run (more than one if resumed under another commit). */
  commits: string[];
  pairing: { init: string; data: string };
}

const metricsOf = (e: EvalRecord): Metrics => ({ loss: e.loss, acc: e.acc, macro_f1: e.macro_f1 });
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2) : NaN;
};

function hash(parts: Iterable<ArrayBufferView>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(new Uint8Array(p.buffer, p.byteOffset, p.byteLength));
  return h.digest('hex').slice(0, 16);
}

/**
 * The pairing fingerprints of a config: a hash of the initial state dict (built from the seed,
 * read back once) and a hash of the training split's items and labels and of every epoch's
 * order. Two runs that differ only in --method must give equal fingerprints.
 */
export async function pairingFingerprint(config: RunConfig): Promise<{ init: string; data: string }> {
  const setup = buildSetup(config);
  try {
    const state: ArrayBufferView[] = [];
    for (const [k, t] of setup.model.stateDict()) {
      state.push(new TextEncoder().encode(k), (await t.toArray()) as Float32Array);
    }
    const train = setup.dataset.train;
    const loader = new Loader(train, setup.dataset, {
      batchSize: config.batchSize,
      shuffle: true,
      seed: config.seed,
      dropLast: true,
    });
    const data: ArrayBufferView[] = [];
    for (const [m, x] of Object.entries(train.inputs).sort()) data.push(new TextEncoder().encode(m), x);
    for (const [t, y] of Object.entries(train.labels).sort()) data.push(new TextEncoder().encode(t), y);
    for (let e = 0; e < config.epochs; e++) data.push(loader.order(e));
    return { init: hash(state), data: hash(data) };
  } finally {
    setup.model.dispose();
  }
}

function telemetrySummary(records: ReturnType<typeof loadRun>['telemetry']): Record<string, TelemetrySummary> | null {
  if (!records.length) return null;
  const out: Record<string, TelemetrySummary> = {};
  for (const g of [...new Set(records.map((r) => r.group))]) {
    const all = records.filter((r) => r.group === g);
    const rs = all.filter((r) => !r.non_finite && Number.isFinite(r.cos));
    const m = rs.map((r) => r.norm_m);
    const u = rs.map((r) => r.norm_u);
    const per = Math.max(1, Math.ceil(rs.length / SERIES_POINTS));
    const series: TelemetrySummary['series'] = [];
    for (let i = 0; i < rs.length; i += per) {
      const bin = rs.slice(i, i + per);
      series.push([
        bin[bin.length - 1]!.step,
        mean(bin.map((r) => r.cos)),
        bin.filter((r) => r.cos < 0).length / bin.length,
        mean(bin.map((r) => r.norm_m)),
        mean(bin.map((r) => r.norm_u)),
      ]);
    }
    out[g] = {
      steps: rs.length,
      cosMean: mean(rs.map((r) => r.cos)),
      conflictFraction: rs.filter((r) => r.cos < 0).length / rs.length,
      normM: { mean: mean(m), median: median(m) },
      normU: { mean: mean(u), median: median(u) },
      normRatio: mean(u) / mean(m),
      alphaMean: mean(rs.map((r) => r.alpha)),
      scaleMean: mean(rs.map((r) => r.scale ?? NaN)),
      nonFiniteSteps: all.length - rs.length,
      series,
    };
  }
  return out;
}

export interface SummaryInputs {
  runDir: string;
  budget: Budget;
  /** Test evaluation of the final epoch's weights (the trainer tests only the best epoch). */
  finalTest: EvalRecord;
  adapter: string;
  commits: string[];
  pairing: { init: string; data: string };
  /**
   * Global steps at which training segments started: [0] for an uninterrupted run, [0, s, …] after resumes at step s.
   */
  segmentStarts: number[];
}

/** Builds the summary of a finished run directory (metrics.jsonl with its final record). */
export function buildSummary(inp: SummaryInputs): RunSummary {
  const run = loadRun(inp.runDir);
  if (!run.final) throw new Error(`summary: ${inp.runDir} has no final record (the run has not finished)`);
  const c = run.config as RunConfig;
  const vals = run.evals.filter((e) => e.split === 'val');
  const last = vals[vals.length - 1];
  const bestVal = vals.find((e) => e.epoch === run.final!.best_epoch);
  if (!last || !bestVal || last.epoch !== c.epochs)
    throw new Error(
      `summary: ${inp.runDir} lacks validation records (last epoch ${last?.epoch ?? 'none'} of ${c.epochs})`,
    );
  if (inp.finalTest.epoch !== last.epoch)
    throw new Error(
      `summary: the final test evaluation is of epoch ${inp.finalTest.epoch}, not the last epoch ${last.epoch}`,
    );
  // A resumed segment restarts time_s at 0: sum each segment's last time over the steps it kept.
  const starts = [...new Set(inp.segmentStarts)].sort((a, b) => a - b);
  const segments = starts.length;
  let wall = 0;
  starts.forEach((from, k) => {
    const to = starts[k + 1] ?? Infinity;
    wall += Math.max(0, ...run.steps.filter((s) => s.step > from && s.step <= to).map((s) => s.time_s));
  });
  const steps = run.steps.length ? run.steps[run.steps.length - 1]!.step : 0;
  const { outDir: _o, dataDir: _d, ...config } = c;
  delete (config as Record<string, unknown>).version;
  delete (config as Record<string, unknown>).device;
  const lossNames = Object.keys(run.steps[0]?.loss ?? {});
  const binned = lossNames.map((n) =>
    binnedMeans(
      run.steps.map((s) => [s.step, s.loss[n] ?? NaN] as const),
      SERIES_POINTS,
    ),
  );
  return {
    type: 'run-summary',
    version: SUMMARY_VERSION,
    dataset: c.dataset,
    model: c.model,
    method: c.method,
    seed: c.seed,
    budget: { ...inp.budget, label: budgetLabel(inp.budget) },
    config,
    steps,
    best: { epoch: bestVal.epoch, step: bestVal.step, val: metricsOf(bestVal), test: metricsOf(run.final.test) },
    final: { epoch: last.epoch, step: last.step, val: metricsOf(last), test: metricsOf(inp.finalTest) },
    valCurve: vals.map((e) => ({ epoch: e.epoch, step: e.step, acc: e.acc, macro_f1: e.macro_f1, loss: e.loss })),
    trainLoss: (binned[0] ?? []).map(([step], i) => [
      step,
      Object.fromEntries(lossNames.map((n, j) => [n, binned[j]![i]![1]])),
    ]),
    telemetry: telemetrySummary(run.telemetry),
    wall: {
      train_s: wall,
      segments,
      steps_per_s: steps / wall,
      note: 'wall clock on a shared machine (other jobs running): not a benchmark',
    },
    adapter: inp.adapter,
    commits: inp.commits,
    pairing: inp.pairing,
  };
}

export function writeSummary(path: string, s: RunSummary): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, new TextEncoder().encode(`${JSON.stringify(s, null, 1)}\n`));
}

export function readSummary(path: string): RunSummary {
  let s: RunSummary;
  try {
    s = JSON.parse(readFileSync(path, 'utf8')) as RunSummary;
  } catch (e) {
    throw new Error(`${path}: not a readable summary (${(e as Error).message})`);
  }
  if (s.type !== 'run-summary' || s.version !== SUMMARY_VERSION)
    throw new Error(
      `${path}: not a run summary of version ${SUMMARY_VERSION} (type ${String(s.type)}, version ${String(s.version)})`,
    );
  return s;
}
