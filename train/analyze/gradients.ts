// `mmpareto analyze RUN`: the paper's Hypothesis 1 measured as it defines it. At FIXED weights (a
// checkpoint, never updated), each modality encoder's multimodal gradient g_m and unimodal
// gradient g_u are taken on N training mini-batches with perLossGrads, and per encoder we report
// the distribution of |g_m| and |g_u| over the batches (Fig. 1d), the trace of each gradient's
// batch-sampling covariance tr C = E‖g − ḡ‖² and the ratio k = tr C^u / tr C^m (Section 3.3.3:
// "often more than 3×"), and the fraction of batches with cos(g_m, g_u) < 0.
//
// Everything is reduced on the GPU as the batches go; the host reads back ONE buffer at the end
// (per batch three scalars per encoder, plus three sums per encoder and loss).
//
// Precision (float32). The textbook E‖g‖² − ‖ḡ‖² subtracts two numbers of size ‖ḡ‖² + tr C to get
// tr C: when the mean dominates it loses log2(‖ḡ‖² / tr C) bits. Instead every gradient is shifted
// by the first batch's, d_i = g_i − g_1: the subtraction rounds relative to |d_i| (the deviation
// scale, not |ḡ|), and S1 = Σ d_i (a vector), S2 = Σ ‖d_i‖² accumulate N terms of that scale, so
// each has relative error ≲ (N + ⌈log2 P⌉)·2⁻²⁴ (N sequential adds, then a tree reduction over the
// P parameters). Then Σ‖g_i − ḡ‖² = S2 − ‖S1‖²/N, where E[S2] ≈ 2(N−1)·tr C and
// E[‖S1‖²/N] ≈ (N−1)·tr C (S1/N = ḡ − g_1): the subtraction amplifies the relative error by about
// 3, whatever ‖ḡ‖² / tr C is. test/train/analyze.test.ts checks this against float64 from the same
// per-batch gradients.
//
// The model is in training mode (batch-norm uses batch statistics, as the gradients training
// sees); the running statistics it updates in memory are never saved. Batches come from the
// training split in an order seeded by (the run's seed, 'analyze'), so runs with the same seed
// (paired runs of different methods) are analysed on the same batches.
import { existsSync, mkdirSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { concat, keep, noGrad, perLossGrads, square, tidy, type Device, type Tensor } from '../../engine/index.ts';
import { loadModelState, readCheckpoint } from '../run/checkpoint.ts';
import type { RunConfig } from '../run/config.ts';
import { buildSetup, type Setup } from '../run/setup.ts';
import { Loader, disposeBatch } from '../data/loader.ts';
import { deriveSeed } from '../data/seed.ts';
import { writeFileAtomic } from '../io/files.ts';
import { readRunConfig, runFiles } from '../run/run-dir.ts';
import { AnalyzeError, ShiftedMoments, dot, meanOf, quantile, sampleStdOf, total, traceFromSums } from './moments.ts';

/** Per-loss statistics of one encoder. */
export interface LossGradientStats {
  /** |g| of every batch, in batch order. */
  norms: number[];
  meanNorm: number;
  /** Sample standard deviation of |g| over the batches. */
  stdNorm: number;
  /** Minimum, quartiles and maximum of |g|. */
  quantiles: { min: number; q25: number; median: number; q75: number; max: number };
  /** ‖ḡ‖: the norm of the mean gradient over the batches. */
  normOfMean: number;
  /** tr C of the mini-batch gradient: Σ_i ‖g_i − ḡ‖² / (N − 1) (the paper's C/|S|). */
  covTrace: number;
}

export interface EncoderAnalysis {
  /** Parameters in the encoder (the gradient vectors' length). */
  parameters: number;
  /** The multimodal loss's gradient g_m and the encoder's unimodal loss's gradient g_u. */
  multimodal: LossGradientStats;
  unimodal: LossGradientStats;
  /** k = tr C^u / tr C^m (Hypothesis 1: k > 1; the paper: "often more than 3"). */
  k: number;
  /** mean |g_u| / mean |g_m|. */
  normRatio: number;
  /** cos(g_m, g_u) of every batch, and the fraction of batches where it is negative. */
  cos: number[];
  conflictFraction: number;
}

export interface GradientAnalysis {
  type: 'gradient-analysis';
  run: {
    dataset: string;
    model: string;
    method: string;
    seed: number;
    trainLimit: number;
    epochs: number;
    lr: number;
    batchSize: number;
  };
  checkpoint: { which: string; epoch: number; step: number };
  batches: number;
  batchSize: number;
  /** Name of the multimodal loss (g_m). */
  mainLoss: string;
  /** Encoder (modality) name → statistics. */
  encoders: Record<string, EncoderAnalysis>;
  adapter: string;
  wall_s: number;
}

export interface AnalyzeOptions {
  batches: number;
  /** Called after each batch is queued (nothing is read back). */
  progress?(done: number, total: number): void;
}

/** Checks that the model has a multimodal loss and at least two modality encoders; returns the encoder groups. */
export function analyzableGroups(setup: Setup, config: Pick<RunConfig, 'dataset' | 'model'>): Record<string, Tensor[]> {
  const groups = setup.model.encoderGroups();
  const inputs = Object.keys(setup.dataset.inputs);
  if (inputs.length < 2 || Object.keys(groups).length < 2) {
    throw new AnalyzeError(
      `analyze: the run's model (dataset ${config.dataset}, model ${config.model}) has ${inputs.length} input ` +
        `modality (${inputs.join(', ')}) and encoder group(s) ${Object.keys(groups).join(', ')}; ` +
        `Hypothesis 1 compares the multimodal loss's gradient with each modality's own unimodal ` +
        `one, which needs a model over two or more modalities`,
    );
  }
  return groups;
}

/**
 * Hypothesis 1 at the model's current weights: N training batches, per-loss gradients per
 * encoder, GPU reductions, one readback. Nothing is updated (no optimizer exists here).
 */
export async function analyzeGradients(
  setup: Setup,
  config: RunConfig,
  opts: AnalyzeOptions,
): Promise<Pick<GradientAnalysis, 'batches' | 'batchSize' | 'mainLoss' | 'encoders'>> {
  const N = opts.batches;
  if (!Number.isInteger(N) || N < 2)
    throw new AnalyzeError(
      `analyze: --batches must be an integer >= 2 (a covariance needs at least two batches), got ${N}`,
    );
  const { model, dataset } = setup;
  const groups = analyzableGroups(setup, config);
  const names = Object.keys(groups);
  const main = model.mainLoss;
  const params = names.flatMap((n) => groups[n]!);
  const batchSize = Math.min(config.batchSize, dataset.train.n);
  const loader = new Loader(dataset.train, dataset, {
    batchSize,
    shuffle: true,
    seed: deriveSeed(config.seed, 'analyze'),
    dropLast: true,
    normalize: setup.normalize,
  });
  const wasTraining = model.training;
  model.train();
  const acc: Record<string, [ShiftedMoments, ShiftedMoments]> = Object.fromEntries(
    names.map((n) => [n, [new ShiftedMoments(), new ShiftedMoments()]]),
  );
  const perBatch: Tensor[] = []; // [G·3] per batch: ‖g_m‖², ‖g_u‖², g_m·g_u for every group
  try {
    let done = 0;
    for (let epoch = 0; done < N; epoch++) {
      for (const b of loader.batches(epoch)) {
        if (done === N) {
          disposeBatch(b);
          continue;
        }
        const losses = tidy(() => model.losses(b));
        const grads = perLossGrads(losses, params);
        for (const l of Object.values(losses)) l.dispose();
        disposeBatch(b);
        noGrad(() => {
          const scalars: Tensor[] = [];
          for (const n of names) {
            const pick = (loss: string) =>
              groups[n]!.map((p) => {
                const g = grads.get(p)?.[loss];
                if (!g)
                  throw new AnalyzeError(
                    `analyze: loss '${loss}' does not reach a parameter of encoder '${n}' [${p.shape.join(', ')}]`,
                  );
                return g;
              });
            const gm = pick(main);
            const gu = pick(n);
            scalars.push(total(gm, square), total(gu, square), dot(gm, gu));
            acc[n]![0].add(gm);
            acc[n]![1].add(gu);
          }
          perBatch.push(keep(concat(scalars, 0)));
          for (const s of scalars) s.dispose();
        });
        for (const byLoss of grads.values()) for (const g of Object.values(byLoss)) g.dispose();
        done++;
        await params[0]!.device.throttle(); // nothing is read back until the end: keep the queue shallow
        opts.progress?.(done, N);
      }
    }
    // Per group and loss: S2 = Σ_i ‖d_i‖², ‖S1‖², ‖ḡ‖² with ḡ = g_1 + S1/N; then one readback of everything.
    const parts = names.flatMap((n) => acc[n]!.map((a) => a.sums()));
    const sums = noGrad(() => concat(parts, 0));
    for (const t of parts) t.dispose();
    const all = noGrad(() => concat([...perBatch, sums], 0));
    sums.dispose();
    const host = (await all.toArray()) as Float32Array;
    all.dispose();
    const G = names.length;
    const encoders: Record<string, EncoderAnalysis> = {};
    names.forEach((n, gi) => {
      const at = (i: number, k: number) => host[i * G * 3 + gi * 3 + k]!;
      const nm = Array.from({ length: N }, (_, i) => Math.sqrt(at(i, 0)));
      const nu = Array.from({ length: N }, (_, i) => Math.sqrt(at(i, 1)));
      const cos = Array.from({ length: N }, (_, i) => (nm[i]! > 0 && nu[i]! > 0 ? at(i, 2) / (nm[i]! * nu[i]!) : 0));
      const base = N * G * 3 + gi * 6;
      const stats = (norms: number[], k: number): LossGradientStats => {
        return {
          norms,
          meanNorm: meanOf(norms),
          stdNorm: sampleStdOf(norms),
          quantiles: {
            min: quantile(norms, 0),
            q25: quantile(norms, 0.25),
            median: quantile(norms, 0.5),
            q75: quantile(norms, 0.75),
            max: quantile(norms, 1),
          },
          ...traceFromSums(host[base + 3 * k]!, host[base + 3 * k + 1]!, host[base + 3 * k + 2]!, N),
        };
      };
      const m = stats(nm, 0);
      const u = stats(nu, 1);
      encoders[n] = {
        parameters: groups[n]!.reduce((a, p) => a + p.size, 0),
        multimodal: m,
        unimodal: u,
        k: u.covTrace / m.covTrace,
        normRatio: u.meanNorm / m.meanNorm,
        cos,
        conflictFraction: cos.filter((c) => c < 0).length / N,
      };
    });
    return { batches: N, batchSize, mainLoss: main, encoders };
  } finally {
    for (const t of perBatch) t.dispose();
    for (const pair of Object.values(acc)) for (const a of pair) a.dispose();
    model.train(wasTraining);
  }
}

/** One line per encoder for the terminal. */
export function formatAnalysis(a: Pick<GradientAnalysis, 'encoders' | 'batches'>): string[] {
  const f = (x: number) => x.toPrecision(3);
  return Object.entries(a.encoders).map(
    ([n, e]) =>
      `encoder '${n}': |g_m| ${f(e.multimodal.meanNorm)} ± ${f(e.multimodal.stdNorm)}, |g_u| ` +
      `${f(e.unimodal.meanNorm)} ± ${f(e.unimodal.stdNorm)} (ratio ${f(e.normRatio)}); ` +
      `tr C^m ${f(e.multimodal.covTrace)}, tr C^u ${f(e.unimodal.covTrace)}, k = ${f(e.k)}; cos < 0 in ` +
      `${(100 * e.conflictFraction).toFixed(1)}% of ${a.batches} batches`,
  );
}

export interface AnalyzeRunOptions {
  /** 'best' | 'latest' | a .safetensors path (default 'best'). */
  checkpoint?: string;
  batches: number;
  /** Output JSON (default RUN/analysis-<checkpoint>-epoch<E>.json). */
  out?: string;
  dataDir?: string;
  progress?(done: number, total: number): void;
}

/**
 * `mmpareto analyze RUN`: checks the input (run directory, checkpoint, --batches, a multimodal
 * model) before any work, runs analyzeGradients at the checkpoint's weights and writes the JSON
 * once at the end (temp file + rename); on any error nothing is written.
 */
export async function analyzeRun(
  runDir: string,
  opts: AnalyzeRunOptions,
  device: () => Promise<Device>,
): Promise<{ path: string; analysis: GradientAnalysis }> {
  const t0 = performance.now();
  if (!Number.isInteger(opts.batches) || opts.batches < 2)
    throw new AnalyzeError(
      `analyze: --batches must be an integer >= 2 (a covariance needs at least two batches), got ${opts.batches}`,
    );
  const dir = resolve(runDir);
  const config = readRunConfig(dir);
  if (opts.dataDir) config.dataDir = opts.dataDir;
  const which = opts.checkpoint ?? 'best';
  const path = which === 'best' || which === 'latest' ? runFiles(dir)[which] : resolve(which);
  if (!existsSync(path)) {
    throw new AnalyzeError(
      which === 'best' || which === 'latest'
        ? `analyze: ${dir} has no ${which}.safetensors (no epoch of the run has finished); train it first or pass ` +
            `--checkpoint PATH`
        : `analyze: checkpoint ${path} does not exist`,
    );
  }
  const ckpt = readCheckpoint(path);
  const dev = await device();
  const setup = buildSetup(config);
  try {
    analyzableGroups(setup, config);
    loadModelState(ckpt, setup.model);
    const label = which === 'best' || which === 'latest' ? which : basename(path).replace(/\.safetensors$/, '');
    const out = resolve(opts.out ?? join(dir, `analysis-${label}-epoch${ckpt.meta.epoch}.json`));
    const core = await analyzeGradients(setup, config, { batches: opts.batches, progress: opts.progress });
    const analysis: GradientAnalysis = {
      type: 'gradient-analysis',
      run: {
        dataset: config.dataset,
        model: config.model,
        method: config.method,
        seed: config.seed,
        trainLimit: config.trainLimit,
        epochs: config.epochs,
        lr: config.lr,
        batchSize: config.batchSize,
      },
      checkpoint: { which: label, epoch: ckpt.meta.epoch, step: ckpt.meta.step },
      ...core,
      adapter: dev.adapterName,
      wall_s: (performance.now() - t0) / 1000,
    };
    mkdirSync(dirname(out), { recursive: true });
    writeFileAtomic(out, new TextEncoder().encode(`${JSON.stringify(analysis)}\n`));
    return { path: out, analysis };
  } finally {
    setup.model.dispose();
  }
}
