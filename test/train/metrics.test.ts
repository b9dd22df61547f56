// Metrics against values computed by hand.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { accuracy, argmaxRows, confusionMatrix, macroF1 } from '../../train/run/metrics.ts';

const test = suite('metrics');

test('accuracy, confusion matrix and macro-F1 on a hand-checked example', () => {
  const truth = [0, 0, 0, 1, 1, 2, 2, 2];
  const pred = [0, 0, 1, 1, 2, 2, 2, 0];
  assert.is(accuracy(pred, truth), 5 / 8);
  const m = confusionMatrix(pred, truth, 4);
  assert.equal(m, [
    [2, 1, 0, 0],
    [0, 1, 1, 0],
    [1, 0, 2, 0],
    [0, 0, 0, 0],
  ]);
  // class 0: P = 2/3, R = 2/3 → F1 = 2/3; class 1: P = 1/2, R = 1/2 → 1/2; class 2: P = 2/3, R = 2/3 → 2/3;
  // class 3 never occurs: left out. Macro-F1 = (2/3 + 1/2 + 2/3)/3 = 11/18.
  assert.ok(Math.abs(macroF1(m) - 11 / 18) < 1e-12);
  // A class that occurs but is never predicted right counts as 0.
  assert.ok(Math.abs(macroF1(confusionMatrix([1, 1], [0, 1], 2)) - (0 + 2 / 3) / 2) < 1e-12);
});

test('argmax over rows (first maximum wins) and bad input', () => {
  assert.equal([...argmaxRows([0.1, 0.7, 0.2, 3, 3, -1], 3)], [1, 0]);
  assert.throws(() => confusionMatrix([0, 5], [0, 1], 3), /item 1 has label 1, prediction 5 outside \[0, 3\)/);
  assert.throws(() => accuracy([0], [0, 1]), /1 predictions for 2 labels/);
});

test.run();
