// Training checkpoints in safetensors: the model's state dict under its PyTorch/torchvision
// names, the optimizer state under 'optimizer.<index>.<name>' (torch's state_dict layout), the
// integrator's GPU state under 'integrator.<name>', and in the metadata the epoch, the global
// step, the best validation score so far, the generator states and the run's config, plus a
// CRC-32 of every tensor's bytes ('crc32': JSON name → 8 hex digits). Written through a temporary
// file, fsync and a rename (train/io/files.ts), so a crash or a full disk never leaves a broken
// checkpoint behind; reading checks every CRC (a flipped bit, a NaN written into the data) and
// that every float is finite (training never saves a non-finite value).
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import type { AdamW, MultimodalStep, SGD, Tensor } from '../../engine/index.ts';
import type { Module } from '../../engine/nn/index.ts';
import { crc32 } from '../io/crc32.ts';
import { writeFileAtomic } from '../io/files.ts';
import {
  type DecodedSafetensors,
  decodeSafetensors,
  encodeSafetensors,
  headerLength,
  parseHeader,
  type SafeTensor,
} from '../io/safetensors.ts';

export const CHECKPOINT_FORMAT = 'mmpareto-webgpu/1';

export interface CheckpointMeta {
  /** Epochs completed. */
  epoch: number;
  /** Optimizer steps taken. */
  step: number;
  bestVal: number;
  bestEpoch: number;
  /** Named generator states (Generator.state), e.g. dropout's. */
  rng: Record<string, number[]>;
  /** The run's configuration (config.json), as JSON. */
  config: string;
}

export interface TrainingObjects {
  model: Module;
  optimizer?: SGD | AdamW;
  step?: MultimodalStep;
}

function host(t: SafeTensor['data'], shape: readonly number[]): SafeTensor {
  return { dtype: t instanceof Int32Array ? 'I32' : 'F32', shape: [...shape], data: t };
}

export async function saveCheckpoint(path: string, objs: TrainingObjects, meta: CheckpointMeta): Promise<void> {
  const out = new Map<string, SafeTensor>();
  for (const [k, t] of objs.model.stateDict()) out.set(k, host((await t.toArray()) as SafeTensor['data'], t.shape));
  if (objs.optimizer)
    for (const [k, v] of await objs.optimizer.stateDict()) out.set(`optimizer.${k}`, host(v, [v.length]));
  if (objs.step) for (const [k, v] of await objs.step.stateDict()) out.set(`integrator.${k}`, host(v, [v.length]));
  const metadata: Record<string, string> = {
    format: CHECKPOINT_FORMAT,
    epoch: String(meta.epoch),
    step: String(meta.step),
    best_val: String(meta.bestVal),
    best_epoch: String(meta.bestEpoch),
    rng: JSON.stringify(meta.rng),
    config: meta.config,
    crc32: JSON.stringify(Object.fromEntries([...out].map(([k, t]) => [k, hex(crc32(bytesOf(t.data)))]))),
  };
  writeFileAtomic(path, encodeSafetensors(out, metadata));
}

const bytesOf = (d: Float32Array | Int32Array) => new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
const hex = (n: number) => n.toString(16).padStart(8, '0');

export interface Checkpoint {
  path: string;
  meta: CheckpointMeta;
  model: Map<string, SafeTensor>;
  optimizer: Map<string, Float32Array | Int32Array>;
  integrator: Map<string, Float32Array | Int32Array>;
}

export function readCheckpoint(path: string): Checkpoint {
  if (!existsSync(path)) throw new Error(`checkpoint ${path} does not exist`);
  let decoded: DecodedSafetensors;
  try {
    decoded = decodeSafetensors(new Uint8Array(readFileSync(path)));
  } catch (e) {
    throw new Error(`checkpoint ${path} is not a readable safetensors file: ${(e as Error).message}`);
  }
  const md = decoded.metadata;
  if (md.format !== CHECKPOINT_FORMAT)
    throw new Error(`checkpoint ${path}: format '${md.format ?? 'none'}' is not ${CHECKPOINT_FORMAT}`);
  verifyTensors(path, decoded.tensors, md.crc32);
  const model = new Map<string, SafeTensor>();
  const optimizer = new Map<string, Float32Array | Int32Array>();
  const integrator = new Map<string, Float32Array | Int32Array>();
  for (const [k, t] of decoded.tensors) {
    if (k.startsWith('optimizer.')) optimizer.set(k.slice('optimizer.'.length), t.data);
    else if (k.startsWith('integrator.')) integrator.set(k.slice('integrator.'.length), t.data);
    else model.set(k, t);
  }
  return { path, meta: metaOf(path, md), model, optimizer, integrator };
}

function metaOf(path: string, md: Record<string, string>): CheckpointMeta {
  const num = (k: string) => {
    const v = Number(md[k]);
    if (md[k] === undefined || Number.isNaN(v))
      throw new Error(`checkpoint ${path}: metadata '${k}' is missing or not a number`);
    return v;
  };
  return {
    epoch: num('epoch'),
    step: num('step'),
    bestVal: num('best_val'),
    bestEpoch: num('best_epoch'),
    rng: JSON.parse(md.rng ?? '{}') as Record<string, number[]>,
    config: md.config ?? '{}',
  };
}

/**
 * Every tensor against its stored CRC-32 (checkpoints written before checksums existed have
 * none and are only checked for finiteness), and every float finite.
 */
function verifyTensors(path: string, tensors: ReadonlyMap<string, SafeTensor>, crcJson: string | undefined): void {
  let crcs: Record<string, string> | null = null;
  if (crcJson !== undefined) {
    try {
      crcs = JSON.parse(crcJson) as Record<string, string>;
    } catch {
      throw new Error(`checkpoint ${path}: its 'crc32' metadata is not JSON: the file is corrupt`);
    }
  }
  const bad: string[] = [];
  for (const [k, t] of tensors) {
    if (crcs) {
      const want = crcs[k];
      const got = hex(crc32(bytesOf(t.data)));
      if (want === undefined) bad.push(`'${k}' has no checksum`);
      else if (want !== got) bad.push(`'${k}' fails its CRC-32 (stored ${want}, computed ${got})`);
      else if (t.data instanceof Float32Array) {
        const i = t.data.findIndex((v) => !Number.isFinite(v));
        if (i >= 0) bad.push(`'${k}' holds ${t.data[i]} at index ${i}`);
      }
    } else if (t.data instanceof Float32Array) {
      const i = t.data.findIndex((v) => !Number.isFinite(v));
      if (i >= 0) bad.push(`'${k}' holds ${t.data[i]} at index ${i}`);
    }
  }
  if (crcs) for (const k of Object.keys(crcs)) if (!tensors.has(k)) bad.push(`'${k}' is missing`);
  if (bad.length) {
    const shown = bad.slice(0, 6).join('; ') + (bad.length > 6 ? `; and ${bad.length - 6} more` : '');
    throw new Error(`checkpoint ${path} is corrupt (${bad.length} tensor${bad.length > 1 ? 's' : ''}): ${shown}`);
  }
}

/** The metadata of a checkpoint, reading only its header (no tensor data, no checksums). */
export function readCheckpointMeta(path: string): CheckpointMeta {
  if (!existsSync(path)) throw new Error(`checkpoint ${path} does not exist`);
  const size = statSync(path).size;
  const fd = openSync(path, 'r');
  try {
    const head = new Uint8Array(8);
    readSync(fd, head, 0, 8, 0);
    const n = headerLength(head, size);
    const all = new Uint8Array(8 + n);
    readSync(fd, all, 0, 8 + n, 0);
    const md = (parseHeader(all, n).__metadata__ ?? {}) as Record<string, string>;
    if (md.format !== CHECKPOINT_FORMAT) throw new Error(`format '${md.format ?? 'none'}' is not ${CHECKPOINT_FORMAT}`);
    return metaOf(path, md);
  } catch (e) {
    throw new Error(`checkpoint ${path} is not readable: ${(e as Error).message}`);
  } finally {
    closeSync(fd);
  }
}

/** Checks every name and shape against the model first, then loads; the error lists all mismatches. */
export function loadModelState(ckpt: Checkpoint, model: Module): void {
  const own = model.stateDict();
  const problems: string[] = [];
  for (const [k, t] of ckpt.model) {
    const dst: Tensor | undefined = own.get(k);
    if (!dst) problems.push(`'${k}' [${t.shape.join(', ')}] is not in the model`);
    else if (dst.shape.join() !== t.shape.join())
      problems.push(`'${k}' is [${t.shape.join(', ')}] in the checkpoint, [${dst.shape.join(', ')}] in the model`);
  }
  for (const [k, t] of own)
    if (!ckpt.model.has(k)) problems.push(`'${k}' [${t.shape.join(', ')}] is missing from the checkpoint`);
  if (problems.length) {
    const shown = problems.slice(0, 12).join('; ') + (problems.length > 12 ? `; and ${problems.length - 12} more` : '');
    throw new Error(`checkpoint ${ckpt.path} does not fit this model (${problems.length} mismatches): ${shown}`);
  }
  model.loadStateDict(new Map([...ckpt.model].map(([k, t]) => [k, t.data])));
}

/** Loads model, optimizer and integrator state (for --resume). */
export function loadTrainingState(ckpt: Checkpoint, objs: TrainingObjects): void {
  loadModelState(ckpt, objs.model);
  objs.optimizer?.loadStateDict(ckpt.optimizer);
  objs.step?.loadStateDict(ckpt.integrator);
}
