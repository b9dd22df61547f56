// Matmul throughput: the tiled kernel beside the naive one-thread-per-output kernel, measured
// in the same run and interleaved (the software device shares its cores with other work, so
// only same-run comparisons mean anything). Prints one JSON line per size.
import '../../train/node.ts'; // Dawn as the default GPU
import { init, randn, type Tensor } from '../../engine/index.ts';
import { matmulKernel } from '../../engine/ops/matmul.ts';

const device = await init();
const adapter = device.adapterName;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
};

/** Milliseconds per dispatch for `reps` back-to-back dispatches between two syncs. */
async function time(run: () => Tensor, reps: number): Promise<number> {
  await device.sync();
  const outs: Tensor[] = [];
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) outs.push(run());
  await device.sync();
  const ms = (performance.now() - t0) / reps;
  for (const o of outs) o.dispose();
  return ms;
}

/** Interleaves the kernels `rounds` times; each sample dispatches enough copies to last ~targetMs. */
async function compare(
  kernels: Record<string, () => Tensor>,
  rounds: number,
  targetMs: number,
): Promise<Record<string, number>> {
  const reps: Record<string, number> = {};
  for (const [name, run] of Object.entries(kernels)) {
    await time(run, 1); // compile + warm up
    const est = await time(run, 1);
    reps[name] = Math.max(1, Math.min(20, Math.round(targetMs / est)));
  }
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(kernels).map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [name, run] of Object.entries(kernels)) samples[name]!.push(await time(run, reps[name]!));
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
}

const gflops = (n: number, ms: number) => (2 * n * n * n) / (ms * 1e6);
const r2 = (x: number) => Math.round(x * 100) / 100;

for (const n of [256, 512, 1024]) {
  const a = randn([n, n]);
  const b = randn([n, n]);
  const ms = await compare(
    { tiled: () => matmulKernel(a, b), naive: () => matmulKernel(a, b, false, false, true) },
    n === 1024 ? 5 : 7,
    n === 1024 ? 600 : 250,
  );
  console.log(
    JSON.stringify({
      bench: 'matmul',
      n,
      tiled_gflops: r2(gflops(n, ms.tiled!)),
      naive_gflops: r2(gflops(n, ms.naive!)),
      speedup: r2(ms.naive! / ms.tiled!),
      tiled_ms: r2(ms.tiled!),
      naive_ms: r2(ms.naive!),
      adapter,
    }),
  );
  if (n === 1024) {
    const t = await compare(
      {
        nn: () => matmulKernel(a, b),
        tn: () => matmulKernel(a, b, true, false),
        nt: () => matmulKernel(a, b, false, true),
        tt: () => matmulKernel(a, b, true, true),
      },
      3,
      400,
    );
    console.log(
      JSON.stringify({
        bench: 'matmul_transposed',
        n,
        nn_gflops: r2(gflops(n, t.nn!)),
        transA_gflops: r2(gflops(n, t.tn!)),
        transB_gflops: r2(gflops(n, t.nt!)),
        transAB_gflops: r2(gflops(n, t.tt!)),
        nn_ms: r2(t.nn!),
        transA_ms: r2(t.tn!),
        transB_ms: r2(t.nt!),
        transAB_ms: r2(t.tt!),
        adapter,
      }),
    );
  }
  a.dispose();
  b.dispose();
}
device.destroy();
