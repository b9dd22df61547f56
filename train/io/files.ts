// File writes that leave either the whole new content or the old file, never a partial one, and
// directories created without Node's recursive mkdirSync (in Node 20 it spins forever on /proc).
// Every failure names the file and, for a full disk, how many bytes were needed and are free.
// The operations go through `fileOps`, which tests replace to simulate ENOSPC or short writes.
import {
  closeSync,
  fsyncSync,
  ftruncateSync,
  fstatSync,
  mkdirSync,
  openSync,
  renameSync,
  rmdirSync,
  statSync,
  type Stats,
  statfsSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

export interface FileOps {
  open(path: string, flags: string): number;
  /** Writes up to `length` bytes; returns how many it wrote (may be fewer: a short write). */
  write(fd: number, bytes: Uint8Array, offset: number, length: number): number;
  fsync(fd: number): void;
  ftruncate(fd: number, length: number): void;
  size(fd: number): number;
  close(fd: number): void;
  rename(from: string, to: string): void;
  unlink(path: string): void;
}

/** The real operations (what resetFileOps() restores; tests call them from their overrides). */
export const NODE_OPS: Readonly<FileOps> = {
  open: (p, f) => openSync(p, f),
  write: (fd, b, o, n) => writeSync(fd, b, o, n),
  fsync: (fd) => fsyncSync(fd),
  ftruncate: (fd, n) => ftruncateSync(fd, n),
  size: (fd) => fstatSync(fd).size,
  close: (fd) => closeSync(fd),
  rename: (a, b) => renameSync(a, b),
  unlink: (p) => unlinkSync(p),
};

/** The operations in use (tests override members, then call resetFileOps()). */
export const fileOps: FileOps = { ...NODE_OPS };
export function resetFileOps(): void {
  Object.assign(fileOps, NODE_OPS);
}

/** Marks a failed write: the message names the file and what happened; `code` is the errno name. */
export class FileWriteError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

const codeOf = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;
const REASON: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EIO: 'I/O error',
  ENOENT: 'no such directory',
  ENOTDIR: 'a path component is not a directory',
  EISDIR: 'is a directory',
};
const reason = (e: unknown): string => {
  const c = codeOf(e);
  return c && REASON[c] ? `${REASON[c]} (${c})` : (e as Error).message;
};
const mb = (n: number) => `${n.toLocaleString('en-US')} bytes${n >= 1e5 ? ` (${(n / 1e6).toFixed(1)} MB)` : ''}`;

function freeBytes(dir: string): number | null {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}

/** Writes all of `bytes`, looping over short writes; reports progress so an error can say how far it got. */
function writeAll(fd: number, bytes: Uint8Array, onProgress: (written: number) => void): void {
  let at = 0;
  while (at < bytes.length) {
    const n = fileOps.write(fd, bytes, at, bytes.length - at);
    if (!(n > 0)) throw new Error(`the write made no progress (returned ${n})`);
    at += n;
    onProgress(at);
  }
}

/**
 * Writes `bytes` to `path` through `path.tmp-PID`: every byte written (short writes looped), the
 * file fsynced, renamed over `path`, and the directory fsynced so the rename survives a power
 * cut. On any error the temporary file is removed and `path` is left as it was; the error says
 * which file, why, and for a full disk how much space the write needed and how much is free.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  let written = 0;
  let fd: number | null = null;
  try {
    fd = fileOps.open(tmp, 'w');
    writeAll(fd, bytes, (n) => (written = n));
    fileOps.fsync(fd);
    fileOps.close(fd);
    fd = null;
    fileOps.rename(tmp, path);
  } catch (e) {
    if (fd !== null) {
      try {
        fileOps.close(fd);
      } catch {
        /* already failing */
      }
    }
    try {
      fileOps.unlink(tmp);
    } catch {
      /* never created */
    }
    const c = codeOf(e);
    const dir = dirname(path);
    const free = freeBytes(dir);
    const space =
      c === 'ENOSPC' || c === 'EDQUOT'
        ? `; it needs ${mb(bytes.length)}${free === null ? '' : ` and ${mb(free)} are free`} in ${dir}`
        : '';
    throw new FileWriteError(
      `cannot write ${path}: ${reason(e)} after ${written.toLocaleString('en-US')} of ` +
        `${bytes.length.toLocaleString('en-US')} bytes${space}; the previous ${basename(path)} (if ` +
        `any) is unchanged`,
      c,
    );
  }
  syncDir(dirname(path));
}

/** fsyncs a directory (makes a rename durable); file systems that cannot are skipped. */
function syncDir(dir: string): void {
  let fd: number | null = null;
  try {
    fd = fileOps.open(dir, 'r');
    fileOps.fsync(fd);
  } catch (e) {
    const c = codeOf(e);
    if (c !== 'EINVAL' && c !== 'ENOTSUP' && c !== 'EISDIR' && c !== 'EPERM' && c !== 'EACCES' && c !== 'EBADF') {
      throw new FileWriteError(`cannot sync directory ${dir}: ${reason(e)}`, c);
    }
  } finally {
    if (fd !== null) fileOps.close(fd);
  }
}

/**
 * Appends `text` to `path` whole or not at all: on an error (a full disk) the file is cut back to
 * its previous length, so no torn line stays in the middle of a log, and the error names the file.
 */
export function appendWhole(path: string, text: string): void {
  const bytes = new TextEncoder().encode(text);
  let fd: number | null = null;
  let start = 0;
  try {
    fd = fileOps.open(path, 'a');
    start = fileOps.size(fd);
    writeAll(fd, bytes, () => {});
  } catch (e) {
    if (fd !== null) {
      try {
        fileOps.ftruncate(fd, start);
      } catch {
        /* keep the first error */
      }
    }
    const c = codeOf(e);
    throw new FileWriteError(
      `cannot append to ${path}: ${reason(e)}${c === 'ENOSPC' ? ` (${mb(bytes.length)} needed)` : ''}; the file ` +
        `keeps its previous ${start.toLocaleString('en-US')} bytes`,
      c,
    );
  } finally {
    if (fd !== null) fileOps.close(fd);
  }
}

// statfs f_type of kernel interfaces that look like directories but are no storage.
const VIRTUAL_FS = new Map<number, string>([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0xcafe4a11, 'bpf'],
  [0x1cd1, 'devpts'],
  [0x42494e4d, 'binfmt_misc'],
  [0x6e736673, 'nsfs'],
]);

export interface EnsuredDir {
  path: string;
  /** Directories this call created, deepest last (for removing them again after a failure). */
  created: string[];
}

/**
 * Creates directory `path` (and missing parents) one level at a time, or checks it. Fails at once,
 * with a message starting with `what` (e.g. "--out DIR"), for a path on /proc, /sys or a similar
 * kernel file system, below a file, on a read-only mount, or without write permission.
 * `create: false` only checks that it could be created (the deepest existing directory is writable).
 */
export function ensureDir(path: string, what: string, create = true): EnsuredDir {
  const full = resolve(path);
  const missing: string[] = [];
  let at = full;
  for (;;) {
    let st: Stats | undefined;
    try {
      st = statSync(at, { throwIfNoEntry: false }); // follows links: a link to a directory is a directory
    } catch (e) {
      // ENOTDIR: a parent is a file, found above
      if (codeOf(e) !== 'ENOTDIR') throw new Error(`${what}: cannot inspect ${at}: ${reason(e)}`);
    }
    if (st) {
      if (!st.isDirectory())
        throw new Error(`${what}: ${at} is a ${st.isFile() ? 'file' : 'special file'}, not a directory`);
      break;
    }
    missing.push(at);
    const up = dirname(at);
    if (up === at) break;
    at = up;
  }
  let fsType: number | undefined;
  try {
    fsType = statfsSync(at).type;
  } catch {
    /* unknown: the mkdir below reports */
  }
  const virtual = fsType === undefined ? undefined : VIRTUAL_FS.get(fsType);
  if (virtual)
    throw new Error(
      `${what}: ${at} is on the ${virtual} file system (a kernel interface, not storage); choose a directory on a disk`,
    );
  const created: string[] = [];
  if (!create) {
    probeWritable(at, what, created);
    return { path: full, created };
  }
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir); // never { recursive: true }: Node 20 loops forever on /proc
      created.push(dir);
    } catch (e) {
      removeCreated(created);
      throw new Error(`${what}: cannot create ${dir}: ${reason(e)}`);
    }
  }
  probeWritable(full, what, created);
  return { path: full, created };
}

/**
 * A probe file tells a read-only mount or a missing permission at once (root passes access(2) on a read-only mount).
 */
function probeWritable(dir: string, what: string, created: readonly string[]): void {
  const probe = `${dir}/.write-test-${process.pid}`;
  try {
    closeSync(openSync(probe, 'w'));
    unlinkSync(probe);
  } catch (e) {
    removeCreated(created);
    throw new Error(`${what}: cannot write in ${dir}: ${reason(e)}`);
  }
}

/** Removes directories created by ensureDir, deepest first, if they are still empty. */
export function removeCreated(created: readonly string[]): void {
  for (const d of [...created].reverse()) {
    try {
      rmdirSync(d);
    } catch {
      /* not empty or gone: keep */
    }
  }
}
