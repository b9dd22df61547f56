// One run per directory: `train` (new or --resume) holds RUN/lock — a JSON file with the owner's
// PID, host, start time and command — for as long as it writes there. A second writer is refused
// with a message naming the owner; a lock whose process is gone (kill -9, a crash, a power cut)
// is stale and taken over with a notice. The lock file is created complete (written to a
// temporary name, then hard-linked into place, which fails if it exists), so a reader never sees
// half of it. Once a run holds the lock, temporary files left by an earlier crash are removed.
import { hostname } from 'node:os';
import { join } from 'node:path';
import { existsSync, linkSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { ensureDir, removeCreated } from '../io/files.ts';
import type { RunConfig } from './config.ts';

/** Files of a run directory. */
export const runFiles = (dir: string) => ({
  config: join(dir, 'config.json'),
  metrics: join(dir, 'metrics.jsonl'),
  latest: join(dir, 'latest.safetensors'),
  best: join(dir, 'best.safetensors'),
  /** The state before the step a non-finite stop dropped (for inspection; not resumable). */
  nonFinite: join(dir, 'nonfinite.safetensors'),
});

/** Reads a run directory's config.json. */
export function readRunConfig(dir: string): RunConfig {
  const path = runFiles(dir).config;
  if (!existsSync(path)) throw new Error(`${dir} is not a run directory (no config.json)`);
  return JSON.parse(readFileSync(path, 'utf8')) as RunConfig;
}

/**
 * Creates (or checks) the run directory `--out`, takes its lock, clears a crashed run's temporary
 * files and refuses a directory that holds a run unless resuming; on failure releases the lock
 * and leaves no directory it created. `created`: the directories made, for the caller to remove
 * if what follows fails.
 */
export function openRunDir(
  dir: string,
  resume: boolean,
  log: (s: string) => void,
): { lock: RunLock; created: string[] } {
  const files = runFiles(dir);
  const { created } = ensureDir(dir, `--out ${dir}`);
  let lock: RunLock | null = null;
  try {
    lock = lockRunDir(dir, resume ? 'train --resume' : 'train', log);
    const gone = removeTemporaryFiles(dir);
    if (gone.length) log(`removed ${gone.length} temporary file(s) an interrupted run left: ${gone.join(', ')}`);
    if (!resume && existsSync(files.latest)) {
      throw new Error(
        `${dir} already holds a run (latest.safetensors); pass --resume to continue it, or choose another --out`,
      );
    }
    if (!resume && existsSync(files.metrics)) {
      throw new Error(
        `${dir} holds a run that stopped before its first checkpoint (metrics.jsonl, no latest.safetensors); pass ` +
          `--resume to start it over, or choose another --out`,
      );
    }
    return { lock, created };
  } catch (e) {
    lock?.release();
    removeCreated(created);
    throw e;
  }
}

export interface LockOwner {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  started: string;
  command: string;
}

export const LOCK_FILE = 'lock';

/** Whether process `pid` on this host still exists (EPERM: it does, under another user). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readOwner(path: string): LockOwner | null {
  try {
    const o = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockOwner>;
    return typeof o.pid === 'number' && typeof o.host === 'string'
      ? { pid: o.pid, host: o.host, started: String(o.started), command: String(o.command) }
      : null;
  } catch {
    return null;
  }
}

export class RunLock {
  private released = false;
  private readonly onExit = () => this.release();
  constructor(
    readonly path: string,
    readonly owner: LockOwner,
  ) {
    process.once('exit', this.onExit); // process.exit() (a second Ctrl-C) skips finally blocks
  }

  /** Removes the lock file if it is still ours. */
  release(): void {
    if (this.released) return;
    this.released = true;
    process.removeListener('exit', this.onExit);
    const now = readOwner(this.path);
    if (now && now.pid === this.owner.pid && now.started === this.owner.started) {
      try {
        unlinkSync(this.path);
      } catch {
        /* gone already */
      }
    }
  }
}

/**
 * Takes the run directory's lock for `command`, or throws naming the process that holds it.
 * `notice` receives the takeover message for a stale lock.
 */
export function lockRunDir(dir: string, command: string, notice: (s: string) => void): RunLock {
  const path = join(dir, LOCK_FILE);
  const owner: LockOwner = { pid: process.pid, host: hostname(), started: new Date().toISOString(), command };
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, `${JSON.stringify(owner)}\n`);
  } catch (e) {
    throw new Error(`cannot lock ${dir}: writing ${tmp} failed: ${(e as Error).message}`);
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(tmp, path);
        return new RunLock(path, owner);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 2)
          throw new Error(`cannot lock ${dir}: ${(e as Error).message}`);
      }
      const held = readOwner(path);
      if (!held) {
        throw new Error(
          `${dir} is locked by ${path}, which is not a lock this program wrote; if no run uses the directory, ` +
            `delete that file`,
        );
      }
      const since = `since ${held.started} (${held.command})`;
      if (held.host !== owner.host) {
        throw new Error(
          `${dir} is in use by PID ${held.pid} on host ${held.host} ${since}; one run per directory. If that run ` +
            `is gone, delete ${path}`,
        );
      }
      if (alive(held.pid)) {
        throw new Error(
          `${dir} is in use by PID ${held.pid} ${since}; one run per directory: wait for it to finish, stop it, or ` +
            `choose another --out`,
        );
      }
      // Stale: move it aside under our own name (atomic), so that of two processes taking it over only one succeeds.
      const aside = `${path}.stale-${process.pid}`;
      try {
        renameSync(path, aside);
        unlinkSync(aside);
        notice(`notice: took over the lock of ${dir} from PID ${held.pid} ${since}, which is no longer running`);
      } catch {
        /* someone else moved it: try again */
      }
    }
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
  }
}

/**
 * Removes temporary files that a killed writer left in `dir` (`*.tmp-PID`, `lock.stale-PID`,
 * `.write-test-PID` of processes that no longer exist); returns their names.
 */
export function removeTemporaryFiles(dir: string): string[] {
  const gone: string[] = [];
  for (const name of readdirSync(dir)) {
    const m = /(?:\.tmp-|^lock\.stale-|^\.write-test-)(\d+)$/.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    try {
      unlinkSync(join(dir, name));
      gone.push(name);
    } catch {
      /* gone already */
    }
  }
  return gone;
}
