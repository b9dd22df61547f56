// Fails on any import cycle among the floors (engine/, shaders/, models/, train/) and
// experiments/: every `import`, `import type`, `export … from` and literal `import()` between their
// files counts, so a cycle of type-only imports is reported too (tools such as madge count them by
// default). Prints each cycle as a chain of files, then "import cycles: N"; exits 1 when N > 0.
// Usage: tsx .ci/import-cycles.ts [folder...]   (default: engine shaders models train experiments)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const folders = process.argv.slice(2).length
  ? process.argv.slice(2)
  : ['engine', 'shaders', 'models', 'train', 'experiments'];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return /\.ts$/.test(name) && !name.endsWith('.d.ts') ? [path] : [];
  });
}

const files = folders.flatMap((f) => sources(join(root, f)));
const known = new Set(files);
const edges = new Map<string, string[]>();
for (const file of files) {
  const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  const targets = importedFiles
    .map((i) => i.fileName)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => resolve(dirname(file), spec))
    .filter((target) => known.has(target));
  edges.set(file, [...new Set(targets)]);
}

// Tarjan's strongly connected components: every component of two or more files (or a file that
// imports itself) holds at least one cycle.
let counter = 0;
const index = new Map<string, number>();
const low = new Map<string, number>();
const stack: string[] = [];
const onStack = new Set<string>();
const components: string[][] = [];
function visit(v: string): void {
  index.set(v, counter);
  low.set(v, counter++);
  stack.push(v);
  onStack.add(v);
  for (const w of edges.get(v) ?? []) {
    if (!index.has(w)) {
      visit(w);
      low.set(v, Math.min(low.get(v)!, low.get(w)!));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
  }
  if (low.get(v) !== index.get(v)) return;
  const component: string[] = [];
  let w: string;
  do {
    w = stack.pop()!;
    onStack.delete(w);
    component.push(w);
  } while (w !== v);
  if (component.length > 1 || (edges.get(v) ?? []).includes(v)) components.push(component);
}
for (const f of files) if (!index.has(f)) visit(f);

/** One shortest cycle through `start` inside its component (breadth-first), for the report. */
function cycleThrough(start: string, inside: Set<string>): string[] {
  const prev = new Map<string, string>();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    for (const w of edges.get(v) ?? []) {
      if (!inside.has(w)) continue;
      if (w === start) {
        const path = [v];
        while (path[0] !== start) path.unshift(prev.get(path[0]!)!);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start];
}

for (const c of components) {
  const chain = cycleThrough(c[c.length - 1]!, new Set(c)).map((f) => relative(root, f));
  console.log(`cycle among ${c.length} file(s): ${chain.join(' -> ')}`);
}
console.log(`import cycles: ${components.length} (${files.length} files in ${folders.join(', ')})`);
process.exitCode = components.length > 0 ? 1 : 0;
