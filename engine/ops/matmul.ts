// matmul (2-D and batched 3-D, optional transposed operands) and linear (torch layout).
import { EngineError } from '../errors.ts';
import { record, type Rule } from '../graph.ts';
import type { Tensor } from '../tensor.ts';
import {
  MATMUL_TM,
  matmulKernel as tiledKernel,
  matmulNaiveKernel,
  matmulWorkgroupSize,
} from '../../shaders/matmul.ts';
import { checkFloat, checkLive, checkSameDevice, fmt, output } from './common.ts';
import { add } from './elementwise.ts';
import { reshape } from './shape.ts';
import { sum } from './reduce.ts';

declare module '../op-attrs.ts' {
  interface OpAttrs {
    matmul: { transA: boolean; transB: boolean };
  }
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

interface Plan {
  batch: number;
  m: number;
  n: number;
  k: number;
  sa: number;
  sb: number;
  outShape: number[];
}

function plan(op: string, a: Tensor, b: Tensor, transA: boolean, transB: boolean): Plan {
  if (a.rank < 2 || a.rank > 3 || b.rank < 2 || b.rank > 3) {
    throw new EngineError(`${op}: operands must be 2-D or 3-D, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  }
  const [ba, ra, ca] = a.rank === 3 ? a.shape : [1, ...a.shape];
  const [bb, rb, cb] = b.rank === 3 ? b.shape : [1, ...b.shape];
  const [m, ka] = transA ? [ca!, ra!] : [ra!, ca!];
  const [kb, n] = transB ? [cb!, rb!] : [rb!, cb!];
  if (ka !== kb)
    throw new EngineError(
      `${op}: inner dimensions differ: ${fmt(a.shape)}${transA ? 'ᵀ' : ''} · ${fmt(b.shape)}${transB ? 'ᵀ' : ''} ` +
        `(${ka} vs ${kb})`,
    );
  if (ba !== bb && ba !== 1 && bb !== 1)
    throw new EngineError(`${op}: batch sizes ${ba} and ${bb} of ${fmt(a.shape)} and ${fmt(b.shape)} differ`);
  const batch = Math.max(ba!, bb!);
  const is3d = a.rank === 3 || b.rank === 3;
  return {
    batch,
    m,
    n,
    k: ka!,
    sa: ba === 1 ? 0 : ra! * ca!,
    sb: bb === 1 ? 0 : rb! * cb!,
    outShape: is3d ? [batch, m, n] : [m, n],
  };
}

/** Runs the tiled kernel (or the naive one, for benchmarks) without autograd. */
export function matmulKernel(a: Tensor, b: Tensor, transA = false, transB = false, naive = false): Tensor {
  checkLive('matmul', a, b);
  checkFloat('matmul', a, b);
  const dev = checkSameDevice('matmul', a, b);
  const p = plan('matmul', a, b, transA, transB);
  if (p.batch > 65535) throw new EngineError(`matmul: batch ${p.batch} above 65535`);
  const c = output(dev, p.outShape);
  if (c.size === 0) return c;
  const operands = { A: a.rawBuffer, B: b.rawBuffer, C: c.rawBuffer };
  if (naive) {
    if (transA || transB) throw new EngineError('matmul: the naive kernel has no transposed variants');
    dev.dispatch({
      kernel: matmulNaiveKernel,
      params: { m: p.m, n: p.n, k: p.k, sa: p.sa, sb: p.sb, gx: 0, fy: 0, batch: p.batch },
      bindings: operands,
    });
    return c;
  }
  // vec4 fast paths: the dimension contiguous in memory (and so every row start) is a multiple of 4.
  const vecA = p.k > 0 && (transA ? p.m : p.k) % 4 === 0;
  const vecB = p.k > 0 && (transB ? p.k : p.n) % 4 === 0;
  const wg = matmulWorkgroupSize(p.n);
  const gx = Math.ceil(p.n / (4 * wg));
  const rowGroups = Math.ceil(p.m / MATMUL_TM);
  const maxGroups = dev.limits.maxComputeWorkgroupsPerDimension;
  const fy = Math.ceil(rowGroups / maxGroups); // split row groups over x past the per-dimension limit
  if (gx * fy > maxGroups) throw new EngineError(`matmul: output ${fmt(p.outShape)} too large for one dispatch`);
  dev.dispatch({
    kernel: tiledKernel,
    variant: { transA, transB, vecA, vecB, wg, tm: MATMUL_TM },
    params: { m: p.m, n: p.n, k: p.k, sa: p.sa, sb: p.sb, gx, fy, batch: p.batch },
    bindings: operands,
  });
  return c;
}

/** op(a) · op(b): (M,K)·(K,N), or batched (B,M,K)·(B,K,N) where a 2-D operand or batch 1 is shared. */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  return record(matmulKernel(a, b, transA, transB), { op: 'matmul', inputs: [a, b], attrs: { transA, transB } });
}

/** y = x wᵀ + b with w of shape (out, in), as torch.nn.functional.linear; x may have leading batch dims. */
export function linear(x: Tensor, w: Tensor, b?: Tensor): Tensor {
  checkLive('linear', x, w, ...(b ? [b] : []));
  checkFloat('linear', x, w, ...(b ? [b] : []));
  if (w.rank !== 2 || x.rank < 1 || x.shape[x.rank - 1] !== w.shape[1]) {
    throw new EngineError(
      `linear: input ${fmt(x.shape)} does not match weight ${fmt(w.shape)} (expected last dim ${w.shape[1]})`,
    );
  }
  if (b && (b.rank !== 1 || b.shape[0] !== w.shape[0]))
    throw new EngineError(`linear: bias ${fmt(b.shape)} does not match weight ${fmt(w.shape)}`);
  const lead = x.shape.slice(0, -1);
  const x2 = x.rank === 2 ? x : reshape(x, [-1, w.shape[1]!]);
  const y2 = matmul(x2, w, { transB: true });
  if (x2 !== x) x2.dispose();
  const yb = b ? add(y2, b) : y2;
  if (yb !== y2) y2.dispose();
  if (x.rank === 2) return yb;
  const y = reshape(yb, [...lead, w.shape[0]!]);
  yb.dispose();
  return y;
}

/** Sums a batched gradient over the batch axis when the operand was shared (2-D or batch 1). */
function unbatch(g: Tensor, like: Tensor): Tensor {
  if (g.rank === like.rank && g.shape[0] === like.shape[0]) return g;
  const s = sum(g, 0, like.rank === 3);
  g.dispose();
  return s;
}

export const matmulRules = {
  matmul: ({ inputs: [a, b], attrs: { transA, transB } }, gy) => [
    unbatch(transA ? matmulKernel(b!, gy, transB, true) : matmulKernel(gy, b!, false, !transB), a!),
    unbatch(transB ? matmulKernel(gy, a!, true, transA) : matmulKernel(a!, gy, !transA, false), b!),
  ],
} satisfies { matmul: Rule<'matmul'> };
