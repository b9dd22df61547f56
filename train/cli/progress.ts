// Training progress on stderr: on a terminal, one line redrawn in place —
//   epoch 2/5 ██████░░░░░░  412/859 | loss 0.731 | 9.8 steps/s | ETA 3:05
// elsewhere (logs, CI, --quiet) nothing is redrawn: the caller prints whole lines instead.
import type { ProgressState } from '../run/trainer.ts';

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

export function progressLine(p: ProgressState, width = 24): string {
  const frac = p.steps ? Math.min(1, p.step / p.steps) : 0;
  const full = Math.round(frac * width);
  const bar = '█'.repeat(full) + '░'.repeat(width - full);
  const eta = p.stepsPerSecond > 0 ? formatDuration(p.remaining / p.stepsPerSecond) : '--:--';
  const loss = Number.isFinite(p.loss) ? p.loss.toFixed(3) : '  -  ';
  return (
    `epoch ${p.epoch}/${p.epochs} ${bar} ${String(p.step).padStart(String(p.steps).length)}/${p.steps} | loss ` +
    `${loss} | ${p.stepsPerSecond.toFixed(1)} steps/s | ETA ${eta}`
  );
}

export class ProgressBar {
  private shown = false;
  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    readonly enabled = stream.isTTY === true,
  ) {}
  update(p: ProgressState): void {
    if (!this.enabled) return;
    const cols = this.stream.columns || 100;
    this.stream.write(`\r${progressLine(p).slice(0, cols - 1)}\x1b[K`);
    this.shown = true;
  }
  /** Clears the bar so a normal line can be printed. */
  clear(): void {
    if (!this.shown) return;
    this.stream.write('\r\x1b[K');
    this.shown = false;
  }
}
