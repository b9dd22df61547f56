// Runs every test/*.test.ts in one process (one GPU device, one pipeline cache) with uvu,
// and ends with the line "N passed, N failed". Usage: tsx test/run.ts [filter...]
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

type Result = [errs: string, ran: number, skipped: number, total: number];
const g = globalThis as unknown as { UVU_DEFER: number; UVU_INDEX: number; UVU_QUEUE: unknown[][] };
g.UVU_DEFER = 1;
g.UVU_QUEUE = [];
const uvu = await import('uvu');

const here = dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.test.ts') && (filters.length === 0 || filters.some((x) => f.includes(x))))
  .sort();
let idx = 0;
for (const f of files) {
  g.UVU_INDEX = idx++;
  g.UVU_QUEUE.push([f]);
  await import(pathToFileURL(join(here, f)).href);
}

let passed = 0;
let failed = 0;
for (const group of g.UVU_QUEUE) {
  for (let i = 1; i < group.length; i++) {
    const run = group[i] as () => Promise<Result>;
    group[i] = async () => {
      const r = await run();
      passed += r[1];
      failed += r[3] - r[1] - r[2];
      return r;
    };
  }
}
const t0 = Date.now();
await uvu.exec(false);
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
process.exit(failed > 0 || passed === 0 ? 1 : 0);
