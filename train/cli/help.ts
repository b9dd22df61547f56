// `mmpareto --help`: every command and flag with its default. The defaults shown are the ones
// train/cli/args.ts applies; the lists (data sets, models, methods) come from their registries.
import { INTEGRATOR_METHODS } from '../../engine/index.ts';
import { AUDIO_FEATURES, DEFAULT_FRAMES, DEFAULT_IMAGE_SIZE } from '../data/av/dataset.ts';
import { DATASETS, DEFAULT_DATA_DIR, MODELS, VERSION } from '../run/config.ts';
import { PREPARE_HELP } from './prepare.ts';

export const HELP = `mmpareto ${VERSION} — multimodal training with MMPareto (Wei & Hu, ICML 2024) on WebGPU

Usage:
  mmpareto train [options]            train a model; writes a run directory
  mmpareto eval RUN_DIR [options]     evaluate a run's checkpoint on a split
  mmpareto report RUN_DIR... [--out FILE]
                                      one self-contained HTML page comparing runs
  mmpareto prepare crema-d|ave --src RAW --out DIR
                                      a raw CREMA-D / AVE download → the layout --data-dir reads
  mmpareto analyze RUN_DIR [options]  Hypothesis 1 at a checkpoint's fixed weights: per
                                      encoder, |g_m| and |g_u|, their covariance traces and
                                      k = tr C^u / tr C^m, the share of batches with cos < 0
  mmpareto --help | --version

train options (default in brackets):
  --dataset NAME      ${DATASETS.join(' | ')} [cg-fmnist]
  --model NAME        ${MODELS.join(' | ')} [cnn]
  --method NAME       ${INTEGRATOR_METHODS.join(' | ')} [mmpareto]
  --epochs N          training epochs [10]
  --batch-size N      items per step [64]
  --optimizer NAME    sgd (momentum) | adamw [sgd]
  --lr X              learning rate [0.001, the paper's]
  --momentum X        SGD momentum [0.9]
  --weight-decay X    weight decay (SGD: L2 added to the gradient; AdamW: decoupled) [0.0001]
  --lr-schedule NAME  none | cosine (cosine decay to 0 over the run) [none]
  --gamma X           MMPareto's magnitude factor γ [1.5]
  --fusion NAME       late fusion of modality features: concat | sum [concat]
  --seed N            initialisation, split and shuffling seed [0]
  --data-dir DIR      Fashion-MNIST IDX files [${DEFAULT_DATA_DIR}]; for crema-d and ave,
                      the directory \`mmpareto prepare\` made (its split is used as is)
  --train-limit N     use at most N training items, 0 = all [0]
  --val-size N        training items held out for validation (Fashion-MNIST sets) [5000]
  --frames T          crema-d, ave: video frames per clip, features averaged over time [${DEFAULT_FRAMES}]
  --image-size S      crema-d, ave: frame side after RandomResizedCrop / resize [${DEFAULT_IMAGE_SIZE}]
  --audio NAME        crema-d, ave: ${AUDIO_FEATURES.join(' | ')} (OGM-GE log STFT at 22,050 Hz, or Kaldi
                      log mel fbank), computed on the GPU per batch [stft]
  --log-every N       read back (and log) the step losses and MMPareto telemetry every N steps [20]
  --on-nonfinite X    at a NaN/Inf loss or gradient: stop (nothing of that step or later is
                      applied; the state before it goes to nonfinite.safetensors) | skip (drop
                      such steps, log them, train on) [stop]
  --out DIR           run directory [runs/DATASET-MODEL-METHOD-sSEED]; one run at a time
                      (a second one is refused while RUN/lock names a live process)
  --resume            continue the run in --out from its latest checkpoint, or start it over if
                      it stopped before its first one (same config; only --epochs may be raised,
                      --on-nonfinite and --data-dir changed); the result equals an uninterrupted run
  --no-report         do not write report.html into the run directory at the end

${PREPARE_HELP}
eval options:
  --checkpoint WHICH  best | latest | a .safetensors path [best]
  --split NAME        train | val | test [test]
  --data-dir DIR      where the data set lives, if not where the run found it

analyze options:
  --checkpoint WHICH  best | latest | a .safetensors path [best]
  --batches N         training mini-batches (>= 2) to take g_m and g_u on [100]
  --out FILE          the JSON result [RUN_DIR/analysis-WHICH-epochE.json]

common:
  --quiet             no progress bar; only epoch summaries and results
  -h, --help          this text

A run directory holds config.json, metrics.jsonl (every step's losses and the
integrator's cos β, α and gradient norms per encoder, read back every --log-every
steps; one evaluation per epoch; the final test result), latest.safetensors and \
best.safetensors (PyTorch parameter names, plus
optimizer and integrator state and a CRC-32 per tensor; written whole or not at all, also
on a full disk), report.html, and while training runs, lock.
Exit codes: 0 success, 1 the work failed (missing data, bad checkpoint, I/O, a full disk,
a non-finite loss, a lost GPU — the message says which and how to continue), 2 bad usage
(unknown command, flag or name), 130 / 143 interrupted by Ctrl-C / SIGTERM: training stops
after the step in progress (a second Ctrl-C kills it); --resume continues from the last
finished epoch, repeating that epoch's steps with identical results.
`;
