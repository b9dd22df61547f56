// `npm run example`: builds the example, then serves it on http://127.0.0.1 (a secure context,
// as WebGPU requires) with Node's http module, and prints the URL. PORT=8080 by default; a busy
// port falls back to a free one. The tests and the bench mount extra folders with serveStatic.
import { createReadStream, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { EXAMPLE_DIR, buildExample } from './build.ts';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.css': 'text/css',
  '.png': 'image/png',
};

/** Serves each URL prefix from its folder (longest prefix first), on 127.0.0.1 only; resolves once listening. */
export function serveStatic(mounts: Record<string, string>, port = 0): Promise<Server> {
  const prefixes = Object.keys(mounts).sort((a, b) => b.length - a.length);
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const prefix = prefixes.find((p) => path.startsWith(p));
    const root = prefix !== undefined ? resolve(mounts[prefix]!) : null;
    let file = root ? normalize(join(root, path.slice(prefix!.length))) : '';
    if (root && file.endsWith(sep)) file = join(file, 'index.html');
    let ok = root !== null && (file === root || file.startsWith(root + sep)); // never outside the folder
    if (ok && statSync(file, { throwIfNoEntry: false })?.isDirectory()) file = join(file, 'index.html');
    ok &&= statSync(file, { throwIfNoEntry: false })?.isFile() ?? false;
    if (!ok) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}\n`);
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'cache-control': 'no-store',
    });
    createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', fail);
      ok(server);
    });
  });
}

export function urlOf(server: Server, path = '/'): string {
  const a = server.address();
  if (!a || typeof a === 'string') throw new Error('server is not listening on a TCP port');
  return `http://127.0.0.1:${a.port}${path}`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await buildExample();
  const wanted = Number(process.env.PORT ?? 8080);
  const server = await serveStatic({ '/': EXAMPLE_DIR }, wanted).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EADDRINUSE') throw e;
    console.log(`port ${wanted} is busy; using a free one`);
    return serveStatic({ '/': EXAMPLE_DIR }, 0);
  });
  console.log(`MMPareto example: ${urlOf(server)}  (Ctrl-C stops the server)`);
  console.log(
    'Open it in a browser with WebGPU (Chrome/Edge 113+; on Linux start Chrome with --enable-unsafe-webgpu).',
  );
}
