// Per-loss gradients from ONE forward graph: for named scalar losses {mm, audio, visual, ...}
// and a list of parameters, the gradient of each loss w.r.t. each parameter it reaches, in
// separate tensors (not summed) — what MMPareto integrates per encoder.
//
// How: one reverse sweep over the union of the losses' graphs. Every tensor carries one
// cotangent slot per loss that reaches it (backward is linear in the upstream gradient, so
// the slots never mix). A node reached by one loss runs its backward rule once, exactly as
// `backward()` would; a node reached by several runs them as one stacked call where the op has
// a stacked rule when asked (`stacked: true`: its upstream gradients concatenated so that, e.g.,
// the weight gradient of a conv for two losses is one GEMM with 2·Cout rows; conv2d has one, for
// tiny feature maps), and once per slot otherwise — the default, which measured faster here.
//
// Cost model, for L losses where encoder k is reached by the multimodal loss and its own
// unimodal loss (2 slots) and each head by one: one forward, then one backward sweep whose
// cost is (heads: 1×) + (encoders: 2×) their single-loss backward — against the official
// recipe's L + 1 full backward passes (a retained-graph backward per loss, then one of the
// sum). Peak memory: up to one cotangent per reaching loss per live tensor, i.e. the encoders'
// activation gradients twice.
import { release, noGrad, topoOrder } from './autograd.ts';
import { EngineError } from './device.ts';
import { add, fill } from './ops/index.ts';
import { ruleFor, stackedRuleFor, type OpName, type StackedRule } from './rules.ts';
import { backwardState, Tensor } from './tensor.ts';

export interface PerLossOptions {
  /** Keep the graph for another backward (default false: it is freed as the sweep goes). */
  retainGraph?: boolean;
  /**
   * Use stacked rules where an op has one (default false: one rule call per slot). On the
   * software GPU the stacked conv backward measured slower than per-slot calls (bench/per-loss.ts:
   * 1626 vs 674 ms at 32², equal at 64²), so it is opt-in until a device shows a gain.
   */
  stacked?: boolean;
}

/** Counters of the last perLossGrads call: rule calls by kind (for the cost model and tests). */
export const perLossStats = { singleCalls: 0, stackedCalls: 0, perSlotCalls: 0 };

/**
 * d(loss)/d(param) for every named loss and every param, as fresh tensors: result[name][i] is
 * the gradient of losses[name] w.r.t. params[i], or null when that loss does not reach it.
 */
export function perLossGrads(losses: Readonly<Record<string, Tensor>>, params: readonly Tensor[], opts: PerLossOptions = {}): Record<string, (Tensor | null)[]> {
  const op = 'perLossGrads';
  const names = Object.keys(losses);
  if (names.length === 0) throw new EngineError(`${op}: no losses given`);
  if (names.length > 30) throw new EngineError(`${op}: ${names.length} losses; at most 30 are supported`);
  const roots = names.map((n) => {
    const l = losses[n]!;
    if (l.disposed) throw new EngineError(`${op}: loss '${n}' was disposed`);
    l.device.assertUsable(op);
    if (l.size !== 1) throw new EngineError(`${op}: loss '${n}' is not a scalar (shape [${l.shape.join(', ')}])`);
    if (!l.requiresGrad || !l.node) throw new EngineError(`${op}: loss '${n}' does not depend on any parameter that requires grad`);
    return l;
  });
  const paramIndex = new Map<Tensor, number>();
  params.forEach((p, i) => {
    if (!p.requiresGrad || p.node) throw new EngineError(`${op}: parameter ${i} ${p} is not a leaf tensor with requiresGrad`);
    if (paramIndex.has(p)) throw new EngineError(`${op}: parameter ${i} ${p} is listed twice`);
    paramIndex.set(p, i);
  });

  const order = topoOrder(roots);
  for (const t of order) {
    if (t.node?.released) throw new EngineError(`${op}: the graph through '${t.node.op}' was already freed; pass { retainGraph: true } to the earlier backward`);
  }
  checkOneGraph(op, names, roots, order);

  const result: Record<string, (Tensor | null)[]> = Object.fromEntries(names.map((n) => [n, params.map(() => null)]));
  const slots = new Map<Tensor, (Tensor | undefined)[]>();
  const accumulate = (t: Tensor, j: number, g: Tensor) => {
    let s = slots.get(t);
    if (!s) slots.set(t, (s = new Array<Tensor | undefined>(names.length)));
    const prev = s[j];
    if (!prev) s[j] = g;
    else {
      s[j] = add(prev, g); // a tensor used twice gets the sum of both paths
      prev.dispose();
      g.dispose();
    }
  };
  noGrad(() => roots.forEach((r, j) => accumulate(r, j, fill(r.shape, 1, r.device))));
  perLossStats.singleCalls = perLossStats.stackedCalls = perLossStats.perSlotCalls = 0;
  const stacked = opts.stacked ?? false;

  noGrad(() => {
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k]!;
      const s = slots.get(t);
      if (!s) continue;
      slots.delete(t);
      const live = [...s.keys()].filter((j) => s[j]);
      const node = t.node;
      if (node) {
        const ctx = { inputs: node.inputs, out: t, saved: node.saved, attrs: node.attrs as never };
        const rule = ruleFor(node.op);
        const multi = stacked && live.length > 1 ? stackedRuleFor(node.op) : undefined;
        backwardState.depth++;
        let gins: (Tensor | null)[][];
        try {
          if (live.length === 1) perLossStats.singleCalls++;
          else if (multi) perLossStats.stackedCalls++;
          else perLossStats.perSlotCalls += live.length;
          gins = multi ? (multi as StackedRule<OpName>)(ctx, live.map((j) => s[j]!)) : live.map((j) => rule(ctx, s[j]!));
        } finally {
          backwardState.depth--;
        }
        live.forEach((j, m) => {
          node.inputs.forEach((x, i) => {
            const gi = gins[m]![i];
            if (!gi) return;
            if (!x.requiresGrad) return gi.dispose();
            accumulate(x, j, gi);
          });
        });
        if (!opts.retainGraph) release(node);
      }
      const pi = paramIndex.get(t);
      for (const j of live) {
        if (pi !== undefined) result[names[j]!]![pi] = s[j]!;
        else s[j]!.dispose();
      }
    }
  });
  return result;
}

/**
 * Losses from separate forward passes share only leaves; per-loss gradients of such losses are
 * a user error (the forward ran twice). Every loss must share an intermediate tensor with the
 * others, transitively.
 */
function checkOneGraph(op: string, names: string[], roots: Tensor[], order: Tensor[]): void {
  if (roots.length < 2) return;
  const reach = new Map<Tensor, number>(); // bit mask of the losses reaching each tensor
  roots.forEach((r, j) => reach.set(r, (reach.get(r) ?? 0) | (1 << j)));
  const parent = roots.map((_, j) => j);
  const find = (j: number): number => (parent[j] === j ? j : (parent[j] = find(parent[j]!)));
  for (let k = order.length - 1; k >= 0; k--) {
    const t = order[k]!;
    const m = reach.get(t) ?? 0;
    if (!t.node) continue;
    const first = Math.clz32(m & -m) ^ 31;
    for (let j = first + 1; j < roots.length; j++) if (m & (1 << j)) parent[find(j)] = find(first);
    for (const x of t.node.inputs) if (x.requiresGrad) reach.set(x, (reach.get(x) ?? 0) | m);
  }
  const apart = names.filter((_, j) => find(j) !== find(0));
  if (apart.length) {
    throw new EngineError(`${op}: losses ${apart.map((n) => `'${n}'`).join(', ')} come from a different forward graph than '${names[0]}' (they share no intermediate tensor)`);
  }
}
