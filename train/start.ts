// `npm start`: the default job — MMPareto on CG-FMNIST with the paper's CNN encoders, sized to
// finish in about five minutes on a software GPU (lavapipe on 2 cores; a real GPU is far
// quicker). It trains on a seeded 12,800-item subset of the training file for 2 epochs (400
// steps), keeps the better epoch by validation, tests on all 10,000 test items, and writes the
// run directory and its HTML report under runs/. Extra flags are passed on to `mmpareto train`
// (e.g. `npm start -- --method uniform`, or `--train-limit 0 --epochs 10` for a full run).
import { main } from './cli/main.ts';

const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
const extra = process.argv.slice(2);
const method = extra.includes('--method') ? extra[extra.indexOf('--method') + 1]! : 'mmpareto';
const args = [
  'train',
  '--dataset',
  'cg-fmnist',
  '--model',
  'cnn',
  '--method',
  method,
  '--train-limit',
  '12800',
  '--val-size',
  '1000',
  '--epochs',
  '2',
  '--batch-size',
  '64',
  '--lr',
  '0.01',
  '--out',
  `runs/cg-fmnist-cnn-${method}-${stamp}`,
  ...extra.filter((_, i) => extra[i] !== '--method' && extra[i - 1] !== '--method'),
];
console.log(`mmpareto ${args.join(' ')}`);
console.log('CG-FMNIST: the colour modality is a label shortcut in training and random at test time, so the test');
console.log("accuracy rewards a model whose gray encoder learned too; MMPareto integrates each encoder's");
console.log('multimodal and unimodal gradients (Wei & Hu, ICML 2024). Progress on stderr; results below.');
process.exitCode = await main(args);
