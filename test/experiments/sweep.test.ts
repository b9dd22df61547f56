// experiments/sweep.ts on tiny synthetic runs (seconds): every run writes its summary; a second
// sweep skips finished runs; an interrupted run resumes and ends bit-identical to an
// uninterrupted one; runs of one seed are paired (same initial weights and data for every
// method, checked through the fingerprints); per-epoch checkpoints are kept where planned; and
// the child-process executor that the real sweep uses runs a plan end to end.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { device } from '../helpers.ts';
import { liveTensors } from '../../engine/index.ts';
import { readCheckpoint } from '../../train/run/checkpoint.ts';
import { TrainingInterrupted } from '../../train/run/trainer.ts';
import {
  analysisEpochs,
  runDirOf,
  summaryPath,
  sweepPlan,
  SWEEP_BUDGET,
  type Budget,
  type PlannedRun,
} from '../../experiments/plan.ts';
import { executeRun, runState } from '../../experiments/runner.ts';
import { findSummaries, pairingProblems } from '../../experiments/results-dir.ts';
import { childExecutor, runSweep, type Executor } from '../../experiments/sweep.ts';
import { readSummary, type RunSummary } from '../../experiments/summary.ts';

const test = suite('sweep');
const root = mkdtempSync(join(tmpdir(), 'mmpareto-sweep-'));
// synthetic-av: 64 training items at batch 16 → 4 steps an epoch (valSize is ignored by synthetic-av).
const budget: Budget = { trainLimit: 64, epochs: 2, lr: 0.02, lrSchedule: 'none', batchSize: 16, valSize: 5000 };
const planned = (method: PlannedRun['method'], seed: number, keep = false): PlannedRun => ({
  dataset: 'synthetic-av',
  method,
  seed,
  budget,
  keepEpochCheckpoints: keep,
});
const plan = [planned('mmpareto', 0, true), planned('uniform', 0), planned('mmpareto', 1)];

/** In-process executor on the test device; counts its calls; optionally aborts one run mid-way. */
function inProcess(
  dirs: { runsDir: string; resultsDir: string },
  calls: string[],
  abortAt?: { run: string; epoch: number; step: number },
): Executor {
  return async (run, hooks) => {
    const id = `${run.method}-seed${run.seed}`;
    calls.push(id);
    const stop = new AbortController();
    await executeRun(run, {
      device,
      ...dirs,
      commit: 'test-commit',
      signal: stop.signal,
      events: {
        log: hooks.log,
        progress: (p) => {
          hooks.progress(p);
          if (abortAt && abortAt.run === id && p.epoch === abortAt.epoch && p.step === abortAt.step) stop.abort();
        },
      },
    });
  };
}

const quiet = { log: () => {} };
const modelBytes = (path: string) =>
  [...readCheckpoint(path).model]
    .map(([k, t]) => `${k}:${Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('base64')}`)
    .join('|');

const A = { runsDir: join(root, 'a', 'runs'), resultsDir: join(root, 'a', 'results') };
let summaries: RunSummary[] = [];

test('sweep: every planned run trains and writes its summary; paired seeds share weights and data', async () => {
  const before = liveTensors.count;
  const calls: string[] = [];
  const r = await runSweep(plan, { ...A, exec: inProcess(A, calls), ...quiet });
  assert.equal(r, { ran: 3, skipped: 0, failed: [] });
  assert.equal(calls, ['mmpareto-seed0', 'uniform-seed0', 'mmpareto-seed1']);
  summaries = plan.map((p) => readSummary(summaryPath(A.resultsDir, p)));
  const [m0, u0, m1] = summaries as [RunSummary, RunSummary, RunSummary];
  assert.equal(m0.pairing, u0.pairing, 'same seed, different method: same initial weights and data');
  assert.is.not(m1.pairing.init, m0.pairing.init, 'another seed: other weights');
  assert.is.not(m1.pairing.data, m0.pairing.data, 'another seed: other data order');
  assert.equal(pairingProblems(findSummaries(A.resultsDir)), []);
  for (const s of summaries) {
    assert.is(s.steps, 8);
    assert.is(s.final.epoch, 2);
    assert.is(s.valCurve.length, 2);
    assert.ok(s.best.epoch === 1 || s.best.epoch === 2);
    assert.is(s.best.val.acc.mm, s.valCurve[s.best.epoch - 1]!.acc.mm);
    assert.is(s.final.val.acc.mm, s.valCurve[1]!.acc.mm);
    assert.equal(Object.keys(s.final.test.acc).sort(), ['audio', 'mm', 'visual']);
    assert.equal(s.commits, ['test-commit']);
    assert.is(s.adapter, device.adapterName);
    assert.ok(s.wall.train_s > 0 && s.wall.segments === 1 && s.wall.steps_per_s > 0);
    assert.not.ok('outDir' in s.config || 'dataDir' in s.config, 'no machine paths in a committed summary');
  }
  // The final epoch's test evaluation equals the best one's when the best epoch is the last.
  for (const s of summaries) if (s.best.epoch === 2) assert.equal(s.final.test, s.best.test);
  assert.ok(
    m0.telemetry && m0.telemetry.audio!.steps === 8 && m0.telemetry.audio!.series.length === 8,
    'mmpareto logs telemetry every step',
  );
  assert.is(u0.telemetry, null, 'uniform has no integrator telemetry');
  // Epoch checkpoints only where the plan asks for them.
  const d0 = runDirOf(A.runsDir, plan[0]!);
  for (const e of [1, 2]) assert.ok(existsSync(join(d0, `epoch-${e}.safetensors`)), `epoch-${e} kept`);
  assert.is(readCheckpoint(join(d0, 'epoch-1.safetensors')).meta.epoch, 1);
  assert.not.ok(existsSync(join(runDirOf(A.runsDir, plan[1]!), 'epoch-1.safetensors')));
  assert.is(liveTensors.count, before, 'no leaks');
});

test('sweep: a second start skips every summarized run (nothing retrained or rewritten)', async () => {
  const mtimes = plan.map((p) => statSync(summaryPath(A.resultsDir, p)).mtimeMs);
  const calls: string[] = [];
  const r = await runSweep(plan, { ...A, exec: inProcess(A, calls), ...quiet });
  assert.equal(r, { ran: 0, skipped: 3, failed: [] });
  assert.equal(calls, []);
  assert.equal(
    plan.map((p) => statSync(summaryPath(A.resultsDir, p)).mtimeMs),
    mtimes,
  );
});

test(
  'sweep: an interrupted run resumes on the next start ' + 'and ends bit-identical to the uninterrupted one',
  async () => {
    const B = { runsDir: join(root, 'b', 'runs'), resultsDir: join(root, 'b', 'results') };
    const calls: string[] = [];
    try {
      await runSweep(plan, { ...B, exec: inProcess(B, calls, { run: 'uniform-seed0', epoch: 2, step: 2 }), ...quiet });
      assert.unreachable('interrupted');
    } catch (e) {
      assert.ok(e instanceof TrainingInterrupted, String(e));
    }
    assert.is(runState(plan[0]!, B.runsDir, B.resultsDir), 'summarized');
    assert.is(runState(plan[1]!, B.runsDir, B.resultsDir), 'resumable');
    assert.is(runState(plan[2]!, B.runsDir, B.resultsDir), 'unstarted');
    calls.length = 0;
    const r = await runSweep(plan, { ...B, exec: inProcess(B, calls), ...quiet });
    assert.equal(r, { ran: 2, skipped: 1, failed: [] });
    assert.equal(calls, ['uniform-seed0', 'mmpareto-seed1']);
    for (const p of plan) {
      assert.is(
        modelBytes(join(runDirOf(B.runsDir, p), 'latest.safetensors')),
        modelBytes(join(runDirOf(A.runsDir, p), 'latest.safetensors')),
        `${p.method}-seed${p.seed}: same final weights`,
      );
    }
    const resumed = readSummary(summaryPath(B.resultsDir, plan[1]!));
    assert.equal(resumed.valCurve, summaries[1]!.valCurve);
    assert.equal(resumed.final.test, summaries[1]!.final.test);
    assert.equal(resumed.best.test, summaries[1]!.best.test);
    assert.is(resumed.wall.segments, 2, 'two training segments');
  },
);

test(
  'sweep: a run killed before its first epoch ended starts over; ' + 'a run directory of another config is refused',
  async () => {
    const C = { runsDir: join(root, 'c', 'runs'), resultsDir: join(root, 'c', 'results') };
    const run = planned('uniform', 0);
    const calls: string[] = [];
    await runSweep([run], {
      ...C,
      exec: inProcess(C, calls, { run: 'uniform-seed0', epoch: 1, step: 2 }),
      ...quiet,
    }).catch((e: unknown) => assert.ok(e instanceof TrainingInterrupted));
    const partial = runDirOf(C.runsDir, run);
    assert.ok(
      existsSync(join(partial, 'config.json')) && !existsSync(join(partial, 'latest.safetensors')),
      'a partial first epoch: a run directory without a checkpoint',
    );
    // As if it had logged steps before dying (which makes the trainer refuse a fresh start there).
    writeFileSync(
      join(partial, 'metrics.jsonl'),
      '{"type":"step","epoch":1,"step":1,"steps":1,"loss":{"mm":2},"lr":0.02,"time_s":0.1}\n',
    );
    assert.is(runState(run, C.runsDir, C.resultsDir), 'unstarted');
    await runSweep([run], { ...C, exec: inProcess(C, calls), ...quiet });
    assert.is(
      modelBytes(join(runDirOf(C.runsDir, run), 'latest.safetensors')),
      modelBytes(join(runDirOf(A.runsDir, run), 'latest.safetensors')),
    );
    // Same run directory, different lr: refused rather than mixed.
    const other = { ...run, budget: { ...budget } };
    const dir = runDirOf(C.runsDir, other);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, lr: 0.5 }));
    rmSync(summaryPath(C.resultsDir, run));
    try {
      await executeRun(other, { device, ...C, commit: 'x' });
      assert.unreachable();
    } catch (e) {
      assert.ok(
        (e as Error).message.includes('holds a different run (lr: 0.5 in the run directory, 0.02 planned)'),
        (e as Error).message,
      );
    }
  },
);

test('sweep: a failing run (e.g. diverged) is reported and the sweep goes on to the next', async () => {
  const F = { runsDir: join(root, 'f', 'runs'), resultsDir: join(root, 'f', 'results') };
  const seen: string[] = [];
  const logs: string[] = [];
  const r = await runSweep(plan, {
    ...F,
    log: (l) => logs.push(l),
    exec: async (run) => {
      seen.push(`${run.method}-seed${run.seed}`);
      if (run.method === 'uniform') throw new Error('training diverged at step 3');
    },
  });
  assert.equal(seen, ['mmpareto-seed0', 'uniform-seed0', 'mmpareto-seed1']);
  assert.equal(r, { ran: 2, skipped: 0, failed: ['synthetic-av/uniform-seed0'] });
  assert.ok(
    logs.some((l) => l.includes('synthetic-av/uniform-seed0 FAILED') && l.includes('training diverged at step 3')),
    logs.join('\n'),
  );
});

test('pairing check: a summary whose initial weights differ from its seed-mates is reported', () => {
  const ok = findSummaries(A.resultsDir);
  const bad = ok.map((s) =>
    s.summary.method === 'uniform'
      ? { ...s, summary: { ...s.summary, pairing: { ...s.summary.pairing, init: 'deadbeef' } } }
      : s,
  );
  const problems = pairingProblems(bad);
  assert.is(problems.length, 1);
  assert.ok(
    problems[0]!.includes('synthetic-av/') &&
      problems[0]!.includes('seed0') &&
      problems[0]!.includes('initial weights'),
    problems[0],
  );
});

test('child-process executor (the real sweep): runs a plan, streams progress, writes the summary', async () => {
  const E = { runsDir: join(root, 'e', 'runs'), resultsDir: join(root, 'e', 'results') };
  const child = childExecutor(E.runsDir, E.resultsDir, 'child-commit');
  const progress: number[] = [];
  const lines: string[] = [];
  const run = planned('uniform', 0);
  await runSweep([run], {
    ...E,
    exec: (r, h) =>
      child.exec(r, {
        log: (l) => {
          lines.push(l);
          h.log(l);
        },
        progress: (p) => {
          progress.push(p.remaining);
          h.progress(p);
        },
      }),
    log: () => {},
    progressEvery: 0,
  });
  const s = readSummary(summaryPath(E.resultsDir, run));
  assert.equal(s.commits, ['child-commit']);
  assert.equal(s.pairing, summaries[1]!.pairing, 'the same pairing fingerprints as in-process');
  assert.equal(s.final.test, summaries[1]!.final.test, 'the same result as in-process');
  assert.ok(progress.length >= 1 && progress[progress.length - 1] === 0, `progress streamed (${progress.join(', ')})`);
  assert.ok(
    lines.some((l) => l.startsWith('epoch 2/2: val')),
    lines.join('\n'),
  );
});

test(
  "plan: the issue's runs (5 paired seeds of MMPareto and uniform, " + '3 of each peer, Multi-FMNIST) at one budget',
  () => {
    const p = sweepPlan();
    const count = (ds: string, m: string) => p.filter((r) => r.dataset === ds && r.method === m).map((r) => r.seed);
    assert.equal(count('cg-fmnist', 'mmpareto'), [0, 1, 2, 3, 4]);
    assert.equal(count('cg-fmnist', 'uniform'), [0, 1, 2, 3, 4]);
    for (const m of ['mgda', 'one-joint-loss', 'pcgrad', 'mmpareto-official'])
      assert.equal(count('cg-fmnist', m), [0, 1, 2], m);
    for (const m of ['mmpareto', 'uniform', 'mgda']) assert.equal(count('multi-fmnist', m), [0, 1, 2], m);
    assert.is(p.length, 31);
    assert.ok(
      p.every((r) => r.budget === SWEEP_BUDGET),
      'one budget (and lr) for every method',
    );
    assert.equal(
      p
        .filter((r) => r.keepEpochCheckpoints)
        .map((r) => `${r.method}${r.seed}`)
        .sort(),
      [
        'mmpareto0',
        'mmpareto1',
        'mmpareto2',
        'mmpareto3',
        'mmpareto4',
        'uniform0',
        'uniform1',
        'uniform2',
        'uniform3',
        'uniform4',
      ],
    );
    assert.equal(analysisEpochs(10), [1, 5, 10]);
    assert.equal(analysisEpochs(1), [1]);
  },
);

test.run();
