// The browser: Debian's headless Chromium with WebGPU (SwiftShader here), driven by playwright-core.
// The example page (examples/browser) built with esbuild and served on 127.0.0.1: its gradcheck of
// conv2d, attention and cross-entropy, its training (the loss falls, no console error, a
// screenshot), its message without WebGPU; and parity of the first step with Node (Dawn + lavapipe).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import type { Page } from 'playwright-core';
import { device } from '../helpers.ts';
import { EXAMPLE_DIR, buildExample } from '../../examples/browser/build.ts';
import { serveStatic, urlOf } from '../../examples/browser/serve.ts';
import { ExampleTraining, LOSSES, type StepRecord } from '../../examples/browser/training.ts';
import type { GradcheckReport } from '../../examples/browser/messages.ts';
import { launchChromium, type Browser } from './browser/chromium.ts';

const test = suite('browser');

interface ExampleState {
  adapter: string;
  ready: boolean;
  running: boolean;
  records: StepRecord[];
  gradcheck: GradcheckReport[];
  stepsPerSecond: number;
  errors: string[];
}

const tmp = mkdtempSync(join(tmpdir(), 'mmpareto-browser-test-'));
let server: Server;
let browser: Browser;

test.before(async () => {
  const dist = join(tmp, 'dist');
  const parity = join(tmp, 'parity');
  mkdirSync(parity);
  await buildExample(dist);
  await buildExample(parity, [join(import.meta.dirname, 'browser', 'parity.ts')]);
  writeFileSync(
    join(parity, 'index.html'),
    '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module" ' +
      'src="./parity.js"></script>',
  );
  server = await serveStatic({ '/': EXAMPLE_DIR, '/dist/': dist, '/parity/': parity });
  browser = await launchChromium();
});

test.after(async () => {
  await browser?.close();
  server?.close();
});

/** A page with its console errors, uncaught exceptions and failed requests collected. */
async function open(path: string, initScript?: string): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.context.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  if (initScript) await page.addInitScript({ content: initScript }); // a string: tsx would rewrite a function
  await page.goto(urlOf(server, path));
  return { page, problems };
}

const exampleState = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as { mmparetoExample: ExampleState }).mmparetoExample);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

let examplePage: { page: Page; problems: string[] };

test('the example page runs gradcheck of conv2d, attention and cross-entropy in the browser: all pass', async () => {
  examplePage = await open('/');
  const { page } = examplePage;
  await page.waitForFunction(
    () => {
      const s = (globalThis as unknown as { mmparetoExample?: ExampleState }).mmparetoExample;
      return s && (s.ready || s.errors.length > 0);
    },
    null,
    { timeout: 120_000 },
  );
  const s = await exampleState(page);
  assert.equal(s.errors, []);
  assert.match(s.adapter, /swiftshader|google/i, `adapter '${s.adapter}'`);
  assert.equal(
    s.gradcheck.map((r) => r.name.split(' ')[0]),
    ['conv2d', 'attention', 'cross-entropy'],
  );
  for (const r of s.gradcheck)
    assert.ok(r.ok && r.maxAbsErr <= r.tolerance, `${r.name}: ${r.error ?? `${r.maxAbsErr} > ${r.tolerance}`}`);
  assert.is(await page.locator('#gradcheck-rows td.pass').count(), 3, 'three rows say pass');
});

test(
  'the example page trains with MMPareto in a worker: ' + 'the loss falls, curves and steps/s show, no console error',
  async () => {
    const { page, problems } = examplePage;
    await page.click('#start');
    await page.waitForFunction(
      () => {
        const s = (globalThis as unknown as { mmparetoExample: ExampleState }).mmparetoExample;
        return s.records.length >= 60 || s.errors.length > 0;
      },
      null,
      { timeout: 180_000 },
    );
    await page.click('#stop');
    await page.waitForFunction(
      () => !(globalThis as unknown as { mmparetoExample: ExampleState }).mmparetoExample.running,
      null,
      { timeout: 60_000 },
    );
    const s = await exampleState(page);
    assert.equal(s.errors, []);
    assert.equal(
      s.records.map((r) => r.step),
      [...s.records.keys()],
      'every step reported once, in order',
    );
    // The first steps sit near ln 4 = 1.386 (4 balanced classes); 60 steps of MMPareto on the
    // strong audio modality must bring the multimodal loss well below that.
    const first = mean(s.records.slice(0, 5).map((r) => r.losses.mm));
    const last = mean(s.records.slice(-10).map((r) => r.losses.mm));
    assert.ok(Math.abs(first - Math.log(4)) < 0.15, `first losses ${first} near ln 4`);
    assert.ok(last < 0.6 * first, `multimodal loss fell from ${first.toFixed(3)} to ${last.toFixed(3)}`);
    for (const r of s.records) {
      for (const n of LOSSES) assert.ok(Number.isFinite(r.losses[n]), `step ${r.step} loss ${n}`);
      for (const c of [r.cos.audio, r.cos.visual])
        assert.ok(c >= -1 && c <= 1, `step ${r.step}: cos β ${c} in [−1, 1]`);
    }
    assert.ok(s.stepsPerSecond > 0);
    assert.match((await page.locator('#step').textContent()) ?? '', /^\d+$/);
    assert.match((await page.locator('#rate').textContent()) ?? '', /^\d+\.\d$/);
    assert.match((await page.locator('#status').textContent()) ?? '', /Stopped after \d+ steps/);
    const shot = join(tmp, 'example.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(
      `    screenshot: ${shot} (${s.records.length} steps, ${s.stepsPerSecond.toFixed(1)} steps/s, loss ` +
        `${first.toFixed(3)} → ${last.toFixed(3)})`,
    );
    assert.equal(problems, [], 'no console error');
    await page.close();
  },
);

test(
  'parity: first-step losses and per-loss gradient norms in Chromium ' + '(SwiftShader) equal Node (Dawn + lavapipe)',
  async () => {
    const { page, problems } = await open('/parity/');
    await page.waitForFunction(() => 'runParity' in globalThis, null, { timeout: 30_000 });
    type Diag = { adapter: string; losses: Record<string, number>; gradNorms: Record<string, number> };
    const web = (await page.evaluate(() =>
      (globalThis as unknown as { runParity(): Promise<unknown> }).runParity(),
    )) as Diag;
    const training = new ExampleTraining(device);
    const node = await training.firstStepDiagnostics();
    training.dispose();
    // Tolerance. Both run the same WGSL on the same seeded weights and batch, with the same
    // summation orders (no atomics, fixed reduction trees), so they can differ only where WGSL lets
    // implementations differ: fusing a·b + c (≤ 1 ulp) and the accuracy of exp, log, sqrt and
    // division (≤ 4 ulp here). The longest chain from input to a gradient entry holds about 500
    // roundings (conv accumulations of 27 and 72 terms, batch statistics over 8192 values, the
    // 256-wide heads, their backward twins); if every one differed by 4 ulp in the same direction the
    // results would differ by 500·4·2⁻²⁴ ≈ 1.2e-4 relative. rtol = 2e-4 covers that bound with a
    // condition number up to 1.6; the observed differences are printed below.
    const rtol = 2e-4;
    let worst = 0;
    for (const n of LOSSES) {
      for (const [what, a, b] of [
        ['loss', web.losses[n]!, node.losses[n]],
        ['|grad|', web.gradNorms[n]!, node.gradNorms[n]],
      ] as const) {
        const rel = Math.abs(a - b) / Math.abs(b);
        worst = Math.max(worst, rel);
        assert.ok(Number.isFinite(a) && b > 0, `${n} ${what}: ${a} vs ${b}`);
        assert.ok(
          rel <= rtol,
          `${n} ${what}: Chromium ${a} vs Node ${b}, relative difference ${rel.toExponential(2)} > ${rtol}`,
        );
      }
    }
    console.log(
      `    parity (${web.adapter} vs ${device.adapterName.split(' ').slice(0, 3).join(' ')}): worst relative ` +
        `difference ${worst.toExponential(2)}`,
    );
    assert.equal(problems, []);
    await page.close();
  },
);

test('in Chromium too, Device.fromGPUDevice refuses a destroyed device with a clear error', async () => {
  const { page, problems } = await open('/parity/');
  await page.waitForFunction(() => 'fromLostDevice' in globalThis, null, { timeout: 30_000 });
  const message = await page.evaluate(() =>
    (globalThis as unknown as { fromLostDevice(): Promise<string> }).fromLostDevice(),
  );
  assert.match(message, /Device\.fromGPUDevice: the GPUDevice is lost \(reason 'destroyed'/);
  assert.equal(problems, []);
  await page.close();
});

test('without WebGPU the example page says what is missing and how to get it', async () => {
  const { page, problems } = await open(
    '/',
    "Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined });",
  );
  await page.waitForSelector('#no-webgpu:not([hidden])', { timeout: 30_000 });
  const text = (await page.locator('#no-webgpu').textContent()) ?? '';
  assert.match(text, /navigator\.gpu/);
  assert.match(text, /enable-unsafe-webgpu/);
  assert.match(text, /localhost/);
  assert.match((await page.locator('#status').textContent()) ?? '', /WebGPU is not available/);
  assert.ok(await page.locator('#start').isDisabled());
  await page.screenshot({ path: join(tmp, 'no-webgpu.png') });
  assert.equal(problems, []);
  await page.close();
});

test.run();
