// The CLI under faults (docs/RELIABILITY.md), in-process on the synthetic audio-visual set: a full
// disk (simulated, and a real small tmpfs as root), special --out paths, a run interrupted before
// its first checkpoint, --resume with fewer epochs, corrupt checkpoints, a GPU lost mid-run.
// Each ends in a clear message and a run directory that --resume continues to the same bits as
// an uninterrupted run.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { device, mountTmpfs, unmount } from '../helpers.ts';
import { Device, setDevice } from '../../engine/index.ts';
import { main } from '../../train/cli/main.ts';
import { readCheckpoint } from '../../train/run/checkpoint.ts';
import { NODE_OPS, fileOps, resetFileOps } from '../../train/io/files.ts';
import { readRecords } from '../../train/run/run-log.ts';

const test = suite('faults-cli');
const root = mkdtempSync(join(tmpdir(), 'mmpareto-faults-'));

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => (out += `${s}\n`), err: (s) => (err += `${s}\n`) }, device);
  return { code, out, err };
}
// 64 training items, batch 16: 4 steps an epoch (the checkpoints have their full size).
const small = (out: string, ...extra: string[]) => [
  'train',
  '--dataset',
  'synthetic-av',
  '--train-limit',
  '64',
  '--batch-size',
  '16',
  '--lr',
  '0.02',
  '--log-every',
  '3',
  '--quiet',
  '--no-report',
  '--out',
  out,
  ...extra,
];
const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
const temporaries = (dir: string) => readdirSync(dir).filter((n) => /\.tmp-|^lock|\.write-test/.test(n));

/** Checkpoint and log of `dir` equal those of `ref` (bitwise weights and optimizer state; records but wall times). */
function sameRun(dir: string, ref: string): void {
  const a = readCheckpoint(join(ref, 'latest.safetensors'));
  const b = readCheckpoint(join(dir, 'latest.safetensors'));
  const { config: _a, ...metaA } = a.meta;
  const { config: _b, ...metaB } = b.meta;
  assert.equal(metaB, metaA, 'checkpoint metadata (but the config, which names the directory)');
  for (const [k, t] of a.model)
    assert.ok(Buffer.from(b.model.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer)), `${k} identical`);
  for (const [k, v] of a.optimizer)
    assert.ok(Buffer.from(b.optimizer.get(k)!.buffer).equals(Buffer.from(v.buffer)), `optimizer ${k} identical`);
  const strip = (d: string) =>
    readRecords(join(d, 'metrics.jsonl')).map((x) =>
      x.type === 'step' ? { ...x, time_s: 0 } : x.type === 'final' ? { ...x, wall_s: 0, steps_per_s: 0 } : x,
    );
  assert.equal(strip(dir), strip(ref), 'the log reads as one uninterrupted run');
}

const ref = join(root, 'ref');
test('reference: 2 uninterrupted epochs', async () => {
  const r = await run(...small(ref, '--epochs', '2'));
  assert.is(r.code, 0, r.err);
  assert.equal(temporaries(ref), [], 'no lock or temporary file left');
});

test(
  'a full disk writing latest.safetensors (simulated ENOSPC after 64 KiB): exit 1 naming the file and the ' +
    'bytes; epoch 1 intact; --resume = uninterrupted',
  async () => {
    const dir = join(root, 'enospc');
    const paths = new Map<number, string>();
    let opened = 0;
    let written = 0;
    fileOps.open = (p, f) => {
      const fd = NODE_OPS.open(p, f);
      paths.set(fd, p);
      if (p.includes('latest.safetensors.tmp-')) opened++;
      return fd;
    };
    fileOps.write = (fd, b, o, n) => {
      if (!paths.get(fd)?.includes('latest.safetensors.tmp-') || opened < 2) return NODE_OPS.write(fd, b, o, n);
      if (written >= 65536) throw enospc();
      const k = Math.min(n, 65536 - written);
      written += k;
      return NODE_OPS.write(fd, b, o, k);
    };
    let r: Awaited<ReturnType<typeof run>>;
    try {
      r = await run(...small(dir, '--epochs', '2'));
    } finally {
      resetFileOps();
    }
    assert.is(r.code, 1);
    const latest = join(dir, 'latest.safetensors');
    for (const f of [
      `cannot write ${latest}: no space left on the device (ENOSPC) after 65,536 of`,
      'it needs',
      'previous latest.safetensors (if any) is unchanged',
    ])
      assert.ok(r.err.includes(f), `"${r.err}" lacks "${f}"`);
    assert.is(readCheckpoint(latest).meta.epoch, 1, 'epoch 1 checkpoint whole (checksums verified)');
    readCheckpoint(join(dir, 'best.safetensors'));
    assert.equal(temporaries(dir), [], 'no temporary file, lock released');
    const resumed = await run('train', '--resume', '--quiet', '--no-report', '--out', dir);
    assert.is(resumed.code, 0, resumed.err);
    sameRun(dir, ref);
  },
);

test(
  'a real full disk (a 3 MB tmpfs, as root): exit 1 with the file and the space needed, nothing partial; after ' +
    'freeing space --resume = uninterrupted',
  async () => {
    const mnt = join(root, 'tiny');
    mkdirSync(mnt);
    if (!mountTmpfs(mnt, 'size=3000k')) {
      console.log('  (no mount permission here: the simulated ENOSPC test above covers the same path)');
      return;
    }
    try {
      const dir = join(mnt, 'r');
      const r = await run(...small(dir, '--epochs', '2'));
      assert.is(r.code, 1, 'the run fails instead of reporting success');
      const enospc = new RegExp(
        /cannot write .*(latest|best)\.safetensors: no space left on the device \(ENOSPC\) after [\d,]+ of /.source +
          /[\d,]+ bytes; it needs [\d,]+ bytes .* are free in/.source,
      );
      assert.ok(enospc.test(r.err), r.err);
      for (const f of ['latest.safetensors', 'best.safetensors'])
        if (existsSync(join(dir, f))) readCheckpoint(join(dir, f)); // whole, checksums verified
      assert.is(readCheckpoint(join(dir, 'latest.safetensors')).meta.epoch, 1);
      assert.equal(temporaries(dir), [], 'no temporary file, lock released');
      execFileSync('mount', ['-o', 'remount,size=20m', mnt], { stdio: 'pipe' }); // space freed
      const resumed = await run('train', '--resume', '--quiet', '--no-report', '--out', dir);
      assert.is(resumed.code, 0, resumed.err);
      sameRun(dir, ref);
    } finally {
      unmount(mnt);
    }
  },
);

test(
  '--out on /proc, /sys, below a file, on a read-only mount: ' + 'exit 1 with a clear message, nothing created',
  async () => {
    writeFileSync(join(root, 'file'), 'x');
    const ro = join(root, 'ro');
    mkdirSync(ro);
    const roMounted = mountTmpfs(ro, 'ro,size=64k');
    const cases: [string, string][] = [
      ['/proc/x', '/proc is on the proc file system (a kernel interface, not storage)'],
      ['/sys/x/run', '/sys is on the sysfs file system'],
      [join(root, 'file', 'run'), `${join(root, 'file')} is a file, not a directory`],
    ];
    if (roMounted) cases.push([join(ro, 'run'), `cannot write in ${ro}: read-only file system (EROFS)`]);
    else console.log('  (no mount permission here: the read-only mount case is not run)');
    try {
      for (const [out, fragment] of cases) {
        const r = await run(...small(out, '--epochs', '1'));
        assert.is(r.code, 1, out);
        assert.ok(r.err.includes(`--out ${out}: `) && r.err.includes(fragment), `${out}: ${r.err}`);
      }
      assert.not.ok(existsSync('/proc/x'));
    } finally {
      if (roMounted) unmount(ro);
    }
    // Node 20's recursive mkdir spins forever on /proc: the bin must exit (a hang is killed after 60 s and fails here).
    const bin = join(import.meta.dirname, '..', '..', 'bin', 'mmpareto.mjs');
    try {
      execFileSync(process.execPath, [bin, 'train', '--dataset', 'synthetic-av', '--out', '/proc/x'], {
        stdio: 'pipe',
        timeout: 60_000,
        encoding: 'utf8',
      });
      assert.unreachable('should exit 1');
    } catch (e) {
      const err = e as { status: number | null; signal: string | null; stderr: string };
      assert.is(err.signal, null, 'it did not hang');
      assert.is(err.status, 1);
      assert.ok(err.stderr.includes('proc file system'), err.stderr);
    }
  },
);

test(
  'a run that died writing its first checkpoint: a fresh train says what to do, --resume starts over (stale ' +
    'temp files removed) = uninterrupted',
  async () => {
    const dir = join(root, 'first');
    // The process "dies" at the rename of its first latest.safetensors: the log, config and maybe best exist, latest
    // does
    // not.
    fileOps.rename = (a, b) => {
      if (b.endsWith('latest.safetensors')) throw Object.assign(new Error('killed'), { code: 'EIO' });
      NODE_OPS.rename(a, b);
    };
    try {
      assert.is((await run(...small(dir, '--epochs', '2'))).code, 1);
    } finally {
      resetFileOps();
    }
    assert.not.ok(existsSync(join(dir, 'latest.safetensors')));
    const fresh = await run(...small(dir, '--epochs', '2'));
    assert.is(fresh.code, 1);
    assert.ok(
      fresh.err.includes('stopped before its first checkpoint') && fresh.err.includes('pass --resume to start it over'),
      fresh.err,
    );
    const dead = spawnSync(process.execPath, ['-e', '']).pid; // a PID that no longer runs
    writeFileSync(join(dir, `latest.safetensors.tmp-${dead}`), new Uint8Array(1000)); // what a kill -9 mid-write leaves
    const resumed = await run('train', '--resume', '--out', dir, '--no-report');
    assert.is(resumed.code, 0, resumed.err);
    assert.ok(
      resumed.err.includes(`removed 1 temporary file(s) an interrupted run left: latest.safetensors.tmp-${dead}`),
      resumed.err,
    );
    assert.ok(resumed.err.includes('starting it over'), resumed.err);
    sameRun(dir, ref);
  },
);

test('--resume with fewer epochs than done, or on a finished run: exit 2, nothing rewritten', async () => {
  const config = readFileSync(join(ref, 'config.json'));
  const metrics = readFileSync(join(ref, 'metrics.jsonl'));
  const stamp = statSync(join(ref, 'latest.safetensors')).mtimeMs;
  const fewer = await run('train', '--resume', '--epochs', '1', '--out', ref);
  assert.is(fewer.code, 2);
  assert.ok(
    fewer.err.includes(
      'the run has finished 2 epochs; --epochs 1 would undo them (give --epochs 3 or more to train on)',
    ),
    fewer.err,
  );
  const same = await run('train', '--resume', '--out', ref);
  assert.is(same.code, 2);
  assert.ok(same.err.includes('already finished its 2 epochs'), same.err);
  assert.ok(
    readFileSync(join(ref, 'config.json')).equals(config) && readFileSync(join(ref, 'metrics.jsonl')).equals(metrics),
    'config and log untouched',
  );
  assert.is(statSync(join(ref, 'latest.safetensors')).mtimeMs, stamp);
});

test('a corrupt checkpoint (one flipped bit, NaN bits): --resume and eval refuse it, naming the tensor', async () => {
  const dir = join(root, 'corrupt');
  cpSync(ref, dir, { recursive: true });
  for (const [file, cmd] of [
    ['latest.safetensors', ['train', '--resume', '--epochs', '3', '--out', dir]],
    ['best.safetensors', ['eval', dir]],
  ] as const) {
    const path = join(dir, file);
    const bytes = new Uint8Array(readFileSync(path));
    bytes[bytes.length - 2]! ^= 0x40;
    writeFileSync(path, bytes);
    const r = await run(...cmd);
    assert.is(r.code, 1, file);
    assert.ok(r.err.includes(`checkpoint ${path} is corrupt (1 tensor)`) && r.err.includes('fails its CRC-32'), r.err);
  }
});

test(
  'the GPU lost mid-run: exit 1, the error names the operation, and the message says --resume continues from ' +
    'the last checkpoint',
  async () => {
    const dir = join(root, 'lost');
    const dev = await Device.create();
    setDevice(dev); // modules are built on the current device
    let out = '';
    let err = '';
    let code: number;
    try {
      code = await main(
        small(dir, '--epochs', '3'),
        {
          out: (s) => (out += `${s}\n`),
          err: (s) => {
            err += `${s}\n`;
            if (s.startsWith('epoch 1/3')) dev.destroy(); // right after epoch 1's checkpoint
          },
        },
        dev,
      );
    } finally {
      setDevice(device);
    }
    assert.is(code, 1, out + err);
    assert.ok(/the GPU device was lost \(destroyed: Device\.destroy\(\) was called\)/.test(err), err);
    assert.ok(
      err.includes(`latest.safetensors holds epoch 1: 'mmpareto train --resume --out ${dir}' continues from it`),
      err,
    );
    assert.equal(temporaries(dir), [], 'lock released');
    const resumed = await run('train', '--resume', '--epochs', '2', '--quiet', '--no-report', '--out', dir);
    assert.is(resumed.code, 0, resumed.err);
    sameRun(dir, ref);
  },
);

test.after(() => {
  resetFileOps();
  rmSync(root, { recursive: true, force: true });
});
test.run();
