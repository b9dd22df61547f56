// The published package, as another project gets it: `npm pack`, the tarball installed into a
// fresh project outside the repository, then a plain `node` ESM program that trains with it, a
// strict TypeScript consumer, and an esbuild browser bundle (which must hold no Node built-in and
// no Dawn). Fixtures: test/embedding/consumer/.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const test = suite('package');
const run = promisify(execFile);
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtures = join(repo, 'test', 'embedding', 'consumer');
const tmp = mkdtempSync(join(tmpdir(), 'mmpareto-consumer-'));
const app = join(tmp, 'app');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const env = {
  ...process.env,
  XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp',
  npm_config_update_notifier: 'false',
};

interface PackedFile {
  path: string;
  size: number;
}
let packed: { filename: string; files: PackedFile[]; size: number; unpackedSize: number };

test.before(async () => {
  // prepack builds dist/ (npm run build); --json lists what went into the tarball.
  const { stdout } = await run(npm, ['pack', '--json', '--pack-destination', tmp], {
    cwd: repo,
    env,
    maxBuffer: 64 << 20,
  });
  packed = JSON.parse(stdout.slice(stdout.indexOf('[')))[0];
  mkdirSync(app);
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify(
      {
        name: 'consumer',
        private: true,
        type: 'module',
        dependencies: { 'mmpareto-webgpu': `file:../${packed.filename}` },
      },
      null,
      2,
    ),
  );
  for (const f of ['train.mjs', 'check.ts', 'web-page.ts', 'tsconfig.json', 'browser-entry.ts'])
    copyFileSync(join(fixtures, f), join(app, f));
  // The dependencies come from npm's cache when it has them (it does after `npm ci`).
  await run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: app,
    env,
    maxBuffer: 64 << 20,
  });
});

test.after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

test(
  'the tarball holds dist/ (JavaScript, .d.ts, source maps) and the CLI, no TypeScript source; tsx is not a ' +
    'dependency',
  () => {
    const paths = packed.files.map((f) => f.path);
    for (const p of [
      'dist/engine/index.js',
      'dist/engine/index.d.ts',
      'dist/engine/index.js.map',
      'dist/train/node.js',
      'dist/train/cli/main.js',
      'dist/models/index.js',
      'dist/train/data/synthetic.d.ts',
      'bin/mmpareto.mjs',
      'package.json',
      'README.md',
    ]) {
      assert.ok(paths.includes(p), `${p} is packed`);
    }
    const source = paths.filter((p) => p.endsWith('.ts') && !p.endsWith('.d.ts'));
    assert.equal(source, [], 'no .ts source');
    assert.equal(
      paths.filter((p) => /^(test|bench|examples)\//.test(p)),
      [],
      'no tests, benches or examples',
    );
    const manifest = JSON.parse(readFileSync(join(app, 'node_modules', 'mmpareto-webgpu', 'package.json'), 'utf8'));
    assert.not.ok('tsx' in manifest.dependencies, 'tsx is not a runtime dependency');
    assert.not.ok(existsSync(join(app, 'node_modules', 'tsx')), 'tsx was not installed');
    console.log(
      `    tarball ${packed.filename}: ${packed.files.length} files, ${(packed.size / 1024).toFixed(0)} KiB packed, ` +
        `${(packed.unpackedSize / 1024).toFixed(0)} KiB unpacked`,
    );
  },
);

test('a plain node ESM program trains a two-modality model with MMPareto for 20 steps: the loss falls', async () => {
  const { stdout } = await run(process.execPath, ['train.mjs'], { cwd: app, env, maxBuffer: 16 << 20 });
  const { adapter, losses } = JSON.parse(stdout.trim().split('\n').pop()!) as { adapter: string; losses: number[] };
  assert.is(losses.length, 20);
  assert.ok(losses.every(Number.isFinite));
  // One fixed batch of 32 items, 4 balanced classes: the first loss sits near ln 4; 20 SGD steps
  // (lr 0.02, momentum 0.9) on the same batch must take the mean of the last 5 well below it.
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  assert.ok(Math.abs(losses[0]! - Math.log(4)) < 0.15, `first loss ${losses[0]} near ln 4`);
  assert.ok(
    mean(losses.slice(-5)) < 0.8 * mean(losses.slice(0, 5)),
    `loss fell: ${losses.map((l) => l.toFixed(3)).join(' ')}`,
  );
  console.log(
    `    node ${process.version} on ${adapter.split(' ').slice(0, 3).join(' ')}: loss ${losses[0]!.toFixed(3)} → ` +
      `${losses[19]!.toFixed(3)}`,
  );
});

test('the installed CLI runs from dist/ with plain node', async () => {
  const { stdout } = await run(process.execPath, [join(app, 'node_modules', '.bin', 'mmpareto'), '--help'], {
    cwd: app,
    env,
  });
  assert.match(stdout, /mmpareto \d+\.\d+\.\d+/);
  assert.match(stdout, /Usage:/);
});

test(
  'a strict TypeScript consumer, and the README snippet, ' + 'typecheck against the shipped .d.ts (tsc --noEmit)',
  async () => {
    const between = (text: string, start: string, end: string) => {
      const from = text.indexOf(start) + start.length;
      assert.ok(from >= start.length, `'${start}' not found`);
      return text.slice(from, text.indexOf(end, from));
    };
    const readme = between(readFileSync(join(repo, 'README.md'), 'utf8'), '\n## Use it in a web page\n', '\n## ');
    const snippet = between(readme, '```ts\n', '```');
    assert.is(
      between(readFileSync(join(fixtures, 'web-page.ts'), 'utf8'), '// --- README snippet ---\n', '// --- end ---'),
      snippet,
      'test/embedding/consumer/web-page.ts holds the README snippet',
    );
    const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
    try {
      await run(process.execPath, [tsc, '--noEmit', '-p', app], { cwd: app, env });
    } catch (e) {
      const out = (e as { stdout?: string }).stdout ?? '';
      assert.unreachable(`tsc failed:\n${out}`);
    }
  },
);

test('esbuild bundles the browser entry (platform browser): no Node built-in, no Dawn; size reported', async () => {
  const r = await build({
    absWorkingDir: app,
    entryPoints: ['browser-entry.ts'],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  assert.equal(r.errors, []);
  const inputs = Object.keys(r.metafile.inputs);
  assert.ok(
    inputs.includes('node_modules/mmpareto-webgpu/dist/engine/index.js'),
    'the browser condition picked the engine entry',
  );
  assert.not.ok(
    inputs.some((p) => p.includes('dist/train/node.js')),
    'the Node entry stayed out',
  );
  assert.not.ok(
    inputs.some((p) => p.includes('node_modules/webgpu/')),
    'Dawn stayed out',
  );
  const [output] = Object.values(r.metafile.outputs);
  assert.equal(output!.imports, [], 'the bundle imports nothing (no Node built-in, no webgpu)');
  const code = r.outputFiles[0]!.text;
  assert.not.match(
    code,
    /\b(?:from|import)\s*\(?\s*["'](?:node:|webgpu["'])/,
    'no import of node: or webgpu in the text',
  );
  // The engine alone (what `import { ... } from 'mmpareto-webgpu'` can pull in at most).
  const engine = await build({
    absWorkingDir: app,
    stdin: { contents: "export * from 'mmpareto-webgpu';", resolveDir: app },
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
  });
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  const size = (bytes: Uint8Array) =>
    `${kib(bytes.length)} minified, ${kib(gzipSync(bytes, { level: 9 }).length)} gzipped`;
  console.log(
    `    browser bundles: engine ${size(engine.outputFiles[0]!.contents)}; engine + nn + models + data ` +
      `${size(r.outputFiles[0]!.contents)}`,
  );
});

test.run();
