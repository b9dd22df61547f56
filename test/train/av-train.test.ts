// `mmpareto train --dataset crema-d --data-dir DIR --model resnet18|mbt --method mmpareto` end to
// end on the prepared fixture at --image-size 32: two training steps (4 clips, batch 2), one
// validation and one test evaluation, finite losses and MMPareto telemetry for both encoders.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { main } from '../../train/cli/main.ts';
import { readRecords } from '../../train/run/run-log.ts';
import { device } from '../helpers.ts';
import { preparedCremaD, root } from '../fixtures/av.ts';
import { buildModel, type MBTClassifier } from '../../models/registry.ts';
import { throwsWith } from '../helpers.ts';

const test = suite('av-train');

for (const model of ['resnet18', 'mbt']) {
  test(`${model}: 2 MMPareto steps on CREMA-D-shaped data (audio STFT 257×188, 2 frames at 32²)`, async () => {
    const { out: data } = await preparedCremaD();
    const run = join(root, `run-${model}`);
    let err = '';
    let out = '';
    const code = await main(
      [
        'train',
        '--dataset',
        'crema-d',
        '--data-dir',
        data,
        '--model',
        model,
        '--method',
        'mmpareto',
        '--image-size',
        '32',
        '--epochs',
        '1',
        '--batch-size',
        '2',
        '--train-limit',
        '4',
        '--log-every',
        '1',
        '--quiet',
        '--no-report',
        '--out',
        run,
      ],
      { out: (s) => (out += `${s}\n`), err: (s) => (err += `${s}\n`) },
      device,
    );
    assert.is(code, 0, err);
    assert.match(err, 'audio log(|STFT| + 1e-7), n_fft 512, hop 353');
    assert.match(out, 'test (best epoch 1 by validation)');
    const recs = readRecords(join(run, 'metrics.jsonl'));
    const steps = recs.filter((r) => r.type === 'step');
    assert.is(steps.length, 2);
    for (const s of steps)
      for (const v of Object.values(s.loss)) assert.ok(Number.isFinite(v) && v > 0, JSON.stringify(s.loss));
    const tele = recs.filter((r) => r.type === 'telemetry');
    assert.equal([...new Set(tele.map((r) => r.group))].sort(), ['audio', 'visual']);
    assert.ok(tele.every((r) => Number.isFinite(r.cos) && Number.isFinite(r.norm_m)));
    const evals = recs.filter((r) => r.type === 'eval');
    assert.equal(
      evals.map((r) => r.split),
      ['val'],
    );
    const fin = recs.find((r) => r.type === 'final');
    assert.ok(fin && fin.type === 'final' && fin.test.split === 'test');
  });
}

test('models for frame inputs: mbt tokens per stream at the full recipe; cnn refused', () => {
  const shape = { name: 'crema-d', inputs: { audio: [1, 257, 188], visual: [2, 3, 224, 224] }, tasks: { label: 6 } };
  const m = buildModel('mbt', shape, { seed: 0 }) as MBTClassifier;
  // Audio: 16 × 16 patches, the partial last row and column dropped (16 × 11); visual: 2 frames of 14 × 14.
  assert.is(m.mbt.streams.audio!.tokens, 16 * 11);
  assert.is(m.mbt.streams.visual!.tokens, 2 * 14 * 14);
  m.dispose();
  throwsWith(() => buildModel('cnn', shape, { seed: 0 }), "model 'cnn' takes single images", 'use resnet18 or mbt');
});

test.run();
