// The page: checks for WebGPU, starts the training worker, draws its curves and gradcheck results.
import { drawChart, type Series } from './chart.ts';
import type { FromWorker, GradcheckReport, ToWorker } from './messages.ts';
import type { StepRecord } from './training.ts';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const startButton = $<HTMLButtonElement>('start');
const stopButton = $<HTMLButtonElement>('stop');
const status = $('status');

/** Everything the page has seen, also for the browser tests and the console. */
const state = {
  adapter: '',
  ready: false,
  running: false,
  records: [] as StepRecord[],
  gradcheck: [] as GradcheckReport[],
  stepsPerSecond: 0,
  /** steps/s of every window of steps the worker reported (timed in the worker). */
  windowRates: [] as number[],
  errors: [] as string[],
};
(globalThis as { mmparetoExample?: typeof state }).mmparetoExample = state;

function setStatus(text: string, kind: 'info' | 'error' = 'info'): void {
  status.textContent = text;
  status.className = kind;
}

function render(): void {
  const last = state.records[state.records.length - 1];
  $('step').textContent = last ? String(last.step + 1) : '0';
  $('rate').textContent = state.stepsPerSecond ? state.stepsPerSecond.toFixed(1) : '–';
  $('loss-now').textContent = last
    ? `${last.losses.mm.toFixed(3)} / ${last.losses.audio.toFixed(3)} / ${last.losses.visual.toFixed(3)}`
    : '–';
  const line = (name: string, color: string, get: (r: StepRecord) => number): Series => ({
    name,
    color,
    points: state.records.map((r) => [r.step + 1, get(r)] as const),
  });
  drawChart(
    $<HTMLCanvasElement>('loss-chart'),
    [
      line('L_m (multimodal)', '#1f6feb', (r) => r.losses.mm),
      line('L_audio', '#d9480f', (r) => r.losses.audio),
      line('L_visual', '#2f9e44', (r) => r.losses.visual),
    ],
    { yMin: 0 },
  );
  drawChart(
    $<HTMLCanvasElement>('cos-chart'),
    [line('audio encoder', '#d9480f', (r) => r.cos.audio), line('visual encoder', '#2f9e44', (r) => r.cos.visual)],
    { yMin: -1, yMax: 1, zeroLine: true },
  );
  startButton.disabled = !state.ready || state.running;
  stopButton.disabled = !state.running;
}

function showGradcheck(r: GradcheckReport): void {
  const row = document.createElement('tr');
  row.dataset.ok = String(r.ok);
  const verdict = r.ok ? 'pass' : 'FAIL';
  const detail =
    r.error ??
    `max |analytic − numeric| ${r.maxAbsErr.toExponential(2)} (tolerance there ${r.tolerance.toExponential(2)})`;
  for (const [text, cls] of [
    [r.name, ''],
    [verdict, r.ok ? 'pass' : 'fail'],
    [detail, 'detail'],
    [`${(r.ms / 1000).toFixed(1)} s`, 'detail'],
  ] as const) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    row.append(td);
  }
  $('gradcheck-rows').append(row);
}

function noWebGPU(): void {
  $('no-webgpu').hidden = false;
  startButton.disabled = true;
  stopButton.disabled = true;
  setStatus('WebGPU is not available in this browser.', 'error');
  state.errors.push('navigator.gpu is undefined');
  render(); // empty charts
}

if (!('gpu' in navigator) || !navigator.gpu) {
  noWebGPU();
} else {
  setStatus('Opening the GPU device…');
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const send = (m: ToWorker) => worker.postMessage(m);
  worker.onerror = (e) => {
    state.errors.push(e.message);
    setStatus(`Worker failed: ${e.message}`, 'error');
  };
  worker.onmessage = (ev: MessageEvent<FromWorker>) => {
    const m = ev.data;
    switch (m.type) {
      case 'device':
        state.adapter = m.adapter;
        $('adapter').textContent = m.adapter;
        setStatus('Checking gradients (conv2d, attention, cross-entropy)…');
        break;
      case 'gradcheck':
        state.gradcheck.push(m.report);
        showGradcheck(m.report);
        break;
      case 'ready':
        state.ready = true;
        setStatus('Ready: press Start to train.');
        break;
      case 'progress':
        state.records.push(...m.records);
        state.stepsPerSecond = m.stepsPerSecond;
        state.windowRates.push(m.stepsPerSecond);
        setStatus('Training with MMPareto…');
        break;
      case 'stopped':
        state.running = false;
        setStatus(`Stopped after ${m.steps} steps.`);
        break;
      case 'error':
        state.running = false;
        state.errors.push(m.message);
        setStatus(m.message, 'error');
        break;
    }
    render();
  };
  startButton.onclick = () => {
    state.running = true;
    send({ type: 'start' });
    render();
  };
  stopButton.onclick = () => {
    send({ type: 'stop' });
    stopButton.disabled = true;
  };
  window.addEventListener('resize', render);
  render();
}
