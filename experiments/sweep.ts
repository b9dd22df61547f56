// The resumable experiment sweep of issue 14 (plan: experiments/plan.ts). Every run is one child
// process (experiments/run-one.ts); a run whose summary exists is skipped, a run interrupted
// mid-way resumes from its last finished epoch, so the sweep can be killed and restarted at any
// time, over days. Summaries go to experiments/results (committed); run directories with
// checkpoints to runs/sweep (ignored). After each run the pairing fingerprints of every summary
// of the same data set, budget and seed are compared: the sweep stops if two methods of one seed
// did not start from the same weights and data.
//
//   tsx experiments/sweep.ts                  run (or continue) the whole plan
//   tsx experiments/sweep.ts --dry-run        list the plan with each run's state, and the steps left
//   tsx experiments/sweep.ts --only 'cg-fmnist/(mmpareto|uniform)-seed[0-4]'
//   tsx experiments/sweep.ts --analyze [--batches N]
//                                             `mmpareto analyze` on the kept early/middle/final
//                                             checkpoints → experiments/results/.../analysis/
//   tsx experiments/sweep.ts --summarize --into DIR --commit C RUN_DIR...
//                                             summaries of hand-trained runs (the pilot)
// Options: --runs DIR [runs/sweep], --results DIR [experiments/results], --progress-every S [60].
// Stop it with SIGTERM (kill PID, PID in <runs>/sweep.pid) or Ctrl-C: the running child stops
// after its current step, the sweep exits 130, and the next start resumes.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { analyzeRun, formatAnalysis } from '../train/analyze/gradients.ts';
import { formatDuration } from '../train/cli/progress.ts';
import { readRunConfig } from '../train/run/run-dir.ts';
import { TrainingInterrupted, type ProgressState } from '../train/run/trainer.ts';
import { analysisEpochs, budgetLabel, runDirOf, runName, sweepPlan, type Budget, type PlannedRun } from './plan.ts';
import { runState, summarizeRunDir } from './runner.ts';
import { findSummaries, pairingProblems } from './results-dir.ts';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** The checked-out commit, with '-dirty' when tracked files differ from it. */
export function gitCommit(cwd = ROOT): string {
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, encoding: 'utf8' }).trim();
    const dirty =
      execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${head}-dirty` : head;
  } catch {
    return 'unknown';
  }
}

/** Optimizer steps of a planned run (dropLast batches; the split has trainLimit items). */
export const plannedSteps = (r: PlannedRun): number =>
  Math.floor(r.budget.trainLimit / r.budget.batchSize) * r.budget.epochs;

export const runId = (r: PlannedRun): string => `${r.dataset}/${runName(r)}`;

export type Executor = (
  run: PlannedRun,
  hooks: { progress(p: ProgressState): void; log(line: string): void },
) => Promise<void>;

export interface SweepOptions {
  runsDir: string;
  resultsDir: string;
  exec: Executor;
  log(line: string): void;
  /** Seconds between progress lines (0: every progress event). */
  progressEvery?: number;
}

/**
 * Runs every planned run that has no summary yet, in plan order; checks pairing after each. A run
 * that fails (e.g. diverges) is reported and the sweep goes on; an interruption stops it.
 */
export async function runSweep(
  plan: readonly PlannedRun[],
  opts: SweepOptions,
): Promise<{ ran: number; skipped: number; failed: string[] }> {
  const t0 = performance.now();
  const todo = plan.filter((r) => runState(r, opts.runsDir, opts.resultsDir) !== 'summarized');
  const skipped = plan.length - todo.length;
  opts.log(
    `sweep: ${plan.length} planned runs, ${skipped} already summarized (skipped), ${todo.length} to run ` +
      `(${todo.reduce((a, r) => a + plannedSteps(r), 0)} steps at most)`,
  );
  let stepsDone = 0;
  let ran = 0;
  const failed: string[] = [];
  for (const [i, run] of todo.entries()) {
    const state = runState(run, opts.runsDir, opts.resultsDir);
    const doing =
      state === 'resumable'
        ? 'resuming from its last finished epoch'
        : state === 'finished'
          ? 'trained; writing its summary'
          : 'starting';
    opts.log(`[${i + 1}/${todo.length}] ${runId(run)} (${budgetLabel(run.budget)}): ${doing}`);
    const runStart = performance.now();
    let lastLine = 0;
    let lastSteps = 0;
    const running = opts.exec(run, {
      log: (line) => opts.log(`  ${line}`),
      progress: (p) => {
        lastSteps = plannedSteps(run) - p.remaining;
        if (opts.progressEvery && performance.now() - lastLine < opts.progressEvery * 1000) return;
        lastLine = performance.now();
        const left = todo.slice(i + 1).reduce((a, r) => a + plannedSteps(r), 0) + p.remaining;
        const eta = p.stepsPerSecond > 0 ? formatDuration(left / p.stepsPerSecond) : '--:--';
        opts.log(
          `  [${i + 1}/${todo.length}] ${runId(run)} epoch ${p.epoch}/${p.epochs} step ${p.step}/${p.steps} | ` +
            `${p.stepsPerSecond.toFixed(2)} steps/s | run ETA ` +
            `${p.stepsPerSecond > 0 ? formatDuration(p.remaining / p.stepsPerSecond) : '--:--'} | ` +
            `sweep ETA ${eta} at this rate`,
        );
      },
    });
    try {
      await running;
    } catch (e) {
      if (e instanceof Interrupted || e instanceof TrainingInterrupted) throw e;
      failed.push(runId(run));
      opts.log(
        `[${i + 1}/${todo.length}] ${runId(run)} FAILED (the sweep goes on; it is retried on the next start): ` +
          `${(e as Error).message}`,
      );
      continue;
    }
    stepsDone += lastSteps;
    ran++;
    const problems = pairingProblems(findSummaries(join(opts.resultsDir, run.dataset, budgetLabel(run.budget))));
    if (problems.length) throw new Error(`sweep: runs of one seed are not paired:\n  ${problems.join('\n  ')}`);
    opts.log(
      `[${i + 1}/${todo.length}] ${runId(run)} done in ${formatDuration((performance.now() - runStart) / 1000)} ` +
        `(sweep so far ${formatDuration((performance.now() - t0) / 1000)}, ${stepsDone} steps)`,
    );
  }
  return { ran, skipped, failed };
}

/** Executor that runs each run in a child process (experiments/run-one.ts); forwards SIGTERM/SIGINT to it. */
export function childExecutor(runsDir: string, resultsDir: string, commit: string): { exec: Executor; stop(): void } {
  let child: ReturnType<typeof spawn> | null = null;
  let stopping = false;
  const exec: Executor = (run, hooks) =>
    new Promise((done, fail) => {
      if (stopping) return fail(new Interrupted());
      child = spawn(
        process.execPath,
        ['--import', 'tsx', join(ROOT, 'experiments', 'run-one.ts'), JSON.stringify(run), runsDir, resultsDir, commit],
        {
          cwd: ROOT,
          stdio: ['pipe', 'pipe', 'pipe'],
          env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
        },
      );
      let buf = '';
      let err = '';
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          try {
            const m = JSON.parse(line) as { type: string; line?: string } & ProgressState;
            if (m.type === 'progress') hooks.progress(m);
            else if (m.type === 'log') hooks.log(m.line!);
          } catch {
            hooks.log(line);
          }
        }
      });
      child.stderr!.on('data', (d: Buffer) => {
        const s = d.toString();
        // Dawn's adapter warnings are noise; everything else is kept for the error message.
        for (const line of s.split('\n'))
          if (line.trim() && !line.startsWith('Warning: maxDynamic')) err += `${line}\n`;
      });
      child.on('exit', (code, signal) => {
        child = null;
        if (code === 0) done();
        else if (code === 130 || stopping) fail(new Interrupted(err.trim()));
        else fail(new Error(`${runId(run)} failed (exit ${code ?? signal}):\n${err.trim()}`));
      });
    });
  return {
    exec,
    stop: () => {
      stopping = true;
      child?.kill('SIGTERM');
    },
  };
}

export class Interrupted extends Error {}

/** --analyze: `mmpareto analyze` on each kept run's early, middle and final epoch checkpoints. */
async function analyzeKept(
  plan: readonly PlannedRun[],
  runsDir: string,
  resultsDir: string,
  batches: number,
  log: (s: string) => void,
): Promise<void> {
  const { init } = await import('../engine/index.ts');
  const device = await init();
  try {
    for (const run of plan.filter((r) => r.keepEpochCheckpoints)) {
      const dir = runDirOf(runsDir, run);
      for (const epoch of analysisEpochs(run.budget.epochs)) {
        const ckpt = join(dir, `epoch-${epoch}.safetensors`);
        const out = join(
          resultsDir,
          run.dataset,
          budgetLabel(run.budget),
          'analysis',
          `${runName(run)}-epoch${epoch}.json`,
        );
        if (existsSync(out)) continue;
        if (!existsSync(ckpt)) {
          log(`analyze: ${runId(run)} epoch ${epoch}: no checkpoint ${relative(ROOT, ckpt)} yet; skipped`);
          continue;
        }
        log(`analyze: ${runId(run)} epoch ${epoch} (${batches} batches)…`);
        const { analysis } = await analyzeRun(dir, { checkpoint: ckpt, batches, out }, async () => device);
        for (const line of formatAnalysis(analysis)) log(`  ${line}`);
      }
    }
  } finally {
    device.destroy();
  }
}

/** --summarize: hand-trained run directories → <into>/<dataset>/<budget>/<method>-seed<k>.json. */
async function summarizeDirs(dirs: string[], into: string, commit: string, log: (s: string) => void): Promise<void> {
  const { init } = await import('../engine/index.ts');
  const device = await init();
  try {
    for (const d of dirs) {
      const c = readRunConfig(resolve(d));
      const budget: Budget = {
        trainLimit: c.trainLimit,
        epochs: c.epochs,
        lr: c.lr,
        lrSchedule: c.lrSchedule,
        batchSize: c.batchSize,
        valSize: c.valSize,
      };
      const out = join(into, c.dataset, budgetLabel(budget), `${c.method}-seed${c.seed}.json`);
      const s = await summarizeRunDir(d, budget, commit, device, out);
      log(`${d} → ${relative(ROOT, out)} (best epoch ${s.best.epoch}, final val ${JSON.stringify(s.final.val.acc)})`);
    }
  } finally {
    device.destroy();
  }
}

async function main(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      runs: { type: 'string' },
      results: { type: 'string' },
      only: { type: 'string' },
      'dry-run': { type: 'boolean' },
      analyze: { type: 'boolean' },
      batches: { type: 'string' },
      summarize: { type: 'boolean' },
      into: { type: 'string' },
      commit: { type: 'string' },
      'progress-every': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const log = (s: string) => console.log(`${new Date().toISOString().slice(0, 19).replace('T', ' ')} ${s}`);
  if (v.help) {
    console.log(
      'usage: tsx experiments/sweep.ts [--dry-run] [--only REGEX] [--runs DIR] [--results DIR] [--progress-every ' +
        'S]\n       tsx experiments/sweep.ts --analyze [--batches N] [--only REGEX]\n       tsx ' +
        'experiments/sweep.ts --summarize --into DIR --commit C RUN_DIR...\n(see the header of ' +
        'experiments/sweep.ts)',
    );
    return 0;
  }
  const runsDir = resolve(v.runs ?? join(ROOT, 'runs', 'sweep'));
  const resultsDir = resolve(v.results ?? join(ROOT, 'experiments', 'results'));
  if (v.summarize) {
    if (!v.into || !v.commit || !positionals.length)
      throw new Error('--summarize needs --into DIR, --commit C and run directories');
    await summarizeDirs(positionals, resolve(v.into), v.commit, log);
    return 0;
  }
  let only: RegExp | null = null;
  try {
    only = v.only ? new RegExp(v.only) : null;
  } catch (e) {
    throw new Error(`--only: not a regular expression (${(e as Error).message})`);
  }
  const plan = sweepPlan().filter((r) => !only || only.test(runId(r)));
  if (!plan.length) throw new Error(`--only ${v.only} matches no planned run (ids look like cg-fmnist/mmpareto-seed0)`);
  if (v.analyze) {
    const batches = Number(v.batches ?? 100);
    if (!Number.isInteger(batches) || batches < 2) throw new Error(`--batches: '${v.batches}' is not an integer >= 2`);
    await analyzeKept(plan, runsDir, resultsDir, batches, log);
    return 0;
  }
  if (v['dry-run']) {
    let left = 0;
    for (const r of plan) {
      const s = runState(r, runsDir, resultsDir);
      if (s !== 'summarized') left += plannedSteps(r);
      console.log(
        `${runId(r).padEnd(40)} ${budgetLabel(r.budget)}  ${plannedSteps(r)} steps  ` +
          `${s}${r.keepEpochCheckpoints ? '  (keeps epoch checkpoints)' : ''}`,
      );
    }
    console.log(`${plan.length} runs; ${left} steps left`);
    return 0;
  }
  const commit = gitCommit();
  if (commit.endsWith('-dirty'))
    log(`warning: the working tree differs from ${commit.replace('-dirty', '')}; summaries record it as ${commit}`);
  mkdirSync(runsDir, { recursive: true });
  const pidFile = join(runsDir, 'sweep.pid');
  writeFileSync(pidFile, `${process.pid}\n`);
  const child = childExecutor(runsDir, resultsDir, commit);
  const onSignal = (sig: string) => {
    log(`${sig}: stopping after the current step (the run resumes on the next start)…`);
    child.stop();
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  try {
    const existing = pairingProblems(findSummaries(resultsDir));
    if (existing.length) throw new Error(`sweep: existing summaries are not paired:\n  ${existing.join('\n  ')}`);
    const { ran, skipped, failed } = await runSweep(plan, {
      runsDir,
      resultsDir,
      exec: child.exec,
      log,
      progressEvery: Number(v['progress-every'] ?? 60),
    });
    log(
      `sweep finished: ${ran} run(s) trained, ${skipped} ` +
        `skipped${failed.length ? `, ${failed.length} FAILED (${failed.join(', ')})` : ''}; ` +
        `summaries in ${resultsDir}`,
    );
    return failed.length ? 1 : 0;
  } catch (e) {
    if (e instanceof Interrupted) {
      log(`sweep stopped; restart the same command to resume. ${e.message}`);
      return 130;
    }
    throw e;
  } finally {
    rmSync(pidFile, { force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (e: Error) => {
      console.error(`sweep: ${e.message}`);
      process.exitCode = 1;
    },
  );
}
