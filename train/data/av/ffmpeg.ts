// Finding and running Debian's ffmpeg for `mmpareto prepare`. FFMPEG=path overrides the search
// of PATH (the tests use it to simulate a machine without ffmpeg).
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export const FFMPEG_INSTALL_HINT =
  "install it with `sudo apt-get install ffmpeg` (Debian/Ubuntu; `npm test`'s setup does this), or set " +
  'FFMPEG=/path/to/ffmpeg';

export class FfmpegMissingError extends Error {}

export interface Ffmpeg {
  path: string;
  /** The first line of `ffmpeg -version`, recorded in the manifest. */
  version: string;
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function findFfmpeg(env: NodeJS.ProcessEnv = process.env): Ffmpeg {
  const override = env.FFMPEG;
  const candidates =
    override !== undefined
      ? [override]
      : (env.PATH ?? '')
          .split(delimiter)
          .filter(Boolean)
          .map((d) => join(d, 'ffmpeg'));
  const path = candidates.find(executable);
  if (!path) {
    throw new FfmpegMissingError(
      override !== undefined
        ? `FFMPEG=${override} is not an executable file; ${FFMPEG_INSTALL_HINT}`
        : `ffmpeg was not found on PATH: \`mmpareto prepare\` needs it to convert audio and extract frames; ` +
            `${FFMPEG_INSTALL_HINT}`,
    );
  }
  const r = spawnSync(path, ['-hide_banner', '-version'], { encoding: 'utf8' });
  if (r.status !== 0)
    throw new FfmpegMissingError(
      `${path} -version failed (${r.error?.message ?? r.stderr.trim()}); ${FFMPEG_INSTALL_HINT}`,
    );
  return { path, version: r.stdout.split('\n')[0]!.trim() };
}

/** Runs ffmpeg with `args`; resolves with its stderr tail, or rejects with it on a non-zero exit. */
export function runFfmpeg(ff: Ffmpeg, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(ff.path, ['-nostdin', '-hide_banner', '-loglevel', 'error', '-threads', '1', ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-2000);
    });
    child.on('error', (e) => reject(new Error(`could not run ${ff.path}: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          new Error(
            `ffmpeg ${signal ? `was killed by ${signal}` : `exited with ${code}`}: ` +
              `${err.trim().split('\n').slice(-3).join(' | ') || '(no message)'}`,
          ),
        );
    });
  });
}
