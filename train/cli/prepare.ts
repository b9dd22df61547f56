// `mmpareto prepare DATASET --src RAW --out DIR [...]`: flags → prepare(), with progress on
// stderr and a summary on stdout; Ctrl-C stops after the running ffmpeg jobs, removing their
// temporary files (finished clips are kept for the next run).
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { prepare, PrepareInterrupted, SAMPLE_RATES } from '../data/av/prepare.ts';
import { AV_DATASETS, type AvDatasetName } from '../data/av/sources.ts';

export interface PrepareFlags {
  src?: string;
  out?: string;
  'sample-rate'?: string;
  seed?: string;
  'val-fraction'?: string;
  'test-fraction'?: string;
  'train-csv'?: string;
  'test-csv'?: string;
  'on-corrupt'?: string;
  jobs?: string;
  quiet?: boolean;
}

export const PREPARE_HELP = `prepare options (mmpareto prepare ${AV_DATASETS.join('|')} --src RAW --out DIR):
  --src DIR           the download: CREMA-D's AudioWAV/ and VideoFlash/, or AVE_Dataset's
                      AVE/ and Annotations.txt (+ trainSet.txt, valSet.txt, testSet.txt)
  --out DIR           where the prepared data set goes (new, empty, or an earlier run's)
  --sample-rate HZ    ${SAMPLE_RATES.join(' | ')} [22050, the OGM-GE spectrogram's rate]
  --seed N            seed of the stratified split when the download has none [0]
  --val-fraction X    of each class's training clips, held out for validation [0.1]
  --test-fraction X   of each class, held out for test (seeded split only) [0.1]
  --train-csv FILE    the authors' CREMA-D train.csv (with --test-csv; val is carved from it)
  --test-csv FILE
  --on-corrupt WHAT   skip | fail: a clip with a missing, corrupt or empty file [skip]
  --jobs N            parallel ffmpeg runs [${availableParallelism()}]
Needs ffmpeg (Debian: apt-get install ffmpeg). Re-running skips finished clips.
`;

type Usage = (msg: string) => Error;

function number(
  flag: string,
  v: string | undefined,
  dflt: number,
  ok: (x: number) => boolean,
  what: string,
  usage: Usage,
): number {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || !ok(x)) throw usage(`--${flag}: '${v}' is not ${what}`);
  return x;
}

export async function cmdPrepare(
  v: PrepareFlags,
  positionals: string[],
  io: { out: (s: string) => void; err: (s: string) => void },
  usage: Usage,
): Promise<number> {
  if (positionals.length !== 1 || !(AV_DATASETS as readonly string[]).includes(positionals[0]!)) {
    throw usage(
      `prepare takes one data set name (${AV_DATASETS.join(' or ')}), got ${positionals.join(' ') || 'none'}`,
    );
  }
  if (!v.src) throw usage('prepare needs --src DIR (the raw download)');
  if (!v.out) throw usage('prepare needs --out DIR (where the prepared data set goes)');
  const onCorrupt = v['on-corrupt'] ?? 'skip';
  if (onCorrupt !== 'skip' && onCorrupt !== 'fail')
    throw usage(`--on-corrupt: unknown '${onCorrupt}' (valid: skip, fail)`);
  const stop = new AbortController();
  const onInterrupt = () => {
    stop.abort();
    io.err('stopping after the running ffmpeg jobs (finished clips are kept)…');
  };
  process.once('SIGINT', onInterrupt);
  try {
    const r = await prepare({
      dataset: positionals[0] as AvDatasetName,
      src: resolve(v.src),
      out: resolve(v.out),
      sampleRate: number(
        'sample-rate',
        v['sample-rate'],
        22050,
        (x) => (SAMPLE_RATES as readonly number[]).includes(x),
        SAMPLE_RATES.join(' or '),
        usage,
      ),
      seed: number('seed', v.seed, 0, (x) => Number.isInteger(x) && x >= 0, 'an integer >= 0', usage),
      valFraction: number('val-fraction', v['val-fraction'], 0.1, (x) => x > 0 && x < 1, 'in (0, 1)', usage),
      testFraction: number('test-fraction', v['test-fraction'], 0.1, (x) => x > 0 && x < 1, 'in (0, 1)', usage),
      trainCsv: v['train-csv'] && resolve(v['train-csv']),
      testCsv: v['test-csv'] && resolve(v['test-csv']),
      onCorrupt,
      jobs: number(
        'jobs',
        v.jobs,
        availableParallelism(),
        (x) => Number.isInteger(x) && x >= 1,
        'an integer >= 1',
        usage,
      ),
      log: v.quiet ? undefined : io.err,
      signal: stop.signal,
    });
    const { counts, classes } = r.manifest;
    const total = (s: 'train' | 'val' | 'test') => classes.reduce((a, c) => a + counts[s][c]!, 0);
    io.out(
      `prepared ${r.manifest.recipe.dataset} in ${resolve(v.out)}: train ${total('train')}, val ${total('val')}, ` +
        `test ${total('test')} clips over ${classes.length} classes (${r.made} made, ${r.reused} ` +
        `kept from an earlier run, ${r.skipped} skipped${r.skipped ? '; see manifest.json' : ''})`,
    );
    return 0;
  } catch (e) {
    if (e instanceof PrepareInterrupted) {
      io.err(`mmpareto: prepare interrupted; run the same command again to continue`);
      return 130;
    }
    throw e;
  } finally {
    process.removeListener('SIGINT', onInterrupt);
  }
}
