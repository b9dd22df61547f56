// IDX parsing on files built here (raw and gzipped), and the errors for truncated or foreign data.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gzipSync } from 'node:zlib';
import { parseIdx } from '../../train/data/idx.ts';

const test = suite('idx');

/** An unsigned-byte IDX file of `shape` holding 0, 1, 2, ... (mod 256). */
function idx(shape: number[]): Uint8Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(4 + 4 * shape.length + n);
  const view = new DataView(out.buffer);
  out.set([0, 0, 0x08, shape.length]);
  shape.forEach((d, i) => {
    view.setUint32(4 + 4 * i, d, false);
  });
  for (let i = 0; i < n; i++) out[4 + 4 * shape.length + i] = i % 256;
  return out;
}

test('images (rank 3) and labels (rank 1), raw and gzipped', () => {
  for (const gz of [false, true]) {
    const img = idx([3, 28, 28]);
    const a = parseIdx(gz ? new Uint8Array(gzipSync(img)) : img);
    assert.equal(a.shape, [3, 28, 28]);
    assert.is(a.data.length, 3 * 28 * 28);
    assert.is(a.data[300], 300 % 256);
    const lab = parseIdx(idx([5]));
    assert.equal([...lab.data], [0, 1, 2, 3, 4]);
  }
});

test('truncated files and foreign data are refused, saying what is wrong', () => {
  const img = idx([2, 4, 4]);
  assert.throws(
    () => parseIdx(img.subarray(0, img.length - 1), 'train-images'),
    /train-images: truncated: shape \[2, 4, 4\] needs 32 bytes of data, the file has 31/,
  );
  assert.throws(() => parseIdx(img.subarray(0, 9)), /header of rank 3 is truncated/);
  assert.throws(() => parseIdx(Uint8Array.of(0x50, 0x4b, 3, 4, 0, 0)), /not an IDX file/);
  const f32 = idx([2]);
  f32[2] = 0x0d;
  assert.throws(() => parseIdx(f32), /element type 0xd is not unsigned byte/);
  assert.throws(
    () => parseIdx(new Uint8Array(gzipSync(img)).subarray(0, 20)),
    /unexpected end of file|incorrect header check|invalid/i,
  );
});

test.run();
