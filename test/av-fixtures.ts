// Tiny CREMA-D- and AVE-shaped downloads for the tests, made here: WAVs synthesised as one tone
// per class (train/data/av/wav.ts), videos from ffmpeg's lavfi colour source (one colour per class).
// Built once per process in a temporary directory, removed at exit.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeWav } from '../train/data/av/wav.ts';
import { CREMA_D_CLASSES } from '../train/data/av/sources.ts';

export const root = mkdtempSync(join(tmpdir(), 'mmpareto-av-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const COLORS = ['red', 'green', 'blue', 'yellow', 'magenta', 'cyan'];

export function ffmpeg(...args: string[]): void {
  const r = spawnSync('ffmpeg', ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffmpeg ${args.join(' ')}: ${r.error?.message ?? r.stderr}`);
}

/** A tone of `hz` for `seconds` at `rate`, amplitude 0.5. */
export function tone(hz: number, seconds: number, rate: number): Float32Array {
  return Float32Array.from({ length: Math.round(seconds * rate) }, (_, i) => 0.5 * Math.sin((2 * Math.PI * hz * i) / rate));
}

export interface CremaFixture {
  src: string;
  /** clip → class. */
  clips: Map<string, string>;
  /** A clip with a 4.6 s video (4 frames after prepare), the others 2.6 s (2 frames). */
  longClip: string;
  /** A clip whose audio is 10 ms long, shorter than one STFT window. */
  shortClip: string;
}

/** CREMA-D layout: `perClass` clips of each of the six emotions. */
export function makeCremaD(dir: string, perClass = 3): CremaFixture {
  const src = join(root, dir);
  mkdirSync(join(src, 'AudioWAV'), { recursive: true });
  mkdirSync(join(src, 'VideoFlash'), { recursive: true });
  const clips = new Map<string, string>();
  CREMA_D_CLASSES.forEach((cls, k) => {
    const video = join(src, `class-${cls}.flv`);
    ffmpeg('-f', 'lavfi', '-i', `color=c=${COLORS[k]}:size=64x48:rate=10:duration=2.6`, '-c:v', 'flv1', video);
    for (let j = 0; j < perClass; j++) {
      const name = `${1001 + j}_DFA_${cls}_XX`;
      clips.set(name, cls);
      writeFileSync(join(src, 'AudioWAV', `${name}.wav`), encodeWav(tone(200 * (k + 1), 0.6 + 0.5 * j, 16000), 16000));
      copyFileSync(video, join(src, 'VideoFlash', `${name}.flv`));
    }
    rmSync(video);
  });
  const longClip = `1001_DFA_${CREMA_D_CLASSES[0]}_XX`;
  ffmpeg('-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=10:duration=4.6', '-c:v', 'flv1', join(src, 'VideoFlash', `${longClip}.flv`));
  const shortClip = `1001_DFA_${CREMA_D_CLASSES[1]}_XX`;
  writeFileSync(join(src, 'AudioWAV', `${shortClip}.wav`), encodeWav(tone(300, 0.01, 16000), 16000));
  return { src, clips, longClip, shortClip };
}

export const AVE_CLASSES = ['Church bell', 'Male speech, man speaking', 'Violin, fiddle'];

/** AVE_Dataset layout: 3 classes × 3 videos (3 s, with a tone), Annotations.txt and the split lists. */
export function makeAve(dir: string, lists = true): { src: string; ids: Map<string, string> } {
  const src = join(root, dir);
  mkdirSync(join(src, 'AVE'), { recursive: true });
  const ids = new Map<string, string>();
  const lines = ['Category&VideoID&Quality&StartTime&EndTime'];
  const split: Record<string, string[]> = { train: [], val: [], test: [] };
  AVE_CLASSES.forEach((cls, k) => {
    const video = join(src, `class-${k}.mp4`);
    ffmpeg('-f', 'lavfi', '-i', `color=c=${COLORS[k]}:size=64x48:rate=10:duration=3`, '-f', 'lavfi', '-i', `sine=frequency=${300 * (k + 1)}:duration=3:sample_rate=44100`,
      '-c:v', 'mpeg4', '-c:a', 'aac', '-shortest', video);
    ['train', 'val', 'test'].forEach((s, j) => {
      const id = `vid${k}${j}-x_Y`;
      ids.set(id, cls);
      copyFileSync(video, join(src, 'AVE', `${id}.mp4`));
      const line = `${cls}&${id}&good&0&3`;
      lines.push(line);
      split[s]!.push(line);
    });
    rmSync(video);
  });
  writeFileSync(join(src, 'Annotations.txt'), lines.join('\n') + '\n');
  if (lists) for (const [s, f] of [['train', 'trainSet.txt'], ['val', 'valSet.txt'], ['test', 'testSet.txt']]) writeFileSync(join(src, f!), split[s!]!.join('\n') + '\n');
  return { src, ids };
}

let cremaPrepared: { fixture: CremaFixture; out: string } | null = null;
/** The CREMA-D fixture prepared once (seeded split, 22,050 Hz), shared by the test files. */
export async function preparedCremaD(): Promise<{ fixture: CremaFixture; out: string }> {
  if (cremaPrepared) return cremaPrepared;
  const { prepare } = await import('../train/data/av/prepare.ts');
  const fixture = makeCremaD('crema-shared');
  const out = join(root, 'crema-shared-prepared');
  await prepare({ dataset: 'crema-d', src: fixture.src, out, jobs: 2 });
  return (cremaPrepared = { fixture, out });
}

let avePrepared: { ids: Map<string, string>; out: string } | null = null;
/** The AVE fixture (official lists) prepared once. */
export async function preparedAve(): Promise<{ ids: Map<string, string>; out: string }> {
  if (avePrepared) return avePrepared;
  const { prepare } = await import('../train/data/av/prepare.ts');
  const { src, ids } = makeAve('ave-shared');
  const out = join(root, 'ave-shared-prepared');
  await prepare({ dataset: 'ave', src, out, jobs: 2 });
  return (avePrepared = { ids, out });
}
