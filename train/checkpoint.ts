// Training checkpoints in safetensors: the model's state dict under its PyTorch/torchvision
// names, the optimizer state under 'optimizer.<index>.<name>' (torch's state_dict layout), the
// integrator's GPU state under 'integrator.<name>', and in the metadata the epoch, the global
// step, the best validation score so far, the generator states and the run's config. Written
// through a temporary file and a rename, so a crash never leaves a broken checkpoint behind.
import { existsSync, readFileSync } from 'node:fs';
import type { AdamW, MultimodalStep, SGD, Tensor } from '../engine/index.ts';
import type { Module } from '../engine/nn/index.ts';
import { decodeSafetensors, encodeSafetensors, writeFileAtomic, type SafeTensor } from './safetensors.ts';

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
  if (objs.optimizer) for (const [k, v] of await objs.optimizer.stateDict()) out.set(`optimizer.${k}`, host(v, [v.length]));
  if (objs.step) for (const [k, v] of await objs.step.stateDict()) out.set(`integrator.${k}`, host(v, [v.length]));
  const metadata: Record<string, string> = {
    format: CHECKPOINT_FORMAT,
    epoch: String(meta.epoch),
    step: String(meta.step),
    best_val: String(meta.bestVal),
    best_epoch: String(meta.bestEpoch),
    rng: JSON.stringify(meta.rng),
    config: meta.config,
  };
  writeFileAtomic(path, encodeSafetensors(out, metadata));
}

export interface Checkpoint {
  path: string;
  meta: CheckpointMeta;
  model: Map<string, SafeTensor>;
  optimizer: Map<string, Float32Array | Int32Array>;
  integrator: Map<string, Float32Array | Int32Array>;
}

export function readCheckpoint(path: string): Checkpoint {
  if (!existsSync(path)) throw new Error(`checkpoint ${path} does not exist`);
  let decoded;
  try {
    decoded = decodeSafetensors(new Uint8Array(readFileSync(path)));
  } catch (e) {
    throw new Error(`checkpoint ${path} is not a readable safetensors file: ${(e as Error).message}`);
  }
  const md = decoded.metadata;
  if (md.format !== CHECKPOINT_FORMAT) throw new Error(`checkpoint ${path}: format '${md.format ?? 'none'}' is not ${CHECKPOINT_FORMAT}`);
  const model = new Map<string, SafeTensor>();
  const optimizer = new Map<string, Float32Array | Int32Array>();
  const integrator = new Map<string, Float32Array | Int32Array>();
  for (const [k, t] of decoded.tensors) {
    if (k.startsWith('optimizer.')) optimizer.set(k.slice('optimizer.'.length), t.data);
    else if (k.startsWith('integrator.')) integrator.set(k.slice('integrator.'.length), t.data);
    else model.set(k, t);
  }
  const num = (k: string) => {
    const v = Number(md[k]);
    if (md[k] === undefined || Number.isNaN(v)) throw new Error(`checkpoint ${path}: metadata '${k}' is missing or not a number`);
    return v;
  };
  const meta: CheckpointMeta = {
    epoch: num('epoch'), step: num('step'), bestVal: num('best_val'), bestEpoch: num('best_epoch'),
    rng: JSON.parse(md.rng ?? '{}') as Record<string, number[]>, config: md.config ?? '{}',
  };
  return { path, meta, model, optimizer, integrator };
}

/** Checks every name and shape against the model first, then loads; the error lists all mismatches. */
export function loadModelState(ckpt: Checkpoint, model: Module): void {
  const own = model.stateDict();
  const problems: string[] = [];
  for (const [k, t] of ckpt.model) {
    const dst: Tensor | undefined = own.get(k);
    if (!dst) problems.push(`'${k}' [${t.shape.join(', ')}] is not in the model`);
    else if (dst.shape.join() !== t.shape.join()) problems.push(`'${k}' is [${t.shape.join(', ')}] in the checkpoint, [${dst.shape.join(', ')}] in the model`);
  }
  for (const [k, t] of own) if (!ckpt.model.has(k)) problems.push(`'${k}' [${t.shape.join(', ')}] is missing from the checkpoint`);
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
