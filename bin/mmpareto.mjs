#!/usr/bin/env node
// The `mmpareto` command. Installed from npm, it runs the compiled CLI in dist/ with plain node.
// In a source checkout (train/cli/main.ts present, never published) it runs the TypeScript through
// tsx, a devDependency, so that no build step stands between an edit and the command.
import { existsSync } from 'node:fs';

const source = new URL('../train/cli/main.ts', import.meta.url);
let cli;
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(source.href);
} else {
  cli = await import('../dist/train/cli/main.js');
}
process.exitCode = await cli.main(process.argv.slice(2));
