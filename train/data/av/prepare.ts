// `mmpareto prepare crema-d|ave --src RAW --out DIR`: a raw download → the layout the loaders
// read (the authors' layout: audio/<clip>.wav, visual/<clip>/frame_0000N.jpg, train/val/test.csv
// and stat.csv), plus manifest.json (recipe, counts per class and split, checksums).
//
// Order of work, so that nothing half-written is left in --out:
// 1. everything that can fail without touching --out is checked first: ffmpeg, the source
//    layout (naming the first missing path), the split (every class in every split);
// 2. each clip is made by one ffmpeg run into temporary names (.tmp-*), checked (the WAV parses
//    and has samples, there is at least one frame, each JPEG is whole), hashed, then renamed into
//    place: a clip's files either all exist or none do;
// 3. manifest.json and the CSVs are written last, atomically.
// A re-run skips clips whose files exist (rehashing them against the previous manifest when
// there is one), removes stale .tmp-* entries of an interrupted run, and refuses a --out made
// with a different recipe. If a run fails before any clip is finished, the --out it created is
// removed again.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { TMP, checkClip, csv, ffmpegArgs, removeTemporaries, writeAtomic } from './clip-files.ts';
import { findFfmpeg, runFfmpeg, type Ffmpeg } from './ffmpeg.ts';
import {
  MANIFEST_FORMAT,
  audioPath,
  framesDir,
  itemsChecksum,
  type Manifest,
  type ManifestItem,
  type Recipe,
} from './manifest.ts';
import {
  AV_DATASETS,
  scanAve,
  scanCremaD,
  type AvDatasetName,
  type SourceItem,
  type SourceTree,
  type SplitName,
} from './sources.ts';
import { checkEveryClassInEverySplit, countsBySplit, stratifiedSplit } from './split.ts';
import { CorruptMediaError } from './wav.ts';

export const SAMPLE_RATES = [16000, 22050] as const;

export interface PrepareOptions {
  dataset: AvDatasetName;
  src: string;
  out: string;
  /** 22050 (default; the OGM-GE spectrogram's rate) or 16000. */
  sampleRate?: number;
  /** Seed of the stratified split (default 0). */
  seed?: number;
  /** Fraction of each class held out for test (seeded split; default 0.1). */
  testFraction?: number;
  /** Fraction of each class's remaining training clips held out for validation (default 0.1). */
  valFraction?: number;
  /** The authors' CREMA-D split files (both or neither). */
  trainCsv?: string;
  testCsv?: string;
  /** A clip with a missing or corrupt file: 'skip' it (counted in the manifest; default) or 'fail'. */
  onCorrupt?: 'skip' | 'fail';
  /** Parallel ffmpeg runs (default: the number of CPUs). */
  jobs?: number;
  log?: (line: string) => void;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

export interface PrepareResult {
  manifest: Manifest;
  made: number;
  reused: number;
  skipped: number;
}

export class PrepareInterrupted extends Error {}

interface Planned extends SourceItem {
  split: SplitName;
  label: number;
}

/** Which clips go where: the download's lists, the given CSVs (val carved from train), or a seeded split. */
function plan(
  tree: SourceTree,
  o: Required<Pick<PrepareOptions, 'seed' | 'valFraction' | 'testFraction'>>,
): { planned: Planned[]; mode: Recipe['split']; unlisted: string[] } {
  const byClass = (names: readonly SourceItem[]) => {
    const m = new Map<string, string[]>();
    for (const it of names) m.set(it.className, [...(m.get(it.className) ?? []), it.name]);
    return m;
  };
  let assign: Map<string, SplitName>;
  let mode: Recipe['split'];
  if (tree.official && tree.dataset === 'ave') {
    assign = tree.official;
    mode = 'official';
  } else if (tree.official) {
    const train = tree.items.filter((it) => tree.official!.get(it.name) === 'train');
    assign = new Map(tree.official);
    for (const [name, s] of stratifiedSplit(byClass(train), o.seed, { val: o.valFraction, test: 0 }, ['val']))
      assign.set(name, s);
    mode = 'csv';
  } else {
    assign = stratifiedSplit(byClass(tree.items), o.seed, { val: o.valFraction, test: o.testFraction }, [
      'val',
      'test',
    ]);
    mode = 'seeded';
  }
  const unlisted = tree.items.filter((it) => !assign.has(it.name)).map((it) => it.name);
  const planned = tree.items
    .filter((it) => assign.has(it.name))
    .map((it) => ({ ...it, split: assign.get(it.name)!, label: tree.classes.indexOf(it.className) }));
  return { planned, mode, unlisted };
}

export async function prepare(opts: PrepareOptions): Promise<PrepareResult> {
  const log = opts.log ?? (() => {});
  const sampleRate = opts.sampleRate ?? 22050;
  const onCorrupt = opts.onCorrupt ?? 'skip';
  const o = { seed: opts.seed ?? 0, valFraction: opts.valFraction ?? 0.1, testFraction: opts.testFraction ?? 0.1 };
  if (!AV_DATASETS.includes(opts.dataset))
    throw new Error(`unknown data set '${opts.dataset}' (valid: ${AV_DATASETS.join(', ')})`);
  if (!(SAMPLE_RATES as readonly number[]).includes(sampleRate))
    throw new Error(`sample rate ${sampleRate} is not one of ${SAMPLE_RATES.join(', ')}`);
  for (const [k, v] of [
    ['valFraction', o.valFraction],
    ['testFraction', o.testFraction],
  ] as const)
    if (!(v > 0 && v < 1)) throw new Error(`${k} ${v} must be in (0, 1)`);
  if ((opts.trainCsv === undefined) !== (opts.testCsv === undefined))
    throw new Error('--train-csv and --test-csv go together');
  if (opts.trainCsv && opts.dataset !== 'crema-d')
    throw new Error(
      '--train-csv/--test-csv are for crema-d (AVE brings its own trainSet.txt, valSet.txt, testSet.txt)',
    );

  // 1. Everything that can fail before --out is touched.
  const ff: Ffmpeg = findFfmpeg(opts.env);
  const tree =
    opts.dataset === 'crema-d'
      ? scanCremaD(opts.src, opts.trainCsv ? { train: opts.trainCsv, test: opts.testCsv! } : undefined)
      : scanAve(opts.src);
  if (tree.ignored.length)
    log(`ignoring ${tree.ignored.length} file(s) outside the ${opts.dataset} naming (first: ${tree.ignored[0]})`);
  const skipped: Manifest['skipped'] = [];
  if (tree.incomplete.length) {
    const first = tree.incomplete[0]!;
    if (onCorrupt === 'fail')
      throw new CorruptMediaError(
        `${tree.incomplete.length} clip(s) lack a file (first: ${first.missing}); pass --on-corrupt skip to leave ` +
          `them out`,
      );
    log(`skipping ${tree.incomplete.length} clip(s) that lack a file (first: ${first.missing})`);
    for (const x of tree.incomplete) skipped.push({ name: x.name, reason: `missing ${x.missing}` });
  }
  const { planned, mode, unlisted } = plan(tree, o);
  if (unlisted.length) log(`${unlisted.length} clip(s) are in no split list and are left out (first: ${unlisted[0]})`);
  checkEveryClassInEverySplit(countsBySplit(planned, tree.classes), `the ${mode} split of ${opts.src}`);
  const recipe: Recipe = {
    dataset: opts.dataset,
    sampleRate,
    framesPerSecond: 1,
    frameOffsetSeconds: 0.5,
    jpegQuality: 2,
    split: mode,
    splitSeed: o.seed,
    valFraction: o.valFraction,
    testFraction: mode === 'seeded' ? o.testFraction : 0,
    ffmpeg: ff.version,
  };
  const recipeKey = (r: Recipe) => JSON.stringify({ ...r, ffmpeg: undefined });
  const recipePath = join(opts.out, 'recipe.json');
  if (existsSync(recipePath)) {
    const old = JSON.parse(readFileSync(recipePath, 'utf8')) as Recipe;
    if (recipeKey(old) !== recipeKey(recipe)) {
      throw new Error(
        `${opts.out} was prepared with a different recipe (${recipeKey(old)}); use another --out, or delete it to ` +
          `start over`,
      );
    }
  } else if (existsSync(opts.out) && readdirSync(opts.out).length > 0) {
    throw new Error(
      `--out ${opts.out} exists and is not a prepared data set (no recipe.json); choose an empty or new directory`,
    );
  }
  const previous = new Map<string, string>();
  if (existsSync(join(opts.out, 'manifest.json'))) {
    try {
      for (const it of (JSON.parse(readFileSync(join(opts.out, 'manifest.json'), 'utf8')) as Manifest).items)
        previous.set(it.name, it.sha256);
    } catch {
      log(`${join(opts.out, 'manifest.json')} is unreadable; every clip present is rehashed`);
    }
  }

  // 2. The clips.
  const created = !existsSync(opts.out);
  // The old manifest goes first: until this run finishes, the directory reads as unfinished.
  rmSync(join(opts.out, 'manifest.json'), { force: true });
  mkdirSync(join(opts.out, 'audio'), { recursive: true });
  mkdirSync(join(opts.out, 'visual'), { recursive: true });
  removeTemporaries(opts.out);
  writeAtomic(recipePath, `${JSON.stringify(recipe, null, 2)}\n`);
  const done: ManifestItem[] = [];
  let made = 0;
  let reused = 0;
  let failure: Error | null = null;
  let next = 0;
  const t0 = performance.now();
  let lastLog = t0;
  const progress = () => {
    const now = performance.now();
    if (now - lastLog < 2000) return;
    lastLog = now;
    const finished = done.length + skipped.length - tree.incomplete.length;
    const rate = (made || finished) / ((now - t0) / 1000);
    log(
      `prepare ${opts.dataset}: ${finished}/${planned.length} clips (${made} made, ${reused} kept, ` +
        `${skipped.length} skipped), ${rate.toFixed(1)} ` +
        `clips/s${made ? `, ETA ${Math.round((planned.length - finished) / rate)} s` : ''}`,
    );
  };

  const one = async (it: Planned): Promise<void> => {
    const wav = audioPath(opts.out, it.name);
    const dir = framesDir(opts.out, it.name);
    if (existsSync(wav) && existsSync(dir)) {
      try {
        const c = checkClip(wav, dir, sampleRate, it.name);
        const want = previous.get(it.name);
        if (want === undefined || want === c.sha256) {
          done.push({ name: it.name, className: it.className, label: it.label, split: it.split, ...c });
          reused++;
          return;
        }
        log(`${it.name}: files differ from the previous manifest's checksum; making them again`);
      } catch (e) {
        log(`${it.name}: ${(e as Error).message}; making it again`);
      }
    }
    // A crash between the two renames can leave the frames without the WAV: start clean.
    rmSync(wav, { force: true });
    rmSync(dir, { recursive: true, force: true });
    const tag = `${TMP}${process.pid}-${it.name}`;
    const wavTmp = join(opts.out, 'audio', `${tag}.wav`);
    const dirTmp = join(opts.out, 'visual', tag);
    try {
      mkdirSync(dirTmp);
      try {
        await runFfmpeg(ff, ffmpegArgs(it, wavTmp, dirTmp, sampleRate));
      } catch (e) {
        if (opts.signal?.aborted) throw new PrepareInterrupted('interrupted');
        throw new CorruptMediaError(
          `${it.audio === it.video ? it.video : `${it.audio} / ${it.video}`}: ${(e as Error).message}`,
        );
      }
      const c = checkClip(
        wavTmp,
        dirTmp,
        sampleRate,
        it.audio === it.video ? it.video : `${it.name} (from ${it.audio}, ${it.video})`,
      );
      renameSync(dirTmp, dir);
      renameSync(wavTmp, wav); // the WAV last: a clip counts as present only when both exist
      done.push({ name: it.name, className: it.className, label: it.label, split: it.split, ...c });
      made++;
    } finally {
      rmSync(wavTmp, { force: true });
      rmSync(dirTmp, { recursive: true, force: true });
    }
  };

  const worker = async () => {
    while (!failure && next < planned.length) {
      if (opts.signal?.aborted) {
        failure ??= new PrepareInterrupted('interrupted');
        return;
      }
      const it = planned[next++]!;
      try {
        await one(it);
      } catch (e) {
        if (e instanceof CorruptMediaError && onCorrupt === 'skip') {
          skipped.push({ name: it.name, reason: e.message });
          log(`skipping ${it.name}: ${e.message}`);
        } else failure ??= e as Error;
      }
      progress();
    }
  };
  const jobs = Math.max(1, Math.floor(opts.jobs ?? availableParallelism()));
  try {
    await Promise.all(Array.from({ length: Math.min(jobs, planned.length) }, worker));
    if (failure) throw failure;
    // 3. The manifest and the CSVs, last.
    const order = new Map(planned.map((p, i) => [p.name, i]));
    done.sort((a, b) => order.get(a.name)! - order.get(b.name)!);
    const counts = countsBySplit(done, tree.classes);
    checkEveryClassInEverySplit(counts, `after skipping ${skipped.length} clip(s) (see above)`);
    for (const s of ['train', 'val', 'test'] as const) {
      writeAtomic(
        join(opts.out, `${s}.csv`),
        done
          .filter((d) => d.split === s)
          .map((d) => `${csv(d.name)},${csv(d.className)}\n`)
          .join(''),
      );
    }
    writeAtomic(join(opts.out, 'stat.csv'), tree.classes.map((c) => `${csv(c)}\n`).join(''));
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      recipe,
      classes: tree.classes,
      counts,
      items: done,
      skipped,
      checksum: itemsChecksum(done),
    };
    writeAtomic(join(opts.out, 'manifest.json'), `${JSON.stringify(manifest, null, 1)}\n`);
    return { manifest, made, reused, skipped: skipped.length };
  } catch (e) {
    if (created && done.length === 0) rmSync(opts.out, { recursive: true, force: true });
    else removeTemporaries(opts.out);
    throw e;
  }
}
