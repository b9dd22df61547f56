// Batches from one split: seeded shuffling, per-channel normalisation on the host, and one upload
// per modality/task per batch. Epoch e's order comes from a generator seeded by a hash of
// (seed, e), so it does not depend on earlier epochs (resuming at epoch e replays it exactly).
// Host gather buffers are reused in two alternating sets, so building batch k+1 never writes an
// array that batch k's upload may still reference; nothing here waits on the GPU.
import { Generator as Random, tensor, type Tensor } from '../../engine/index.ts';
import type { Dataset, Split } from './dataset.ts';
import { deriveSeed, permutation } from './seed.ts';

export interface Batch {
  /** Modality → float32 tensor [size, ...shape]. */
  inputs: Record<string, Tensor>;
  /** Task → int32 tensor [size]. */
  labels: Record<string, Tensor>;
  size: number;
  /** Position of the batch within its epoch. */
  index: number;
}

/** Per-modality, per-channel statistics: x ↦ (x − mean[c]) / std[c]. */
export type NormalizationStats = Record<string, { mean: number[]; std: number[] }>;

export interface LoaderOptions {
  batchSize: number;
  shuffle: boolean;
  seed: number;
  /** Drop the last, incomplete batch (default false). */
  dropLast?: boolean;
  normalize?: NormalizationStats;
  /**
   * Refuse a batch whose (normalised) inputs hold a NaN or ±Inf, naming the item, before it is
   * uploaded (default true: one pass over host data the gather just wrote).
   */
  checkFinite?: boolean;
}

/** Disposes every tensor of a batch. */
export function disposeBatch(b: Batch): void {
  for (const t of Object.values(b.inputs)) t.dispose();
  for (const t of Object.values(b.labels)) t.dispose();
}

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/**
 * Per-channel mean and (population) standard deviation of every modality of a split, in float64.
 * Channel = the first axis of the per-item shape. A constant channel gets std 1, so normalising
 * it gives zeros rather than a division by zero.
 */
export function normalizationStats(split: Split, shapes: Record<string, number[]>): NormalizationStats {
  if (split.n < 1) throw new Error('normalizationStats: the split is empty');
  const out: NormalizationStats = {};
  for (const [m, shape] of Object.entries(shapes)) {
    const x = split.inputs[m];
    if (!x)
      throw new Error(
        `normalizationStats: the split has no modality '${m}' (it has: ${Object.keys(split.inputs).join(', ')})`,
      );
    const c = shape[0]!;
    const px = prod(shape) / c;
    if (x.length !== split.n * c * px)
      throw new Error(
        `normalizationStats: modality '${m}' holds ${x.length} values, expected ${split.n} × [${shape.join(', ')}]`,
      );
    const mean: number[] = [];
    const std: number[] = [];
    for (let ch = 0; ch < c; ch++) {
      let s = 0;
      for (let i = 0; i < split.n; i++) {
        const base = (i * c + ch) * px;
        for (let p = 0; p < px; p++) s += x[base + p]!;
      }
      const mu = s / (split.n * px);
      if (!Number.isFinite(mu)) {
        const k = x.findIndex((v) => !Number.isFinite(v));
        throw new Error(
          `normalizationStats: modality '${m}' item ${Math.floor(k / (c * px))} holds ${x[k]} (element ` +
            `${k % (c * px)}): the data set has non-finite values`,
        );
      }
      let ss = 0;
      for (let i = 0; i < split.n; i++) {
        const base = (i * c + ch) * px;
        for (let p = 0; p < px; p++) ss += (x[base + p]! - mu) ** 2;
      }
      const sd = Math.sqrt(ss / (split.n * px));
      mean.push(mu);
      std.push(sd > 0 ? sd : 1);
    }
    out[m] = { mean, std };
  }
  return out;
}

interface HostBuffers {
  inputs: Record<string, Float32Array>;
  labels: Record<string, Int32Array>;
}

export class Loader {
  readonly batchSize: number;
  readonly batchesPerEpoch: number;
  private readonly split: Split;
  private readonly shapes: Record<string, number[]>;
  private readonly tasks: string[];
  private readonly shuffle: boolean;
  private readonly seed: number;
  private readonly dropLast: boolean;
  private readonly checkFinite: boolean;
  /** Modality → per-channel [offset, scale] with x ↦ (x + offset)·scale, or absent. */
  private readonly affine: Record<string, { offset: Float32Array; scale: Float32Array } | undefined> = {};
  private readonly buffers: [HostBuffers, HostBuffers];
  private flip = 0;

  constructor(split: Split, dataset: Pick<Dataset, 'inputs' | 'tasks'>, opts: LoaderOptions) {
    const { batchSize, shuffle, seed } = opts;
    this.dropLast = opts.dropLast ?? false;
    this.checkFinite = opts.checkFinite ?? true;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new Error(
        `Loader: batch size ${batchSize} is invalid: it must be an integer from 1 to the split size (${split.n})`,
      );
    }
    if (this.dropLast && batchSize > split.n) {
      throw new Error(
        `Loader: batch size ${batchSize} is larger than the split (${split.n} items), so dropLast leaves no batch; ` +
          `use a batch size of at most ${split.n}`,
      );
    }
    if (!Number.isFinite(seed)) throw new Error(`Loader: seed ${seed} is not a finite number`);
    this.split = split;
    this.shapes = dataset.inputs;
    this.tasks = Object.keys(dataset.tasks);
    this.batchSize = batchSize;
    this.shuffle = shuffle;
    this.seed = seed;
    const source = split.source;
    if (source) {
      for (const m of Object.keys(this.shapes))
        if (!source.hostShapes[m]) throw new Error(`Loader: the split's item source has no modality '${m}'`);
      if (opts.normalize && Object.keys(opts.normalize).length)
        throw new Error('Loader: normalize is for in-memory splits; an item source normalises its own items');
    }
    for (const [m, shape] of source ? [] : Object.entries(this.shapes)) {
      const x = split.inputs[m];
      if (!x)
        throw new Error(
          `Loader: the split has no modality '${m}' (it has: ${Object.keys(split.inputs).join(', ') || 'none'})`,
        );
      if (x.length !== split.n * prod(shape))
        throw new Error(
          `Loader: modality '${m}' holds ${x.length} values, expected ${split.n} items × [${shape.join(', ')}]`,
        );
    }
    for (const t of this.tasks) {
      const y = split.labels[t];
      if (!y)
        throw new Error(
          `Loader: the split has no labels for task '${t}' (it has: ${Object.keys(split.labels).join(', ') || 'none'})`,
        );
      if (y.length !== split.n) throw new Error(`Loader: task '${t}' has ${y.length} labels for ${split.n} items`);
    }
    for (const [m, st] of Object.entries(opts.normalize ?? {})) {
      const shape = this.shapes[m];
      if (!shape)
        throw new Error(
          `Loader: normalize names modality '${m}'; the modalities are: ${Object.keys(this.shapes).join(', ')}`,
        );
      const c = shape[0]!;
      if (st.mean.length !== c || st.std.length !== c) {
        throw new Error(
          `Loader: normalize.${m} has ${st.mean.length} means and ${st.std.length} stds; modality '${m}' has ${c} ` +
            `channels`,
        );
      }
      const bad = st.std.findIndex((s) => !(s > 0) || !Number.isFinite(s));
      if (bad >= 0 || st.mean.some((v) => !Number.isFinite(v)))
        throw new Error(
          `Loader: normalize.${m} needs finite means and positive finite stds (std[${bad}] = ${st.std[bad]})`,
        );
      this.affine[m] = {
        offset: Float32Array.from(st.mean, (v) => -v),
        scale: Float32Array.from(st.std, (s) => 1 / s),
      };
    }
    this.batchesPerEpoch = this.dropLast ? Math.floor(split.n / batchSize) : Math.ceil(split.n / batchSize);
    const cap = Math.min(batchSize, split.n);
    const make = (): HostBuffers => ({
      inputs: Object.fromEntries(
        Object.entries(split.source?.hostShapes ?? this.shapes).map(([m, s]) => [m, new Float32Array(cap * prod(s))]),
      ),
      labels: Object.fromEntries(this.tasks.map((t) => [t, new Int32Array(cap)])),
    });
    this.buffers = [make(), make()];
  }

  /** Items in the split. */
  get size(): number {
    return this.split.n;
  }

  /** The item order of an epoch: a permutation seeded by (seed, epoch) when shuffling, else 0..n-1. */
  order(epoch: number): Int32Array {
    if (!Number.isInteger(epoch) || epoch < 0) throw new Error(`Loader: epoch ${epoch} must be a non-negative integer`);
    if (!this.shuffle) return Int32Array.from({ length: this.split.n }, (_, i) => i);
    return permutation(this.split.n, new Random(deriveSeed(this.seed, 'epoch', epoch)));
  }

  /** The batches of one epoch; the caller disposes each (disposeBatch) when done with it. */
  *batches(epoch: number): Generator<Batch> {
    const order = this.order(epoch);
    for (let index = 0; index < this.batchesPerEpoch; index++) {
      const start = index * this.batchSize;
      const size = Math.min(this.batchSize, this.split.n - start);
      yield this.upload(order.subarray(start, start + size), index, epoch);
    }
  }

  private upload(items: Int32Array, index: number, epoch: number): Batch {
    const host = this.buffers[this.flip]!;
    this.flip ^= 1;
    const size = items.length;
    const batch: Batch = { inputs: {}, labels: {}, size, index };
    try {
      const source = this.split.source;
      if (source) {
        const dst = Object.fromEntries(
          Object.keys(this.shapes).map((m) => [m, host.inputs[m]!.subarray(0, size * prod(source.hostShapes[m]!))]),
        );
        source.read(items, dst, epoch);
        for (const m of Object.keys(this.shapes)) {
          const x = tensor(dst[m]!, [size, ...source.hostShapes[m]!], { dtype: 'float32' });
          const map = source.onDevice?.[m];
          if (!map) batch.inputs[m] = x;
          else {
            try {
              const y = (batch.inputs[m] = map(x));
              const want = [size, ...this.shapes[m]!];
              if (y.shape.join() !== want.join())
                throw new Error(
                  `Loader: the item source's map of modality '${m}' gave [${y.shape.join(', ')}], the data set ` +
                    `declares [${want.join(', ')}]`,
                );
            } finally {
              x.dispose();
            }
          }
        }
      }
      for (const [m, shape] of source ? [] : Object.entries(this.shapes)) {
        const itemLen = prod(shape);
        const dst = host.inputs[m]!.subarray(0, size * itemLen);
        gather(this.split.inputs[m]!, items, itemLen, shape[0]!, dst, this.affine[m]);
        if (this.checkFinite) checkBatchFinite(dst, items, itemLen, m, index);
        batch.inputs[m] = tensor(dst, [size, ...shape], { dtype: 'float32' });
      }
      for (const t of this.tasks) {
        const src = this.split.labels[t]!;
        const dst = host.labels[t]!.subarray(0, size);
        for (let i = 0; i < size; i++) dst[i] = src[items[i]!]!;
        batch.labels[t] = tensor(dst, [size], { dtype: 'int32' });
      }
    } catch (e) {
      disposeBatch(batch);
      throw e;
    }
    return batch;
  }
}

/** Throws naming the split item, the modality and the value if a gathered batch holds a NaN or ±Inf. */
function checkBatchFinite(
  dst: Float32Array,
  items: Int32Array,
  itemLen: number,
  modality: string,
  batch: number,
): void {
  for (let k = 0; k < dst.length; k++) {
    if (Number.isFinite(dst[k]!)) continue;
    const i = Math.floor(k / itemLen);
    throw new Error(
      `Loader: item ${items[i]} of the split (batch ${batch}, modality '${modality}') holds ${dst[k]} at element ` +
        `${k - i * itemLen} after normalisation; non-finite inputs would turn the step's losses ` +
        `and gradients into NaN`,
    );
  }
}

/** Copies items into dst, applying the per-channel affine map when given. */
function gather(
  src: Float32Array,
  items: Int32Array,
  itemLen: number,
  channels: number,
  dst: Float32Array,
  affine: { offset: Float32Array; scale: Float32Array } | undefined,
): void {
  const px = itemLen / channels;
  for (let i = 0; i < items.length; i++) {
    const from = items[i]! * itemLen;
    const to = i * itemLen;
    if (!affine) {
      dst.set(src.subarray(from, from + itemLen), to);
      continue;
    }
    for (let ch = 0; ch < channels; ch++) {
      const o = affine.offset[ch]!;
      const k = affine.scale[ch]!;
      const a = from + ch * px;
      const b = to + ch * px;
      for (let p = 0; p < px; p++) dst[b + p] = (src[a + p]! + o) * k;
    }
  }
}
