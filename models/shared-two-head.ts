// One shared encoder with two task heads: the paper's Multi-MNIST setting (Table 5), here on
// Multi-FMNIST's side-by-side item. Each task's logits are scored against its own labels. The
// first task's loss plays g_m's part and the second's g_u's: MultimodalStep integrates the shared
// encoder from (g_first, g_second); each head takes its own task's gradient.
import { EngineError, Generator, type Tensor } from '../engine/index.ts';
import { Linear, ModuleDict } from '../engine/nn/index.ts';
import type { EncoderSpec } from './late-fusion.ts';
import { TrainableModel } from './multimodal.ts';

export interface SharedTwoHeadOptions {
  /** The shared encoder; the model owns it from here on (dispose). */
  encoder: EncoderSpec;
  /** Name of the one input modality, e.g. 'image'. */
  input: string;
  /** Exactly two tasks, name → class count, in order (first = the main loss), e.g. { left: 10, right: 10 }. */
  tasks: Record<string, number>;
  /** Seed of the generator that draws the heads' initial weights (default 0). */
  seed?: number;
}

export class SharedTwoHead extends TrainableModel {
  readonly input: string;
  readonly tasks: readonly [string, string];
  readonly encoder: EncoderSpec['module'];
  readonly heads: ModuleDict<Linear>;
  readonly targets: Readonly<Record<string, string>>;
  readonly mainLoss: string;

  constructor(opts: SharedTwoHeadOptions) {
    super();
    const op = 'SharedTwoHead';
    const names = Object.keys(opts.tasks);
    if (names.length !== 2)
      throw new EngineError(`${op}: needs exactly 2 tasks, got ${names.length} (${names.join(', ') || 'none'})`);
    for (const n of names) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(n))
        throw new EngineError(`${op}: task name '${n}' is not an identifier (letters, digits, _)`);
      const k = opts.tasks[n]!;
      if (!Number.isInteger(k) || k < 1)
        throw new EngineError(`${op}: task '${n}' class count must be a positive integer, got ${k}`);
    }
    const f = opts.encoder.features;
    if (!Number.isInteger(f) || f < 1)
      throw new EngineError(`${op}: encoder features must be a positive integer, got ${f}`);
    if (!opts.input) throw new EngineError(`${op}: the input modality needs a name`);
    this.input = opts.input;
    this.tasks = [names[0]!, names[1]!];
    this.mainLoss = names[0]!;
    this.targets = Object.fromEntries(names.map((n) => [n, n]));
    this.encoder = this.child('encoder', opts.encoder.module);
    const generator = new Generator(opts.seed ?? 0);
    this.heads = this.child('heads', new ModuleDict<Linear>());
    for (const n of names) this.heads.set(n, new Linear(f, opts.tasks[n]!, { generator }));
  }

  /** { <first task>, <second task> } logits from one shared forward; call inside tidy. */
  logits(inputs: Readonly<Record<string, Tensor>>): Record<string, Tensor> {
    const given = Object.keys(inputs);
    if (given.length !== 1 || given[0] !== this.input) {
      throw new EngineError(
        `SharedTwoHead.logits: got input ${given.join(', ') || 'none'} (the model expects exactly ${this.input})`,
      );
    }
    const features = this.encoder.forward(inputs[this.input]!);
    const out: Record<string, Tensor> = {};
    for (const n of this.tasks) out[n] = this.heads.items.get(n)!.forward(features);
    features.dispose(); // the graph keeps what backward needs
    return out;
  }

  /** The second task → the shared encoder's parameters (integrated from (g_first, g_second)). */
  encoderGroups(): Record<string, Tensor[]> {
    return { [this.tasks[1]]: this.encoder.parameters() };
  }
}
