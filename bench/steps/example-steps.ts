// The browser example's training speed in Chromium (SwiftShader, through the example page and its
// worker) and in Node (Dawn + lavapipe, the same training module in this process), alternating
// rounds so that machine noise hits both. Both wrap a device requested with the example's limits
// through Device.fromGPUDevice and time windows of `readEvery` steps that end in the one readback
// (as the page does). Per round: the median steps/s over the windows after a warm-up window.
// Prints JSON lines, then the Chromium/Node ratio. Usage: tsx bench/steps/example-steps.ts [rounds] [windows]
import '../../train/node.ts'; // Dawn as the default GPU
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from 'webgpu';
import { Device } from '../../engine/index.ts';
import { EXAMPLE_DIR, buildExample } from '../../examples/browser/build.ts';
import { serveStatic, urlOf } from '../../examples/browser/serve.ts';
import { DEFAULT_CONFIG, ExampleTraining } from '../../examples/browser/training.ts';
import { launchChromium } from '../../test/embedding/browser/chromium.ts';
import { emit, median, round } from '../util.ts';

const rounds = Number(process.argv[2] ?? 2);
const windows = Number(process.argv[3] ?? 20);
const perWindow = DEFAULT_CONFIG.readEvery;

const instance = create([]); // kept alive: Dawn crashes if it is collected

async function nodeRound(): Promise<{ adapter: string; rates: number[] }> {
  const adapter = (await instance.requestAdapter())!;
  const maxStorageBuffersPerShaderStage = Math.min(10, adapter.limits.maxStorageBuffersPerShaderStage);
  const device = await Device.fromGPUDevice(
    await adapter.requestDevice({ requiredLimits: { maxStorageBuffersPerShaderStage } }),
  );
  const t = new ExampleTraining(device);
  const rates: number[] = [];
  for (let w = 0; w <= windows; w++) {
    const t0 = performance.now();
    for (let i = 0; i < perWindow; i++) t.trainStep();
    await t.read();
    if (w > 0) rates.push((perWindow * 1000) / (performance.now() - t0)); // window 0 compiles the pipelines
  }
  t.dispose();
  device.destroy();
  device.gpu.destroy(); // the bench owns this device
  return { adapter: device.adapterName, rates };
}

const dist = join(mkdtempSync(join(tmpdir(), 'mmpareto-bench-')), 'dist');
await buildExample(dist);
const server = await serveStatic({ '/': EXAMPLE_DIR, '/dist/': dist });
const browser = await launchChromium();

async function chromiumRound(): Promise<{ adapter: string; rates: number[] }> {
  const page = await browser.context.newPage();
  await page.goto(urlOf(server));
  type State = {
    adapter: string;
    ready: boolean;
    running: boolean;
    errors: string[];
    records: unknown[];
    windowRates: number[];
  };
  const state = () => page.evaluate(() => (globalThis as unknown as { mmparetoExample: State }).mmparetoExample);
  await page.waitForFunction(
    () => (globalThis as unknown as { mmparetoExample?: State }).mmparetoExample?.ready,
    null,
    { timeout: 300_000 },
  );
  await page.click('#start');
  await page.waitForFunction(
    (n) => (globalThis as unknown as { mmparetoExample: State }).mmparetoExample.records.length >= n,
    (windows + 1) * perWindow,
    { timeout: 600_000, polling: 50 },
  );
  await page.click('#stop');
  await page.waitForFunction(
    () => !(globalThis as unknown as { mmparetoExample: State }).mmparetoExample.running,
    null,
    { timeout: 60_000 },
  );
  const s = await state();
  if (s.errors.length) throw new Error(`example page: ${s.errors.join('; ')}`);
  await page.close();
  return { adapter: s.adapter, rates: s.windowRates.slice(1, windows + 1) }; // the first window compiles the pipelines
}

const summary: Record<string, number[]> = { node: [], chromium: [] };
for (let r = 0; r < rounds; r++) {
  for (const [env, fn] of [
    ['node', nodeRound],
    ['chromium', chromiumRound],
  ] as const) {
    const { adapter, rates } = await fn();
    const sps = median(rates);
    summary[env]!.push(sps);
    emit({
      bench: 'example-steps',
      env,
      round: r,
      adapter,
      windows: rates.length,
      stepsPerWindow: perWindow,
      batch: DEFAULT_CONFIG.batch,
      stepsPerSecond: round(sps, 2),
    });
  }
}
emit({
  bench: 'example-steps',
  summary: true,
  nodeStepsPerSecond: round(median(summary.node!), 2),
  chromiumStepsPerSecond: round(median(summary.chromium!), 2),
  chromiumOverNode: round(median(summary.chromium!) / median(summary.node!), 3),
});
await browser.close();
server.close();
