// `npm run build:example`: bundles the page (main.ts) and the training worker (worker.ts) with
// esbuild for the browser into examples/browser/dist/. The tests and the bench call buildExample.
import { build, type Metafile } from 'esbuild';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const EXAMPLE_DIR = dirname(fileURLToPath(import.meta.url));

/** Bundles `entries` (default: the page and its worker) into `outdir`; returns esbuild's metafile. */
export async function buildExample(
  outdir = join(EXAMPLE_DIR, 'dist'),
  entries = [join(EXAMPLE_DIR, 'main.ts'), join(EXAMPLE_DIR, 'worker.ts')],
): Promise<Metafile> {
  const r = await build({
    entryPoints: entries,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    outdir,
    sourcemap: true,
    metafile: true,
    logLevel: 'warning',
  });
  return r.metafile;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const meta = await buildExample();
  for (const [file, out] of Object.entries(meta.outputs)) {
    if (!file.endsWith('.map')) console.log(`${relative(process.cwd(), file)}  ${(out.bytes / 1024).toFixed(0)} KiB`);
  }
}
