// Dumps the WGSL source of every shader variant the test suite compiles, to check that a change
// meant to leave the kernels alone (a reformat, a move of files) did: run it before and after,
// then `diff -r` the two folders. It wraps Device.pipeline (the one place that compiles) and runs
// test/run.ts in this process, so the tests that spawn processes (CLI, package, browser) are not
// seen; they compile the same declarations. Writes OUT/<sha256>.wgsl per distinct source and
// OUT/index.txt (sha256, op, entry point; sorted).
// Usage: WGSL_DUMP=OUT tsx .ci/wgsl-dump.ts [test filter...]
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Device } from '../engine/device.ts';

const out = process.env.WGSL_DUMP;
if (!out) {
  console.error('usage: WGSL_DUMP=OUT tsx .ci/wgsl-dump.ts [test filter...]');
  process.exit(2);
}
const sources = new Map<string, string>();
const uses = new Set<string>();
const compile = Device.prototype.pipeline;
Device.prototype.pipeline = function (this: Device, op: string, code: string, entryPoint = 'main') {
  const sha = createHash('sha256').update(code).digest('hex');
  sources.set(sha, code);
  uses.add(`${sha} ${op} ${entryPoint}`);
  return compile.call(this, op, code, entryPoint);
};

// test/run.ts ends the process itself (process.exit after its closing line): write on 'exit'.
process.on('exit', () => {
  mkdirSync(resolve(out), { recursive: true });
  for (const [sha, code] of sources) writeFileSync(join(out, `${sha}.wgsl`), code);
  writeFileSync(join(out, 'index.txt'), `${[...uses].sort().join('\n')}\n`);
  console.log(`wgsl-dump: ${sources.size} distinct sources (${uses.size} op/entry uses) in ${out}`);
});
await import('../test/run.ts');
