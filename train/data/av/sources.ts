// The raw downloads `mmpareto prepare` reads, in their public layouts:
// - CREMA-D (the CREMA-D repository): SRC/AudioWAV/<clip>.wav and SRC/VideoFlash/<clip>.flv,
//   clip = Actor_Sentence_Emotion_Level (e.g. 1001_DFA_ANG_XX); the class is the emotion code.
//   Optionally the authors' train.csv / test.csv (rows `clip,EMOTION`).
// - AVE (AVE_Dataset): SRC/AVE/<VideoID>.mp4 and SRC/Annotations.txt, lines
//   `Category&VideoID&Quality&StartTime&EndTime` after a header; the class is the category.
//   Optionally the official SRC/trainSet.txt, valSet.txt, testSet.txt (same line format).
// Classes are sorted by name; a label is the class's index in that order.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export type AvDatasetName = 'crema-d' | 'ave';
export const AV_DATASETS: readonly AvDatasetName[] = ['crema-d', 'ave'];
export type SplitName = 'train' | 'val' | 'test';

export interface SourceItem {
  name: string;
  className: string;
  /** File the audio comes from. */
  audio: string;
  /** File the frames come from. */
  video: string;
}

export interface SourceTree {
  dataset: AvDatasetName;
  classes: string[];
  items: SourceItem[];
  /** Clips with one of their files missing: the missing path. */
  incomplete: { name: string; missing: string }[];
  /** Files whose names do not follow the layout (ignored). */
  ignored: string[];
  /** Official split per clip, when the download carries one. */
  official: Map<string, SplitName> | null;
}

export const CREMA_D_CLASSES = ['ANG', 'DIS', 'FEA', 'HAP', 'NEU', 'SAD'] as const;
const CREMA_D_NAME = /^(\d{4})_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_([A-Z]{2})$/;

export class LayoutError extends Error {}

function requirePaths(src: string, dataset: string, expected: string, paths: string[]): void {
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new LayoutError(`--src ${src} is not a directory`);
  for (const p of paths) {
    if (!existsSync(join(src, p)))
      throw new LayoutError(`${src} is not the ${dataset} layout: ${join(src, p)} is missing (expected ${expected})`);
  }
}

function filesWith(dir: string, ext: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of readdirSync(dir).sort())
    if (f.toLowerCase().endsWith(ext)) out.set(f.slice(0, -ext.length), join(dir, f));
  return out;
}

/** The authors' CSV split (train.csv / test.csv rows `clip,label`). */
export function readSplitCsv(path: string): { name: string; label: string }[] {
  if (!existsSync(path)) throw new LayoutError(`split file ${path} does not exist`);
  return readFileSync(path, 'utf8')
    .replace(/^\uFEFF/, '')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean)
    .map((line, i) => {
      const [name, label] = line.split(',').map((s) => s.trim());
      if (!name || !label) throw new LayoutError(`${path}:${i + 1}: expected 'clip,label', got '${line}'`);
      return { name, label };
    });
}

export function scanCremaD(src: string, csv?: { train: string; test: string }): SourceTree {
  requirePaths(src, 'CREMA-D', 'AudioWAV/*.wav and VideoFlash/*.flv', ['AudioWAV', 'VideoFlash']);
  const wavs = filesWith(join(src, 'AudioWAV'), '.wav');
  const flvs = filesWith(join(src, 'VideoFlash'), '.flv');
  const ignored: string[] = [];
  const items: SourceItem[] = [];
  const incomplete: SourceTree['incomplete'] = [];
  for (const name of [...new Set([...wavs.keys(), ...flvs.keys()])].sort()) {
    const m = CREMA_D_NAME.exec(name);
    if (!m) {
      ignored.push(wavs.get(name) ?? flvs.get(name)!);
      continue;
    }
    const audio = wavs.get(name);
    const video = flvs.get(name);
    if (!audio) incomplete.push({ name, missing: join(src, 'AudioWAV', `${name}.wav`) });
    else if (!video) incomplete.push({ name, missing: join(src, 'VideoFlash', `${name}.flv`) });
    else items.push({ name, className: m[3]!, audio, video });
  }
  if (items.length === 0)
    throw new LayoutError(
      `${src} holds no CREMA-D clip with both ${join(src, 'AudioWAV', '<clip>.wav')} and ` +
        `${join(src, 'VideoFlash', '<clip>.flv')}`,
    );
  let official: Map<string, SplitName> | null = null;
  if (csv) {
    official = new Map();
    const byName = new Map(items.map((it) => [it.name, it]));
    for (const [split, path] of [
      ['train', csv.train],
      ['test', csv.test],
    ] as const) {
      const rows = readSplitCsv(path);
      const unknown = rows.filter((r) => !byName.has(r.name) && !incomplete.some((x) => x.name === r.name));
      if (unknown.length)
        throw new LayoutError(`${path} names ${unknown.length} clip(s) not in ${src} (first: ${unknown[0]!.name})`);
      for (const r of rows) {
        const it = byName.get(r.name);
        if (it && it.className !== r.label)
          throw new LayoutError(`${path}: clip ${r.name} is labelled ${r.label}, its file name says ${it.className}`);
        if (official.has(r.name)) throw new LayoutError(`${path}: clip ${r.name} is listed twice (or in both splits)`);
        official.set(r.name, split);
      }
    }
  }
  return { dataset: 'crema-d', classes: [...CREMA_D_CLASSES], items, incomplete, ignored, official };
}

interface AveLine {
  category: string;
  id: string;
}
function readAveList(path: string): AveLine[] {
  const out: AveLine[] = [];
  readFileSync(path, 'utf8')
    .replace(/^\uFEFF/, '')
    .split(/\r?\n/)
    .forEach((line, i) => {
      const l = line.trim();
      if (!l || (i === 0 && l.startsWith('Category&'))) return;
      const parts = l.split('&');
      if (parts.length < 2 || !parts[0] || !parts[1])
        throw new LayoutError(`${path}:${i + 1}: expected 'Category&VideoID&Quality&StartTime&EndTime', got '${l}'`);
      out.push({ category: parts[0].trim(), id: parts[1].trim() });
    });
  return out;
}

export const AVE_SPLIT_FILES: Record<SplitName, string> = {
  train: 'trainSet.txt',
  val: 'valSet.txt',
  test: 'testSet.txt',
};

export function scanAve(src: string): SourceTree {
  requirePaths(src, 'AVE', 'AVE/*.mp4 and Annotations.txt, as in AVE_Dataset', ['AVE', 'Annotations.txt']);
  const videos = filesWith(join(src, 'AVE'), '.mp4');
  const lines = readAveList(join(src, 'Annotations.txt'));
  const label = new Map<string, string>();
  for (const { category, id } of lines) {
    const prev = label.get(id);
    if (prev !== undefined && prev !== category)
      throw new LayoutError(
        `${join(src, 'Annotations.txt')}: video ${id} is annotated as both '${prev}' and '${category}'`,
      );
    label.set(id, category);
  }
  const items: SourceItem[] = [];
  const incomplete: SourceTree['incomplete'] = [];
  for (const id of [...label.keys()].sort()) {
    const video = videos.get(id);
    if (!video) incomplete.push({ name: id, missing: join(src, 'AVE', `${id}.mp4`) });
    else items.push({ name: id, className: label.get(id)!, audio: video, video });
  }
  const ignored = [...videos.keys()].filter((id) => !label.has(id)).map((id) => videos.get(id)!);
  if (items.length === 0)
    throw new LayoutError(
      `${src} holds no annotated AVE video (${join(src, 'AVE', '<VideoID>.mp4')} for the IDs in Annotations.txt)`,
    );
  const present = Object.values(AVE_SPLIT_FILES).filter((f) => existsSync(join(src, f)));
  let official: Map<string, SplitName> | null = null;
  if (present.length > 0) {
    const missing = Object.values(AVE_SPLIT_FILES).find((f) => !existsSync(join(src, f)));
    if (missing)
      throw new LayoutError(
        `${src} has ${present.join(', ')} but ${join(src, missing)} is missing (the official split needs all three ` +
          `lists, or none for a seeded split)`,
      );
    official = new Map();
    for (const [split, f] of Object.entries(AVE_SPLIT_FILES) as [SplitName, string][]) {
      for (const { id, category } of readAveList(join(src, f))) {
        if (!label.has(id)) throw new LayoutError(`${join(src, f)}: video ${id} is not in Annotations.txt`);
        if (label.get(id) !== category)
          throw new LayoutError(
            `${join(src, f)}: video ${id} is '${category}' there and '${label.get(id)}' in Annotations.txt`,
          );
        if (official.has(id) && official.get(id) !== split)
          throw new LayoutError(`${join(src, f)}: video ${id} is also in the ${official.get(id)} list`);
        official.set(id, split);
      }
    }
  }
  const classes = [...new Set(lines.map((l) => l.category))].sort();
  return { dataset: 'ave', classes, items, incomplete, ignored, official };
}
