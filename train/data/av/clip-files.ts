// The files of one prepared clip and how `mmpareto prepare` writes them: ffmpeg's arguments (the
// WAV and one JPEG frame per second), the check of a clip's files (the WAV parses at the right
// rate and has samples, the frames are numbered and each JPEG is whole) with their sha256, and
// writes under temporary `.tmp-PID-` names renamed into place, so an interrupted run leaves only
// temporaries, which the next run removes.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { frameFile } from './manifest.ts';
import type { SourceItem } from './sources.ts';
import { CorruptMediaError, parseWav } from './wav.ts';

export const TMP = '.tmp-';

/** Removes stale temporaries of an interrupted run. */
export function removeTemporaries(out: string): void {
  for (const sub of ['audio', 'visual', '.']) {
    const dir = join(out, sub);
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) if (f.startsWith(TMP)) rmSync(join(dir, f), { recursive: true, force: true });
  }
}

/** A CSV field, quoted when it holds a comma, quote or newline (AVE's 'Male speech, man speaking'). */
export const csv = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

export function writeAtomic(path: string, text: string, pid = process.pid): void {
  const dir = join(path, '..');
  const tmp = join(dir, `${TMP}${pid}-${path.slice(dir.length + 1)}`);
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Checks a clip's files and returns (samples, frames, sha256); throws CorruptMediaError. */
export function checkClip(
  wavPath: string,
  dir: string,
  sampleRate: number,
  label: string,
): { samples: number; frames: number; sha256: string } {
  const bytes = readFileSync(wavPath);
  const wav = parseWav(bytes, label);
  if (wav.sampleRate !== sampleRate)
    throw new CorruptMediaError(`${label}: sample rate ${wav.sampleRate}, expected ${sampleRate}`);
  if (wav.samples.length === 0) throw new CorruptMediaError(`${label}: no audio samples`);
  const frames = readdirSync(dir)
    .filter((f) => /^frame_\d{5}\.jpg$/.test(f))
    .sort();
  if (frames.length === 0)
    throw new CorruptMediaError(`${label}: no video frame (is the video stream empty or shorter than 0.5 s?)`);
  const h = createHash('sha256').update(bytes);
  frames.forEach((f, i) => {
    if (f !== frameFile(i))
      throw new CorruptMediaError(`${label}: frame files are not numbered 1…${frames.length} (${f})`);
    const jpg = readFileSync(join(dir, f));
    const whole =
      jpg.length > 4 &&
      jpg[0] === 0xff &&
      jpg[1] === 0xd8 &&
      jpg[jpg.length - 2] === 0xff &&
      jpg[jpg.length - 1] === 0xd9;
    if (!whole) throw new CorruptMediaError(`${label}: ${f} is not a whole JPEG`);
    h.update(jpg);
  });
  return { samples: wav.samples.length, frames: frames.length, sha256: h.digest('hex') };
}

/** ffmpeg's arguments for one clip: the mono PCM WAV at `sampleRate` and one JPEG per second from t = 0.5 s. */
export function ffmpegArgs(it: SourceItem, wavTmp: string, framesTmp: string, sampleRate: number): string[] {
  const video = it.video === it.audio ? ['-i', it.video] : ['-i', it.audio, '-i', it.video];
  const v = it.video === it.audio ? 0 : 1;
  return [
    ...video,
    '-map',
    '0:a:0',
    '-ac',
    '1',
    '-ar',
    String(sampleRate),
    '-c:a',
    'pcm_s16le',
    '-f',
    'wav',
    '-y',
    wavTmp,
    '-map',
    `${v}:v:0`,
    '-vf',
    'trim=start=0.5,setpts=PTS-STARTPTS,fps=1',
    '-q:v',
    '2',
    '-f',
    'image2',
    '-y',
    join(framesTmp, 'frame_%05d.jpg'),
  ];
}
