// IDX files (the MNIST / Fashion-MNIST format), optionally gzipped: a big-endian header —
// two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions — then one
// big-endian u32 per dimension, then the data in row-major order.
import { gunzipSync } from 'node:zlib';

export interface IdxArray {
  shape: number[];
  data: Uint8Array;
}

/** Parses IDX bytes (gunzipping them first when they start with the gzip magic). */
export function parseIdx(raw: Uint8Array, what = 'IDX data'): IdxArray {
  const bytes = raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b ? new Uint8Array(gunzipSync(raw)) : raw;
  if (bytes.length < 4) throw new Error(`${what}: ${bytes.length} bytes, too short for an IDX header`);
  if (bytes[0] !== 0 || bytes[1] !== 0) throw new Error(`${what}: not an IDX file (magic ${bytes[0]}, ${bytes[1]})`);
  if (bytes[2] !== 0x08)
    throw new Error(`${what}: element type 0x${bytes[2]!.toString(16)} is not unsigned byte (0x08)`);
  const rank = bytes[3]!;
  const dataStart = 4 + 4 * rank;
  if (rank === 0 || bytes.length < dataStart)
    throw new Error(`${what}: header of rank ${rank} is truncated (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const n = shape.reduce((a, b) => a * b, 1);
  if (bytes.length - dataStart < n) {
    throw new Error(
      `${what}: truncated: shape [${shape.join(', ')}] needs ${n} bytes of data, the file has ` +
        `${bytes.length - dataStart}`,
    );
  }
  return { shape, data: bytes.slice(dataStart, dataStart + n) };
}
