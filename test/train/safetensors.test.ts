// safetensors: the byte layout a standard reader expects (checked field by field here), a
// round trip of a module's state dict through a file, truncated files, atomic writes.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../helpers.ts'; // creates the device
import { BatchNorm2d, Conv2d, Generator, Sequential, type Tensor } from '../../engine/index.ts';
import { decodeSafetensors, encodeSafetensors, type SafeTensor } from '../../train/io/safetensors.ts';
import { writeFileAtomic } from '../../train/io/files.ts';

const test = suite('safetensors');

async function toSafe(t: Tensor): Promise<SafeTensor> {
  const data = await t.toArray();
  return { dtype: t.dtype === 'int32' ? 'I32' : 'F32', shape: [...t.shape], data };
}

test('layout: 8-byte little-endian header length, JSON header with dtype/shape/data_offsets, data after it', () => {
  const a: SafeTensor = { dtype: 'F32', shape: [2, 2], data: Float32Array.of(1, 2, 3, 4.5) };
  const b: SafeTensor = { dtype: 'I32', shape: [], data: Int32Array.of(7) };
  const bytes = encodeSafetensors(
    new Map([
      ['w', a],
      ['n', b],
    ]),
    { format: 'pt' },
  );
  const view = new DataView(bytes.buffer);
  const n = Number(view.getBigUint64(0, true));
  assert.is((8 + n) % 8, 0, 'data starts 8-byte aligned');
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  assert.equal(header.__metadata__, { format: 'pt' });
  assert.equal(header.w, { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] });
  assert.equal(header.n, { dtype: 'I32', shape: [], data_offsets: [16, 20] });
  assert.is(bytes.length, 8 + n + 20);
  assert.is(view.getFloat32(8 + n + 12, true), 4.5);
  assert.is(view.getInt32(8 + n + 16, true), 7);
});

test("a module's state dict round-trips through a file (PyTorch names, values, int32 counter)", async () => {
  const m = new Sequential(new Conv2d(3, 4, 3, { generator: new Generator(1) }), new BatchNorm2d(4));
  const sd = new Map<string, SafeTensor>();
  for (const [k, t] of m.stateDict()) sd.set(k, await toSafe(t));
  const dir = mkdtempSync(join(tmpdir(), 'safetensors-'));
  const path = join(dir, 'model.safetensors');
  writeFileAtomic(path, encodeSafetensors(sd));
  assert.equal(readdirSync(dir), ['model.safetensors'], 'no temporary file left behind');
  const back = decodeSafetensors(new Uint8Array(readFileSync(path)));
  assert.equal(
    [...back.tensors.keys()],
    ['0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', '1.running_var', '1.num_batches_tracked'],
  );
  for (const [k, t] of sd) {
    assert.equal(back.tensors.get(k)!.shape, t.shape, k);
    assert.equal([...back.tensors.get(k)!.data], [...t.data], k);
  }
  const m2 = new Sequential(new Conv2d(3, 4, 3, { generator: new Generator(2) }), new BatchNorm2d(4));
  m2.loadStateDict(new Map([...back.tensors].map(([k, t]) => [k, t.data])));
  assert.equal([...(await m2.stateDict().get('0.weight')!.toArray())], [...sd.get('0.weight')!.data]);
  rmSync(dir, { recursive: true });
  m.dispose();
  m2.dispose();
});

test('truncated files and mismatched tensors are refused with a clear error', () => {
  const bytes = encodeSafetensors(
    new Map([['w', { dtype: 'F32', shape: [3], data: Float32Array.of(1, 2, 3) } as SafeTensor]]),
  );
  assert.throws(() => decodeSafetensors(bytes.subarray(0, 5)), /no header length/);
  assert.throws(() => decodeSafetensors(bytes.subarray(0, 20)), /runs past the end/);
  assert.throws(
    () => decodeSafetensors(bytes.subarray(0, bytes.length - 4)),
    /'w' data \[0, 12\) does not fit .* \(truncated\?\)/,
  );
  assert.throws(
    () => encodeSafetensors(new Map([['w', { dtype: 'F32', shape: [2], data: Float32Array.of(1) } as SafeTensor]])),
    /1 values for shape \[2\]/,
  );
});

test.run();
