// Classification metrics on the host, from predicted and true labels: accuracy, the confusion
// matrix (rows = true class, columns = predicted), and macro-F1 (the unweighted mean over classes
// of 2·P·R/(P + R); a class with no true and no predicted items is left out, and a class with
// P + R = 0 otherwise counts as F1 = 0, as scikit-learn's f1_score(average='macro') with
// labels present in either array).
export function confusionMatrix(pred: ArrayLike<number>, truth: ArrayLike<number>, classes: number): number[][] {
  if (pred.length !== truth.length)
    throw new Error(`confusionMatrix: ${pred.length} predictions for ${truth.length} labels`);
  const m = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  for (let i = 0; i < pred.length; i++) {
    const t = truth[i]!;
    const p = pred[i]!;
    if (!(t >= 0 && t < classes && p >= 0 && p < classes))
      throw new Error(`confusionMatrix: item ${i} has label ${t}, prediction ${p} outside [0, ${classes})`);
    m[t]![p]!++;
  }
  return m;
}

export function accuracy(pred: ArrayLike<number>, truth: ArrayLike<number>): number {
  if (pred.length !== truth.length || pred.length === 0)
    throw new Error(`accuracy: ${pred.length} predictions for ${truth.length} labels`);
  let hit = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === truth[i]) hit++;
  return hit / pred.length;
}

export function macroF1(confusion: number[][]): number {
  let sum = 0;
  let counted = 0;
  confusion.forEach((row, c) => {
    const tp = row[c]!;
    const actual = row.reduce((a, b) => a + b, 0);
    const predicted = confusion.reduce((a, r) => a + r[c]!, 0);
    if (actual === 0 && predicted === 0) return;
    counted++;
    sum += tp === 0 ? 0 : (2 * tp) / (actual + predicted); // = 2PR/(P+R)
  });
  return counted ? sum / counted : 0;
}

/**
 * Row-wise argmax of (N, C) logits given as a flat array; ties and NaN as torch.argmax (the first maximum, or the first
 * NaN).
 */
export function argmaxRows(logits: ArrayLike<number>, classes: number): Int32Array {
  const n = logits.length / classes;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < classes && !Number.isNaN(logits[i * classes + best]!); c++) {
      const v = logits[i * classes + c]!;
      if (v > logits[i * classes + best]! || Number.isNaN(v)) best = c;
    }
    out[i] = best;
  }
  return out;
}
