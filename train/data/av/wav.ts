// WAV files: the 16-bit PCM mono files `mmpareto prepare` writes (ffmpeg's pcm_s16le) and the
// tests synthesise. Samples are read as float32 in [−1, 1) (value / 32768, as librosa and
// torchaudio.load). Anything else is refused with the file name and what was found.
export interface Wav {
  sampleRate: number;
  samples: Float32Array;
}

/** Thrown for a file that is not a readable WAV (the message names the file). */
export class CorruptMediaError extends Error {}

function chunks(b: Uint8Array, file: string): Map<string, { at: number; size: number }> {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const tag = (at: number) => String.fromCharCode(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!);
  if (b.length < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE')
    throw new CorruptMediaError(`${file}: not a WAV file (no RIFF/WAVE header)`);
  const out = new Map<string, { at: number; size: number }>();
  let at = 12;
  while (at + 8 <= b.length) {
    const id = tag(at);
    let size = view.getUint32(at + 4, true);
    // ffmpeg writing to a pipe leaves 0xFFFFFFFF (unknown) in the data size: take the rest.
    if (id === 'data' && (size === 0xffffffff || at + 8 + size > b.length)) {
      if (size !== 0xffffffff && at + 8 + size > b.length)
        throw new CorruptMediaError(`${file}: truncated (data chunk of ${size} bytes, ${b.length - at - 8} present)`);
      size = b.length - at - 8;
    }
    if (!out.has(id)) out.set(id, { at: at + 8, size });
    at += 8 + size + (size & 1);
  }
  return out;
}

/** Parses a 16-bit PCM mono WAV. */
export function parseWav(bytes: Uint8Array, file: string): Wav {
  const c = chunks(bytes, file);
  const fmt = c.get('fmt ');
  const data = c.get('data');
  if (!fmt || fmt.size < 16) throw new CorruptMediaError(`${file}: WAV without a fmt chunk`);
  if (!data) throw new CorruptMediaError(`${file}: WAV without a data chunk`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const format = view.getUint16(fmt.at, true);
  const channels = view.getUint16(fmt.at + 2, true);
  const sampleRate = view.getUint32(fmt.at + 4, true);
  const bits = view.getUint16(fmt.at + 14, true);
  const extensiblePcm = format === 0xfffe && fmt.size >= 26 && view.getUint16(fmt.at + 24, true) === 1;
  if ((format !== 1 && !extensiblePcm) || bits !== 16 || channels !== 1) {
    throw new CorruptMediaError(
      `${file}: expected 16-bit PCM mono, found format ${format}, ${bits} bits, ${channels} channel(s) (run ` +
        `\`mmpareto prepare\`, which converts with ffmpeg)`,
    );
  }
  if (sampleRate < 1) throw new CorruptMediaError(`${file}: sample rate ${sampleRate}`);
  const n = Math.floor(data.size / 2);
  const samples = new Float32Array(n);
  for (let i = 0; i < n; i++) samples[i] = view.getInt16(data.at + 2 * i, true) / 32768;
  return { sampleRate, samples };
}

/** A 16-bit PCM mono WAV of `samples` (clipped to [−1, 1], rounded to the nearest step). */
export function encodeWav(samples: ArrayLike<number>, sampleRate: number): Uint8Array {
  const n = samples.length;
  const b = new Uint8Array(44 + 2 * n);
  const v = new DataView(b.buffer);
  const put = (at: number, s: string) => {
    [...s].forEach((ch, i) => {
      b[at + i] = ch.charCodeAt(0);
    });
  };
  put(0, 'RIFF');
  v.setUint32(4, 36 + 2 * n, true);
  put(8, 'WAVE');
  put(12, 'fmt ');
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true);
  v.setUint16(22, 1, true);
  v.setUint32(24, sampleRate, true);
  v.setUint32(28, 2 * sampleRate, true);
  v.setUint16(32, 2, true);
  v.setUint16(34, 16, true);
  put(36, 'data');
  v.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++)
    v.setInt16(44 + 2 * i, Math.max(-32768, Math.min(32767, Math.round(samples[i]! * 32768))), true);
  return b;
}
