// The `mmpareto` CLI end to end on the synthetic audio-visual set (seconds): train → run
// directory (config.json, metrics.jsonl, safetensors checkpoints, report.html), eval, report,
// resume = uninterrupted (bitwise), and the errors a script relies on (exit codes 1 and 2, and
// nothing already written lost). Runs in-process on the test device, plus one subprocess for
// the bin's own exit code.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { device } from '../helpers.ts';
import { liveTensors } from '../../engine/index.ts';
import { main, parseTrainArgs } from '../../train/cli/main.ts';
import { TrainingInterrupted, train, type ProgressState } from '../../train/run/trainer.ts';
import { readCheckpoint } from '../../train/run/checkpoint.ts';
import { formatDuration, progressLine } from '../../train/cli/progress.ts';
import { readRecords, type EvalRecord, type FinalRecord } from '../../train/run/run-log.ts';

const test = suite('cli');
const root = mkdtempSync(join(tmpdir(), 'mmpareto-cli-'));

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => (out += `${s}\n`), err: (s) => (err += `${s}\n`) }, device);
  return { code, out, err };
}
// 256 training items, batch 16: 16 steps an epoch.
const small = (out: string, ...extra: string[]) => [
  'train',
  '--dataset',
  'synthetic-av',
  '--batch-size',
  '16',
  '--lr',
  '0.02',
  '--log-every',
  '5',
  '--quiet',
  '--out',
  out,
  ...extra,
];

test('--help documents every flag; usage errors exit 2 and list the valid names', async () => {
  const h = await run('--help');
  assert.is(h.code, 0);
  for (const flag of [
    '--dataset',
    '--model',
    '--method',
    '--epochs',
    '--batch-size',
    '--optimizer',
    '--lr',
    '--momentum',
    '--weight-decay',
    '--lr-schedule',
    '--gamma',
    '--fusion',
    '--seed',
    '--data-dir',
    '--train-limit',
    '--val-size',
    '--log-every',
    '--on-nonfinite',
    '--out',
    '--resume',
    '--no-report',
    '--checkpoint',
    '--split',
    '--quiet',
    '--help',
    'Exit codes',
  ])
    assert.ok(h.out.includes(flag), `help mentions ${flag}`);
  const cases: [string[], string[]][] = [
    [
      ['train', '--dataset', 'mnist'],
      ["unknown 'mnist'", 'cg-fmnist, multi-fmnist, synthetic-av'],
    ],
    [['train', '--model', 'vgg'], ['cnn, resnet18, mbt']],
    [
      ['train', '--method', 'pareto'],
      ['uniform, one-joint-loss, mgda, mmpareto, mmpareto-official, pcgrad, gradnorm, metabalance'],
    ],
    [
      ['train', '--epochs', '0'],
      ['--epochs', 'integer >= 1'],
    ],
    [['train', '--lr', 'fast'], ['--lr']],
    [['train', '--bogus'], ['bogus']],
    [['fly'], ["unknown command 'fly'"]],
    [['report'], ['one or more run directories']],
  ];
  for (const [argv, fragments] of cases) {
    const r = await run(...argv);
    assert.is(r.code, 2, argv.join(' '));
    for (const f of fragments) assert.ok(r.err.includes(f), `'${argv.join(' ')}': "${r.err}" lacks "${f}"`);
  }
});

let finalA: FinalRecord;
test('train 2 epochs: exit 0, run directory complete, records well-formed, checkpoint in PyTorch names', async () => {
  const before = liveTensors.count;
  const dir = join(root, 'a');
  const r = await run(...small(dir, '--epochs', '2'));
  assert.is(r.code, 0, r.err);
  for (const f of ['config.json', 'metrics.jsonl', 'latest.safetensors', 'best.safetensors', 'report.html'])
    assert.ok(existsSync(join(dir, f)), f);
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.is(config.method, 'mmpareto');
  assert.is(config.device, device.adapterName);
  const recs = readRecords(join(dir, 'metrics.jsonl'));
  const steps = recs.filter((x) => x.type === 'step');
  // 16 steps an epoch: one record per step (read back every 5 steps and at the epoch's end).
  assert.equal(
    steps.map((x) => x.step),
    Array.from({ length: 32 }, (_, i) => i + 1),
  );
  assert.equal(
    steps.map((x) => x.epoch),
    Array.from({ length: 32 }, (_, i) => (i < 16 ? 1 : 2)),
  );
  for (const s of steps) assert.equal(Object.keys(s.loss).sort(), ['audio', 'mm', 'visual']);
  const tel = recs.filter((x) => x.type === 'telemetry');
  assert.is(tel.length, 2 * 32, 'one telemetry record per step and encoder');
  for (const t of tel)
    assert.ok(t.cos >= -1 - 1e-6 && t.cos <= 1 + 1e-6 && t.norm_m > 0 && t.norm_u > 0, 'telemetry values');
  const evals = recs.filter((x): x is EvalRecord => x.type === 'eval');
  assert.equal(
    evals.map((e) => [e.split, e.epoch]),
    [
      ['val', 1],
      ['val', 2],
    ],
  );
  const finals = recs.filter((x): x is FinalRecord => x.type === 'final');
  assert.is(finals.length, 1);
  finalA = finals[0]!;
  const bestVal = Math.max(...evals.map((e) => e.acc.mm!));
  assert.is(finalA.best_val, bestVal, 'best by validation');
  assert.is(finalA.best_epoch, evals.find((e) => e.acc.mm === bestVal)!.epoch);
  assert.is(finalA.test.split, 'test');
  const cm = finalA.test.confusion;
  assert.is(
    cm.flat().reduce((a, b) => a + b, 0),
    64,
    'confusion matrix counts the 64 test items',
  );
  assert.is(cm.reduce((a, row, i) => a + row[i]!, 0) / 64, finalA.test.acc.mm, 'accuracy = trace / n');
  assert.ok(r.out.includes('report: '), 'prints where the report is');
  const ckpt = readCheckpoint(join(dir, 'latest.safetensors'));
  assert.is(ckpt.meta.epoch, 2);
  assert.is(ckpt.meta.step, 32);
  for (const k of [
    'encoders.audio.conv1.weight',
    'encoders.visual.bn0.running_mean',
    'head.weight',
    'heads.audio.bias',
  ])
    assert.ok(ckpt.model.has(k), k);
  assert.ok(
    ckpt.optimizer.has('0.momentum_buffer') && ckpt.integrator.has('state'),
    'optimizer and integrator state saved',
  );
  const html = readFileSync(join(dir, 'report.html'), 'utf8');
  assert.ok(
    html.startsWith('<!DOCTYPE html>') && (html.match(/<svg/g) ?? []).length >= 5,
    'report renders with charts',
  );
  assert.is(liveTensors.count, before, 'no leaks');
});

test('resume: 1 epoch, then --resume --epochs 2 = 2 uninterrupted epochs (bitwise weights, same metrics)', async () => {
  const dir = join(root, 'b');
  assert.is((await run(...small(dir, '--epochs', '1', '--no-report'))).code, 0);
  // A crash after the checkpoint: a half-written line at the end of the log must not break resume.
  writeFileSync(join(dir, 'metrics.jsonl'), `${readFileSync(join(dir, 'metrics.jsonl'), 'utf8')}{"type":"step","ep`);
  const r = await run('train', '--resume', '--epochs', '2', '--quiet', '--no-report', '--out', dir);
  assert.is(r.code, 0, r.err);
  const a = readCheckpoint(join(root, 'a', 'latest.safetensors'));
  const b = readCheckpoint(join(dir, 'latest.safetensors'));
  assert.equal([...b.model.keys()], [...a.model.keys()]);
  for (const [k, t] of a.model)
    assert.ok(Buffer.from(b.model.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer)), `${k} identical`);
  for (const [k, v] of a.optimizer)
    assert.ok(Buffer.from(b.optimizer.get(k)!.buffer).equals(Buffer.from(v.buffer)), `optimizer ${k} identical`);
  const recsA = readRecords(join(root, 'a', 'metrics.jsonl')).filter((x) => x.type !== 'step' && x.type !== 'final');
  const recsB = readRecords(join(dir, 'metrics.jsonl')).filter((x) => x.type !== 'step' && x.type !== 'final');
  assert.equal(recsB, recsA, 'telemetry and evaluations equal');
  const finalB = readRecords(join(dir, 'metrics.jsonl')).find((x): x is FinalRecord => x.type === 'final')!;
  assert.equal(finalB.test, finalA.test, 'same final test result');
  // Resume refuses a changed setting other than --epochs.
  const bad = await run('train', '--resume', '--epochs', '3', '--lr', '0.5', '--out', dir);
  assert.is(bad.code, 2);
  assert.ok(bad.err.includes('--lr 0.5 differs'), bad.err);
});

test('interrupted mid-epoch (as by Ctrl-C): TrainingInterrupted, then --resume = uninterrupted', async () => {
  const dir = join(root, 'g');
  const stop = new AbortController();
  const config = parseTrainArgs(small(dir, '--epochs', '2', '--no-report').slice(1));
  const events = {
    progress: (p: ProgressState) => {
      if (p.epoch === 2 && p.step === 7) stop.abort();
    },
  };
  const before = liveTensors.count;
  try {
    await train(config, { device, signal: stop.signal, events });
    assert.unreachable('should be interrupted');
  } catch (e) {
    assert.ok(e instanceof TrainingInterrupted, String(e));
    assert.ok(
      (e as Error).message.includes(
        `interrupted after step 23 (epoch 2, batch 7 of 16); latest.safetensors holds epoch 1: 'mmpareto train ` +
          `--resume --out ${dir}' continues from there, repeating the 7 step(s) of epoch 2`,
      ),
      (e as Error).message,
    );
  }
  assert.is(liveTensors.count, before, 'no leaks');
  // It stopped right after step 23 (the step in progress), logging steps 17–23; resuming drops them and replays epoch 2
  // exactly.
  const logged = readRecords(join(dir, 'metrics.jsonl'))
    .filter((x) => x.type === 'step')
    .map((x) => x.step);
  assert.is(Math.max(...logged), 23);
  assert.not.ok(existsSync(join(dir, 'lock')), 'lock released');
  const r = await run('train', '--resume', '--quiet', '--no-report', '--out', dir);
  assert.is(r.code, 0, r.err);
  const a = readCheckpoint(join(root, 'a', 'latest.safetensors'));
  const g = readCheckpoint(join(dir, 'latest.safetensors'));
  for (const [k, t] of a.model)
    assert.ok(Buffer.from(g.model.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer)), `${k} identical`);
  const strip = (d: string) =>
    readRecords(join(d, 'metrics.jsonl'))
      .filter((x) => x.type !== 'final')
      .map((x) => (x.type === 'step' ? { ...x, time_s: 0 } : x));
  assert.equal(strip(dir), strip(join(root, 'a')), 'the log reads as one uninterrupted run');
});

test('eval: the best checkpoint on test reproduces the final record; report compares runs', async () => {
  const r = await run('eval', join(root, 'a'), '--split', 'test', '--quiet');
  assert.is(r.code, 0, r.err);
  const rec = JSON.parse(r.out) as EvalRecord;
  assert.equal(rec.acc, finalA.test.acc);
  assert.equal(rec.confusion, finalA.test.confusion);
  const out = join(root, 'compare.html');
  const rep = await run('report', join(root, 'a'), join(root, 'b'), '--out', out);
  assert.is(rep.code, 0, rep.err);
  assert.ok(
    readFileSync(out, 'utf8').includes(join(root, 'b')) || readFileSync(out, 'utf8').includes('mmpareto'),
    'both runs on the page',
  );
});

test('bad input: exit 1 with a clear message, nothing already written lost', async () => {
  const dir = join(root, 'a');
  const stamp = statSync(join(dir, 'latest.safetensors')).mtimeMs;
  const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8');
  const again = await run(...small(dir, '--epochs', '1'));
  assert.is(again.code, 1);
  assert.ok(again.err.includes('already holds a run') && again.err.includes('--resume'), again.err);
  assert.is(statSync(join(dir, 'latest.safetensors')).mtimeMs, stamp, 'checkpoint untouched');
  assert.is(readFileSync(join(dir, 'metrics.jsonl'), 'utf8'), metrics, 'log untouched');

  const missing = await run('train', '--data-dir', join(root, 'nowhere'), '--out', join(root, 'c'), '--quiet');
  assert.is(missing.code, 1);
  assert.not.ok(existsSync(join(root, 'c')), 'no empty run directory left behind');
  assert.ok(
    missing.err.includes(`${join(root, 'nowhere')} does not exist`) &&
      missing.err.includes('dataset-fashion-mnist') &&
      missing.err.includes('--data-dir'),
    missing.err,
  );

  writeFileSync(join(root, 'file'), 'x');
  const unwritable = await run(...small(join(root, 'file', 'run'), '--epochs', '1'));
  assert.is(unwritable.code, 1);
  assert.ok(unwritable.err.includes(`${join(root, 'file')} is a file, not a directory`), unwritable.err);

  const big = await run(...small(join(root, 'd'), '--batch-size', '1000'));
  assert.is(big.code, 1);
  assert.ok(big.err.includes('1000') && big.err.includes('256'), big.err);

  // A checkpoint of another model: sum fusion has a (4, 512) multimodal head, concat (4, 1024).
  const other = join(root, 'e');
  assert.is((await run(...small(other, '--epochs', '1', '--fusion', 'sum', '--no-report'))).code, 0);
  const mismatch = await run('eval', dir, '--checkpoint', join(other, 'best.safetensors'));
  assert.is(mismatch.code, 1);
  assert.ok(mismatch.err.includes("'head.weight' is [4, 512] in the checkpoint, [4, 1024] in the model"), mismatch.err);
  const nockpt = await run('eval', join(root, 'nowhere'));
  assert.is(nockpt.code, 1);
  assert.ok(nockpt.err.includes('not a run directory'), nockpt.err);
});

test('adamw + cosine schedule + gradnorm: lr follows 0.5·lr·(1 + cos(π·t/T)), AdamW moments checkpointed', async () => {
  const dir = join(root, 'f');
  const r = await run(
    ...small(
      dir,
      '--epochs',
      '1',
      '--optimizer',
      'adamw',
      '--lr-schedule',
      'cosine',
      '--method',
      'gradnorm',
      '--no-report',
    ),
  );
  assert.is(r.code, 0, r.err);
  const steps = readRecords(join(dir, 'metrics.jsonl')).filter((x) => x.type === 'step');
  // Step s (1-based) used lr at t = s − 1 of T = 16.
  for (const s of steps)
    assert.ok(
      Math.abs(s.lr - 0.5 * 0.02 * (1 + Math.cos((Math.PI * (s.step - 1)) / 16))) < 1e-12,
      `lr at step ${s.step}: ${s.lr}`,
    );
  const ckpt = readCheckpoint(join(dir, 'latest.safetensors'));
  assert.ok(
    ckpt.optimizer.has('0.exp_avg') && ckpt.optimizer.has('0.exp_avg_sq') && ckpt.optimizer.has('step'),
    'AdamW state saved',
  );
  assert.equal(Array.from(ckpt.optimizer.get('step')!).slice(0, 3), [16, 16, 16], 'every parameter took 16 steps');
});

test('progress line: epoch, step, loss, steps/s and ETA', () => {
  const line = progressLine({
    epoch: 2,
    epochs: 5,
    step: 30,
    steps: 120,
    loss: 0.73125,
    stepsPerSecond: 2,
    remaining: 250,
  });
  for (const f of ['epoch 2/5', ' 30/120', 'loss 0.731', '2.0 steps/s', 'ETA 2:05'])
    assert.ok(line.includes(f), `"${line}" lacks "${f}"`);
  assert.is(formatDuration(3725), '1:02:05');
  assert.is(formatDuration(Infinity), '--:--');
});

test('the bin: exit code 2 on bad usage, 0 on --help (a subprocess, no GPU needed)', () => {
  const bin = join(import.meta.dirname, '..', '..', 'bin', 'mmpareto.mjs');
  const help = execFileSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
  assert.ok(help.includes('mmpareto train'));
  try {
    execFileSync(process.execPath, [bin, 'train', '--method', 'nope'], { encoding: 'utf8', stdio: 'pipe' });
    assert.unreachable('should exit 2');
  } catch (e) {
    const err = e as { status: number; stderr: string };
    assert.is(err.status, 2);
    assert.ok(err.stderr.includes("unknown 'nope'"), err.stderr);
  }
});

test.after(() => rmSync(root, { recursive: true, force: true }));
test.run();
