// batchNorm2d kernels over x viewed as (N, C, S), S = H·W (S = 1 for (N, C) input). Channel c's
// M = N·S values lie in N runs of S contiguous elements, one run every C·S.
//
// - Training statistics, per channel, two passes over its values:
//     pass 1: Σ (x − K) with K = the channel's first value (a shift that keeps the sums small
//             when |mean| ≫ std), mean = K + Σ/M;
//     pass 2: Σ (x − mean)², var = Σ/M (biased), invstd = 1/√(var + eps).
//   Never E[x²] − E[x]²: that loses every digit at mean 1000, std 1 in float32.
//   Short channels (M ≤ BATCHNORM_SERIAL_MAX) get one invocation each; long ones one workgroup
//   each, lanes striding over the values and the leader adding the lanes' partials.
//   The leader writes stats[c] = (mean, invstd, w·invstd, b) and, when running stats are bound,
//   updates them in place (running_var with the unbiased M/(M−1) variance) — unless an updated
//   value would not be finite: then the channel's running stats stay and the device's
//   non-finite counter (Device.nonFiniteCounters, word NONFINITE_BATCHNORM) is incremented.
// - Eval statistics: one invocation per channel, the same stats[c] from the running stats.
// - Backward reduction, laid out like the statistics: Σ gy and Σ gy·(x − mean) in one pass; the
//   leader writes dbias, dweight = Σ gy·x̂ and the per-channel dx coefficients
//   coef[c] = (k1, k2, k3, mean) with dx = k1·gy + k2·(x − mean) + k3:
//     training: k1 = w·invstd, k2 = −k1·invstd·Σgy·x̂/M, k3 = −k1·Σgy/M;  eval: (w·invstd, 0, 0).
// - Apply: per element (or per vec4 when S % 4 == 0, so a vec4 never straddles two channels),
//   one workgroup per (n, c) row or one invocation per unit (short rows), forward
//   y = (x − mean)·w·invstd + b, backward dx as above. Subtracting the mean before scaling keeps y
//   accurate when |mean| ≫ std.
// The walk: lane l starts at flat index l of the channel, (n, s) = (l / S, l % S), and steps by
// wg as (n, s) += (wg / S, wg % S) with one carry, so there is no division in the loop. `vec`
// variants count S and C·S in vec4 units ("u" suffix) and bind x (and gy) as vec4.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { FLOAT_CLASS, flatGrid, flatKernel, WG } from './common.ts';
import { kernel, spreadGroups, type Builtins } from './kernel.ts';

/** Word of Device.nonFiniteCounters that counts the running-stat updates BatchNorm refused. */
export const NONFINITE_BATCHNORM = 0;

/** Channels with at most this many values are reduced by one invocation each (no barriers). */
export const BATCHNORM_SERIAL_MAX = 256;

/**
 * Layout of the per-channel kernels: 0 = one invocation per channel (64 channels a workgroup),
 * else the workgroup size of the one-workgroup-per-channel kernel (64, or 256 for long channels).
 * Barriers are what costs on lavapipe (each suspends and resumes every 8-lane batch of the
 * workgroup), so many short channels go serial and the workgroup kernels use two barriers a sum.
 */
export function batchNormReduceLayout(valuesPerChannel: number, unitsPerChannel: number): number {
  if (valuesPerChannel <= BATCHNORM_SERIAL_MAX) return 0;
  return unitsPerChannel <= 4096 ? 64 : 256;
}

/** Uniforms of the per-channel kernels: x as (n, c, su) in units, count = values per channel. */
const CHANNEL_PARAMS = {
  n: 'u32',
  c: 'u32',
  su: 'u32',
  csu: 'u32',
  count: 'u32',
  training: 'u32',
  eps: 'f32',
  momentum: 'f32',
  unbias: 'f32',
} as const;

/** Invocations of a per-channel workgroup (wg), or 64 channels a workgroup when serial (wg = 0). */
const channelWorkgroup = (wg: number) => (wg === 0 ? 64 : wg);
const channelBuiltins = (wg: number): Builtins =>
  wg === 0
    ? { gid: 'global_invocation_id' }
    : { wid: 'workgroup_id', nwg: 'num_workgroups', lid: 'local_invocation_index' };
/** 64 channels a workgroup along x (wg = 0), else one workgroup per channel, past 65535 continuing on y. */
const channelGrid = (channels: number, wg: number): [number, number] =>
  wg === 0 ? [Math.ceil(channels / 64), 1] : spreadGroups(channels);

/**
 * First lines of the per-channel kernels: `c` = channel, `lid` = lane (0 when serial), `leader`
 * = the lane that writes the channel's results. wg = 0: one invocation per channel.
 */
const CHANNEL_ENTRY = (wg: number) =>
  wg === 0
    ? `  let c = gid.x;
  if (c >= params.c) { return; }
  let lid = 0u;
  let leader = true;
  let su = params.su;
  let cbase = c * su;`
    : `  let c = wid.x + wid.y * nwg.x;
  if (c >= params.c) { return; } // uniform over the workgroup: no barrier is skipped by part of it
  let leader = lid == 0u;
  let su = params.su;
  let cbase = c * su;`;

/** Strided walk over channel c (step = wg lanes, or 1 when serial); `body` sees `o`, the unit's index in x. */
const walk = (wg: number, body: string) => `
  {
    let step = ${Math.max(wg, 1)}u;
    var n = lid / su;
    var s = lid % su;
    let dn = step / su;
    let ds = step % su;
    loop {
      if (n >= params.n) { break; }
      let o = n * params.csu + cbase + s;
      ${body}
      s += ds;
      n += dn;
      if (s >= su) { s -= su; n += 1u; }
    }
  }`;

/** Workgroup memory of the sums (type T): per-lane partials and the broadcast total. */
const sumStorage = (wg: number, T: string) =>
  wg === 0 ? '' : `var<workgroup> part: array<${T}, ${wg}>;\nvar<workgroup> total: ${T};`;

/**
 * Sums `value` over the workgroup into `dst`, visible to every lane: the leader adds the wg
 * partials with 4 accumulators (two barriers in all, instead of log2(wg) for a tree).
 */
const sumOver = (wg: number, dst: string, value: string) =>
  wg === 0
    ? `let ${dst} = ${value};`
    : `
  part[lid] = ${value};
  workgroupBarrier();
  if (leader) {
    var a0 = part[0]; var a1 = part[1]; var a2 = part[2]; var a3 = part[3];
    for (var k = 4u; k < ${wg}u; k += 4u) { a0 += part[k]; a1 += part[k + 1u]; a2 += part[k + 2u]; a3 += part[k + 3u]; }
    total = (a0 + a1) + (a2 + a3);
  }
  workgroupBarrier();
  let ${dst} = total;`;

const hsum = (vec: boolean, v: string) => (vec ? `dot(${v}, vec4<f32>(1.0))` : v);

/**
 * Training statistics (see the header): stats[c] = (mean, invstd, w·invstd, b), and the running
 * statistics updated in place when bound.
 */
export const batchNormStatsKernel = kernel({
  name: 'batchNorm2dStats',
  variant: { vec: false, wg: 0, hasWeight: false, hasBias: false, running: false },
  params: CHANNEL_PARAMS,
  bindings: {
    xs: { read: (v) => (v.vec ? 'vec4<f32>' : 'f32') },
    stats: { write: 'vec4<f32>' },
    weight: { read: 'f32', if: (v) => v.hasWeight },
    bias: { read: 'f32', if: (v) => v.hasBias },
    running_mean: { write: 'f32', if: (v) => v.running },
    running_var: { write: 'f32', if: (v) => v.running },
    nonfinite: { write: 'atomic<u32>', if: (v) => v.running },
  },
  workgroupSize: (v) => channelWorkgroup(v.wg),
  builtins: (v) => channelBuiltins(v.wg),
  prelude: (v) => `${sumStorage(v.wg, 'f32')}\n${FLOAT_CLASS}`,
  main: ({ vec, wg, hasWeight, hasBias, running }) => {
    const T = vec ? 'vec4<f32>' : 'f32';
    return wgsl`${CHANNEL_ENTRY(wg)}
  let m = f32(params.count);
  let shift = ${vec ? 'xs[cbase][0]' : 'xs[cbase]'};
  var acc = ${T}(0.0);
  ${walk(wg, `acc += xs[o] - ${T}(shift);`)}
  ${sumOver(wg, 'shifted_sum', hsum(vec, 'acc'))}
  let mean = shift + shifted_sum / m;
  acc = ${T}(0.0);
  ${walk(wg, `let d = xs[o] - ${T}(mean); acc = fma(d, d, acc);`)}
  ${sumOver(wg, 'sq_sum', hsum(vec, 'acc'))}
  if (leader) {
    let var_b = sq_sum / m;
    let invstd = 1.0 / sqrt(var_b + params.eps);
    let w = ${hasWeight ? 'weight[c]' : '1.0'};
    stats[c] = vec4<f32>(mean, invstd, w * invstd, ${hasBias ? 'bias[c]' : '0.0'});
    ${
      running
        ? `let mo = params.momentum;
    let rm = (1.0 - mo) * running_mean[c] + mo * mean;
    let rv = (1.0 - mo) * running_var[c] + mo * (var_b * params.unbias);
    if (is_finite(rm) && is_finite(rv)) {
      running_mean[c] = rm;
      running_var[c] = rv;
    } else {
      atomicAdd(&nonfinite[${NONFINITE_BATCHNORM}], 1u);
    }`
        : ''
    }
  }`;
  },
  grid: (p, v) => channelGrid(p.c, v.wg),
});

/** Eval statistics: stats[c] from the running statistics, one invocation per channel. */
export const batchNormEvalStatsKernel = flatKernel({
  name: 'batchNorm2dEvalStats',
  variant: { hasWeight: false, hasBias: false },
  params: CHANNEL_PARAMS,
  bindings: {
    running_mean: { read: 'f32' },
    running_var: { read: 'f32' },
    stats: { write: 'vec4<f32>' },
    weight: { read: 'f32', if: (v) => v.hasWeight },
    bias: { read: 'f32', if: (v) => v.hasBias },
  },
  main: ({ hasWeight, hasBias }) => `  let c = i;
  if (c >= params.c) { return; }
  let invstd = 1.0 / sqrt(running_var[c] + params.eps);
  let w = ${hasWeight ? 'weight[c]' : '1.0'};
  stats[c] = vec4<f32>(running_mean[c], invstd, w * invstd, ${hasBias ? 'bias[c]' : '0.0'});`,
  count: (p) => p.c,
});

/**
 * Backward reduction: dbias, dweight and the dx coefficients coef[c] = (k1, k2, k3, mean) of
 * channel c (see the header).
 */
export const batchNormBackwardReduceKernel = kernel({
  name: 'batchNorm2dGradReduce',
  variant: { vec: false, wg: 0, hasWeight: false },
  params: CHANNEL_PARAMS,
  bindings: {
    xs: { read: (v) => (v.vec ? 'vec4<f32>' : 'f32') },
    gy: { read: (v) => (v.vec ? 'vec4<f32>' : 'f32') },
    stats: { read: 'vec4<f32>' },
    dweight: { write: 'f32' },
    dbias: { write: 'f32' },
    coef: { write: 'vec4<f32>' },
    weight: { read: 'f32', if: (v) => v.hasWeight },
  },
  workgroupSize: (v) => channelWorkgroup(v.wg),
  builtins: (v) => channelBuiltins(v.wg),
  prelude: (v) => sumStorage(v.wg, 'vec2<f32>'),
  main: ({ vec, wg, hasWeight }) => {
    const T = vec ? 'vec4<f32>' : 'f32';
    return wgsl`${CHANNEL_ENTRY(wg)}
  let st = stats[c];
  let mean = st[0];
  let invstd = st[1];
  var sg = ${T}(0.0);
  var sgx = ${T}(0.0);
  ${walk(wg, `let g = gy[o]; sg += g; sgx = fma(g, xs[o] - ${T}(mean), sgx);`)}
  ${sumOver(wg, 'sums', `vec2<f32>(${hsum(vec, 'sg')}, ${hsum(vec, 'sgx')})`)}
  if (leader) {
    let sum_g = sums[0];
    let sum_gxhat = sums[1] * invstd;
    dbias[c] = sum_g;
    dweight[c] = sum_gxhat;
    let k1 = ${hasWeight ? 'weight[c]' : '1.0'} * invstd;
    let inv_m = 1.0 / f32(params.count);
    if (params.training != 0u) {
      coef[c] = vec4<f32>(k1, -k1 * invstd * sum_gxhat * inv_m, -k1 * sum_g * inv_m, mean);
    } else {
      coef[c] = vec4<f32>(k1, 0.0, 0.0, mean);
    }
  }`;
  },
  grid: (p, v) => channelGrid(p.c, v.wg),
});

/** Apply kernels with rows of at least this many units use one workgroup per (n, c) row. */
export const BATCHNORM_ROW_MIN = 16;

/**
 * Per-unit apply: forward (y from x and stats) or backward (dx from gy, x and coef).
 * `rows`: one 64-lane workgroup per (n, c) row, lanes striding over its units, so the channel
 * and its coefficients are workgroup-uniform; otherwise one invocation per unit, the channel by
 * two integer divisions (used for short rows, where most lanes of a row workgroup would idle).
 */
export const batchNormApplyKernel = kernel({
  name: 'batchNorm2d',
  variant: { vec: false, backward: false, rows: false },
  params: { units: 'u32', su: 'u32', c: 'u32' },
  bindings: {
    xs: { read: (v) => (v.vec ? 'vec4<f32>' : 'f32') },
    cs: { read: 'vec4<f32>' },
    out: { write: (v) => (v.vec ? 'vec4<f32>' : 'f32') },
    gy: { read: (v) => (v.vec ? 'vec4<f32>' : 'f32'), if: (v) => v.backward },
  },
  workgroupSize: (v) => (v.rows ? 64 : WG),
  builtins: (v): Builtins =>
    v.rows
      ? { wid: 'workgroup_id', nwg: 'num_workgroups', lid: 'local_invocation_index' }
      : { gid: 'global_invocation_id', nwg: 'num_workgroups' },
  main: ({ vec, backward, rows }) => {
    const T = vec ? 'vec4<f32>' : 'f32';
    const body = backward
      ? `out[i] = fma(gy[i], ${T}(k[0]), fma(xs[i] - ${T}(k[3]), ${T}(k[1]), ${T}(k[2])));`
      : `out[i] = fma(xs[i] - ${T}(k[0]), ${T}(k[2]), ${T}(k[3]));`;
    return rows
      ? `  let row = wid.x + wid.y * nwg.x;
  if (row >= params.units / params.su) { return; }
  let k = cs[row % params.c];
  for (var i = row * params.su + lid; i < (row + 1u) * params.su; i += 64u) {
    ${body}
  }`
      : `  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= params.units) { return; }
  let k = cs[(i / params.su) % params.c];
  ${body}`;
  },
  grid: (p, v) => (v.rows ? spreadGroups(p.units / p.su) : flatGrid(p.units)),
});
