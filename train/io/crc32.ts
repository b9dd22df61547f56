// CRC-32 (IEEE 802.3, as zlib and gzip): zlib's native crc32 where Node has it (20.15+, 22.2+),
// else a table-driven one.
import * as zlib from 'node:zlib';

let table: Uint32Array | null = null;

function crc32Table(bytes: Uint8Array): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const native = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;

/** CRC-32 of `bytes` as an unsigned 32-bit integer. */
export function crc32(bytes: Uint8Array): number {
  return native ? native(bytes) >>> 0 : crc32Table(bytes);
}

/** The table-driven implementation (tests compare it with the native one). */
export const crc32Portable = crc32Table;
