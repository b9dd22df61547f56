// `npm start` (until the trainer exists): trains a small MLP on the GPU to fit
// f(x) = sin(3·x1)·cos(2·x2) on [-1, 1]² and prints the loss as it falls.
import './node.ts'; // Dawn as the default GPU
import { init, mean, SGD, square, sub, tensor, tidy, Generator, liveTensors } from '../engine/index.ts';
import { MLP } from '../models/mlp.ts';

const steps = Number(process.env.STEPS ?? 400);
const batch = 256;
const device = await init();
console.log(`device: ${device.adapterName}`);
const model = new MLP([2, 64, 64, 1], 1);
const opt = new SGD(model.parameters, { lr: 0.1, momentum: 0.9 });
const gen = new Generator(7);
const target = (x1: number, x2: number) => Math.sin(3 * x1) * Math.cos(2 * x2);

function makeBatch(): { x: Float32Array; y: Float32Array } {
  const x = new Float32Array(batch * 2);
  const y = new Float32Array(batch);
  for (let i = 0; i < batch; i++) {
    x[2 * i] = gen.uniform() * 2 - 1;
    x[2 * i + 1] = gen.uniform() * 2 - 1;
    y[i] = target(x[2 * i]!, x[2 * i + 1]!);
  }
  return { x, y };
}

const t0 = performance.now();
let first = NaN;
let last = NaN;
for (let step = 1; step <= steps; step++) {
  const { x, y } = makeBatch();
  const loss = tidy(() => {
    const pred = model.forward(tensor(x, [batch, 2]));
    return mean(square(sub(pred, tensor(y, [batch, 1]))));
  });
  loss.backward();
  opt.step();
  opt.zeroGrad();
  if (step === 1 || step % 50 === 0) {
    last = await loss.item(); // one small readback every 50 steps
    if (step === 1) first = last;
    const rate = step / ((performance.now() - t0) / 1000);
    console.log(`step ${String(step).padStart(4)}  mse ${last.toFixed(5)}  ${rate.toFixed(1)} steps/s`);
  }
  loss.dispose();
}
const secs = (performance.now() - t0) / 1000;
console.log(
  `trained ${steps} steps in ${secs.toFixed(1)} s: mse ${first.toFixed(4)} -> ${last.toFixed(4)} ` +
    `(${liveTensors.count} live tensors)`,
);
opt.dispose();
device.destroy();
process.exitCode = last < first ? 0 : 1;
