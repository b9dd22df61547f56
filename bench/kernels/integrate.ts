// Gradient-integrator step cost on two ResNet-18-shaped encoder groups (11.2M parameters each,
// the paper's audio/visual encoders; synthetic per-loss gradients), same process, interleaved
// round by round; medians in ms. Lines:
//  - {bench:'integrate', method, ms, ...}: GradientIntegrator.step (Gram + solve + fused
//    combine/SGD-momentum) per step, against the baseline 'sgd-sum': SGD-momentum .step() on a
//    precomputed g_m + g_u (what the uniform baseline pays after its backward, which sums
//    gradients during accumulation); ratio = ms / baseline; GB/s = bytes touched / time.
//  - {bench:'integrate-combine', ...}: unfused combine into fresh gradient tensors (mmpareto).
// Usage: tsx bench/kernels/integrate.ts [rounds, default 5] [scale, default 1: fraction of the channels]
import '../../train/node.ts'; // Dawn as the default GPU
import {
  GradientIntegrator,
  init,
  randn,
  SGD,
  add,
  type IntegratorMethod,
  type PerLossGradients,
  type Tensor,
} from '../../engine/index.ts';
import { emit, median, round } from '../util.ts';

const rounds = Number(process.argv[2] ?? 5);
const scale = Number(process.argv[3] ?? 1);
const device = await init();

/** Parameter shapes of a ResNet-18 encoder (convs without bias, batch-norm weight and bias). */
function resnet18Shapes(inChannels: number): number[][] {
  const c = (n: number) => Math.max(1, Math.round(n * scale));
  const shapes: number[][] = [[c(64), inChannels, 7, 7], [c(64)], [c(64)]];
  let cin = c(64);
  for (const [width, stride] of [
    [64, 1],
    [128, 2],
    [256, 2],
    [512, 2],
  ] as const) {
    const w = c(width);
    for (let block = 0; block < 2; block++) {
      shapes.push([w, cin, 3, 3], [w], [w], [w, w, 3, 3], [w], [w]);
      if (block === 0 && (stride !== 1 || cin !== w)) shapes.push([w, cin, 1, 1], [w], [w]);
      cin = w;
    }
  }
  return shapes;
}

const groups = [resnet18Shapes(1), resnet18Shapes(3)].map((shapes) =>
  shapes.map((s) => randn(s, { requiresGrad: true })),
);
const params = groups.flat();
const count = params.reduce((a, p) => a + p.size, 0);
const grads = groups.map((g) => [0, 1].map(() => g.map((p) => randn(p.shape))));
const sums = groups.map((g, gi) => g.map((_, t) => add(grads[gi]![0]![t]!, grads[gi]![1]![t]!)));
// Keyed by parameter as perLossGrads gives them: group g is integrated from losses 'mm' and 'u<g>'.
const losses = groups.map((_, g) => ['mm', `u${g}`]);
const byParam: PerLossGradients = new Map(
  groups.flatMap((g, gi) =>
    g.map((p, t): [Tensor, Record<string, Tensor>] => [p, { mm: grads[gi]![0]![t]!, [`u${gi}`]: grads[gi]![1]![t]! }]),
  ),
);

async function time(fn: () => void, reps: number): Promise<number> {
  await device.sync();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  await device.sync();
  return (performance.now() - t0) / reps;
}

const methods: IntegratorMethod[] = ['uniform', 'mmpareto', 'mmpareto-official', 'mgda', 'pcgrad'];
const opt = new SGD(params, { lr: 1e-6, momentum: 0.9 });
const integrators = new Map(
  methods.map((m) => [
    m,
    new GradientIntegrator(
      groups.map((params, g) => ({ params, losses: losses[g]! })),
      { method: m },
    ),
  ]),
);
const baseline = () => {
  params.forEach((p, i) => {
    p.grad = sums.flat()[i]!;
  });
  opt.step();
  for (const p of params) p.grad = null;
};
const combine = () => {
  for (const t of integrators.get('mmpareto')!.combine(byParam).values()) t.dispose();
};
const samples = new Map<string, number[]>([
  ['sgd-sum', []],
  ['combine', []],
  ...methods.map((m) => [m, []] as [string, number[]]),
]);
for (let r = -1; r < rounds; r++) {
  // round -1 compiles and warms up
  const run = (name: string, fn: () => void) => time(fn, 2).then((ms) => r >= 0 && samples.get(name)!.push(ms));
  await run('sgd-sum', baseline);
  for (const m of methods) await run(m, () => integrators.get(m)!.step(opt, byParam));
  await run('combine', combine);
}
const base = median(samples.get('sgd-sum')!);
const mb = (count * 4) / 1e6;
// bytes: baseline reads p, m, g and writes p, m (5 passes); a fused integrator step reads 2
// gradients for the Gram pass, then p, m, 2 gradients and writes p, m (8 passes + 2 = 10).
emit({
  bench: 'integrate',
  method: 'sgd-sum',
  params: count,
  ms: round(base, 1),
  gbps: round((5 * mb) / base, 2),
  device: device.adapterName,
});
for (const m of methods) {
  const ms = median(samples.get(m)!);
  emit({
    bench: 'integrate',
    method: m,
    params: count,
    ms: round(ms, 1),
    ratio: round(ms / base, 2),
    gbps: round((10 * mb) / ms, 2),
  });
}
const cm = median(samples.get('combine')!);
emit({
  bench: 'integrate-combine',
  method: 'mmpareto',
  params: count,
  ms: round(cm, 1),
  gbps: round((7 * mb) / cm, 2),
});
for (const i of integrators.values()) i.dispose();
opt.dispose();
for (const t of [...params, ...grads.flat(2), ...sums.flat()]) t.dispose();
device.destroy();
