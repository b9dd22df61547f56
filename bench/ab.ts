// Before/after comparison of one bench across two checkouts of this project (say, main and a
// branch), interleaved: the bench runs in checkout A, then B, then B, then A, … (ABBA rounds, so a
// slow drift of the machine hits both), each run in its own process with that checkout's code.
// Every JSON line the bench prints is kept; its numeric fields (nested ones as a.b) are paired by
// the line's position in the run, and summarised as the median over the runs of A and of B and
// their ratio B/A. Medians of medians: give the bench few inner rounds and this many rounds.
// Usage: npx tsx bench/ab.ts --a ../main --b . [--rounds 4] -- bench/steps/resnet.ts 112 3
// --a-bench PATH runs PATH in checkout A instead of the bench's own path, for a checkout from
// before the bench moved (bench/resnet.ts there, bench/steps/resnet.ts here); the arguments after
// the path are the same in both. Both checkouts need their node_modules (npm ci). Prints JSON
// lines; the last is the summary.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { emit, median, round } from './util.ts';

const argv = process.argv.slice(2);
const sep = argv.indexOf('--');
const flags = sep >= 0 ? argv.slice(0, sep) : argv;
const bench = sep >= 0 ? argv.slice(sep + 1) : [];
const flag = (name: string, dflt?: string): string => {
  const i = flags.indexOf(`--${name}`);
  const v = i >= 0 ? flags[i + 1] : dflt;
  if (v === undefined) usage(`missing --${name}`);
  return v;
};
function usage(why: string): never {
  console.error(`bench/ab.ts: ${why}`);
  console.error('usage: npx tsx bench/ab.ts --a DIR --b DIR [--rounds N] [--a-bench PATH] -- bench/SCRIPT.ts [args…]');
  process.exit(2);
}
const trees = { a: resolve(flag('a')), b: resolve(flag('b')) };
/** The command line in each checkout: the bench's path may differ (--a-bench), its arguments not. */
const commands = { a: [flag('a-bench', bench[0] ?? ''), ...bench.slice(1)], b: bench };
const rounds = Number(flag('rounds', '4'));
if (!Number.isInteger(rounds) || rounds < 1) usage(`--rounds must be a positive integer, got ${flag('rounds')}`);
if (bench.length === 0) usage('no bench given after --');
for (const k of ['a', 'b'] as const) {
  const dir = trees[k];
  const script = commands[k][0]!;
  if (!existsSync(resolve(dir, script))) {
    usage(`${script} not found in --${k} ${dir}${k === 'a' ? ' (give its path there with --a-bench PATH)' : ''}`);
  }
  if (!existsSync(resolve(dir, 'node_modules/.bin/tsx'))) usage(`--${k} ${dir} has no node_modules (run npm ci there)`);
}

type Line = Record<string, unknown>;
/** Numeric fields of a JSON line, nested ones flattened as a.b. */
function numbers(x: unknown, prefix = '', out = new Map<string, number>()): Map<string, number> {
  if (typeof x === 'number' && Number.isFinite(x)) out.set(prefix, x);
  else if (x && typeof x === 'object' && !Array.isArray(x)) {
    for (const [k, v] of Object.entries(x)) numbers(v, prefix ? `${prefix}.${k}` : k, out);
  }
  return out;
}

function run(tree: 'a' | 'b', r: number): Line[] {
  const dir = trees[tree];
  const t0 = performance.now();
  const p = spawnSync(resolve(dir, 'node_modules/.bin/tsx'), commands[tree], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
    maxBuffer: 64 * 2 ** 20,
  });
  if (p.status !== 0) {
    console.error(p.stderr);
    throw new Error(`bench/ab.ts: ${commands[tree].join(' ')} failed in ${dir} (exit ${p.status})`);
  }
  const lines = p.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
  emit({ ab: 'run', tree, dir, round: r, wall_s: round((performance.now() - t0) / 1000, 1), lines });
  return lines;
}

const runs: Record<'a' | 'b', Line[][]> = { a: [], b: [] };
for (let r = 0; r < rounds; r++) {
  const order: ('a' | 'b')[] = r % 2 === 0 ? ['a', 'b'] : ['b', 'a'];
  for (const t of order) runs[t].push(run(t, r));
}
const summary: Record<string, { a: number; b: number; b_over_a: number }> = {};
const count = Math.min(...[...runs.a, ...runs.b].map((l) => l.length));
for (let i = 0; i < count; i++) {
  const label = [runs.a[0]![i]!.bench, runs.a[0]![i]!.size].filter((x) => x !== undefined).join('@') || `line${i}`;
  const keys = [...numbers(runs.a[0]![i]).keys()];
  for (const k of keys) {
    const at = (t: 'a' | 'b') => runs[t].map((l) => numbers(l[i]).get(k)).filter((v): v is number => v !== undefined);
    const [ma, mb] = [median(at('a')), median(at('b'))];
    summary[`${label}.${k}`] = { a: round(ma, 3), b: round(mb, 3), b_over_a: round(mb / ma, 3) };
  }
}
emit({
  ab: 'summary',
  bench: bench.join(' '),
  a_bench: commands.a.join(' '),
  a: trees.a,
  b: trees.b,
  rounds,
  medians: summary,
});
