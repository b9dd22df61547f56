// The commands of `mmpareto`: train (with progress, Ctrl-C and SIGTERM stopping after the step in
// progress), eval, analyze and report. Each takes the parsed flags and writes its results to `io`.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DeviceLostError, type Device } from '../../engine/index.ts';
import { analyzeRun, formatAnalysis } from '../analyze/gradients.ts';
import { ensureDir } from '../io/files.ts';
import { writeReport } from '../report/report.ts';
import { loadModelState, readCheckpoint, readCheckpointMeta } from '../run/checkpoint.ts';
import { evaluate, formatEval } from '../run/evaluate.ts';
import { readRunConfig, runFiles } from '../run/run-dir.ts';
import { buildSetup } from '../run/setup.ts';
import { TrainingInterrupted, train } from '../run/trainer.ts';
import { UsageError, choice, int, num, resumeConfig, trainConfig, type Values } from './args.ts';
import { ProgressBar, formatDuration, progressLine } from './progress.ts';

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

/**
 * `mmpareto train`; returns the exit code: 0, or 130 / 143 when Ctrl-C / SIGTERM stopped training
 * after a step (the message says how to resume).
 */
export async function cmdTrain(v: Values, argv: string[], io: Io, device: () => Promise<Device>): Promise<number> {
  let interruptedCode = 130; // 128 + the signal's number
  const config = v.resume ? resumeConfig(v, argv) : trainConfig(v);
  // /proc, a file, a read-only mount: fail before the GPU starts
  ensureDir(config.outDir, `--out ${config.outDir}`, false);
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
    io.err(
      `${signal === 'SIGTERM' ? 'SIGTERM' : 'Ctrl-C'}: stopping after this ` +
        `step${signal === 'SIGINT' ? ' (Ctrl-C again to kill)' : ''}…`,
    );
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
  })
    .catch((e: unknown) => {
      if (!(e instanceof DeviceLostError)) throw e;
      const latest = runFiles(config.outDir).latest;
      let epoch = 0;
      try {
        epoch = existsSync(latest) ? readCheckpointMeta(latest).epoch : 0;
      } catch {
        /* reported as no checkpoint */
      }
      const where =
        epoch > 0
          ? `latest.safetensors holds epoch ${epoch}: 'mmpareto train --resume --out ${config.outDir}' continues ` +
            `from it`
          : `no epoch had finished: 'mmpareto train --resume --out ${config.outDir}' starts the run over`;
      throw new Error(`${e.message}. Training stopped; ${where} (on a working GPU)`);
    })
    .finally(() => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      bar.clear();
    })
    .catch((e: unknown) => {
      if (!(e instanceof TrainingInterrupted)) throw e;
      io.err(`mmpareto: ${e.message}`);
      return null;
    });
  if (!final) return interruptedCode;
  const t = final.test;
  io.out(
    `test (best epoch ${final.best_epoch} by validation): ${formatEval(t)}; macro-F1 ` +
      `${(100 * t.macro_f1[Object.keys(t.macro_f1)[0]!]!).toFixed(2)}%`,
  );
  io.out(
    `wall ${formatDuration(final.wall_s)} (${final.steps_per_s.toFixed(2)} steps/s); run directory ${config.outDir}`,
  );
  if (!v['no-report']) {
    const r = writeReport([config.outDir], join(config.outDir, 'report.html'));
    io.out(`report: ${r.path}`);
  }
  return 0;
}

export async function cmdEval(v: Values, positionals: string[], io: Io, device: () => Promise<Device>): Promise<void> {
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

export async function cmdAnalyze(
  v: Values,
  positionals: string[],
  io: Io,
  device: () => Promise<Device>,
): Promise<void> {
  if (positionals.length !== 1) throw new UsageError('analyze takes one run directory');
  const batches = num(
    'batches',
    v.batches,
    100,
    (x) => int(x) && x >= 2,
    'an integer >= 2 (a covariance needs at least two batches)',
  );
  let lastPrinted = performance.now();
  const { path, analysis } = await analyzeRun(
    positionals[0]!,
    {
      checkpoint: v.checkpoint,
      batches,
      out: v.out,
      dataDir: v['data-dir'],
      progress: (done, total) => {
        if (v.quiet || (performance.now() - lastPrinted < 10_000 && done < total)) return;
        lastPrinted = performance.now();
        io.err(`analyze: ${done}/${total} batches queued`);
      },
    },
    device,
  );
  io.out(
    `${analysis.run.method} ${analysis.run.dataset} seed ${analysis.run.seed}, ${analysis.checkpoint.which} ` +
      `checkpoint (epoch ${analysis.checkpoint.epoch}), ${analysis.batches} batches of ` +
      `${analysis.batchSize}:`,
  );
  for (const line of formatAnalysis(analysis)) io.out(`  ${line}`);
  io.out(`written: ${path}`);
}

export function cmdReport(v: Values, positionals: string[], io: Io): void {
  if (positionals.length === 0) throw new UsageError('report takes one or more run directories');
  const out = resolve(v.out ?? (positionals.length === 1 ? join(positionals[0]!, 'report.html') : 'report.html'));
  const r = writeReport(
    positionals.map((p) => resolve(p)),
    out,
  );
  io.out(`report of ${r.runs} run(s): ${r.path}`);
}
