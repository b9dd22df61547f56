// NonFiniteGuard kernels (engine/integrate/guard.ts): a training step checks its losses and
// gradients for NaN/±Inf on the GPU, and every update of that step reads the verdict, so a bad
// step changes nothing — and, in 'stop' mode, no later step either — without a readback.
//
// The guard's status buffer (u32 words, GUARD below): the current step's verdict (bad flag,
// reason bits, which losses, the lowest bad tensor / group index), the sticky halt flag, the
// BatchNorm counter seen at the end of the previous step, life-time counters and the details of
// the first bad step, then a ring of two words per step: [step + 1, reasons | NOT_APPLIED].
// Non-finite is tested on the bits (FLOAT_CLASS): WGSL may assume floats are finite.
import { FLOAT_CLASS, flatKernel } from './common.ts';
import { kernel } from './kernel.ts';

export const GUARD = {
  halt: 0,
  stepBad: 1,
  stepReasons: 2,
  stepLosses: 3,
  stepTensor: 4,
  stepGroup: 5,
  batchNormSeen: 6,
  count: 7,
  first: 8,
  last: 9,
  firstReasons: 10,
  firstLosses: 11,
  firstTensor: 12,
  firstGroup: 13,
  /** First word of the ring. */
  ring: 16,
} as const;

/** Reason bits of a step (ring word 1, GUARD.stepReasons, GUARD.firstReasons). */
export const GUARD_REASON = { loss: 1, gradient: 2, batchNorm: 4 } as const;
/** Ring flag: the step's updates were dropped (it was bad, or an earlier bad step halted the guard). */
export const NOT_APPLIED = 8;
/** Losses one guardLosses dispatch checks (bindings: params, status, counters + these ≤ 8 storage). */
export const GUARD_LOSSES_PER_DISPATCH = 5;
const NONE = '0xffffffffu';

/** The status buffer, read_write with atomics (every guard kernel but the rollback binds it so). */
const STATUS = { write: 'atomic<u32>' } as const;
const markBad = (reasons: string) => `atomicStore(&status[${GUARD.stepBad}], 1u);
    atomicOr(&status[${GUARD.stepReasons}], ${reasons});`;
const SINGLE = { workgroupSize: 1, builtins: {}, grid: () => [1] as const } as const;

/**
 * Losses (scalars, bits base … base + n − 1 of the loss mask) and BatchNorm: a BatchNorm layer
 * that refused a running-stat update since the last step end makes the step bad too.
 */
export const guardLossesKernel = kernel({
  name: 'guardLosses',
  variant: { n: 1 },
  params: { base: 'u32', counter: 'u32' },
  bindings: { status: STATUS, counters: { read: 'u32' }, loss: { read: 'f32', count: (v) => v.n } },
  ...SINGLE,
  prelude: () => FLOAT_CLASS,
  main: ({ n }) => {
    const checks = Array.from({ length: n }, (_, j) => {
      return `if (!is_finite(loss${j}[0])) { mask |= 1u << (params.base + ${j}u); }`;
    });
    return `  var mask = 0u;
  ${checks.join('\n  ')}
  var reasons = select(0u, ${GUARD_REASON.loss}u, mask != 0u);
  if (counters[params.counter] != atomicLoad(&status[${GUARD.batchNormSeen}])) {
    reasons |= ${GUARD_REASON.batchNorm}u;
  }
  if (reasons != 0u) {
    ${markBad('reasons')}
    atomicOr(&status[${GUARD.stepLosses}], mask);
  }`;
  },
});

/** One tensor (n floats, read as vec4: pooled buffers are padded to 16 bytes) checked for NaN/±Inf. */
export const guardTensorKernel = flatKernel({
  name: 'guardTensor',
  variant: {},
  params: { n: 'u32', n4: 'u32', index: 'u32' },
  bindings: { status: STATUS, xs: { read: 'vec4<f32>' } },
  prelude: () => FLOAT_CLASS,
  main: () => `  if (i >= params.n4) { return; }
  let v = xs[i];
  var bad = false;
  for (var k = 0u; k < 4u; k++) { bad = bad || (i * 4u + k < params.n && !is_finite(v[k])); }
  if (bad) {
    ${markBad(`${GUARD_REASON.gradient}u`)}
    atomicMin(&status[${GUARD.stepTensor}], params.index);
  }`,
  count: (p) => p.n4,
});

/**
 * After a gradient integrator's solve: a group whose gradients were not finite (valid flag 0)
 * makes the step bad, and a bad (or halted) step invalidates every group, so the fused
 * combine+update kernels skip them all.
 */
export const guardFoldKernel = kernel({
  name: 'guardFold',
  variant: {},
  params: { groups: 'u32', stride: 'u32', valid: 'u32' },
  bindings: { status: STATUS, state: { write: 'f32' } },
  ...SINGLE,
  main: () => `  for (var g = 0u; g < params.groups; g++) {
    if (state[g * params.stride + params.valid] == 0.0) {
      ${markBad(`${GUARD_REASON.gradient}u`)}
      atomicMin(&status[${GUARD.stepGroup}], g);
    }
  }
  if (atomicLoad(&status[${GUARD.stepBad}]) != 0u || atomicLoad(&status[${GUARD.halt}]) != 0u) {
    for (var g = 0u; g < params.groups; g++) { state[g * params.stride + params.valid] = 0.0; }
  }`,
});

/**
 * A protected tensor (BatchNorm running statistics, integrator state): restored from its backup
 * when the step's updates are dropped, else backed up. Copies bits (any 4-byte dtype).
 */
export const guardRollbackKernel = flatKernel({
  name: 'guardRollback',
  variant: {},
  params: { n4: 'u32' },
  bindings: { status: { read: 'u32' }, xs: { write: 'vec4<u32>' }, backup: { write: 'vec4<u32>' } },
  main: () => `  if (i >= params.n4) { return; }
  if (status[${GUARD.stepBad}] != 0u || status[${GUARD.halt}] != 0u) {
    xs[i] = backup[i];
  } else {
    backup[i] = xs[i];
  }`,
  count: (p) => p.n4,
});

/**
 * End of a step (reset = 0): counts a bad step, keeps the first one's details, halts in 'stop'
 * mode, writes the ring record, and clears the step's verdict. reset = 1 clears everything first
 * (a new guard, or reset() after the host dealt with a halt).
 */
export const guardEndKernel = kernel({
  name: 'guardEnd',
  variant: {},
  params: { step: 'u32', stop: 'u32', ring: 'u32', reset: 'u32', counter: 'u32' },
  bindings: { status: STATUS, counters: { read: 'u32' } },
  ...SINGLE,
  main: () => `  if (params.reset != 0u) {
    for (var w = 0u; w < ${GUARD.ring}u + 2u * params.ring; w++) { atomicStore(&status[w], 0u); }
  } else {
    let bad = atomicLoad(&status[${GUARD.stepBad}]) != 0u;
    let halted = atomicLoad(&status[${GUARD.halt}]) != 0u;
    let reasons = atomicLoad(&status[${GUARD.stepReasons}]);
    if (bad) {
      atomicAdd(&status[${GUARD.count}], 1u);
      if (atomicLoad(&status[${GUARD.first}]) == 0u) {
        atomicStore(&status[${GUARD.first}], params.step + 1u);
        atomicStore(&status[${GUARD.firstReasons}], reasons);
        atomicStore(&status[${GUARD.firstLosses}], atomicLoad(&status[${GUARD.stepLosses}]));
        atomicStore(&status[${GUARD.firstTensor}], atomicLoad(&status[${GUARD.stepTensor}]));
        atomicStore(&status[${GUARD.firstGroup}], atomicLoad(&status[${GUARD.stepGroup}]));
      }
      atomicStore(&status[${GUARD.last}], params.step + 1u);
      if (params.stop != 0u) { atomicStore(&status[${GUARD.halt}], 1u); }
    }
    if (params.ring > 0u) {
      let r = ${GUARD.ring}u + 2u * (params.step % params.ring);
      atomicStore(&status[r], params.step + 1u);
      atomicStore(&status[r + 1u], reasons | select(0u, ${NOT_APPLIED}u, bad || halted));
    }
  }
  atomicStore(&status[${GUARD.stepBad}], 0u);
  atomicStore(&status[${GUARD.stepReasons}], 0u);
  atomicStore(&status[${GUARD.stepLosses}], 0u);
  atomicStore(&status[${GUARD.stepTensor}], ${NONE});
  atomicStore(&status[${GUARD.stepGroup}], ${NONE});
  atomicStore(&status[${GUARD.batchNormSeen}], counters[params.counter]);`,
});

/** WGSL for an update kernel to skip its work when the guard dropped the step (status bound read-only as `guard`). */
export const GUARD_SKIP = `if (guard[${GUARD.stepBad}] != 0u || guard[${GUARD.halt}] != 0u) { return; }`;
