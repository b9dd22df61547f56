// safetensors (https://github.com/huggingface/safetensors) encode / decode (writes go through
// train/io/files.ts writeFileAtomic). Layout: 8-byte little-endian header length N, then N bytes of JSON
// { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { string: string } },
// padded with spaces to a multiple of 8, then the raw little-endian tensor bytes. Offsets are
// relative to the end of the header; tensors are stored in key order without gaps.

export type SafeDType = 'F32' | 'I32';
export interface SafeTensor {
  dtype: SafeDType;
  shape: number[];
  data: Float32Array | Int32Array;
}

const BYTES: Record<SafeDType, number> = { F32: 4, I32: 4 };

export function encodeSafetensors(
  tensors: ReadonlyMap<string, SafeTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === '__metadata__') throw new Error('safetensors: "__metadata__" is not a tensor name');
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length)
      throw new Error(`safetensors: '${name}' has ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    if ((t.dtype === 'F32') !== t.data instanceof Float32Array)
      throw new Error(`safetensors: '${name}' dtype ${t.dtype} does not match its data`);
    const bytes = n * BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8); // ASCII-only JSON: chars = bytes
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const t of tensors.values()) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

export interface DecodedSafetensors {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

/** Length of the JSON header that follows the 8-byte length field. */
export function headerLength(bytes: Uint8Array, fileSize = bytes.length): number {
  if (bytes.length < 8) throw new Error(`safetensors: file of ${fileSize} bytes has no header length`);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (8 + n > fileSize)
    throw new Error(`safetensors: header of ${n} bytes runs past the end of a ${fileSize}-byte file (truncated?)`);
  return n;
}

/** The JSON header (tensor entries and __metadata__) of a file whose first 8 + n bytes are `bytes`. */
export function parseHeader(bytes: Uint8Array, n: number): Record<string, unknown> {
  try {
    return JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`safetensors: the header is not valid JSON (${(e as Error).message})`);
  }
}

export function decodeSafetensors(bytes: Uint8Array): DecodedSafetensors {
  const n = headerLength(bytes);
  const header = parseHeader(bytes, n);
  const base = 8 + n;
  const tensors = new Map<string, SafeTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = v as Record<string, string>;
      continue;
    }
    const e = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (e.dtype !== 'F32' && e.dtype !== 'I32')
      throw new Error(`safetensors: '${name}' has unsupported dtype ${e.dtype}`);
    const [b, end] = e.data_offsets;
    const count = e.shape.reduce((x, y) => x * y, 1);
    if (end - b !== count * 4 || base + end > bytes.length)
      throw new Error(
        `safetensors: '${name}' data [${b}, ${end}) does not fit shape [${e.shape.join(', ')}] in a ` +
          `${bytes.length}-byte file (truncated?)`,
      );
    const copy = bytes.slice(base + b, base + end).buffer; // aligned copy
    tensors.set(name, {
      dtype: e.dtype,
      shape: e.shape,
      data: e.dtype === 'F32' ? new Float32Array(copy) : new Int32Array(copy),
    });
  }
  return { tensors, metadata };
}
