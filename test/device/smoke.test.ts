import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { device } from '../helpers.ts';
import { tensor, add } from '../../engine/index.ts';

test('device has an adapter name', () => {
  assert.ok(device.adapterName.length > 0);
});
test('add', async () => {
  const y = add(tensor([1, 2]), tensor([3, 4]));
  assert.equal([...(await y.toArray())], [4, 6]);
});
test.run();
