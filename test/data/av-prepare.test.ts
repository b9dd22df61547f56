// `mmpareto prepare` on generated CREMA-D- and AVE-shaped downloads (test/fixtures/av.ts, made
// with ffmpeg): the manifest (counts per class and split, recipe, checksums), the files and
// CSVs, idempotent re-runs, repair of a damaged clip, and every bad input the issue lists —
// missing ffmpeg, a wrong layout, corrupt clips (skip or fail), classes missing from a split —
// each with its message and nothing half-written in --out.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../../train/cli/main.ts';
import { prepare, PrepareInterrupted } from '../../train/data/av/prepare.ts';
import { readManifest, type Manifest } from '../../train/data/av/manifest.ts';
import { stratifiedSplit } from '../../train/data/av/split.ts';
import { AVE_CLASSES, makeAve, makeCremaD, preparedCremaD, root } from '../fixtures/av.ts';

const test = suite('av-prepare');

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => (out += `${s}\n`), err: (s) => (err += `${s}\n`) });
  return { code, out, err };
}

/** Every file under dir (relative path → mtime, size). */
function snapshot(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      const s = statSync(p);
      if (s.isDirectory()) walk(p);
      else m.set(p.slice(dir.length), `${s.mtimeMs}|${s.size}`);
    }
  };
  walk(dir);
  return m;
}

const temporaries = (dir: string) => [...snapshot(dir).keys()].filter((p) => p.includes('.tmp-'));

test('crema-d: manifest with counts per class and split, recipe, per-clip checksums; files and CSVs', async () => {
  const { fixture, out } = await preparedCremaD();
  const m = readManifest(out);
  assert.equal(m.classes, ['ANG', 'DIS', 'FEA', 'HAP', 'NEU', 'SAD']);
  for (const s of ['train', 'val', 'test'] as const) assert.equal(Object.values(m.counts[s]), [1, 1, 1, 1, 1, 1], s);
  assert.is(m.items.length, 18);
  assert.is(m.recipe.sampleRate, 22050);
  assert.is(m.recipe.split, 'seeded');
  assert.match(m.recipe.ffmpeg, /^ffmpeg version/);
  for (const it of m.items) {
    assert.is(it.className, fixture.clips.get(it.name));
    assert.is(it.label, m.classes.indexOf(it.className));
    // 4.6 s and 2.6 s videos, one frame per second from 0.5 s
    assert.is(it.frames, it.name === fixture.longClip ? 4 : 2, it.name);
    const h = createHash('sha256').update(readFileSync(join(out, 'audio', `${it.name}.wav`)));
    for (let f = 1; f <= it.frames; f++) h.update(readFileSync(join(out, 'visual', it.name, `frame_0000${f}.jpg`)));
    assert.is(it.sha256, h.digest('hex'), it.name);
  }
  // The short clip's 10 ms at 16 kHz became 221 samples at 22,050 Hz; the others ≈ their tone length.
  assert.is(m.items.find((i) => i.name === fixture.shortClip)!.samples, 221);
  for (const s of ['train', 'val', 'test'] as const) {
    const rows = readFileSync(join(out, `${s}.csv`), 'utf8')
      .trim()
      .split('\n');
    assert.equal(
      rows.sort(),
      m.items
        .filter((i) => i.split === s)
        .map((i) => `${i.name},${i.className}`)
        .sort(),
    );
  }
  assert.is(readFileSync(join(out, 'stat.csv'), 'utf8'), 'ANG\nDIS\nFEA\nHAP\nNEU\nSAD\n');
  assert.equal(temporaries(out), []);
});

test('a re-run is idempotent: every clip kept, no file rewritten but the manifest, the same manifest', async () => {
  const { fixture, out } = await preparedCremaD();
  const before = snapshot(out);
  const manifest = readFileSync(join(out, 'manifest.json'), 'utf8');
  const r = await cli('prepare', 'crema-d', '--src', fixture.src, '--out', out, '--quiet');
  assert.is(r.code, 0, r.err);
  assert.match(r.out, '0 made, 18 kept from an earlier run, 0 skipped');
  assert.is(readFileSync(join(out, 'manifest.json'), 'utf8'), manifest);
  const after = snapshot(out);
  for (const [p, s] of before) if (!/(manifest|recipe|\.csv)/.test(p)) assert.is(after.get(p), s, p);
  assert.equal([...after.keys()].sort(), [...before.keys()].sort());
});

test('a damaged or half-present clip is made again on re-run', async () => {
  const { fixture, out } = await preparedCremaD();
  const m0 = readFileSync(join(out, 'manifest.json'), 'utf8');
  const name = (JSON.parse(m0) as Manifest).items[3]!.name;
  const jpg = join(out, 'visual', name, 'frame_00001.jpg');
  writeFileSync(jpg, readFileSync(jpg).subarray(0, 100));
  const r = await cli('prepare', 'crema-d', '--src', fixture.src, '--out', out);
  assert.is(r.code, 0, r.err);
  assert.match(r.err, `${name}: ${name}: frame_00001.jpg is not a whole JPEG; making it again`);
  assert.match(r.out, '1 made, 17 kept');
  assert.is(readFileSync(join(out, 'manifest.json'), 'utf8'), m0); // ffmpeg is deterministic: the same bytes again
  // Frames without their WAV (a crash between the two renames): made again too.
  const other = (JSON.parse(m0) as Manifest).items[5]!.name;
  rmSync(join(out, 'audio', `${other}.wav`));
  const again = await cli('prepare', 'crema-d', '--src', fixture.src, '--out', out, '--quiet');
  assert.is(again.code, 0, again.err);
  assert.match(again.out, '1 made, 17 kept');
  assert.is(readFileSync(join(out, 'manifest.json'), 'utf8'), m0);
});

test('an interrupted run leaves whole clips only (no temporaries, no manifest); the next run finishes it', async () => {
  const { fixture } = await preparedCremaD();
  const out = join(root, 'out-interrupted');
  const stop = new AbortController();
  let finished = 0;
  const run = prepare({ dataset: 'crema-d', src: fixture.src, out, jobs: 2, signal: stop.signal, log: () => {} });
  // Abort once a few clips are in place (polled), as Ctrl-C would.
  const poll = setInterval(() => {
    try {
      finished = readdirSync(join(out, 'audio')).filter((f) => !f.startsWith('.tmp-')).length;
    } catch {
      finished = 0;
    }
    if (finished >= 3) stop.abort();
  }, 20);
  try {
    await run;
    assert.unreachable('prepare finished despite the abort');
  } catch (e) {
    assert.ok(e instanceof PrepareInterrupted, String(e));
  } finally {
    clearInterval(poll);
  }
  assert.not.ok(existsSync(join(out, 'manifest.json')));
  assert.equal(temporaries(out), []);
  const kept = readdirSync(join(out, 'audio')).length;
  assert.ok(kept >= 3 && kept < 18, `${kept} clips kept`);
  const r = await cli('prepare', 'crema-d', '--src', fixture.src, '--out', out, '--quiet');
  assert.is(r.code, 0, r.err);
  assert.match(r.out, `${18 - kept} made, ${kept} kept`);
});

test('missing ffmpeg: says what to install, creates nothing', async () => {
  const { fixture } = await preparedCremaD();
  const out = join(root, 'no-ffmpeg');
  const saved = process.env.FFMPEG;
  process.env.FFMPEG = join(root, 'nonexistent-ffmpeg');
  try {
    const r = await cli('prepare', 'crema-d', '--src', fixture.src, '--out', out);
    assert.is(r.code, 1);
    assert.match(r.err, 'apt-get install ffmpeg');
  } finally {
    if (saved === undefined) delete process.env.FFMPEG;
    else process.env.FFMPEG = saved;
  }
  assert.not.ok(existsSync(out));
});

test('a source tree that is not the layout: the first missing path is named, nothing created', async () => {
  const { fixture } = await preparedCremaD();
  const bad = join(root, 'crema-no-video');
  cpSync(fixture.src, bad, { recursive: true });
  rmSync(join(bad, 'VideoFlash'), { recursive: true });
  const out = join(root, 'out-bad-layout');
  let r = await cli('prepare', 'crema-d', '--src', bad, '--out', out);
  assert.is(r.code, 1);
  assert.match(r.err, `${join(bad, 'VideoFlash')} is missing (expected AudioWAV/*.wav and VideoFlash/*.flv`);
  r = await cli('prepare', 'ave', '--src', fixture.src, '--out', out);
  assert.match(r.err, `${join(fixture.src, 'AVE')} is missing`);
  assert.not.ok(existsSync(out));
  r = await cli('prepare', 'kinetics', '--src', fixture.src, '--out', out);
  assert.is(r.code, 2);
  assert.match(r.err, 'crema-d or ave');
});

test(
  'a corrupt WAV: skipped and counted (default), or the run fails naming it with nothing half-written ' +
    '(--on-corrupt fail)',
  async () => {
    const f = makeCremaD('crema-corrupt', 4);
    // A clip the seeded split puts in train, so that its class keeps a training clip without it.
    const byClass = new Map(
      [...new Set(f.clips.values())].map((c) => [c, [...f.clips].filter(([, k]) => k === c).map(([n]) => n)]),
    );
    const split = stratifiedSplit(byClass, 0, { val: 0.1, test: 0.1 }, ['val', 'test']);
    const victim = [...split].find(([n, s]) => s === 'train' && n !== f.longClip && n !== f.shortClip)![0];
    const wav = join(f.src, 'AudioWAV', `${victim}.wav`);
    writeFileSync(wav, Buffer.from('RIFF\x00\x00\x00\x00WAVEjunkjunkjunk'));
    const failed = join(root, 'out-corrupt-fail');
    let r = await cli('prepare', 'crema-d', '--src', f.src, '--out', failed, '--on-corrupt', 'fail', '--jobs', '1');
    assert.is(r.code, 1);
    assert.match(r.err, wav);
    assert.ok(
      !existsSync(failed) || (!existsSync(join(failed, 'manifest.json')) && temporaries(failed).length === 0),
      'no manifest, no temporaries',
    );
    const out = join(root, 'out-corrupt-skip');
    r = await cli('prepare', 'crema-d', '--src', f.src, '--out', out, '--quiet');
    assert.is(r.code, 0, r.err);
    assert.match(r.out, '1 skipped');
    const m = readManifest(out);
    assert.is(m.items.length, 23);
    assert.is(m.skipped.length, 1);
    assert.is(m.skipped[0]!.name, victim);
    assert.match(m.skipped[0]!.reason, wav);
    assert.not.ok(existsSync(join(out, 'audio', `${victim}.wav`)));
  },
);

test('classes missing from a split: named, nothing created', async () => {
  const { fixture } = await preparedCremaD();
  const names = [...fixture.clips.keys()].sort();
  const train = join(root, 'train.csv');
  const testCsv = join(root, 'test.csv');
  const row = (n: string) => `${n},${fixture.clips.get(n)}\n`;
  writeFileSync(
    train,
    names
      .filter((n) => n.startsWith('1001') || n.startsWith('1002'))
      .map(row)
      .join(''),
  );
  writeFileSync(
    testCsv,
    names
      .filter((n) => n.startsWith('1003') && !n.includes('SAD'))
      .map(row)
      .join(''),
  );
  const out = join(root, 'out-missing-class');
  const r = await cli(
    'prepare',
    'crema-d',
    '--src',
    fixture.src,
    '--out',
    out,
    '--train-csv',
    train,
    '--test-csv',
    testCsv,
  );
  assert.is(r.code, 1);
  assert.match(r.err, "class 'SAD' has no clip in the test split");
  assert.not.ok(existsSync(out));
  // With every class in both CSVs, val is carved from train.csv (one per class here).
  writeFileSync(
    testCsv,
    names
      .filter((n) => n.startsWith('1003'))
      .map(row)
      .join(''),
  );
  const ok = await cli(
    'prepare',
    'crema-d',
    '--src',
    fixture.src,
    '--out',
    out,
    '--train-csv',
    train,
    '--test-csv',
    testCsv,
    '--quiet',
  );
  assert.is(ok.code, 0, ok.err);
  const m = readManifest(out);
  assert.is(m.recipe.split, 'csv');
  for (const it of m.items) assert.is(it.split === 'test', it.name.startsWith('1003'), it.name);
});

test('ave: official lists, class names with commas, counts; a missing list is named', async () => {
  const a = makeAve('ave');
  const out = join(root, 'out-ave');
  const r = await cli('prepare', 'ave', '--src', a.src, '--out', out, '--quiet');
  assert.is(r.code, 0, r.err);
  const m = readManifest(out);
  assert.equal(m.classes, [...AVE_CLASSES].sort());
  assert.is(m.recipe.split, 'official');
  for (const s of ['train', 'val', 'test'] as const) assert.equal(Object.values(m.counts[s]), [1, 1, 1]);
  // vid<class><split>
  for (const it of m.items) assert.is(it.split, ['train', 'val', 'test'][Number(it.name[4])], it.name);
  assert.match(readFileSync(join(out, 'train.csv'), 'utf8'), 'vid10-x_Y,"Male speech, man speaking"');
  rmSync(join(a.src, 'valSet.txt'));
  const bad = await cli('prepare', 'ave', '--src', a.src, '--out', join(root, 'out-ave-2'));
  assert.is(bad.code, 1);
  assert.match(bad.err, `${join(a.src, 'valSet.txt')} is missing`);
});

test.run();
