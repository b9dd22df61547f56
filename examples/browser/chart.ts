// A small line chart on a canvas: steps on x, one line per series, a legend, y ticks.
export interface Series {
  name: string;
  color: string;
  /** (step, value) pairs in step order. */
  points: readonly (readonly [number, number])[];
}

export interface ChartOptions {
  /** Fixed y range; autoscaled from the data when absent. */
  yMin?: number;
  yMax?: number;
  /** Draw a dashed line at y = 0 (for cos β). */
  zeroLine?: boolean;
}

const PAD = { left: 44, right: 12, top: 26, bottom: 24 };

export function drawChart(canvas: HTMLCanvasElement, series: readonly Series[], opts: ChartOptions = {}): void {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  const xMax = Math.max(1, ...all.map(([x]) => x));
  let yMin = opts.yMin ?? Math.min(...all.map(([, y]) => y));
  let yMax = opts.yMax ?? Math.max(...all.map(([, y]) => y));
  if (!Number.isFinite(yMin) || !Number.isFinite(yMax)) [yMin, yMax] = [0, 1];
  if (yMax - yMin < 1e-6) [yMin, yMax] = [yMin - 0.5, yMax + 0.5];
  const px = (x: number) => PAD.left + (x / xMax) * (w - PAD.left - PAD.right);
  const py = (y: number) => h - PAD.bottom - ((y - yMin) / (yMax - yMin)) * (h - PAD.top - PAD.bottom);

  ctx.font = '11px system-ui, sans-serif';
  ctx.strokeStyle = '#d0d4da';
  ctx.fillStyle = '#59616b';
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const y = yMin + ((yMax - yMin) * i) / 4;
    ctx.beginPath();
    ctx.moveTo(PAD.left, py(y));
    ctx.lineTo(w - PAD.right, py(y));
    ctx.stroke();
    ctx.fillText(y.toFixed(2), PAD.left - 6, py(y));
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  ctx.fillText('0', px(0), h - PAD.bottom + 6);
  ctx.fillText(`step ${xMax}`, px(xMax) - 20, h - PAD.bottom + 6);
  if (opts.zeroLine && yMin < 0 && yMax > 0) {
    ctx.setLineDash([4, 4]);
    ctx.strokeStyle = '#8a939e';
    ctx.beginPath();
    ctx.moveTo(PAD.left, py(0));
    ctx.lineTo(w - PAD.right, py(0));
    ctx.stroke();
    ctx.setLineDash([]);
  }

  let legendX = PAD.left;
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    let started = false;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(y)) continue;
      if (started) ctx.lineTo(px(x), py(y));
      else ctx.moveTo(px(x), py(y));
      started = true;
    }
    ctx.stroke();
    ctx.fillStyle = s.color;
    ctx.fillRect(legendX, 9, 14, 3);
    ctx.fillStyle = '#2b3138';
    ctx.fillText(s.name, legendX + 18, 11);
    legendX += 26 + ctx.measureText(s.name).width;
  }
}
