// `mmpareto analyze` (train/analyze/): Hypothesis 1 at fixed weights. The GPU reductions are
// checked against a float64 host computation from the same per-batch gradients (read back one by
// one here, which analyze itself never does), the shifted accumulation against a case where the
// textbook E‖g‖² − ‖ḡ‖² loses every digit in float32, and the bad inputs (no checkpoint,
// --batches 1, a single-modality model) against a clear error with nothing written.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { device } from '../helpers.ts';
import { liveTensors, perLossGrads, tensor, tidy } from '../../engine/index.ts';
import { analyzeGradients, type GradientAnalysis } from '../../train/analyze/gradients.ts';
import { AnalyzeError, ShiftedMoments, traceFromSums } from '../../train/analyze/moments.ts';
import { main, parseTrainArgs } from '../../train/cli/main.ts';
import { buildSetup } from '../../train/run/setup.ts';
import { Loader, disposeBatch } from '../../train/data/loader.ts';
import { deriveSeed } from '../../train/data/seed.ts';
import { Generator } from '../../engine/index.ts';

const test = suite('analyze');
const root = mkdtempSync(join(tmpdir(), 'mmpareto-analyze-'));
const U = 2 ** -24; // float32 unit roundoff

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => (out += `${s}\n`), err: (s) => (err += `${s}\n`) }, device);
  return { code, out, err };
}

/** float64 statistics of per-batch gradient vectors: two-pass mean and covariance trace. */
function reference(gs: Float64Array[]): { norms: number[]; mean: Float64Array; covTrace: number; normOfMean: number } {
  const N = gs.length;
  const P = gs[0]!.length;
  const m = new Float64Array(P);
  for (const g of gs) for (let j = 0; j < P; j++) m[j]! += g[j]! / N;
  let ss = 0;
  for (const g of gs) for (let j = 0; j < P; j++) ss += (g[j]! - m[j]!) ** 2;
  return {
    norms: gs.map((g) => Math.sqrt(g.reduce((a, x) => a + x * x, 0))),
    mean: m,
    covTrace: ss / (N - 1),
    normOfMean: Math.sqrt(m.reduce((a, x) => a + x * x, 0)),
  };
}

const relErr = (a: number, e: number) => Math.abs(a - e) / Math.abs(e);

test('analyzeGradients = float64 statistics of the same per-batch gradients (norms, cos, tr C, k)', async () => {
  const config = parseTrainArgs([
    '--dataset',
    'synthetic-av',
    '--batch-size',
    '16',
    '--seed',
    '3',
    '--out',
    join(root, 'unused'),
  ]);
  const setup = buildSetup(config);
  const before = liveTensors.count;
  const N = 6;
  const res = await analyzeGradients(setup, config, { batches: N });
  assert.is(liveTensors.count, before, 'no leaks');
  // The same batches, model and mode; each gradient read back to the host.
  const groups = setup.model.encoderGroups();
  const names = Object.keys(groups);
  const params = names.flatMap((n) => groups[n]!);
  const loader = new Loader(setup.dataset.train, setup.dataset, {
    batchSize: 16,
    shuffle: true,
    seed: deriveSeed(config.seed, 'analyze'),
    dropLast: true,
    normalize: setup.normalize,
  });
  setup.model.train();
  const host: Record<string, [Float64Array[], Float64Array[]]> = Object.fromEntries(names.map((n) => [n, [[], []]]));
  let k = 0;
  for (const b of loader.batches(0)) {
    if (k++ === N) {
      disposeBatch(b);
      break;
    }
    const losses = tidy(() => setup.model.losses(b));
    const grads = perLossGrads(losses, params);
    for (const l of Object.values(losses)) l.dispose();
    disposeBatch(b);
    for (const n of names) {
      for (const [slot, loss] of [
        [0, 'mm'],
        [1, n],
      ] as const) {
        const parts: number[] = [];
        for (const p of groups[n]!) parts.push(...((await grads.get(p)![loss]!.toArray()) as Float32Array));
        host[n]![slot].push(Float64Array.from(parts));
      }
    }
    for (const byLoss of grads.values()) for (const g of Object.values(byLoss)) g.dispose();
  }
  for (const n of names) {
    const e = res.encoders[n]!;
    const P = host[n]![0][0]!.length;
    assert.is(e.parameters, P);
    // Per-batch norms: a tree reduction of P squares, ⌈log2 P⌉ + 2 roundings at most (relative, all terms ≥ 0), halved
    // by the sqrt.
    const normTol = (Math.ceil(Math.log2(P)) + 2) * U;
    // tr C: relative error ≲ 3·(N + ⌈log2 P⌉ + 2)·u (the precision note in train/analyze/gradients.ts).
    const traceTol = 3 * (N + Math.ceil(Math.log2(P)) + 2) * U;
    const ref = [reference(host[n]![0]), reference(host[n]![1])] as const;
    ([e.multimodal, e.unimodal] as const).forEach((s, slot) => {
      const r = ref[slot]!;
      s.norms.forEach((v, i) => {
        assert.ok(relErr(v, r.norms[i]!) <= normTol, `${n} slot ${slot} batch ${i}: |g| ${v} vs ${r.norms[i]}`);
      });
      assert.ok(
        relErr(s.covTrace, r.covTrace) <= traceTol,
        `${n} slot ${slot}: tr C ${s.covTrace} vs ${r.covTrace} (tol ${traceTol})`,
      );
      assert.ok(
        relErr(s.normOfMean, r.normOfMean) <= traceTol,
        `${n} slot ${slot}: ‖ḡ‖ ${s.normOfMean} vs ${r.normOfMean}`,
      );
      assert.ok(Math.abs(s.meanNorm - r.norms.reduce((a, x) => a + x, 0) / N) <= normTol * s.meanNorm, 'mean |g|');
    });
    assert.ok(relErr(e.k, ref[1].covTrace / ref[0].covTrace) <= 2 * traceTol, `${n}: k`);
    e.cos.forEach((c, i) => {
      const gm = host[n]![0][i]!;
      const gu = host[n]![1][i]!;
      const dot = gm.reduce((a, x, j) => a + x * gu[j]!, 0);
      const want = dot / (ref[0].norms[i]! * ref[1].norms[i]!);
      // The dot product is a tree sum of P mixed-sign terms: bound its error by ⌈log2 P⌉·u·Σ|gm_j·gu_j|, relative to
      // |g_m||g_u|.
      const absSum = gm.reduce((a, x, j) => a + Math.abs(x * gu[j]!), 0);
      const tol = ((Math.ceil(Math.log2(P)) + 4) * U * absSum) / (ref[0].norms[i]! * ref[1].norms[i]!) + 3 * normTol;
      assert.ok(Math.abs(c - want) <= tol, `${n} batch ${i}: cos ${c} vs ${want}`);
    });
    assert.is(e.conflictFraction, e.cos.filter((c) => c < 0).length / N);
  }
  setup.model.dispose();
});

test('ShiftedMoments: exact where E‖g‖² − ‖ḡ‖² in float32 loses every digit (mean 1e5 × the spread)', async () => {
  // g_i = 100 + noise of std 1e-3 per element: ‖ḡ‖² / tr C ≈ 1e10, far beyond float32's 2^24.
  const g = new Generator(11);
  const sizes = [1000, 37, 5];
  const N = 9;
  const batches = Array.from({ length: N }, () =>
    sizes.map((s) => Float32Array.from({ length: s }, () => 100 + 1e-3 * g.normal())),
  );
  const mom = new ShiftedMoments();
  for (const b of batches) {
    const ts = b.map((x) => tensor(x));
    mom.add(ts);
    for (const t of ts) t.dispose();
  }
  const sums = mom.sums();
  const [s2, s1sq, meanSq] = (await sums.toArray()) as Float32Array;
  sums.dispose();
  mom.dispose();
  const got = traceFromSums(s2!, s1sq!, meanSq!, N);
  const ref = reference(batches.map((b) => Float64Array.from(b.flatMap((x) => [...x]))));
  const P = sizes.reduce((a, b) => a + b, 0);
  const tol = 3 * (N + Math.ceil(Math.log2(P)) + 2) * U;
  assert.ok(relErr(got.covTrace, ref.covTrace) <= tol, `tr C ${got.covTrace} vs ${ref.covTrace}, tol ${tol}`);
  // ‖ḡ‖ itself is large and well-conditioned: float32 rounding of the sum of P squares.
  assert.ok(relErr(got.normOfMean, ref.normOfMean) <= tol, `‖ḡ‖ ${got.normOfMean} vs ${ref.normOfMean}`);
  // The textbook formula in float32 (sequential sums, as a naive kernel would) is wrong by orders of magnitude here.
  const f = Math.fround;
  let sumSq = 0;
  const m = new Float32Array(P);
  for (const b of batches) {
    const flat = b.flatMap((x) => [...x]);
    for (let j = 0; j < P; j++) {
      sumSq = f(sumSq + f(flat[j]! * flat[j]!));
      m[j] = f(m[j]! + f(flat[j]! / N));
    }
  }
  let meanNormSq = 0;
  for (let j = 0; j < P; j++) meanNormSq = f(meanNormSq + f(m[j]! * m[j]!));
  const naive = ((sumSq / N - meanNormSq) * N) / (N - 1);
  assert.ok(
    relErr(naive, ref.covTrace) > 1000 * tol,
    `the naive float32 formula should fail here (it gave ${naive} for ${ref.covTrace})`,
  );
});

test('CLI: analyze a trained run; JSON written where it says, with the report lines', async () => {
  const dir = join(root, 'run');
  const t = await cli(
    'train',
    '--dataset',
    'synthetic-av',
    '--batch-size',
    '16',
    '--lr',
    '0.02',
    '--epochs',
    '1',
    '--quiet',
    '--no-report',
    '--out',
    dir,
  );
  assert.is(t.code, 0, t.err);
  const r = await cli('analyze', dir, '--checkpoint', 'latest', '--batches', '4', '--quiet');
  assert.is(r.code, 0, r.err);
  const path = join(dir, 'analysis-latest-epoch1.json');
  assert.ok(r.out.includes(`written: ${path}`), r.out);
  assert.ok(r.out.includes("encoder 'audio'") && r.out.includes('k = '), r.out);
  const a = JSON.parse(readFileSync(path, 'utf8')) as GradientAnalysis;
  assert.is(a.type, 'gradient-analysis');
  assert.equal(a.checkpoint, { which: 'latest', epoch: 1, step: 16 });
  assert.is(a.batches, 4);
  assert.equal(Object.keys(a.encoders).sort(), ['audio', 'visual']);
  for (const e of Object.values(a.encoders)) {
    assert.is(e.multimodal.norms.length, 4);
    assert.ok(e.multimodal.covTrace > 0 && e.unimodal.covTrace > 0);
    assert.is(e.k, e.unimodal.covTrace / e.multimodal.covTrace);
  }
  // --out elsewhere, and the best checkpoint by default.
  const out = join(root, 'elsewhere', 'a.json');
  const r2 = await cli('analyze', dir, '--batches', '2', '--out', out, '--quiet');
  assert.is(r2.code, 0, r2.err);
  assert.is((JSON.parse(readFileSync(out, 'utf8')) as GradientAnalysis).checkpoint.which, 'best');
});

test(
  'bad input: no checkpoint, --batches 1, a single-modality model, ' + 'not a run → clear error, nothing written',
  async () => {
    const dir = join(root, 'run');
    const listing = () => readdirSync(dir).sort();
    const before = listing();
    const b1 = await cli('analyze', dir, '--batches', '1');
    assert.is(b1.code, 2);
    assert.ok(b1.err.includes('--batches') && b1.err.includes('at least two batches'), b1.err);
    assert.equal(listing(), before);
    try {
      await analyzeGradients(
        buildSetup(parseTrainArgs(['--dataset', 'synthetic-av', '--out', join(root, 'unused')])),
        parseTrainArgs(['--dataset', 'synthetic-av', '--out', join(root, 'unused')]),
        { batches: 1 },
      );
      assert.unreachable();
    } catch (e) {
      assert.ok(e instanceof AnalyzeError && e.message.includes('--batches must be an integer >= 2'), String(e));
    }
    const missing = await cli('analyze', dir, '--checkpoint', join(dir, 'nope.safetensors'));
    assert.is(missing.code, 1);
    assert.ok(missing.err.includes('nope.safetensors does not exist'), missing.err);
    // A run with config.json but no finished epoch.
    const fresh = join(root, 'fresh');
    const stop = await cli(
      'train',
      '--dataset',
      'synthetic-av',
      '--batch-size',
      '16',
      '--epochs',
      '1',
      '--quiet',
      '--no-report',
      '--out',
      fresh,
    );
    assert.is(stop.code, 0);
    for (const f of ['best.safetensors', 'latest.safetensors']) rmSync(join(fresh, f));
    const noCkpt = await cli('analyze', fresh);
    assert.is(noCkpt.code, 1);
    assert.ok(noCkpt.err.includes('has no best.safetensors (no epoch of the run has finished)'), noCkpt.err);
    assert.equal(
      readdirSync(fresh).filter((f) => f.startsWith('analysis')),
      [],
    );
    const notRun = await cli('analyze', join(root, 'does-not-exist'));
    assert.is(notRun.code, 1);
    assert.ok(notRun.err.includes('is not a run directory'), notRun.err);
    // Multi-FMNIST: one input (image), two tasks on a shared encoder.
    const multi = join(root, 'multi');
    const m = await cli(
      'train',
      '--dataset',
      'multi-fmnist',
      '--train-limit',
      '64',
      '--val-size',
      '64',
      '--batch-size',
      '32',
      '--epochs',
      '1',
      '--quiet',
      '--no-report',
      '--out',
      multi,
    );
    assert.is(m.code, 0, m.err);
    const before2 = readdirSync(multi).sort();
    const s = await cli('analyze', multi, '--batches', '2');
    assert.is(s.code, 1);
    assert.ok(s.err.includes('has 1 input modality (image)') && s.err.includes('two or more modalities'), s.err);
    assert.equal(readdirSync(multi).sort(), before2, 'nothing written');
    assert.not.ok(existsSync(join(multi, 'analysis-best-epoch1.json')));
  },
);

test.run();
