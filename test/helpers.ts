// Shared by the tests: one device, float64 reference helpers, closeness assertions.
import '../train/node.ts'; // Dawn as the default GPU
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import {
  init,
  getDevice,
  gradcheck,
  liveTensors,
  tensor,
  type Device,
  type Tensor,
  Generator,
} from '../engine/index.ts';

let dev: Device;
try {
  dev = getDevice();
} catch {
  dev = await init();
}
export const device = dev;

/** Deterministic host data: uniform in [lo, hi), float32-rounded so that references see the same inputs. */
export function randArray(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const g = new Generator(seed);
  return Float64Array.from(Float32Array.from({ length: n }, () => lo + (hi - lo) * g.uniform()));
}

/** A float32 tensor of `shape` with values from randArray, plus its float64 host copy. */
export function randTensor(shape: number[], seed: number, lo = -1, hi = 1): [Tensor, Float64Array] {
  const n = shape.reduce((a, b) => a * b, 1);
  const h = randArray(n, seed, lo, hi);
  return [tensor(Float32Array.from(h), shape), h];
}

/**
 * Asserts |actual - expected| <= atol + rtol·|expected| elementwise, reporting the worst element.
 * Tests state their rtol/atol and why (float32 unit roundoff u = 2^-24 ≈ 6e-8).
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol: number,
  atol: number,
  what = '',
): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const e = expected[i]!;
    const a = actual[i]!;
    const excess = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0)
    assert.unreachable(
      `${what}: element ${worst}: got ${actual[worst]}, expected ${expected[worst]} (rtol ${rtol}, atol ${atol})`,
    );
}

/** Runs gradcheck and fails the test with its message. */
export async function check(
  fn: (...xs: Tensor[]) => Tensor,
  inputs: Tensor[],
  opts: Parameters<typeof gradcheck>[2] = {},
): Promise<void> {
  const r = await gradcheck(fn, inputs, opts);
  assert.ok(r.ok);
  for (const t of inputs) t.dispose();
}

/** Asserts that fn throws an error whose message contains every fragment. */
export function throwsWith(fn: () => unknown, ...fragments: string[]): void {
  try {
    fn();
  } catch (e) {
    const msg = (e as Error).message;
    for (const f of fragments) assert.ok(msg.includes(f), `error message "${msg}" lacks "${f}"`);
    return;
  }
  assert.unreachable(`expected an error mentioning ${fragments.join(', ')}`);
}

/** throwsWith, and checks that no tensor was allocated before the error (refused before any work). */
export function rejects(fn: () => unknown, ...fragments: string[]): void {
  const n = liveTensors.count;
  throwsWith(fn, ...fragments);
  assert.is(liveTensors.count, n, 'no tensor allocated before the error');
}

/**
 * Mounts a tmpfs at `dir` with mount options (e.g. 'size=300k', 'ro'): a real full disk or
 * read-only mount for the fault tests. Needs root (CI runs as root); false where mounting fails.
 */
export function mountTmpfs(dir: string, options: string): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}
export function unmount(dir: string): void {
  execFileSync('umount', [dir], { stdio: 'pipe' });
}
