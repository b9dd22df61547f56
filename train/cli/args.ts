// `mmpareto` flags → a run's config (RunConfig): the one place that parses, checks and defaults
// them (bad usage throws UsageError, exit code 2). For --resume, the saved config of the run
// directory with the few flags that may change.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { INTEGRATOR_METHODS, type IntegratorMethod } from '../../engine/index.ts';
import { AUDIO_FEATURES, DEFAULT_FRAMES, DEFAULT_IMAGE_SIZE } from '../data/av/dataset.ts';
import { readCheckpointMeta } from '../run/checkpoint.ts';
import { DATASETS, DEFAULT_DATA_DIR, MODELS, OPTIMIZERS, type RunConfig } from '../run/config.ts';
import { readRunConfig, runFiles } from '../run/run-dir.ts';
import { readRecords } from '../run/run-log.ts';

/** Bad usage: an unknown command, flag or name, or a value out of range (exit code 2). */
export class UsageError extends Error {}

export const OPTIONS = {
  dataset: { type: 'string' },
  model: { type: 'string' },
  method: { type: 'string' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  optimizer: { type: 'string' },
  lr: { type: 'string' },
  momentum: { type: 'string' },
  'weight-decay': { type: 'string' },
  'lr-schedule': { type: 'string' },
  gamma: { type: 'string' },
  fusion: { type: 'string' },
  seed: { type: 'string' },
  'data-dir': { type: 'string' },
  'train-limit': { type: 'string' },
  'val-size': { type: 'string' },
  'log-every': { type: 'string' },
  'on-nonfinite': { type: 'string' },
  out: { type: 'string' },
  resume: { type: 'boolean' },
  'no-report': { type: 'boolean' },
  checkpoint: { type: 'string' },
  split: { type: 'string' },
  batches: { type: 'string' },
  quiet: { type: 'boolean' },
  frames: { type: 'string' },
  'image-size': { type: 'string' },
  audio: { type: 'string' },
  // prepare
  src: { type: 'string' },
  'sample-rate': { type: 'string' },
  'val-fraction': { type: 'string' },
  'test-fraction': { type: 'string' },
  'train-csv': { type: 'string' },
  'test-csv': { type: 'string' },
  'on-corrupt': { type: 'string' },
  jobs: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} satisfies ParseArgsConfig['options'];

export type Values = ReturnType<
  typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>
>['values'];

export function choice<T extends string>(flag: string, v: string | undefined, valid: readonly T[], dflt: T): T {
  if (v === undefined) return dflt;
  if (!(valid as readonly string[]).includes(v))
    throw new UsageError(`--${flag}: unknown '${v}' (valid: ${valid.join(', ')})`);
  return v as T;
}
export function num(
  flag: string,
  v: string | undefined,
  dflt: number,
  check: (x: number) => boolean,
  what: string,
): number {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || !check(x)) throw new UsageError(`--${flag}: '${v}' is not ${what}`);
  return x;
}
export const int = (x: number) => Number.isInteger(x);

export function trainConfig(v: Values): RunConfig {
  const dataset = choice('dataset', v.dataset, DATASETS, 'cg-fmnist');
  const model = choice('model', v.model, MODELS, 'cnn');
  const method = choice<IntegratorMethod>('method', v.method, INTEGRATOR_METHODS, 'mmpareto');
  const seed = num('seed', v.seed, 0, (x) => int(x) && x >= 0, 'an integer >= 0');
  return {
    dataset,
    model,
    method,
    seed,
    epochs: num('epochs', v.epochs, 10, (x) => int(x) && x >= 1, 'an integer >= 1'),
    batchSize: num('batch-size', v['batch-size'], 64, (x) => int(x) && x >= 1, 'an integer >= 1'),
    optimizer: choice('optimizer', v.optimizer, OPTIMIZERS, 'sgd'),
    lr: num('lr', v.lr, 1e-3, (x) => x > 0, 'a number > 0'),
    momentum: num('momentum', v.momentum, 0.9, (x) => x >= 0 && x < 1, 'in [0, 1)'),
    weightDecay: num('weight-decay', v['weight-decay'], 1e-4, (x) => x >= 0, 'a number >= 0'),
    lrSchedule: choice('lr-schedule', v['lr-schedule'], ['none', 'cosine'] as const, 'none'),
    gamma: num('gamma', v.gamma, 1.5, (x) => x > 0, 'a number > 0'),
    fusion: choice('fusion', v.fusion, ['concat', 'sum'] as const, 'concat'),
    dataDir: v['data-dir'] ?? (dataset === 'crema-d' || dataset === 'ave' ? '' : DEFAULT_DATA_DIR),
    frames: num('frames', v.frames, DEFAULT_FRAMES, (x) => int(x) && x >= 1, 'an integer >= 1'),
    imageSize: num('image-size', v['image-size'], DEFAULT_IMAGE_SIZE, (x) => int(x) && x >= 8, 'an integer >= 8'),
    audio: choice('audio', v.audio, AUDIO_FEATURES, 'stft'),
    trainLimit: num('train-limit', v['train-limit'], 0, (x) => int(x) && x >= 0, 'an integer >= 0'),
    valSize: num('val-size', v['val-size'], 5000, (x) => int(x) && x >= 1, 'an integer >= 1'),
    logEvery: num('log-every', v['log-every'], 20, (x) => int(x) && x >= 1, 'an integer >= 1'),
    onNonFinite: choice('on-nonfinite', v['on-nonfinite'], ['stop', 'skip'] as const, 'stop'),
    outDir: resolve(v.out ?? join('runs', `${dataset}-${model}-${method}-s${seed}`)),
  };
}

/** `mmpareto train` flags (without the command) → the run's config; throws UsageError. */
export function parseTrainArgs(argv: string[]): RunConfig {
  try {
    return trainConfig(parseArgs({ args: argv, options: OPTIONS, allowPositionals: false, strict: true }).values);
  } catch (e) {
    throw e instanceof UsageError ? e : new UsageError((e as Error).message);
  }
}

/**
 * For --resume: the saved config, with --epochs, --data-dir and --on-nonfinite allowed to change
 * and anything else refused; --epochs below the epochs done, or equal to them on a finished run,
 * is refused too (it would rewrite the run's final record).
 */
export function resumeConfig(v: Values, argv: string[]): RunConfig {
  const asked = trainConfig(v);
  const saved = readRunConfig(asked.outDir);
  const given = new Set(argv.filter((a) => a.startsWith('--')).map((a) => a.slice(2).split('=')[0]!));
  const flagOf: Record<string, string> = {
    batchSize: 'batch-size',
    weightDecay: 'weight-decay',
    lrSchedule: 'lr-schedule',
    dataDir: 'data-dir',
    trainLimit: 'train-limit',
    valSize: 'val-size',
    logEvery: 'log-every',
    onNonFinite: 'on-nonfinite',
    outDir: 'out',
    imageSize: 'image-size',
  };
  const out = { onNonFinite: 'stop', ...saved, outDir: asked.outDir } as RunConfig;
  for (const k of Object.keys(asked) as (keyof RunConfig)[]) {
    const flag = flagOf[k] ?? k;
    if (!given.has(flag) || k === 'outDir') continue;
    if (k === 'epochs' || k === 'dataDir' || k === 'onNonFinite')
      (out as unknown as Record<string, unknown>)[k] = asked[k];
    else if (asked[k] !== saved[k])
      throw new UsageError(
        `--resume: --${flag} ${String(asked[k])} differs from the run's ${String(saved[k])} (only --epochs may change)`,
      );
  }
  delete (out as unknown as Record<string, unknown>).version;
  delete (out as unknown as Record<string, unknown>).device;
  const files = runFiles(out.outDir);
  if (existsSync(files.latest)) {
    const done = readCheckpointMeta(files.latest).epoch;
    if (out.epochs < done)
      throw new UsageError(
        `--resume: the run has finished ${done} epochs; --epochs ${out.epochs} would undo them (give --epochs ` +
          `${done + 1} or more to train on)`,
      );
    if (
      out.epochs === done &&
      existsSync(files.metrics) &&
      readRecords(files.metrics).some((r) => r.type === 'final')
    ) {
      throw new UsageError(
        `--resume: the run already finished its ${done} epochs (metrics.jsonl has its final record); give --epochs ` +
          `${done + 1} or more to train on`,
      );
    }
  }
  return out;
}
