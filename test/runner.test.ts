// test/run.ts itself, in child processes over fixture test files written to a temporary folder
// (MMPARETO_TEST_DIR): files are found in subfolders and filtered by path; a file that never
// finishes fails with its name at the per-file time limit (MMPARETO_TEST_FILE_TIMEOUT) and the
// next file still runs; a file that blocks the process is named by the watchdog, which ends it.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const repo = join(import.meta.dirname, '..');
const uvuUrl = pathToFileURL(join(repo, 'node_modules', 'uvu', 'dist', 'index.mjs')).href;
const dir = mkdtempSync(join(tmpdir(), 'mmpareto-runner-'));
const fixture = (path: string, body: string) => {
  mkdirSync(join(dir, path, '..'), { recursive: true });
  writeFileSync(join(dir, path), `import { test } from '${uvuUrl}';\n${body}\ntest.run();\n`);
};
fixture('a/pass.test.ts', "test('adds', () => { if (1 + 1 !== 2) throw new Error('no'); });");
fixture('b/hang.test.ts', "test('never settles', () => new Promise(() => {}));\ntest('not reached', () => {});");
fixture('c/after.test.ts', "test('runs after the hung file', () => {});");
fixture(
  'd/block.test.ts',
  "import { execFileSync } from 'node:child_process';\ntest('blocks', () => { execFileSync('sleep', ['30']); });",
);

/** Runs test/run.ts on the fixtures; resolves with its exit code (or signal) and output. */
function runner(
  timeout: string,
  ...filters: string[]
): Promise<{ code: number | null; signal: string | null; out: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, MMPARETO_TEST_DIR: dir, MMPARETO_TEST_FILE_TIMEOUT: timeout, NO_COLOR: '1' };
    const p = spawn(process.execPath, ['--import', 'tsx', join(repo, 'test', 'run.ts'), ...filters], {
      cwd: repo,
      env,
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d));
    p.stderr.on('data', (d: Buffer) => (out += d));
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code, signal, out }));
  });
}

test(
  'files in subfolders, filtered by path; ' + 'a file past the time limit fails by name and the next one runs',
  async () => {
    const r = await runner('3', 'a/', 'b/', 'c/');
    assert.match(r.out, 'a/pass.test.ts');
    assert.match(r.out, 'FAIL b/hang.test.ts: still running after the 3 s time limit per file');
    assert.match(r.out, 'c/after.test.ts');
    assert.ok(r.out.trimEnd().endsWith('2 passed, 1 failed'), r.out);
    assert.is(r.code, 1, r.out);
    const only = await runner('3', 'pass');
    assert.ok(only.out.trimEnd().endsWith('1 passed, 0 failed'), only.out);
    assert.not.match(only.out, 'hang.test.ts');
    assert.is(only.code, 0, only.out);
  },
);

test('a file that blocks the process: the watchdog names it, prints the counts and ends the run', async () => {
  const r = await runner('2', 'a/', 'd/');
  assert.match(r.out, 'FAIL d/block.test.ts: blocked the process past the 2 s time limit per file');
  assert.ok(r.out.trimEnd().endsWith('1 passed, 1 failed'), r.out);
  assert.is(r.signal, 'SIGKILL', r.out);
});

test('a bad time limit is refused', async () => {
  const r = await runner('soon', 'a/');
  assert.match(r.out, 'MMPARETO_TEST_FILE_TIMEOUT=soon must be a number of seconds > 0');
  assert.is(r.code, 2);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
