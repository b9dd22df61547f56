// Runs every *.test.ts under test/ (its subfolders included) in one process — one GPU device, one
// pipeline cache — with uvu, and ends with the line "N passed, N failed".
// Usage: tsx test/run.ts [filter...]   A filter keeps the files whose path under test/ contains
// it: `conv` (test/ops/conv.test.ts), `faults/` (a whole folder).
//
// Each file has a time limit, MMPARETO_TEST_FILE_TIMEOUT seconds (default 900): a file still
// running past it fails with its name, and the run goes on with the next file. A file that blocks
// the process itself (a synchronous child process that never returns) is caught by a watchdog
// thread a grace period later (the limit, at most 60 s), which prints the file's name and the
// counts so far, then ends the process: a hung suite names its file instead of running into CI's
// limit. MMPARETO_TEST_DIR replaces the folder searched (test/runner.test.ts points it at fixtures).
import { readdirSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

type Result = [errs: string, ran: number, skipped: number, total: number];
const g = globalThis as unknown as { UVU_DEFER: number; UVU_INDEX: number; UVU_QUEUE: unknown[][] };
g.UVU_DEFER = 1;
g.UVU_QUEUE = [];
const uvu = await import('uvu');

const here = process.env.MMPARETO_TEST_DIR || dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2);
const limitEnv = process.env.MMPARETO_TEST_FILE_TIMEOUT;
const limitS = limitEnv === undefined || limitEnv === '' ? 900 : Number(limitEnv);
if (!(limitS > 0)) {
  console.error(`test/run.ts: MMPARETO_TEST_FILE_TIMEOUT=${limitEnv} must be a number of seconds > 0`);
  process.exit(2);
}

/** Test files under `dir`, as paths relative to test/ with '/' separators, sorted. */
function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : testFiles(path);
    return e.name.endsWith('.test.ts') ? [relative(here, path).split(sep).join('/')] : [];
  });
}
const files = testFiles(here)
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();

// What the watchdog sees: [file index (-1: none), its start (ms since the epoch), passed, failed].
const shared = new Float64Array(new SharedArrayBuffer(4 * 8));
shared[0] = -1;
const watchdog = new Worker(
  `const { workerData: { shared, files, limitMs } } = require('node:worker_threads');
  const { writeSync } = require('node:fs');
  setInterval(() => {
    const i = shared[0];
    if (i < 0 || Date.now() - shared[1] < limitMs + Math.min(limitMs, 60000)) return;
    writeSync(2, '\\nFAIL ' + files[i] + ': blocked the process past the ' + limitMs / 1000 + ' s time limit per file' +
      ' (MMPARETO_TEST_FILE_TIMEOUT); stopping the run\\n');
    writeSync(1, shared[2] + ' passed, ' + (shared[3] + 1) + ' failed\\n');
    process.kill(process.pid, 'SIGKILL');
  }, 1000);`,
  { eval: true, workerData: { shared, files, limitMs: limitS * 1000 } },
);
watchdog.unref();

let passed = 0;
let failed = 0;
const started = (i: number) => {
  shared[0] = i;
  shared[1] = Date.now();
};

let idx = 0;
for (const f of files) {
  g.UVU_INDEX = idx;
  g.UVU_QUEUE.push([f]);
  started(idx++); // importing runs the file's top-level code
  await import(pathToFileURL(join(here, f)).href);
}

g.UVU_QUEUE.forEach((group, i) => {
  const file = group[0] as string;
  let deadline = 0;
  let expired = false;
  for (let k = 1; k < group.length; k++) {
    const run = group[k] as () => Promise<Result>;
    group[k] = async (): Promise<Result> => {
      if (k === 1) {
        started(i);
        deadline = Date.now() + limitS * 1000;
      }
      if (expired) return ['', 0, 0, 0];
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), Math.max(0, deadline - Date.now()));
      });
      const r = await Promise.race([run(), limit]).finally(() => clearTimeout(timer));
      if (r === 'timeout') {
        expired = true;
        failed++;
        shared[3] = failed;
        return [
          `  FAIL ${file}: still running after the ${limitS} s time limit per file (MMPARETO_TEST_FILE_TIMEOUT)`,
          0,
          0,
          1,
        ];
      }
      passed += r[1];
      failed += r[3] - r[1] - r[2];
      shared[2] = passed;
      shared[3] = failed;
      return r;
    };
  }
});
const t0 = Date.now();
await uvu.exec(false);
shared[0] = -1;
const { getDevice } = await import('../engine/index.ts');
try {
  getDevice().destroy();
} catch {
  /* no test created a device */
}
console.log(`(${files.length} files, ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
console.log(`${passed} passed, ${failed} failed`);
// Exit explicitly: a GPU handle a test left open (Dawn polls while a device has pending work) must never
// keep the runner alive after its closing line; CI has a time limit, and a hang there reads as no result.
// The same holds for a timed-out file's work (timers, a child process), counted as failed above.
process.exit(failed > 0 || passed === 0 ? 1 : 0);
