// The trainer at a NaN/±Inf (train(config, { setup }) with a hand-corrupted model or data set):
// 'stop' ends at the first bad step with a message naming the step, the losses (NaN, not null)
// and the encoder, and leaves the state before that step — bitwise — although the host
// recorded more steps before it read the verdict; 'skip' drops the bad steps and trains on; NaN
// in the data is refused by the loader, naming the item. And a soak: many guarded steps with
// flat memory.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { device, randTensor } from '../helpers.ts';
import { MultimodalStep, NonFiniteGuard, SGD, liveTensors, tensor, tidy, writeTensor } from '../../engine/index.ts';
import { parseTrainArgs } from '../../train/cli/main.ts';
import { readCheckpoint } from '../../train/run/checkpoint.ts';
import { buildSetup, type Setup } from '../../train/run/setup.ts';
import { Loader } from '../../train/data/loader.ts';
import { writeReport } from '../../train/report/report.ts';
import { readRecords, type StepRecord } from '../../train/run/run-log.ts';
import { NonFiniteError, train } from '../../train/run/trainer.ts';
import { LateFusion } from '../fixtures/late-fusion.ts';

const test = suite('faults-nonfinite');
const root = mkdtempSync(join(tmpdir(), 'mmpareto-nonfinite-'));
// 96 training items, batch 16: 6 steps an epoch.
const config = (out: string, ...extra: string[]) =>
  parseTrainArgs([
    '--dataset',
    'synthetic-av',
    '--train-limit',
    '96',
    '--batch-size',
    '16',
    '--lr',
    '0.02',
    '--log-every',
    '5',
    '--quiet',
    '--no-report',
    '--out',
    out,
    ...extra,
  ]);

async function hostState(s: Setup): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const [k, t] of s.model.stateDict())
    if (!k.endsWith('num_batches_tracked')) out.set(k, Buffer.from(((await t.toArray()) as Float32Array).buffer));
  return out;
}

test(
  'stop: a weight that overflows at step 1 — the message names step, losses (NaN) and encoder; steps 2–5, ' +
    'recorded before the readback, changed nothing, running statistics included (bitwise)',
  async () => {
    const dir = join(root, 'stop');
    const c = config(dir, '--epochs', '2');
    const setup = buildSetup(c);
    const w = setup.model.stateDict().get('encoders.audio.conv1.weight')!;
    const big = Float32Array.from(await w.toArray());
    big[0] = 3e38; // float32 max is 3.4e38: the first conv overflows
    writeTensor(w, big);
    const before = await hostState(setup);
    const logs: string[] = [];
    try {
      await train(c, { device, setup, events: { log: (s) => logs.push(s) } });
      assert.unreachable('should stop');
    } catch (e) {
      assert.instance(e, NonFiniteError, String(e));
      const msg = (e as Error).message;
      for (const f of [
        'training stopped at step 1 (epoch 1): non-finite losses mm NaN, audio NaN (visual ',
        "non-finite gradients in encoder 'audio'.",
        'Nothing of step 1 or of the 4 step(s) after it was applied',
        `are in ${join(dir, 'nonfinite.safetensors')}`,
        "no epoch finished yet: 'mmpareto train --resume",
      ])
        assert.ok(msg.includes(f), `"${msg}" lacks "${f}"`);
      assert.not.ok(msg.includes('null'), msg);
    }
    // The model in memory and the saved snapshot: the state before step 1, bitwise; momentum still zero.
    const after = await hostState(setup);
    for (const [k, v] of before) assert.ok(after.get(k)!.equals(v), `${k} unchanged in memory`);
    const snap = readCheckpoint(join(dir, 'nonfinite.safetensors'));
    assert.is(snap.meta.step, 0);
    for (const [k, v] of before)
      assert.ok(Buffer.from(snap.model.get(k)!.data.buffer).equals(v), `${k} in nonfinite.safetensors`);
    for (const [k, v] of snap.optimizer)
      assert.ok(
        v.every((x) => x === 0),
        `optimizer ${k} untouched`,
      );
    const steps = readRecords(join(dir, 'metrics.jsonl')).filter((r) => r.type === 'step');
    assert.equal(
      steps.map((r) => r.step),
      [1],
      'only the bad step is logged; 2–5 were dropped',
    );
    assert.ok(
      readFileSync(join(dir, 'metrics.jsonl'), 'utf8').includes('"mm":null'),
      'JSON has no NaN: the log holds null, the message NaN',
    );
    assert.not.ok(existsSync(join(dir, 'lock')));
    setup.model.dispose();
  },
);

test(
  'skip: an item whose pixels overflow BatchNorm is in one batch per epoch — those steps are dropped and ' +
    'logged, training finishes',
  async () => {
    const dir = join(root, 'skip');
    const c = config(dir, '--epochs', '2', '--on-nonfinite', 'skip');
    const setup = buildSetup(c); // normalisation statistics from the clean data
    const order = new Loader(setup.dataset.train, setup.dataset, {
      batchSize: 16,
      shuffle: true,
      seed: c.seed,
      dropLast: true,
    }).order(0);
    const item = order[0]!; // in epoch 1's first batch
    const audio = setup.dataset.train.inputs.audio!;
    const len = audio.length / setup.dataset.train.n;
    audio.fill(1e30, item * len, (item + 1) * len); // finite, passes every host check; its variance is not
    const order1 = new Loader(setup.dataset.train, setup.dataset, {
      batchSize: 16,
      shuffle: true,
      seed: c.seed,
      dropLast: true,
    }).order(1);
    const step2 = 6 + Math.floor(order1.indexOf(item) / 16) + 1;
    const logs: string[] = [];
    const final = await train(c, { device, setup, events: { log: (s) => logs.push(s) } });
    assert.ok(final.test.acc.mm! >= 0);
    const warnings = logs.filter((l) =>
      l.startsWith('warning: 1 step(s) dropped for non-finite values (--on-nonfinite skip)'),
    );
    assert.is(warnings.length, 2, logs.join('\n'));
    assert.ok(
      warnings[0]!.includes('step 1 (non-finite BatchNorm batch statistics (running statistics kept))'),
      warnings[0],
    );
    assert.ok(warnings[1]!.includes(`step ${step2} (`), warnings[1]);
    const steps = readRecords(join(dir, 'metrics.jsonl')).filter((r): r is StepRecord => r.type === 'step');
    assert.equal(
      steps.filter((r) => r.skipped).map((r) => r.step),
      [1, step2],
    );
    assert.is(steps.length, 12);
    const report = writeReport([dir], join(dir, 'report.html'));
    assert.ok(readFileSync(report.path, 'utf8').includes('<svg'), 'the report reads a log with dropped steps');
    setup.model.dispose();
  },
);

test('NaN in the data: the loader refuses the batch before upload, naming the item and the modality', async () => {
  const dir = join(root, 'nan-data');
  const c = config(dir, '--epochs', '1');
  const setup = buildSetup(c);
  const item = new Loader(setup.dataset.train, setup.dataset, {
    batchSize: 16,
    shuffle: true,
    seed: c.seed,
    dropLast: true,
  }).order(0)[20]!; // batch 1
  const visual = setup.dataset.train.inputs.visual!;
  visual[item * (visual.length / setup.dataset.train.n) + 7] = NaN;
  try {
    await train(c, { device, setup });
    assert.unreachable('should refuse');
  } catch (e) {
    assert.ok(
      (e as Error).message.includes(
        `Loader: item ${item} of the split (batch 1, modality 'visual') holds NaN at element 7 after normalisation`,
      ),
      (e as Error).message,
    );
  }
  assert.not.ok(existsSync(join(dir, 'lock')));
  setup.model.dispose();
});

test(
  'soak (the 2,000-step probe, scaled to 400 steps): ' +
    'guarded MMPareto steps with readbacks every 20 keep memory flat',
  async () => {
    const m = new LateFusion(4, 3, 9);
    const opt = new SGD(m.parameters(), { lr: 0.01, momentum: 0.9 });
    const running = m
      .namedBuffers()
      .filter(([k]) => !k.endsWith('num_batches_tracked'))
      .map(([, t]) => t);
    const guard = new NonFiniteGuard(device, { mode: 'skip', protect: running, ringSteps: 20 });
    const step = new MultimodalStep({
      method: 'mmpareto',
      encoders: { audio: m.audio.parameters(), visual: m.visual.parameters() },
      optimizer: opt,
      telemetrySteps: 20,
      guard,
    });
    const [a] = randTensor([3, 1, 8, 8], 1);
    const [v] = randTensor([3, 3, 6, 6], 2);
    const y = tensor(Int32Array.of(0, 1, 2), [3], { dtype: 'int32' });
    let marks: { tensors: number; bytes: number; buffers: number } | null = null;
    for (let i = 1; i <= 400; i++) {
      const losses = tidy(() => m.losses(a, v, y));
      step.step(losses);
      for (const l of Object.values(losses)) l.dispose();
      if (i % 20 === 0) {
        const verdict = await guard.read();
        await step.integrator!.telemetry.read();
        assert.is(verdict.badSteps, 0);
        const now = {
          tensors: liveTensors.count,
          bytes: device.pool.stats.bytesAllocated,
          buffers: device.pool.stats.buffersAllocated,
        };
        if (i === 40) marks = now; // after warm-up (the pool has every size class it needs)
        if (i > 40) assert.equal(now, marks, `step ${i}: live tensors and pool allocation flat`);
      }
    }
    for (const t of [a, v, y]) t.dispose();
    step.dispose();
    guard.dispose();
    opt.dispose();
    m.dispose();
  },
);

test.after(() => rmSync(root, { recursive: true, force: true }));
test.run();
