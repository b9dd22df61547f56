// A run directory read back for the report and the results page: config.json as found, and
// metrics.jsonl checked record by record (errors name the file and line; JSON's null read back
// as NaN), with the last write of each step, telemetry and evaluation kept (a resumed run
// rewrites the steps after its checkpoint) and skipped steps left out.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { RunConfig } from '../run/config.ts';
import type { EvalRecord, FinalRecord, RunRecord, StepRecord, TelemetryLine } from '../run/run-log.ts';

/** config.json as written at the start of a run; fields are shown as found (a missing one as '—'). */
export interface RunConfigFile extends Partial<RunConfig> {
  version?: string;
  device?: string;
}

/** One run directory, read back: records by type, in step order, the last write of each step kept. */
export interface RunData {
  dir: string;
  config: RunConfigFile;
  steps: StepRecord[];
  telemetry: TelemetryLine[];
  evals: EvalRecord[];
  /** null while the run is still going or after a crash: the page marks it incomplete. */
  final: FinalRecord | null;
}

const RECORD_TYPES = ['step', 'telemetry', 'eval', 'final'];
const SPLITS = ['train', 'val', 'test'];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Checks that the fields are numbers; JSON writes NaN/±Inf as null, read back as NaN. */
function numbers(r: Obj, keys: string[], where: string): void {
  for (const k of keys) {
    if (r[k] === null) r[k] = NaN;
    else if (typeof r[k] !== 'number')
      throw new Error(`${where}: field '${k}' must be a number, got ${JSON.stringify(r[k])}`);
  }
}

function numberMaps(r: Obj, keys: string[], where: string): void {
  for (const k of keys) {
    const m = r[k];
    if (!isObj(m))
      throw new Error(`${where}: field '${k}' must be an object of numbers by name, got ${JSON.stringify(m)}`);
    numbers(m, Object.keys(m), `${where}: ${k}`);
  }
}

function checkEval(r: Obj, where: string): void {
  numbers(r, ['epoch', 'step'], where);
  if (!SPLITS.includes(r.split as string))
    throw new Error(`${where}: split must be one of ${SPLITS.join(', ')}, got ${JSON.stringify(r.split)}`);
  numberMaps(r, ['loss', 'acc', 'macro_f1'], where);
  if (
    !Array.isArray(r.confusion) ||
    !r.confusion.every((row) => Array.isArray(row) && row.every((v) => typeof v === 'number'))
  ) {
    throw new Error(`${where}: field 'confusion' must be an array of rows of numbers`);
  }
}

/** Validates one parsed line in place (the fields the report reads) and returns it typed. */
function checkRecord(r: unknown, where: string): RunRecord {
  if (!isObj(r)) throw new Error(`${where}: a record must be a JSON object, got ${JSON.stringify(r)}`);
  switch (r.type) {
    case 'step':
      numbers(r, ['epoch', 'step', 'time_s'], where);
      if (r.skipped !== true) numberMaps(r, ['loss'], where); // a dropped step's non-finite losses are null
      break;
    case 'telemetry':
      numbers(r, ['step', 'cos', 'alpha', 'norm_m', 'norm_u'], where);
      if (typeof r.group !== 'string')
        throw new Error(`${where}: field 'group' must be a string, got ${JSON.stringify(r.group)}`);
      break;
    case 'eval':
      checkEval(r, where);
      break;
    case 'final':
      numbers(r, ['best_epoch', 'best_val', 'wall_s', 'steps_per_s'], where);
      if (!isObj(r.test)) throw new Error(`${where}: field 'test' must be an eval record`);
      checkEval(r.test, `${where}: test`);
      break;
    default:
      throw new Error(
        `${where}: unknown record type ${JSON.stringify(r.type)} (expected one of ${RECORD_TYPES.join(', ')})`,
      );
  }
  return r as unknown as RunRecord;
}

/** The last record per key, sorted by `order`: a resumed run rewrites the steps after its checkpoint. */
function latestBy<T>(records: T[], key: (r: T) => string, order: (r: T) => number): T[] {
  const m = new Map<string, T>();
  for (const r of records) {
    const k = key(r);
    m.delete(k);
    m.set(k, r);
  }
  return [...m.values()].sort((a, b) => order(a) - order(b));
}

/** Reads a run directory's config.json and metrics.jsonl; errors name the file (and line). */
export function loadRun(dir: string): RunData {
  if (!existsSync(dir)) throw new Error(`report: run directory '${dir}' does not exist`);
  if (!statSync(dir).isDirectory())
    throw new Error(
      `report: '${dir}' is not a directory (give run directories, which hold config.json and metrics.jsonl)`,
    );
  const configPath = join(dir, 'config.json');
  const metricsPath = join(dir, 'metrics.jsonl');
  for (const p of [configPath, metricsPath]) {
    if (!existsSync(p))
      throw new Error(
        `report: ${p} is missing (a run directory holds config.json and metrics.jsonl, written by 'mmpareto train')`,
      );
  }
  let config: unknown;
  try {
    config = JSON.parse(readFileSync(configPath, 'utf8'));
  } catch (e) {
    throw new Error(`${configPath}: not valid JSON (${(e as Error).message})`);
  }
  if (!isObj(config)) throw new Error(`${configPath}: must hold a JSON object, got ${JSON.stringify(config)}`);
  // Same rule as readRecords: only a torn last line (no newline after it: a crash mid-write) is skipped.
  const lines = readFileSync(metricsPath, 'utf8').split('\n');
  const records: RunRecord[] = [];
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (e) {
      if (i === lines.length - 1) return;
      throw new Error(`${metricsPath}:${i + 1}: not a JSON record (${(e as Error).message})`);
    }
    records.push(checkRecord(parsed, `${metricsPath}:${i + 1}`));
  });
  const of = <T extends RunRecord['type']>(t: T) =>
    records.filter((r): r is Extract<RunRecord, { type: T }> => r.type === t);
  const finals = of('final');
  return {
    dir,
    config: config as RunConfigFile,
    steps: latestBy(
      of('step'),
      (r) => String(r.step),
      (r) => r.step,
    ).filter((r) => !r.skipped),
    telemetry: latestBy(
      of('telemetry'),
      (r) => `${r.step}\u0000${r.group}`,
      (r) => r.step,
    ),
    evals: latestBy(
      of('eval'),
      (r) => `${r.split}\u0000${r.epoch}`,
      (r) => r.epoch,
    ),
    final: finals.length ? finals[finals.length - 1]! : null,
  };
}
