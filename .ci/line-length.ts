// Fails on any line longer than 120 characters (code points) in the tracked sources, scripts,
// configs and docs: the formatter (Biome, lineWidth 120) wraps code but leaves long strings and
// comments alone, so this holds the rest to the same width. Markdown table rows are exempt (a
// row cannot wrap), and so are generated files (package-lock.json, experiments/results/, and
// docs/RESULTS.md, written by experiments/summarize.ts).
// Prints file:line for each, then "lines over 120: N"; exits 1 when N > 0.
// Usage: tsx .ci/line-length.ts
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const MAX = 120;
const checked = /\.(ts|mjs|js|json|sh|html|css|md|yml|yaml)$/;
const generated = (f: string) =>
  f === 'package-lock.json' || f.startsWith('experiments/results/') || f === 'docs/RESULTS.md';

const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], { encoding: 'utf8' })
  .split('\n')
  .filter((f) => checked.test(f) && !generated(f));
let over = 0;
for (const file of files) {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    continue; // deleted in the work tree
  }
  const md = file.endsWith('.md');
  text.split('\n').forEach((line, i) => {
    const length = [...line].length;
    if (length <= MAX || (md && line.trimStart().startsWith('|'))) return;
    over++;
    console.log(`${file}:${i + 1}: ${length} characters`);
  });
}
console.log(`lines over ${MAX}: ${over} (${files.length} files)`);
process.exitCode = over > 0 ? 1 : 0;
