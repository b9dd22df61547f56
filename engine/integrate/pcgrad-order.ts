// PCGrad's seeded random projection order, reproduced on the host (the solve kernel computes the
// same permutation on the GPU; see shaders/integrate-solve.ts, orderHash and the 'pcgrad' method).

/** One PCG-RXS-M-XS round on a u32. */
function pcg(x: number): number {
  const s = (Math.imul(x >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/**
 * The order in which PCGrad projects gradient i off the others at integrator step `step`
 * (0-based) in group `group`: a Fisher–Yates shuffle of [0..K) without i, driven by
 * pcg(pcg(pcg(pcg(seed) ^ step) ^ group) ^ (8·i + p)).
 */
export function pcgradOrder(seed: number, step: number, group: number, i: number, k: number): number[] {
  const ord: number[] = [];
  for (let j = 0; j < k; j++) if (j !== i) ord.push(j);
  for (let p = ord.length; p > 1; p--) {
    const h = pcg((pcg((pcg((pcg(seed >>> 0) ^ step) >>> 0) ^ group) >>> 0) ^ (i * 8 + p - 1)) >>> 0);
    const r = h % p;
    [ord[p - 1], ord[r]] = [ord[r]!, ord[p - 1]!];
  }
  return ord;
}
