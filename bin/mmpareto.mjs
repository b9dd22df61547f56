#!/usr/bin/env node
// The `mmpareto` command: runs train/cli.ts through tsx's loader (the package ships TypeScript).
import { register } from 'tsx/esm/api';
register();
const { main } = await import('../train/cli.ts');
process.exitCode = await main(process.argv.slice(2));
