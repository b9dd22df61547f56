// The trainer's evaluation on a two-task model whose heads have different class counts (3 and
// 4): per-head accuracy, macro-F1, mean cross-entropy and the main head's confusion matrix,
// against the same quantities computed on the host (float64) from the model's own logits.
// Batches of 5 over 13 items also cover a last, partial batch.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, randArray } from '../helpers.ts';
import { liveTensors, noGrad, tensor } from '../../engine/index.ts';
import { buildModel } from '../../models/registry.ts';
import type { Dataset } from '../../train/data/dataset.ts';
import { accuracy, argmaxRows, confusionMatrix, macroF1 } from '../../train/run/metrics.ts';
import { evaluate, score } from '../../train/run/evaluate.ts';
import type { Setup } from '../../train/run/setup.ts';

const test = suite('evaluate');

test('two tasks of 3 and 4 classes: accuracy, macro-F1, loss and confusion match a host computation', async () => {
  const before = liveTensors.count;
  const n = 13;
  const images = Float32Array.from(randArray(n * 64, 1, 0, 1));
  const left = Int32Array.from({ length: n }, (_, i) => i % 3);
  const right = Int32Array.from({ length: n }, (_, i) => (i * 7) % 4);
  const split = { n, inputs: { image: images }, labels: { left, right } };
  const dataset: Dataset = {
    name: 'toy',
    inputs: { image: [1, 8, 8] },
    tasks: { left: 3, right: 4 },
    train: split,
    val: split,
    test: split,
    description: 'toy',
  };
  const model = buildModel('cnn', dataset, { seed: 3 });
  const setup: Setup = { dataset, model, normalize: { image: { mean: [0.5], std: [0.25] } } };
  const rec = await evaluate(setup, split, 'val', 1, 10, 5);
  assert.ok(model.training, 'evaluate restores training mode');

  // Reference: the same normalised inputs through the model in eval mode, all items at once.
  model.eval();
  const x = tensor(
    images.map((v) => (v - 0.5) / 0.25),
    [n, 1, 8, 8],
  );
  const out = noGrad(() => model.logits({ image: x }));
  for (const [task, labels, k] of [
    ['left', left, 3],
    ['right', right, 4],
  ] as const) {
    const logits = (await out[task]!.toArray()) as Float32Array;
    const pred = argmaxRows(logits, k);
    assert.is(rec.acc[task], accuracy(pred, labels), `${task} accuracy`);
    assert.is(rec.macro_f1[task], macroF1(confusionMatrix(pred, labels, k)), `${task} macro-F1`);
    let loss = 0;
    for (let i = 0; i < n; i++) {
      const row = Array.from(logits.subarray(i * k, (i + 1) * k));
      const m = Math.max(...row);
      loss += Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) + m - row[labels[i]!]!;
    }
    // Batches of 5 vs one batch of 13 run the same per-item arithmetic in a different grid:
    // logits agree to float32 rounding, so the mean loss to ~1e-6 relative.
    assertClose([rec.loss[task]!], [loss / n], 1e-5, 1e-6, `${task} loss`);
    if (task === 'left') assert.equal(rec.confusion, confusionMatrix(pred, labels, 3), 'main head confusion');
  }
  assert.is(score(rec), (rec.acc.left! + rec.acc.right!) / 2, 'no mm head: the score is the mean over tasks');
  assert.equal([rec.type, rec.split, rec.epoch, rec.step], ['eval', 'val', 1, 10]);
  for (const t of [x, ...Object.values(out)]) t.dispose();
  model.dispose();
  assert.is(liveTensors.count, before, 'no leaks');
});

test.run();
