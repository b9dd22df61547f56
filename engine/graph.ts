// The autograd graph, below the ops: every differentiable op calls `record` after its kernels, so
// its output remembers the op, its inputs, what backward needs (`saved`) and its attributes, and
// keeps their storage alive until backward used it. `noGrad` turns recording off. The reverse
// sweep that walks this graph is engine/backward.ts, above the ops (it needs their rules).
import type { OpAttrs, OpName } from './op-attrs.ts';
import type { Node, Tensor } from './tensor.ts';

export type { Node, NodeMap, OpNode } from './tensor.ts';

let gradEnabled = true;

/** Runs fn with gradient recording off (evaluation, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** What an op hands to `record`: its name, inputs and attributes, and the tensors backward needs. */
export type NodeInit = {
  [P in OpName]: { op: P; inputs: readonly Tensor[]; attrs: OpAttrs[P]; saved?: readonly Tensor[] };
}[OpName];

/** Called by every differentiable op after its kernels were recorded: `out` remembers the op; returns `out`. */
export function record(out: Tensor, init: NodeInit): Tensor {
  if (!gradEnabled || !init.inputs.some((t) => t.requiresGrad)) return out;
  const saved = init.saved ?? [];
  for (const t of init.inputs) t.storage.retain();
  for (const t of saved) t.storage.retain();
  out.requiresGrad = true;
  out.node = { ...init, saved, released: false };
  return out;
}

/** Frees the storage a node retained for its backward. */
export function release(node: Node): void {
  node.released = true;
  for (const t of node.inputs) t.storage.release();
  for (const t of node.saved) t.storage.release();
}

/** Drops the graph behind `t` without running backward (e.g. a forward whose loss is not needed). */
export function releaseGraph(t: Tensor): void {
  for (const n of topoOrder([t])) if (n.node && !n.node.released) release(n.node);
}

/** Tensors reachable from `roots` through inputs that require grad, inputs before outputs. */
export function topoOrder(roots: readonly Tensor[]): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS (post-order), so deep graphs do not overflow the JS stack. Roots are walked
  // one after another (never pre-marked), so a root that is an ancestor of another root still
  // comes before it.
  const stack: [Tensor, number][] = [];
  for (const r of roots) {
    if (seen.has(r)) continue;
    seen.add(r);
    stack.push([r, 0]);
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      const [t, i] = top;
      const inputs = t.node?.inputs ?? [];
      if (i < inputs.length) {
        top[1]++;
        const c = inputs[i]!;
        if (c.requiresGrad && !seen.has(c)) {
          seen.add(c);
          stack.push([c, 0]);
        }
      } else {
        stack.pop();
        order.push(t);
      }
    }
  }
  return order;
}

/** What a backward rule sees of its node: inputs, output, saved tensors and the op's attributes. */
export interface OpContext<P extends OpName> {
  inputs: readonly Tensor[];
  out: Tensor;
  saved: readonly Tensor[];
  attrs: OpAttrs[P];
}
/**
 * Backward for several upstream gradients at once (one per loss reaching the node, see
 * engine/backward.ts): per cotangent, one gradient per input.
 */
export type StackedRule<P extends OpName> = (ctx: OpContext<P>, gys: readonly Tensor[]) => (Tensor | null)[][];
/**
 * Given the upstream gradient, one gradient per input (null where none is needed). `stacked`, where
 * an op has it, serves several cotangents in one call (perLossGrads with { stacked: true }).
 */
export type Rule<P extends OpName> = ((ctx: OpContext<P>, gy: Tensor) => (Tensor | null)[]) & {
  stacked?: StackedRule<P>;
};
export type RuleTable = { [P in OpName]: Rule<P> };
