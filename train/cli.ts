// `mmpareto` — train, evaluate and compare multimodal runs. See `mmpareto --help`.
// Exit codes: 0 success, 1 the work failed (data, checkpoint, I/O, a non-finite loss, a lost
// GPU), 2 bad usage, 130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM after the step in
// progress (resumable from the last epoch's checkpoint).
import './node.ts'; // Dawn as the default GPU
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DeviceLostError, INTEGRATOR_METHODS, init, type Device, type IntegratorMethod } from '../engine/index.ts';
import { DATASETS, DEFAULT_DATA_DIR, MODELS, OPTIMIZERS, type RunConfig } from './config.ts';
import { loadModelState, readCheckpoint, readCheckpointMeta } from './checkpoint.ts';
import { ensureDir } from './files.ts';
import { ProgressBar, formatDuration, progressLine } from './progress.ts';
import { readRecords } from './run-log.ts';
import { writeReport } from './report.ts';
import { buildSetup, evaluate, formatEval } from './evaluate.ts';
import { analyzeRun, formatAnalysis } from './analyze.ts';
import { TrainingInterrupted, VERSION, readRunConfig, runFiles, train } from './trainer.ts';
import { PREPARE_HELP, cmdPrepare } from './av/prepare-cli.ts';
import { AUDIO_FEATURES, DEFAULT_FRAMES, DEFAULT_IMAGE_SIZE } from './av/dataset.ts';

export class UsageError extends Error {}

const HELP = `mmpareto ${VERSION} — multimodal training with MMPareto (Wei & Hu, ICML 2024) on WebGPU

Usage:
  mmpareto train [options]            train a model; writes a run directory
  mmpareto eval RUN_DIR [options]     evaluate a run's checkpoint on a split
  mmpareto report RUN_DIR... [--out FILE]
                                      one self-contained HTML page comparing runs
  mmpareto prepare crema-d|ave --src RAW --out DIR
                                      a raw CREMA-D / AVE download → the layout --data-dir reads
  mmpareto analyze RUN_DIR [options]  Hypothesis 1 at a checkpoint's fixed weights: per
                                      encoder, |g_m| and |g_u|, their covariance traces and
                                      k = tr C^u / tr C^m, the share of batches with cos < 0
  mmpareto --help | --version

train options (default in brackets):
  --dataset NAME      ${DATASETS.join(' | ')} [cg-fmnist]
  --model NAME        ${MODELS.join(' | ')} [cnn]
  --method NAME       ${INTEGRATOR_METHODS.join(' | ')} [mmpareto]
  --epochs N          training epochs [10]
  --batch-size N      items per step [64]
  --optimizer NAME    sgd (momentum) | adamw [sgd]
  --lr X              learning rate [0.001, the paper's]
  --momentum X        SGD momentum [0.9]
  --weight-decay X    weight decay (SGD: L2 added to the gradient; AdamW: decoupled) [0.0001]
  --lr-schedule NAME  none | cosine (cosine decay to 0 over the run) [none]
  --gamma X           MMPareto's magnitude factor γ [1.5]
  --fusion NAME       late fusion of modality features: concat | sum [concat]
  --seed N            initialisation, split and shuffling seed [0]
  --data-dir DIR      Fashion-MNIST IDX files [${DEFAULT_DATA_DIR}]; for crema-d and ave,
                      the directory \`mmpareto prepare\` made (its split is used as is)
  --train-limit N     use at most N training items, 0 = all [0]
  --val-size N        training items held out for validation (Fashion-MNIST sets) [5000]
  --frames T          crema-d, ave: video frames per clip, features averaged over time [${DEFAULT_FRAMES}]
  --image-size S      crema-d, ave: frame side after RandomResizedCrop / resize [${DEFAULT_IMAGE_SIZE}]
  --audio NAME        crema-d, ave: ${AUDIO_FEATURES.join(' | ')} (OGM-GE log STFT at 22,050 Hz, or Kaldi
                      log mel fbank), computed on the GPU per batch [stft]
  --log-every N       read back (and log) the step losses and MMPareto telemetry every N steps [20]
  --on-nonfinite X    at a NaN/Inf loss or gradient: stop (nothing of that step or later is
                      applied; the state before it goes to nonfinite.safetensors) | skip (drop
                      such steps, log them, train on) [stop]
  --out DIR           run directory [runs/DATASET-MODEL-METHOD-sSEED]; one run at a time
                      (a second one is refused while RUN/lock names a live process)
  --resume            continue the run in --out from its latest checkpoint, or start it over if
                      it stopped before its first one (same config; only --epochs may be raised,
                      --on-nonfinite and --data-dir changed); the result equals an uninterrupted run
  --no-report         do not write report.html into the run directory at the end

${PREPARE_HELP}
eval options:
  --checkpoint WHICH  best | latest | a .safetensors path [best]
  --split NAME        train | val | test [test]
  --data-dir DIR      where the data set lives, if not where the run found it

analyze options:
  --checkpoint WHICH  best | latest | a .safetensors path [best]
  --batches N         training mini-batches (>= 2) to take g_m and g_u on [100]
  --out FILE          the JSON result [RUN_DIR/analysis-WHICH-epochE.json]

common:
  --quiet             no progress bar; only epoch summaries and results
  -h, --help          this text

A run directory holds config.json, metrics.jsonl (every step's losses and the
integrator's cos β, α and gradient norms per encoder, read back every --log-every
steps; one evaluation per epoch; the final test result), latest.safetensors and best.safetensors (PyTorch parameter names, plus
optimizer and integrator state and a CRC-32 per tensor; written whole or not at all, also
on a full disk), report.html, and while training runs, lock.
Exit codes: 0 success, 1 the work failed (missing data, bad checkpoint, I/O, a full disk,
a non-finite loss, a lost GPU — the message says which and how to continue), 2 bad usage
(unknown command, flag or name), 130 / 143 interrupted by Ctrl-C / SIGTERM: training stops
after the step in progress (a second Ctrl-C kills it); --resume continues from the last
finished epoch, repeating that epoch's steps with identical results.
`;

const OPTIONS = {
  dataset: { type: 'string' }, model: { type: 'string' }, method: { type: 'string' }, epochs: { type: 'string' },
  'batch-size': { type: 'string' }, optimizer: { type: 'string' }, lr: { type: 'string' }, momentum: { type: 'string' },
  'weight-decay': { type: 'string' }, 'lr-schedule': { type: 'string' }, gamma: { type: 'string' }, fusion: { type: 'string' },
  seed: { type: 'string' }, 'data-dir': { type: 'string' }, 'train-limit': { type: 'string' }, 'val-size': { type: 'string' },
  'log-every': { type: 'string' }, 'on-nonfinite': { type: 'string' }, out: { type: 'string' }, resume: { type: 'boolean' }, 'no-report': { type: 'boolean' },
  checkpoint: { type: 'string' }, split: { type: 'string' }, batches: { type: 'string' }, quiet: { type: 'boolean' },
  frames: { type: 'string' }, 'image-size': { type: 'string' }, audio: { type: 'string' },
  // prepare
  src: { type: 'string' }, 'sample-rate': { type: 'string' }, 'val-fraction': { type: 'string' }, 'test-fraction': { type: 'string' },
  'train-csv': { type: 'string' }, 'test-csv': { type: 'string' }, 'on-corrupt': { type: 'string' }, jobs: { type: 'string' },
  help: { type: 'boolean', short: 'h' }, version: { type: 'boolean' },
} satisfies ParseArgsConfig['options'];

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>['values'];

function choice<T extends string>(flag: string, v: string | undefined, valid: readonly T[], dflt: T): T {
  if (v === undefined) return dflt;
  if (!(valid as readonly string[]).includes(v)) throw new UsageError(`--${flag}: unknown '${v}' (valid: ${valid.join(', ')})`);
  return v as T;
}
function num(flag: string, v: string | undefined, dflt: number, check: (x: number) => boolean, what: string): number {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || !check(x)) throw new UsageError(`--${flag}: '${v}' is not ${what}`);
  return x;
}
const int = (x: number) => Number.isInteger(x);

export function trainConfig(v: Values): RunConfig {
  const dataset = choice('dataset', v.dataset, DATASETS, 'cg-fmnist');
  const model = choice('model', v.model, MODELS, 'cnn');
  const method = choice<IntegratorMethod>('method', v.method, INTEGRATOR_METHODS, 'mmpareto');
  const seed = num('seed', v.seed, 0, (x) => int(x) && x >= 0, 'an integer >= 0');
  return {
    dataset, model, method, seed,
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
function resumeConfig(v: Values, argv: string[]): RunConfig {
  const asked = trainConfig(v);
  const saved = readRunConfig(asked.outDir);
  const given = new Set(argv.filter((a) => a.startsWith('--')).map((a) => a.slice(2).split('=')[0]!));
  const flagOf: Record<string, string> = {
    batchSize: 'batch-size', weightDecay: 'weight-decay', lrSchedule: 'lr-schedule', dataDir: 'data-dir', trainLimit: 'train-limit', valSize: 'val-size', logEvery: 'log-every', onNonFinite: 'on-nonfinite', outDir: 'out', imageSize: 'image-size',
  };
  const out = { onNonFinite: 'stop', ...saved, outDir: asked.outDir } as RunConfig;
  for (const k of Object.keys(asked) as (keyof RunConfig)[]) {
    const flag = flagOf[k] ?? k;
    if (!given.has(flag) || k === 'outDir') continue;
    if (k === 'epochs' || k === 'dataDir' || k === 'onNonFinite') (out as unknown as Record<string, unknown>)[k] = asked[k];
    else if (asked[k] !== saved[k]) throw new UsageError(`--resume: --${flag} ${String(asked[k])} differs from the run's ${String(saved[k])} (only --epochs may change)`);
  }
  delete (out as unknown as Record<string, unknown>).version;
  delete (out as unknown as Record<string, unknown>).device;
  const files = runFiles(out.outDir);
  if (existsSync(files.latest)) {
    const done = readCheckpointMeta(files.latest).epoch;
    if (out.epochs < done) throw new UsageError(`--resume: the run has finished ${done} epochs; --epochs ${out.epochs} would undo them (give --epochs ${done + 1} or more to train on)`);
    if (out.epochs === done && existsSync(files.metrics) && readRecords(files.metrics).some((r) => r.type === 'final')) {
      throw new UsageError(`--resume: the run already finished its ${done} epochs (metrics.jsonl has its final record); give --epochs ${done + 1} or more to train on`);
    }
  }
  return out;
}

interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** Set by cmdTrain when a signal stopped training: the exit code (128 + signal number). */
let interruptedCode = 130;

async function cmdTrain(v: Values, argv: string[], io: Io, device: () => Promise<Device>): Promise<void> {
  interruptedCode = 130;
  const config = v.resume ? resumeConfig(v, argv) : trainConfig(v);
  ensureDir(config.outDir, `--out ${config.outDir}`, false); // /proc, a file, a read-only mount: fail before the GPU starts
  const dev = await device();
  const bar = new ProgressBar(process.stderr, !v.quiet && process.stderr.isTTY === true);
  let lastPrinted = 0;
  // Ctrl-C or SIGTERM: finish the step in progress and stop cleanly (the checkpoints are whole); Ctrl-C twice: kill.
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal.aborted) return;
    interruptedCode = signal === 'SIGTERM' ? 143 : 130;
    stop.abort(signal);
    bar.clear();
    io.err(`${signal === 'SIGTERM' ? 'SIGTERM' : 'Ctrl-C'}: stopping after this step${signal === 'SIGINT' ? ' (Ctrl-C again to kill)' : ''}…`);
    if (signal === 'SIGINT') process.once('SIGINT', () => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const final = await train(config, {
    device: dev,
    resume: v.resume,
    signal: stop.signal,
    events: {
      log: (s) => {
        bar.clear();
        io.err(s);
      },
      progress: (p) => {
        if (bar.enabled) return bar.update(p);
        // Not a terminal: a plain progress line every ~10 s unless quiet.
        if (v.quiet || performance.now() - lastPrinted < 10_000) return;
        lastPrinted = performance.now();
        io.err(progressLine(p));
      },
    },
  }).catch((e: unknown) => {
    if (!(e instanceof DeviceLostError)) throw e;
    const latest = runFiles(config.outDir).latest;
    let epoch = 0;
    try {
      epoch = existsSync(latest) ? readCheckpointMeta(latest).epoch : 0;
    } catch {
      /* reported as no checkpoint */
    }
    const where = epoch > 0 ? `latest.safetensors holds epoch ${epoch}: 'mmpareto train --resume --out ${config.outDir}' continues from it` : `no epoch had finished: 'mmpareto train --resume --out ${config.outDir}' starts the run over`;
    throw new Error(`${e.message}. Training stopped; ${where} (on a working GPU)`);
  }).finally(() => {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    bar.clear();
  });
  const t = final.test;
  io.out(`test (best epoch ${final.best_epoch} by validation): ${formatEval(t)}; macro-F1 ${(100 * t.macro_f1[Object.keys(t.macro_f1)[0]!]!).toFixed(2)}%`);
  io.out(`wall ${formatDuration(final.wall_s)} (${final.steps_per_s.toFixed(2)} steps/s); run directory ${config.outDir}`);
  if (!v['no-report']) {
    const r = writeReport([config.outDir], join(config.outDir, 'report.html'));
    io.out(`report: ${r.path}`);
  }
}

async function cmdEval(v: Values, positionals: string[], io: Io, device: () => Promise<Device>): Promise<void> {
  if (positionals.length !== 1) throw new UsageError('eval takes one run directory');
  const dir = resolve(positionals[0]!);
  const config = readRunConfig(dir);
  if (v['data-dir']) config.dataDir = v['data-dir'];
  const which = v.checkpoint ?? 'best';
  const path = which === 'best' || which === 'latest' ? runFiles(dir)[which] : resolve(which);
  const split = choice('split', v.split, ['train', 'val', 'test'] as const, 'test');
  const ckpt = readCheckpoint(path);
  await device();
  const setup = buildSetup(config);
  try {
    loadModelState(ckpt, setup.model);
    const rec = await evaluate(setup, setup.dataset[split], split, ckpt.meta.epoch, ckpt.meta.step, 256);
    if (existsSync(runFiles(dir).metrics) && !v.quiet) io.err(`${split} of ${path}: ${formatEval(rec)}`);
    io.out(JSON.stringify(rec));
  } finally {
    setup.model.dispose();
  }
}

async function cmdAnalyze(v: Values, positionals: string[], io: Io, device: () => Promise<Device>): Promise<void> {
  if (positionals.length !== 1) throw new UsageError('analyze takes one run directory');
  const batches = num('batches', v.batches, 100, (x) => int(x) && x >= 2, 'an integer >= 2 (a covariance needs at least two batches)');
  let lastPrinted = performance.now();
  const { path, analysis } = await analyzeRun(positionals[0]!, {
    checkpoint: v.checkpoint, batches, out: v.out, dataDir: v['data-dir'],
    progress: (done, total) => {
      if (v.quiet || (performance.now() - lastPrinted < 10_000 && done < total)) return;
      lastPrinted = performance.now();
      io.err(`analyze: ${done}/${total} batches queued`);
    },
  }, device);
  io.out(`${analysis.run.method} ${analysis.run.dataset} seed ${analysis.run.seed}, ${analysis.checkpoint.which} checkpoint (epoch ${analysis.checkpoint.epoch}), ${analysis.batches} batches of ${analysis.batchSize}:`);
  for (const line of formatAnalysis(analysis)) io.out(`  ${line}`);
  io.out(`written: ${path}`);
}

function cmdReport(v: Values, positionals: string[], io: Io): void {
  if (positionals.length === 0) throw new UsageError('report takes one or more run directories');
  const out = resolve(v.out ?? (positionals.length === 1 ? join(positionals[0]!, 'report.html') : 'report.html'));
  const r = writeReport(positionals.map((p) => resolve(p)), out);
  io.out(`report of ${r.runs} run(s): ${r.path}`);
}

/** Runs the CLI; returns the exit code (never calls process.exit). */
export async function main(argv: string[], io: Io = { out: (s) => console.log(s), err: (s) => console.error(s) }, given?: Device): Promise<number> {
  let device: Device | null = null; // created here on first need (usage errors create none), destroyed at the end
  const getDevice = async () => given ?? (device ??= await init());
  try {
    let parsed;
    try {
      parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const { values: v, positionals } = parsed;
    if (v.version) return io.out(VERSION), 0;
    const [cmd, ...rest] = positionals;
    if (v.help || !cmd) {
      io.out(HELP);
      return v.help ? 0 : 2;
    }
    if (cmd === 'train') {
      if (rest.length) throw new UsageError(`train takes no positional arguments, got ${rest.join(' ')}`);
      await cmdTrain(v, argv, io, getDevice);
    } else if (cmd === 'eval') await cmdEval(v, rest, io, getDevice);
    else if (cmd === 'report') cmdReport(v, rest, io);
    else if (cmd === 'prepare') return await cmdPrepare(v, rest, io, (m) => new UsageError(m));
    else if (cmd === 'analyze') await cmdAnalyze(v, rest, io, getDevice);
    else throw new UsageError(`unknown command '${cmd}' (valid: train, eval, report, prepare, analyze)`);
    return 0;
  } catch (e) {
    if (e instanceof TrainingInterrupted) {
      io.err(`mmpareto: ${e.message}`);
      return interruptedCode;
    }
    if (e instanceof UsageError) {
      io.err(`mmpareto: ${e.message}\nRun 'mmpareto --help' for the options.`);
      return 2;
    }
    io.err(`mmpareto: ${(e as Error).message}`);
    if (process.env.MMPARETO_DEBUG) io.err((e as Error).stack ?? '');
    return 1;
  } finally {
    (device as Device | null)?.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/train/cli.ts')) {
  process.exitCode = await main(process.argv.slice(2));
}
