// The encoder-group check shared by the model tests (late-fusion-model.test.ts, registry.test.ts).
import * as assert from 'uvu/assert';
import type { Tensor } from '../../engine/index.ts';
import type { TrainableModel } from '../../models/multimodal.ts';

/**
 * Groups are named like logits entries, disjoint, inside the parameters, and exactly the parameters not under `outside`
 * prefixes.
 */
export function checkGroups(model: TrainableModel, outside: string[]): void {
  const groups = model.encoderGroups();
  const seen = new Set<Tensor>();
  for (const [name, ps] of Object.entries(groups)) {
    assert.ok(name in model.targets && name !== model.mainLoss, `group '${name}' is a unimodal loss`);
    assert.ok(ps.length > 0, `group '${name}' is not empty`);
    for (const p of ps) {
      assert.not.ok(seen.has(p), 'groups are disjoint');
      seen.add(p);
    }
  }
  for (const [name, p] of model.namedParameters()) {
    const isOutside = outside.some((o) => name === o || name.startsWith(o));
    assert.is(seen.has(p), !isOutside, `parameter ${name} ${isOutside ? 'outside' : 'inside'} the groups`);
  }
  assert.is(
    seen.size,
    model.parameters().length -
      model.namedParameters().filter(([n]) => outside.some((o) => n === o || n.startsWith(o))).length,
  );
}
