// Reverse-mode autodiff above the ops: ONE reverse sweep over the graph that engine/graph.ts
// recorded serves backward() (one cotangent), grad() (the caller's outputs and inputs) and
// perLossGrads() (one cotangent slot per loss), micrograd style: walk the tensors in reverse
// topological order, call each node's rule from the table in engine/ops/index.ts, add a tensor's
// incoming gradients (+=), free every intermediate gradient and the graph's storage as soon as
// the sweep is past it.
//
// Per-loss gradients from ONE forward graph (what MMPareto integrates per encoder): every tensor
// carries one cotangent slot per loss that reaches it (backward is linear in the upstream
// gradient, so the slots never mix). A node reached by one loss runs its rule once, exactly as
// backward() would; a node reached by several runs it once per slot, or as one stacked call where
// the rule has a `stacked` form and { stacked: true } asks for it (conv2d: its upstream gradients
// concatenated, so the weight gradient of two losses is one GEMM with 2·Cout rows).
// Cost, for L losses where encoder k is reached by the multimodal loss and its own unimodal loss
// (2 slots) and each head by one: one forward, then one sweep whose cost is (heads: 1×) +
// (encoders: 2×) their single-loss backward, against the official recipe's L + 1 full backward
// passes. Peak memory: up to one cotangent per reaching loss per live tensor.
import { EngineError } from './errors.ts';
import { noGrad, release, topoOrder, type Rule } from './graph.ts';
import type { OpName } from './op-attrs.ts';
import { add, copyOf, fill, rules } from './ops/index.ts';
import { backwardState, keep, Tensor, type NodeMap } from './tensor.ts';

export interface BackwardOptions {
  /** Keep the graph for another backward (default false: it is freed as the sweep goes). */
  retainGraph?: boolean;
  /** The upstream gradient of a non-scalar output (default 1 for a scalar). */
  gradient?: Tensor;
}

declare module './tensor.ts' {
  interface Tensor {
    /** Reverse-mode gradient of this scalar into the .grad of every leaf that requires grad. */
    backward(opts?: BackwardOptions): void;
  }
}
Tensor.prototype.backward = function (this: Tensor, opts: BackwardOptions = {}): void {
  backward(this, opts);
};

/** Rule calls of the last reverse sweep, by kind (for the cost model and tests). */
export const perLossStats = { singleCalls: 0, stackedCalls: 0, perSlotCalls: 0 };

type Slots = (Tensor | undefined)[];

interface SweepOptions {
  /** The caller, named in errors. */
  op: string;
  retainGraph: boolean;
  /** Use stacked rules where a node has several live slots and its rule has one. */
  stacked: boolean;
  /** Tensors whose final cotangents the caller takes; every other one is freed. */
  wanted: (t: Tensor) => boolean;
}

/** The rule of `node`, with its context (node typed by op, so the rule gets that op's attrs). */
function ruleOf<K extends OpName>(node: NodeMap[K], out: Tensor) {
  const rule: Rule<K> = rules[node.op];
  return { rule, ctx: { inputs: node.inputs, out, saved: node.saved, attrs: node.attrs } };
}

/** The graph behind `roots` in topological order; throws (before any work) if backward already freed part of it. */
function liveGraph(op: string, roots: readonly Tensor[]): Tensor[] {
  const order = topoOrder(roots);
  for (const t of order) {
    if (t.node?.released) {
      throw new EngineError(
        `${op}: the graph through '${t.node.op}' was already freed; pass { retainGraph: true } to the earlier backward`,
      );
    }
  }
  return order;
}

/**
 * Propagates K cotangent slots per tensor from `seeds` (tensor → its K upstream gradients,
 * undefined where a slot has none) through `order` (liveGraph of the seeded tensors), and returns
 * the final slots of the wanted tensors. Seed tensors belong to the caller: they are never disposed
 * here, even when a gradient flows into a seeded tensor (the sum is a fresh tensor).
 */
function sweep(order: readonly Tensor[], seeds: Map<Tensor, Slots>, k: number, o: SweepOptions): Map<Tensor, Slots> {
  const borrowed = new Set<Tensor>();
  for (const s of seeds.values()) for (const g of s) if (g) borrowed.add(g);
  const slots = new Map<Tensor, Slots>();
  for (const [t, s] of seeds) slots.set(t, [...s]);
  const accumulate = (t: Tensor, j: number, g: Tensor): void => {
    let s = slots.get(t);
    if (!s) slots.set(t, (s = new Array<Tensor | undefined>(k)));
    const prev = s[j];
    if (!prev) s[j] = g;
    else {
      s[j] = add(prev, g); // a tensor used twice gets the sum of both paths
      if (!borrowed.has(prev)) prev.dispose();
      if (!borrowed.has(g)) g.dispose();
    }
  };
  const out = new Map<Tensor, Slots>();
  perLossStats.singleCalls = perLossStats.stackedCalls = perLossStats.perSlotCalls = 0;
  noGrad(() => {
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i]!;
      const s = slots.get(t);
      if (!s) continue;
      slots.delete(t);
      const live: number[] = [];
      s.forEach((g, j) => {
        if (g) live.push(j);
      });
      const node = t.node;
      if (node && live.length) {
        const { rule, ctx } = ruleOf(node, t);
        const gys = live.map((j) => s[j]!);
        const stacked = o.stacked && gys.length > 1 ? rule.stacked : undefined;
        backwardState.depth++;
        let gins: (Tensor | null)[][];
        try {
          if (gys.length === 1) perLossStats.singleCalls++;
          else if (stacked) perLossStats.stackedCalls++;
          else perLossStats.perSlotCalls += gys.length;
          gins = stacked ? stacked(ctx, gys) : gys.map((gy) => rule(ctx, gy));
        } finally {
          backwardState.depth--;
        }
        live.forEach((j, m) => {
          node.inputs.forEach((x, n) => {
            const gi = gins[m]![n];
            if (!gi) return;
            if (!x.requiresGrad) {
              gi.dispose();
              return;
            }
            accumulate(x, j, gi);
          });
        });
        if (!o.retainGraph) release(node);
      }
      if (o.wanted(t)) out.set(t, s);
      else for (const g of s) if (g && !borrowed.has(g)) g.dispose();
    }
  });
  return out;
}

function seedFor(root: Tensor, gradient: Tensor | undefined, op: string): Tensor {
  root.device.assertUsable(op);
  if (!root.requiresGrad)
    throw new EngineError(`${op}: tensor does not require grad (no parameter it depends on has requiresGrad)`);
  if (gradient) {
    if (gradient.shape.join() !== root.shape.join())
      throw new EngineError(`${op}: gradient shape [${gradient.shape}] does not match output [${root.shape}]`);
    return gradient;
  }
  if (root.size !== 1)
    throw new EngineError(`${op}: output has shape [${root.shape}]; pass a gradient for a non-scalar output`);
  return fill(root.shape, 1, root.device);
}

/** loss.backward(): accumulates d(root)/d(leaf) into leaf.grad for every leaf that requires grad. */
export function backward(root: Tensor, opts: BackwardOptions = {}): void {
  const order = liveGraph('backward', [root]);
  const seed = seedFor(root, opts.gradient, 'backward');
  const isLeaf = (t: Tensor) => t.requiresGrad && !t.node;
  const sweepOpts = { op: 'backward', retainGraph: opts.retainGraph ?? false, stacked: false, wanted: isLeaf };
  const grads = sweep(order, new Map([[root, [seed]]]), 1, sweepOpts);
  let seedKept = false;
  for (const [t, [g]] of grads) {
    if (!g) continue;
    if (t.grad) {
      const sum = add(t.grad, g);
      t.grad.dispose();
      if (g !== seed) g.dispose();
      t.grad = keep(sum);
    } else if (g === opts.gradient)
      t.grad = keep(copyOf(g)); // never alias the caller's tensor
    else {
      t.grad = keep(g);
      seedKept ||= g === seed;
    }
  }
  if (!opts.gradient && !seedKept) seed.dispose();
}

export interface GradOptions {
  retainGraph?: boolean;
  /** Upstream gradients, one per output (default: 1 for scalar outputs). */
  gradOutputs?: readonly Tensor[];
  /** Return zeros for inputs that no output depends on, instead of throwing. */
  allowUnused?: boolean;
}

/** Returns d(sum of outputs)/d(input) for each input as fresh tensors; .grad is not touched. */
export function grad(outputs: Tensor | readonly Tensor[], inputs: readonly Tensor[], opts: GradOptions = {}): Tensor[] {
  const outs = outputs instanceof Tensor ? [outputs] : outputs;
  const order = liveGraph('grad', outs);
  const caller = new Set(opts.gradOutputs ?? []);
  const made: Tensor[] = []; // seeds made here (ones, sums for repeated outputs)
  const seeds = new Map<Tensor, Slots>();
  outs.forEach((o, i) => {
    const s = seedFor(o, opts.gradOutputs?.[i], 'grad');
    if (!caller.has(s)) made.push(s);
    const prev = seeds.get(o)?.[0];
    const seed = prev ? add(prev, s) : s; // the same output listed twice: the sum
    if (prev) made.push(seed);
    seeds.set(o, [seed]);
  });
  const wanted = new Set(inputs);
  const got = sweep(order, seeds, 1, {
    op: 'grad',
    retainGraph: opts.retainGraph ?? false,
    stacked: false,
    wanted: (t) => wanted.has(t),
  });
  const missing = inputs.findIndex((x) => !got.get(x)?.[0]);
  if (missing >= 0 && !opts.allowUnused) {
    for (const [, [g]] of got) if (g && !caller.has(g) && !made.includes(g)) g.dispose();
    for (const t of made) t.dispose();
    throw new EngineError(
      `grad: input ${missing} [${inputs[missing]!.shape}] is not reached from the outputs ` +
        '(pass allowUnused: true for zeros)',
    );
  }
  const handed = new Set<Tensor>();
  const result = inputs.map((x) => {
    const g = got.get(x)?.[0];
    if (!g) return fill(x.shape, 0, x.device);
    if (caller.has(g)) return copyOf(g);
    handed.add(g);
    return g;
  });
  for (const t of made) if (!handed.has(t)) t.dispose();
  return result;
}

export interface PerLossOptions {
  /** Keep the graph for another backward (default false: it is freed as the sweep goes). */
  retainGraph?: boolean;
  /**
   * Use stacked rules where an op has one (default false: one rule call per slot). On the software
   * GPU the stacked conv backward measured slower than per-slot calls except on tiny maps
   * (bench/steps/per-loss.ts), so it is opt-in until a device shows a gain.
   */
  stacked?: boolean;
}

/**
 * Per-loss gradients keyed by parameter: grads.get(p)[name] is d(losses[name])/d(p); a loss that
 * does not reach p has no entry. Every listed parameter has an entry (possibly empty).
 */
export type PerLossGradients = Map<Tensor, Readonly<Record<string, Tensor>>>;

/**
 * d(loss)/d(param) for every named loss and every param, as fresh tensors, from ONE reverse sweep
 * over the losses' common graph (see the header).
 */
export function perLossGrads(
  losses: Readonly<Record<string, Tensor>>,
  params: readonly Tensor[],
  opts: PerLossOptions = {},
): PerLossGradients {
  const op = 'perLossGrads';
  const names = Object.keys(losses);
  if (names.length === 0) throw new EngineError(`${op}: no losses given`);
  if (names.length > 30) throw new EngineError(`${op}: ${names.length} losses; at most 30 are supported`);
  const roots = names.map((n) => {
    const l = losses[n]!;
    if (l.disposed) throw new EngineError(`${op}: loss '${n}' was disposed`);
    l.device.assertUsable(op);
    if (l.size !== 1) throw new EngineError(`${op}: loss '${n}' is not a scalar (shape [${l.shape.join(', ')}])`);
    if (!l.requiresGrad || !l.node)
      throw new EngineError(`${op}: loss '${n}' does not depend on any parameter that requires grad`);
    return l;
  });
  const listed = new Set<Tensor>();
  params.forEach((p, i) => {
    if (!p.requiresGrad || p.node)
      throw new EngineError(`${op}: parameter ${i} ${p} is not a leaf tensor with requiresGrad`);
    if (listed.has(p)) throw new EngineError(`${op}: parameter ${i} ${p} is listed twice`);
    listed.add(p);
  });
  const order = liveGraph(op, roots);
  checkOneGraph(op, names, roots, order);

  const seeds = new Map<Tensor, Slots>();
  noGrad(() =>
    roots.forEach((r, j) => {
      const s = seeds.get(r) ?? new Array<Tensor | undefined>(names.length);
      s[j] = fill(r.shape, 1, r.device);
      seeds.set(r, s);
    }),
  );
  const sweepOpts = {
    op,
    retainGraph: opts.retainGraph ?? false,
    stacked: opts.stacked ?? false,
    wanted: (t: Tensor) => listed.has(t),
  };
  const got = sweep(order, seeds, names.length, sweepOpts);
  for (const s of seeds.values()) for (const g of s) g?.dispose();
  const result: PerLossGradients = new Map();
  for (const p of params) {
    const byLoss: Record<string, Tensor> = {};
    got.get(p)?.forEach((g, j) => {
      if (g) byLoss[names[j]!] = g;
    });
    result.set(p, byLoss);
  }
  return result;
}

/**
 * Losses from separate forward passes share only leaves; per-loss gradients of such losses are
 * a user error (the forward ran twice). Every loss must share an intermediate tensor with the
 * others, transitively.
 */
function checkOneGraph(op: string, names: string[], roots: Tensor[], order: readonly Tensor[]): void {
  if (roots.length < 2) return;
  const reach = new Map<Tensor, number>(); // bit mask of the losses reaching each tensor
  roots.forEach((r, j) => {
    reach.set(r, (reach.get(r) ?? 0) | (1 << j));
  });
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
    throw new EngineError(
      `${op}: losses ${apart.map((n) => `'${n}'`).join(', ')} come from a different forward graph than ` +
        `'${names[0]}' (they share no intermediate tensor)`,
    );
  }
}
