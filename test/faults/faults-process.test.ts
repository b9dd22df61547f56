// The `mmpareto` bin as separate processes sharing one run directory: a second training is
// refused while the first holds the lock; Ctrl-C (SIGINT, exit 130) and SIGTERM (exit 143) stop
// after the step in progress and release the lock; kill -9 leaves a stale lock that the next
// --resume takes over with a notice; and the run, resumed after all of that, is bitwise the
// uninterrupted one. Synthetic audio-visual set, 16 steps an epoch, one readback per epoch (so
// a signal that waited for the next readback would show up as a whole epoch logged).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { device } from '../helpers.ts';
import { main } from '../../train/cli/main.ts';
import { readCheckpoint } from '../../train/run/checkpoint.ts';
import { readRecords, type FinalRecord } from '../../train/run/run-log.ts';

const test = suite('faults-process');
const root = mkdtempSync(join(tmpdir(), 'mmpareto-proc-'));
const bin = join(import.meta.dirname, '..', '..', 'bin', 'mmpareto.mjs');
const args = (out: string, ...extra: string[]) => [
  'train',
  '--dataset',
  'synthetic-av',
  '--batch-size',
  '16',
  '--lr',
  '0.02',
  '--log-every',
  '16',
  '--quiet',
  '--no-report',
  '--out',
  out,
  ...extra,
];

interface Proc {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: string | null; err: string }>;
}
const started: ChildProcess[] = [];
function start(argv: string[]): Proc {
  const child = spawn(process.execPath, [bin, ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.on('data', () => {});
  started.push(child);
  const done = new Promise<{ code: number | null; signal: string | null; err: string }>((res) =>
    child.on('exit', (code, signal) => res({ code, signal, err })),
  );
  return { child, done };
}
/** Polls until `cond` holds (a broken run fails the test after 3 minutes instead of hanging it). */
async function until(cond: () => boolean, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > 180_000) assert.unreachable(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const lockPid = (dir: string): number | null => {
  try {
    return (JSON.parse(readFileSync(join(dir, 'lock'), 'utf8')) as { pid: number }).pid;
  } catch {
    return null;
  }
};
const evalsDone = (dir: string): number => {
  try {
    return readRecords(join(dir, 'metrics.jsonl')).filter((r) => r.type === 'eval').length;
  } catch {
    return 0;
  }
};
const lastStep = (dir: string) =>
  Math.max(
    ...readRecords(join(dir, 'metrics.jsonl'))
      .filter((r) => r.type === 'step')
      .map((r) => r.step),
  );

test(
  'two runs into one --out, Ctrl-C, SIGTERM and kill -9, then --resume: refused, resumable, and bitwise the ' +
    'uninterrupted run',
  async () => {
    let out = '';
    let err = '';
    const io = { out: (s: string) => (out += `${s}\n`), err: (s: string) => (err += `${s}\n`) };
    const ref = join(root, 'ref');
    assert.is(await main(args(ref, '--epochs', '2'), io, device), 0, err);

    const dir = join(root, 'run');
    // A trains (mmpareto); B, started while A holds the lock, is refused before writing anything.
    const a = start(args(dir, '--epochs', '8'));
    await until(() => lockPid(dir) === a.child.pid, 'A to take the lock');
    const b = await start(args(dir, '--method', 'uniform', '--lr', '0.05', '--epochs', '4')).done;
    assert.is(b.code, 1, b.err);
    assert.ok(
      b.err.includes(`${dir} is in use by PID ${a.child.pid} since `) && b.err.includes('one run per directory'),
      b.err,
    );

    // Ctrl-C in A's second epoch: it stops after the step in progress (not at the epoch's readback), exit 130.
    await until(() => evalsDone(dir) >= 1, 'A to finish epoch 1');
    a.child.kill('SIGINT');
    const ra = await a.done;
    assert.is(ra.code, 130, ra.err);
    const m = /interrupted after step (\d+) \(epoch (\d+), batch (\d+) of 16\)/.exec(ra.err);
    assert.ok(m, ra.err);
    assert.is(lastStep(dir), Number(m![1]), 'the steps up to the one in progress were logged, none after');
    assert.not.ok(existsSync(join(dir, 'lock')), 'lock released');
    assert.is(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).method, 'mmpareto', 'B wrote nothing');

    // C resumes; SIGTERM stops it the same way, exit 143.
    const c = start(['train', '--resume', '--quiet', '--no-report', '--out', dir]);
    await until(() => lockPid(dir) === c.child.pid, 'C to take the lock');
    c.child.kill('SIGTERM');
    const rc = await c.done;
    assert.is(rc.code, 143, rc.err);
    assert.ok(
      rc.err.includes('SIGTERM: stopping after this step') && rc.err.includes('interrupted after step'),
      rc.err,
    );
    assert.not.ok(existsSync(join(dir, 'lock')), 'lock released');

    // E resumes and is killed with SIGKILL: its lock stays behind, stale.
    const e = start(['train', '--resume', '--quiet', '--no-report', '--out', dir]);
    await until(() => lockPid(dir) === e.child.pid, 'E to take the lock');
    e.child.kill('SIGKILL');
    assert.is((await e.done).signal, 'SIGKILL');
    assert.is(lockPid(dir), e.child.pid, 'a stale lock');

    // The next --resume takes the stale lock over with a notice and finishes the run (2 epochs, as the reference).
    err = '';
    assert.is(await main(['train', '--resume', '--epochs', '2', '--out', dir, '--no-report'], io, device), 0, err);
    assert.ok(
      err.includes(`notice: took over the lock of ${dir} from PID ${e.child.pid} since `) &&
        err.includes('which is no longer running'),
      err,
    );
    const x = readCheckpoint(join(ref, 'latest.safetensors'));
    const y = readCheckpoint(join(dir, 'latest.safetensors'));
    for (const [k, t] of x.model)
      assert.ok(Buffer.from(y.model.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer)), `${k} identical`);
    for (const [k, v] of x.optimizer)
      assert.ok(Buffer.from(y.optimizer.get(k)!.buffer).equals(Buffer.from(v.buffer)), `optimizer ${k} identical`);
    const recs = readRecords(join(dir, 'metrics.jsonl'));
    assert.equal(
      recs.filter((r) => r.type === 'step').map((r) => r.step),
      Array.from({ length: 32 }, (_, i) => i + 1),
      'each step logged once',
    );
    const finals = recs.filter((r): r is FinalRecord => r.type === 'final');
    assert.is(finals.length, 1);
    assert.equal(
      finals[0]!.test,
      readRecords(join(ref, 'metrics.jsonl')).find((r): r is FinalRecord => r.type === 'final')!.test,
    );
    assert.is(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).method, 'mmpareto');
  },
);

test(
  'a lock held on another host, ' + 'or a lock file this program did not write: refused, with what to delete',
  async () => {
    const { writeFileSync, mkdirSync } = await import('node:fs');
    const dir = join(root, 'other');
    mkdirSync(dir);
    let err = '';
    const io = { out: () => {}, err: (s: string) => (err += `${s}\n`) };
    writeFileSync(
      join(dir, 'lock'),
      JSON.stringify({ pid: 1, host: `not-${hostname()}`, started: '2024-01-01T00:00:00.000Z', command: 'train' }),
    );
    assert.is(await main(args(dir, '--epochs', '1'), io, device), 1);
    assert.ok(
      err.includes(`in use by PID 1 on host not-${hostname()}`) && err.includes(`delete ${join(dir, 'lock')}`),
      err,
    );
    err = '';
    writeFileSync(join(dir, 'lock'), 'garbage');
    assert.is(await main(args(dir, '--epochs', '1'), io, device), 1);
    assert.ok(err.includes('not a lock this program wrote'), err);
  },
);

test.after(() => {
  // a failed test leaves no process behind
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});
test.run();
