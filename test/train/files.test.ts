// Writes that survive a full disk and special paths (train/io/files.ts), checkpoint checksums
// (train/run/checkpoint.ts). The file operations are replaced to simulate ENOSPC, short writes and
// I/O errors; as root, small tmpfs mounts give a real full disk and a real read-only mount
// (CI runs as root; elsewhere those two cases fall back to the simulated ones, and say so).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
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
import { randomBytes } from 'node:crypto';
import { device, mountTmpfs, unmount } from '../helpers.ts';
import { Linear } from '../../engine/index.ts';
import { NODE_OPS, appendWhole, ensureDir, fileOps, resetFileOps, writeFileAtomic } from '../../train/io/files.ts';
import { crc32, crc32Portable } from '../../train/io/crc32.ts';
import { readCheckpoint, readCheckpointMeta, saveCheckpoint } from '../../train/run/checkpoint.ts';

const test = suite('files');
const root = mkdtempSync(join(tmpdir(), 'mmpareto-files-'));
void device;

const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
const errorOf = (fn: () => unknown): Error => {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  return assert.unreachable('expected an error') as never;
};

test('writeFileAtomic: short writes are looped until every byte is written', () => {
  const path = join(root, 'short.bin');
  const bytes = new Uint8Array(randomBytes(10_001));
  const calls: number[] = [];
  fileOps.write = (fd, b, o, n) => {
    const k = Math.min(n, 777); // never more than 777 bytes per call
    calls.push(k);
    return NODE_OPS.write(fd, b, o, k);
  };
  try {
    writeFileAtomic(path, bytes);
  } finally {
    resetFileOps();
  }
  assert.ok(calls.length >= 13, `${calls.length} write calls`);
  assert.ok(Buffer.from(readFileSync(path)).equals(Buffer.from(bytes)), 'every byte, in order');
});

test(
  'writeFileAtomic: ENOSPC mid-write — the old file stays, the temporary file goes, the message names the file ' +
    'and the space needed',
  () => {
    const path = join(root, 'latest.safetensors');
    writeFileSync(path, 'previous checkpoint');
    let written = 0;
    fileOps.write = (fd, b, o, n) => {
      if (written >= 4096) throw enospc();
      const k = Math.min(n, 4096 - written);
      written += k;
      return NODE_OPS.write(fd, b, o, k);
    };
    let e: Error;
    try {
      e = errorOf(() => writeFileAtomic(path, new Uint8Array(1_669_080)));
    } finally {
      resetFileOps();
    }
    for (const f of [
      path,
      'no space left on the device (ENOSPC)',
      'after 4,096 of 1,669,080 bytes',
      'it needs 1,669,080 bytes (1.7 MB)',
      'are free in',
      'previous latest.safetensors (if any) is unchanged',
    ]) {
      assert.ok(e.message.includes(f), `"${e.message}" lacks "${f}"`);
    }
    assert.is(readFileSync(path, 'utf8'), 'previous checkpoint');
    assert.equal(
      readdirSync(root).filter((n) => n.includes('.tmp-')),
      [],
      'temporary file removed',
    );
  },
);

test('writeFileAtomic: a write that makes no progress, an fsync or a rename that fails — same guarantees', () => {
  const path = join(root, 'best.safetensors');
  writeFileSync(path, 'best so far');
  const cases: [string, () => void, string][] = [
    ['zero', () => (fileOps.write = () => 0), 'the write made no progress (returned 0)'],
    [
      'fsync',
      () =>
        (fileOps.fsync = () => {
          throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
        }),
      'I/O error (EIO)',
    ],
    [
      'rename',
      () =>
        (fileOps.rename = () => {
          throw Object.assign(new Error('EXDEV'), { code: 'EXDEV' });
        }),
      'EXDEV',
    ],
  ];
  for (const [what, inject, fragment] of cases) {
    inject();
    let e: Error;
    try {
      e = errorOf(() => writeFileAtomic(path, new Uint8Array(100)));
    } finally {
      resetFileOps();
    }
    assert.ok(e.message.includes(fragment) && e.message.includes(path), `${what}: ${e.message}`);
    assert.is(readFileSync(path, 'utf8'), 'best so far', what);
    assert.equal(
      readdirSync(root).filter((n) => n.includes('.tmp-')),
      [],
      `${what}: temporary file removed`,
    );
  }
});

test('appendWhole: a full disk mid-line cuts the log back to its last whole line', () => {
  const path = join(root, 'metrics.jsonl');
  writeFileSync(path, '{"a":1}\n');
  fileOps.write = (fd, b, o, n) => {
    NODE_OPS.write(fd, b, o, Math.min(n, 5)); // a partial line reaches the file …
    throw enospc(); // … then the disk is full
  };
  let e: Error;
  try {
    e = errorOf(() => appendWhole(path, '{"b":2222222}\n'));
  } finally {
    resetFileOps();
  }
  assert.ok(
    e.message.includes(`cannot append to ${path}: no space left on the device (ENOSPC)`) &&
      e.message.includes('keeps its previous 8 bytes'),
    e.message,
  );
  assert.is(readFileSync(path, 'utf8'), '{"a":1}\n');
  appendWhole(path, '{"c":3}\n');
  assert.is(readFileSync(path, 'utf8'), '{"a":1}\n{"c":3}\n');
});

test('ensureDir: /proc, /sys, below a file — a clear error at once; nested directories created level by level', () => {
  for (const [p, f] of [
    ['/proc/x', 'proc file system'],
    ['/proc/self/x/y', 'proc file system'],
    ['/sys/x', 'sysfs file system'],
  ]) {
    const e = errorOf(() => ensureDir(p!, `--out ${p}`));
    assert.ok(
      e.message.startsWith(`--out ${p}: `) && e.message.includes(f!) && e.message.includes('not storage'),
      e.message,
    );
  }
  writeFileSync(join(root, 'afile'), 'x');
  const e = errorOf(() => ensureDir(join(root, 'afile', 'run'), '--out'));
  assert.ok(e.message.includes(`${join(root, 'afile')} is a file, not a directory`), e.message);
  const deep = join(root, 'a', 'b', 'c');
  const r = ensureDir(deep, '--out');
  assert.equal(r.created, [join(root, 'a'), join(root, 'a', 'b'), deep]);
  assert.ok(statSync(deep).isDirectory());
  assert.equal(ensureDir(deep, '--out').created, [], 'an existing directory is fine');
  const check = ensureDir(join(root, 'not', 'yet'), '--out', false);
  assert.equal(check.created, []);
  assert.not.ok(existsSync(join(root, 'not')), 'create: false creates nothing');
});

test('ensureDir on a read-only mount (a real one as root): cannot write, EROFS', () => {
  const ro = join(root, 'ro');
  mkdirSync(ro);
  if (!mountTmpfs(ro, 'ro,size=64k')) {
    console.log(
      '  (no mount permission here: the read-only case is covered by the CLI test through a simulated EROFS)',
    );
    return;
  }
  try {
    for (const target of [ro, join(ro, 'run')]) {
      const e = errorOf(() => ensureDir(target, '--out'));
      assert.ok(e.message.includes('read-only file system (EROFS)'), e.message);
    }
  } finally {
    unmount(ro);
  }
});

test('CRC-32: the native and the portable implementation agree (known vector and random data)', () => {
  const abc = new TextEncoder().encode('123456789');
  assert.is(crc32(abc), 0xcbf43926);
  assert.is(crc32Portable(abc), 0xcbf43926);
  const r = new Uint8Array(randomBytes(100_003));
  assert.is(crc32(r), crc32Portable(r));
});

test(
  'checkpoints carry a CRC-32 per tensor: ' + 'a flipped bit or a NaN written into the data is named on reading',
  async () => {
    const m = new Linear(3, 2);
    const path = join(root, 'ckpt.safetensors');
    const meta = { epoch: 1, step: 4, bestVal: 0.5, bestEpoch: 1, rng: {}, config: '{}' };
    await saveCheckpoint(path, { model: m }, meta);
    assert.equal(readCheckpointMeta(path), { ...meta, rng: {} });
    readCheckpoint(path); // verifies
    const good = new Uint8Array(readFileSync(path));
    const end = good.length; // 'weight' (6 floats) then 'bias' (2 floats) — key order; bias is last
    const flip = Uint8Array.from(good);
    flip[end - 9]! ^= 0x10; // a bit of weight[5]
    writeFileSync(path, flip);
    let e = errorOf(() => readCheckpoint(path));
    assert.ok(
      e.message.includes(`checkpoint ${path} is corrupt (1 tensor)`) && e.message.includes("'weight' fails its CRC-32"),
      e.message,
    );
    const nan = Uint8Array.from(good);
    new DataView(nan.buffer).setFloat32(end - 4, NaN, true); // bias[1] = NaN
    writeFileSync(path, nan);
    e = errorOf(() => readCheckpoint(path));
    assert.ok(e.message.includes("'bias' fails its CRC-32"), e.message);
    writeFileSync(path, good.subarray(0, end - 3));
    e = errorOf(() => readCheckpoint(path));
    assert.ok(e.message.includes('truncated'), e.message);
    m.dispose();
  },
);

test.after(() => {
  resetFileOps();
  rmSync(root, { recursive: true, force: true });
});
test.run();
