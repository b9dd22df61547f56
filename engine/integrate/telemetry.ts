// Integrator telemetry: the solve kernel writes, per step and group, one record into a GPU ring
// of `steps` records per group, plus per-group counters (steps run, non-finite steps, first and
// last non-finite step) that exist even with the ring off. read() fetches all of it with ONE
// buffer map. Layout (u32 words): per group [nonFiniteCount, firstBad+1, lastBad+1, stepsRun],
// then record (step % steps)·G + group of TELEMETRY_RECORD words:
// [step+1, flags, cos, alpha, |g_0|, |g_1|, |h|, scale, c_0 … c_7] (floats as their bits).
import { EngineError } from '../errors.ts';
import type { Tensor } from '../tensor.ts';
import { TELEMETRY_HEADER, TELEMETRY_RECORD } from '../../shaders/integrate.ts';
import { FLAG } from '../../shaders/integrate-solve.ts';

export interface TelemetryRecord {
  /** Integrator step (0-based) and parameter group. */
  step: number;
  group: number;
  /** cos β between g_0 (multimodal loss) and g_1 (the group's unimodal loss); 0 if either is zero. */
  cos: number;
  /**
   * α: for 'mmpareto'/'mmpareto-official' α_m (0.5 when the plain sum was taken), for 'mgda' the
   * Frank–Wolfe/closed-form weight of loss 0; otherwise loss 0's share c_0 / Σ_j c_j.
   */
  alpha: number;
  /** |g_0| and |g_1| over the whole group (0 when K = 1), and |h| of the integrated gradient. */
  normM: number;
  normU: number;
  normH: number;
  /** 'mmpareto': γ·|g_m + g_u| / |h'| (0 for a zero h'); 'mmpareto-official': γ (scales are per tensor); else 1. */
  scale: number;
  /** The group coefficients c_j of h = Σ_j c_j·g_j (scale included; per-tensor scales excluded). */
  coefficients: number[];
  /** g_0·g_1 < 0. */
  conflict: boolean;
  /** 'mmpareto': |h'| = 0 (Pareto-stationary), so the update was zero. */
  zeroDirection: boolean;
  /** A gradient (or, for gradnorm, a loss) was NaN/±Inf, or a Gram sum overflowed: the group was not updated. */
  nonFinite: boolean;
}

export interface NonFiniteReport {
  group: number;
  /** Non-finite steps of this group since the previous read(). */
  count: number;
  /** First and last such steps over the integrator's life. */
  firstStep: number;
  lastStep: number;
}

export interface TelemetryReadout {
  /** Steps run so far (every group runs every step). */
  steps: number;
  /** The ring's records, oldest step first, then by group (at most `steps` option per group). */
  records: TelemetryRecord[];
  /** Groups that saw non-finite gradients since the previous read() (empty when none). */
  nonFinite: NonFiniteReport[];
}

export interface TelemetryReadOptions {
  /**
   * 'throw' (default): an EngineError if any group saw non-finite gradients since the last read; 'return': report them
   * in the readout.
   */
  onNonFinite?: 'throw' | 'return';
}

export class IntegratorTelemetry {
  private readonly seen: number[];
  constructor(
    private readonly buffer: Tensor,
    readonly groups: number,
    readonly losses: number,
    /** Ring length in steps (0: counters only). */
    readonly steps: number,
  ) {
    this.seen = new Array<number>(groups).fill(0);
  }

  /** After a checkpoint load: non-finite steps counted in `header` were reported before the save. */
  markReported(buffer: Int32Array): void {
    for (let g = 0; g < this.groups; g++) this.seen[g] = buffer[g * TELEMETRY_HEADER]!;
  }

  /** Fetches the ring and counters with one buffer map; see TelemetryReadOptions for non-finite steps. */
  async read(opts: TelemetryReadOptions = {}): Promise<TelemetryReadout> {
    const onNonFinite = opts.onNonFinite ?? 'throw';
    if (onNonFinite !== 'throw' && onNonFinite !== 'return')
      throw new EngineError(`telemetry.read: unknown onNonFinite '${String(onNonFinite)}'`);
    const G = this.groups;
    const bytes = (G * TELEMETRY_HEADER + this.steps * G * TELEMETRY_RECORD) * 4;
    const data = await this.buffer.device.batcher.read(
      this.buffer.buffer('telemetry.read'),
      bytes,
      0,
      'telemetry.read',
    );
    const u = new Uint32Array(data);
    const f = new Float32Array(data);
    const nonFinite: NonFiniteReport[] = [];
    for (let g = 0; g < G; g++) {
      const count = u[g * TELEMETRY_HEADER]!;
      if (count > this.seen[g]!) {
        nonFinite.push({
          group: g,
          count: count - this.seen[g]!,
          firstStep: u[g * TELEMETRY_HEADER + 1]! - 1,
          lastStep: u[g * TELEMETRY_HEADER + 2]! - 1,
        });
        this.seen[g] = count;
      }
    }
    const steps = u[3]!;
    const records: TelemetryRecord[] = [];
    for (let s = Math.max(0, steps - this.steps); s < steps; s++) {
      for (let g = 0; g < G; g++) {
        const r = G * TELEMETRY_HEADER + ((s % this.steps) * G + g) * TELEMETRY_RECORD;
        if (u[r] !== s + 1) continue; // not written (cannot happen unless the ring was reset)
        const flags = u[r + 1]!;
        records.push({
          step: s,
          group: g,
          cos: f[r + 2]!,
          alpha: f[r + 3]!,
          normM: f[r + 4]!,
          normU: f[r + 5]!,
          normH: f[r + 6]!,
          scale: f[r + 7]!,
          coefficients: Array.from(f.subarray(r + 8, r + 8 + this.losses)),
          conflict: (flags & FLAG.conflict) !== 0,
          zeroDirection: (flags & FLAG.zeroDirection) !== 0,
          nonFinite: (flags & FLAG.nonFinite) !== 0,
        });
      }
    }
    if (nonFinite.length && onNonFinite === 'throw') {
      const what = nonFinite
        .map((n) => `group ${n.group}: ${n.count} step(s), first ${n.firstStep}, last ${n.lastStep}`)
        .join('; ');
      throw new EngineError(
        `gradient integrator: non-finite (NaN/Inf) gradients; those groups were not updated (${what})`,
      );
    }
    return { steps, records, nonFinite };
  }
}

export interface MagnitudeHistogram {
  /** bins + 1 bin edges (equal width over [lo, hi]); the last bin includes hi. */
  edges: number[];
  /** Per-bin counts of |g_0| (multimodal) and |g_1| (unimodal) over the records of the group. */
  multimodal: number[];
  unimodal: number[];
}

/**
 * The paper's Fig. 1d / 4b: the distribution over mini-batches of |g_m| and |g_u| for one
 * encoder. Feed it the records of a telemetry ring as long as the number of batches (each record
 * is one batch); for a "fixed encoder" as in the paper, integrate with combine() (or lr 0) so
 * that the parameters do not move. Non-finite records are skipped. `range` defaults to the
 * records' [min, max] of both norms.
 */
export function magnitudeHistogram(
  records: readonly TelemetryRecord[],
  group: number,
  bins = 20,
  range?: readonly [number, number],
): MagnitudeHistogram {
  if (!Number.isInteger(bins) || bins < 1)
    throw new EngineError(`magnitudeHistogram: bins must be an integer >= 1, got ${bins}`);
  const rs = records.filter((r) => r.group === group && !r.nonFinite);
  const all = rs.flatMap((r) => [r.normM, r.normU]);
  const [lo, hi] = range ?? [Math.min(...all, Infinity), Math.max(...all, -Infinity)];
  if (range && !(hi > lo)) throw new EngineError(`magnitudeHistogram: empty range [${lo}, ${hi}]`);
  const width = all.length && hi > lo ? (hi - lo) / bins : 1;
  const edges = Array.from({ length: bins + 1 }, (_, i) => (all.length ? lo + i * width : 0));
  const count = (xs: number[]) => {
    const c = new Array<number>(bins).fill(0);
    for (const x of xs) if (x >= lo && x <= hi) c[Math.min(bins - 1, Math.floor((x - lo) / width))]!++;
    return c;
  };
  return { edges, multimodal: count(rs.map((r) => r.normM)), unimodal: count(rs.map((r) => r.normU)) };
}
