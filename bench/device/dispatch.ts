// Cost per dispatch of 1000 tiny dispatches: through the engine's ops (tensor allocation,
// pipeline cache lookup, uniform slot, bind group, batching) vs raw Dawn (one pipeline, one
// bind group, one encoder, one submit), measured interleaved in one process.
import '../../train/node.ts'; // Dawn as the default GPU
import { init, exp, zeros } from '../../engine/index.ts';
import { unaryKernel } from '../../shaders/elementwise.ts';
import { emit, median, round } from '../util.ts';

const N = 1000;
const REPS = 7;
const device = await init();
const gpu = device.gpu;
const x = zeros([64]);

async function engineRun(): Promise<number> {
  await device.sync();
  const t0 = performance.now();
  for (let i = 0; i < N; i++) exp(x).dispose();
  await device.sync();
  return performance.now() - t0;
}

// Raw Dawn: the same kernel, everything prepared up front.
const pipeline = gpu.createComputePipeline({
  layout: 'auto',
  compute: { module: gpu.createShaderModule({ code: unaryKernel.source({ code: 'exp' }) }), entryPoint: 'main' },
});
const params = gpu.createBuffer({ size: 256, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
gpu.queue.writeBuffer(params, 0, new Uint32Array([64, 0x7fc00000, 0, 0]));
const out = gpu.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE });
const bindGroup = gpu.createBindGroup({
  layout: pipeline.getBindGroupLayout(0),
  entries: [
    { binding: 0, resource: { buffer: params } },
    { binding: 1, resource: { buffer: x.rawBuffer } },
    { binding: 2, resource: { buffer: out } },
  ],
});
async function rawRun(): Promise<number> {
  await device.wait(gpu.queue.onSubmittedWorkDone());
  const t0 = performance.now();
  const enc = gpu.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  for (let i = 0; i < N; i++) pass.dispatchWorkgroups(1);
  pass.end();
  gpu.queue.submit([enc.finish()]);
  await device.wait(gpu.queue.onSubmittedWorkDone());
  return performance.now() - t0;
}
// Raw Dawn with one submit per dispatch: what an engine without batching pays.
async function rawUnbatched(): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const enc = gpu.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(1);
    pass.end();
    gpu.queue.submit([enc.finish()]);
  }
  await device.wait(gpu.queue.onSubmittedWorkDone());
  return performance.now() - t0;
}

await engineRun();
await rawRun();
await rawUnbatched();
const e: number[] = [],
  r: number[] = [],
  u: number[] = [];
for (let i = 0; i < REPS; i++) {
  e.push(await engineRun());
  r.push(await rawRun());
  u.push(await rawUnbatched());
}
const s0 = device.batcher.stats.submits;
await engineRun();
const submits = device.batcher.stats.submits - s0;
emit({
  bench: 'dispatch',
  dispatches: N,
  engine_us_per_dispatch: round((median(e) * 1000) / N, 2),
  raw_dawn_us_per_dispatch: round((median(r) * 1000) / N, 2),
  raw_dawn_one_submit_each_us: round((median(u) * 1000) / N, 2),
  engine_over_raw: round(median(e) / median(r), 2),
  engine_submits_per_1000: submits,
  adapter: device.adapterName,
});
x.dispose();
device.destroy();
