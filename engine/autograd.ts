// Reverse-mode autodiff on a tape, micrograd style: every op output remembers its
// inputs and a rule; backward walks the graph in reverse topological order and
// accumulates gradients with +=. The graph keeps the storage of the tensors it
// needs alive, and lets go of it as soon as backward used it.
import { ruleFor, type OpAttrs, type OpName } from './rules.ts';
import { Tensor, keep, backwardState } from './tensor.ts';
import { EngineError } from './device.ts';
import { add, copyOf, fill } from './ops/index.ts';

export interface Node {
  readonly op: OpName;
  readonly inputs: readonly Tensor[];
  readonly saved: readonly Tensor[];
  readonly attrs: object;
  released: boolean;
}

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

/** Called by every differentiable op after its kernels were recorded. */
export function record<P extends OpName>(op: P, inputs: readonly Tensor[], out: Tensor, attrs: OpAttrs[P], saved: readonly Tensor[] = []): Tensor {
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) return out;
  for (const t of inputs) t.storage.retain();
  for (const t of saved) t.storage.retain();
  out.requiresGrad = true;
  out.node = { op, inputs, saved, attrs, released: false };
  return out;
}

/** Frees the storage a node retained for its backward (internal: also used by per-loss.ts). */
export function release(node: Node): void {
  node.released = true;
  for (const t of node.inputs) t.storage.release();
  for (const t of node.saved) t.storage.release();
}

/** Drops the graph behind `t` without running backward (e.g. a forward whose loss is not needed). */
export function releaseGraph(t: Tensor): void {
  for (const n of topoOrder([t])) if (n.node && !n.node.released) release(n.node);
}

/** Tensors reachable from `roots` through inputs that require grad, inputs before outputs (internal). */
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

/**
 * Core of backward and grad: propagates `seeds` (tensor → upstream gradient) through the graph.
 * `want(t)` says whether t's final gradient is to be kept; everything else is freed after use.
 */
function propagate(seeds: Map<Tensor, Tensor>, retainGraph: boolean, want: (t: Tensor) => boolean): Map<Tensor, Tensor> {
  const grads = new Map(seeds);
  const out = new Map<Tensor, Tensor>();
  const order = topoOrder([...seeds.keys()]);
  noGrad(() => {
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k]!;
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      const node = t.node;
      if (node) {
        if (node.released) throw new EngineError(`backward: the graph through '${node.op}' was already freed; pass { retainGraph: true } to the first backward`);
        backwardState.depth++;
        let gin: (Tensor | null)[];
        try {
          gin = ruleFor(node.op)({ inputs: node.inputs, out: t, saved: node.saved, attrs: node.attrs as never }, g);
        } finally {
          backwardState.depth--;
        }
        node.inputs.forEach((x, i) => {
          const gi = gin[i];
          if (!gi) return;
          if (!x.requiresGrad) return gi.dispose();
          const prev = grads.get(x);
          if (prev) {
            grads.set(x, add(prev, gi)); // a tensor used twice gets the sum of both paths
            prev.dispose();
            gi.dispose();
          } else grads.set(x, gi);
        });
        if (!retainGraph) release(node);
      }
      if (want(t)) out.set(t, g);
      else if (!seeds.has(t)) g.dispose();
    }
  });
  return out;
}

function seedFor(root: Tensor, gradient: Tensor | undefined, op: string): Tensor {
  root.device.assertUsable(op);
  if (!root.requiresGrad) throw new EngineError(`${op}: tensor does not require grad (no parameter it depends on has requiresGrad)`);
  if (gradient) {
    if (gradient.shape.join() !== root.shape.join()) throw new EngineError(`${op}: gradient shape [${gradient.shape}] does not match output [${root.shape}]`);
    return gradient;
  }
  if (root.size !== 1) throw new EngineError(`${op}: output has shape [${root.shape}]; pass a gradient for a non-scalar output`);
  return fill(root.shape, 1, root.device);
}

/** loss.backward(): accumulates d(root)/d(leaf) into leaf.grad for every leaf that requires grad. */
export function backward(root: Tensor, opts: { retainGraph?: boolean; gradient?: Tensor } = {}): void {
  const seed = seedFor(root, opts.gradient, 'backward');
  const isLeaf = (t: Tensor) => t.requiresGrad && !t.node;
  const grads = propagate(new Map([[root, seed]]), opts.retainGraph ?? false, isLeaf);
  for (const [t, g] of grads) {
    if (t.grad) {
      const sum = add(t.grad, g);
      t.grad.dispose();
      if (g !== seed) g.dispose();
      t.grad = keep(sum);
    } else t.grad = keep(g === opts.gradient ? copyOf(g) : g); // never alias the caller's tensor
  }
  if (!opts.gradient && !grads.has(root)) seed.dispose();
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
  const seeds = new Map<Tensor, Tensor>();
  const caller = new Set(opts.gradOutputs ?? []);
  outs.forEach((o, i) => {
    const s = seedFor(o, opts.gradOutputs?.[i], 'grad');
    const prev = seeds.get(o);
    if (!prev) return seeds.set(o, s);
    seeds.set(o, noGrad(() => add(prev, s))); // the same output listed twice
    for (const t of [prev, s]) if (!caller.has(t)) t.dispose();
  });
  const wanted = new Set(inputs);
  const got = propagate(seeds, opts.retainGraph ?? false, (t) => wanted.has(t));
  for (const [t, s] of seeds) if (!got.has(t) && !caller.has(s)) s.dispose();
  return inputs.map((x, i) => {
    const g = got.get(x);
    if (g) return caller.has(g) ? copyOf(g) : g;
    if (!opts.allowUnused) throw new EngineError(`grad: input ${i} [${x.shape}] is not reached from the outputs (pass allowUnused: true for zeros)`);
    return fill(x.shape, 0, x.device);
  });
}
