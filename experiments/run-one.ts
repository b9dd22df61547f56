// Child process of experiments/sweep.ts: trains one planned run (experiments/runner.ts) in a
// fresh process (fresh device, buffer pool and generators, so a run cannot depend on the ones
// before it) and reports to the parent as JSON lines on stdout:
//   {"type":"progress", ...ProgressState}   at most every 2 s
//   {"type":"log","line":"..."}              trainer lines (epoch summaries, warnings)
//   {"type":"done","summary":"PATH"}         the summary is written
// SIGTERM/SIGINT, or the parent going away (stdin closes), stop training after the current step:
// the checkpoints are whole, and the next sweep resumes from the last finished epoch. Exit
// codes: 0 done, 1 failed (message on stderr), 130 interrupted.
// Usage: tsx experiments/run-one.ts RUN_JSON RUNS_DIR RESULTS_DIR COMMIT
import { init } from '../engine/index.ts';
import { TrainingInterrupted } from '../train/run/trainer.ts';
import { summaryPath, type PlannedRun } from './plan.ts';
import { executeRun } from './runner.ts';

const [runJson, runsDir, resultsDir, commit] = process.argv.slice(2);
if (!runJson || !runsDir || !resultsDir || !commit) {
  console.error(
    'usage: tsx experiments/run-one.ts RUN_JSON RUNS_DIR RESULTS_DIR COMMIT (started by experiments/sweep.ts)',
  );
  process.exit(2);
}
const run = JSON.parse(runJson) as PlannedRun;
const send = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
const stop = new AbortController();
const onStop = () => stop.abort();
process.on('SIGTERM', onStop);
process.on('SIGINT', onStop);
process.stdin.on('close', onStop);
process.stdin.on('end', onStop);
process.stdin.resume();

const device = await init();
let last = 0;
try {
  await executeRun(run, {
    device,
    runsDir,
    resultsDir,
    commit,
    signal: stop.signal,
    events: {
      log: (line) => send({ type: 'log', line }),
      progress: (p) => {
        if (performance.now() - last < 2000 && p.remaining > 0) return;
        last = performance.now();
        send({ type: 'progress', ...p });
      },
    },
  });
  send({ type: 'done', summary: summaryPath(resultsDir, run) });
  process.exitCode = 0;
} catch (e) {
  if (e instanceof TrainingInterrupted) {
    console.error(e.message);
    process.exitCode = 130;
  } else {
    console.error((e as Error).stack ?? String(e));
    process.exitCode = 1;
  }
} finally {
  device.destroy();
  process.stdin.destroy();
}
