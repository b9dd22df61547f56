// The messages between the page (main.ts) and the training worker (worker.ts).
import type { StepRecord } from './training.ts';

export type ToWorker = { type: 'start' } | { type: 'stop' };

export interface GradcheckReport {
  name: string;
  ok: boolean;
  /** Worst |analytic − numeric| over the checked inputs, and the tolerance it was held to there. */
  maxAbsErr: number;
  tolerance: number;
  ms: number;
  error?: string;
}

export type FromWorker =
  | { type: 'device'; adapter: string }
  | { type: 'gradcheck'; report: GradcheckReport }
  | { type: 'ready' }
  | { type: 'progress'; records: StepRecord[]; stepsPerSecond: number }
  | { type: 'stopped'; steps: number }
  | { type: 'error'; message: string };
