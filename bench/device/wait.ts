// Host CPU burnt while waiting on the GPU. Dawn's Node binding polls for completion by
// re-arming the global setImmediate, spinning a core that a software GPU needs. The engine
// swaps in a 1 ms timer while it waits (Device.quietWait); this measures both ways,
// interleaved: the host thread's CPU time during the wait, and the wall time of the work.
import '../../train/node.ts'; // Dawn as the default GPU
import { init, randn } from '../../engine/index.ts';
import { matmulKernel } from '../../engine/ops/matmul.ts';
import { readFileSync } from 'node:fs';
import { emit, median, round } from '../util.ts';

/** CPU ms of the JS main thread alone (Linux /proc; lavapipe's worker threads excluded). */
function mainThreadCpuMs(): number {
  const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, at USER_HZ = 100
}

const REPS = 5;
const n = Number(process.env.N ?? 1024);
const device = await init();
const a = randn([n, n]);
const b = randn([n, n]);

interface Sample {
  wall: number;
  cpu: number;
  thread: number;
}
async function run(quiet: boolean): Promise<Sample> {
  device.quietWait = quiet;
  await device.sync();
  const t0 = performance.now();
  for (let i = 0; i < 3; i++) matmulKernel(a, b).dispose();
  device.batcher.flush();
  const c0 = process.cpuUsage();
  const th0 = mainThreadCpuMs();
  await device.sync();
  const c = process.cpuUsage(c0);
  return { wall: performance.now() - t0, cpu: (c.user + c.system) / 1000, thread: mainThreadCpuMs() - th0 };
}

await run(true); // compile + first touch
const quiet: Sample[] = [];
const busy: Sample[] = [];
for (let i = 0; i < REPS; i++) {
  busy.push(await run(false));
  quiet.push(await run(true));
}
const m = (xs: Sample[], k: keyof Sample) => median(xs.map((x) => x[k]));
emit({
  bench: 'wait',
  work: `3 matmuls ${n}^3`,
  busy_poll: {
    wall_ms: round(m(busy, 'wall'), 1),
    main_thread_cpu_ms: round(m(busy, 'thread'), 1),
    process_cpu_ms: round(m(busy, 'cpu'), 1),
  },
  quiet_wait: {
    wall_ms: round(m(quiet, 'wall'), 1),
    main_thread_cpu_ms: round(m(quiet, 'thread'), 1),
    process_cpu_ms: round(m(quiet, 'cpu'), 1),
  },
  wall_ratio_quiet_over_busy: round(m(quiet, 'wall') / m(busy, 'wall'), 3),
  main_thread_cpu_ratio_quiet_over_busy: round(m(quiet, 'thread') / Math.max(m(busy, 'thread'), 1e-9), 3),
  note: 'main-thread CPU from /proc (10 ms ticks); process CPU includes the lavapipe worker threads doing the GPU work',
  adapter: device.adapterName,
});
a.dispose();
b.dispose();
device.destroy();
