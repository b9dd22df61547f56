// Frames: JPEG decoding and torchvision's transforms, on the host.
// - decodeJpeg: jpeg-js (pure JavaScript, no native build, runs in Node and browsers), strict
//   mode, so a corrupt file throws (naming it) instead of decoding to grey blocks.
// - Resizing is Pillow's bilinear filter with antialiasing (what torchvision's Resize and
//   RandomResizedCrop do on PIL images): for a scale factor s = in/out, output pixel o takes the
//   input pixels within s·1 of its centre (o + ½)·s, weighted by the triangle 1 − |d|/max(s, 1),
//   normalised; separable, horizontal then vertical, in float (Pillow rounds to 8 bits between
//   the passes, so values can differ from it by about 1/255).
// - randomResizedCropBox: torchvision's RandomResizedCrop.get_params, scale (0.08, 1), ratio
//   (3/4, 4/3), ten tries then the centre-crop fallback.
// - toNormalizedCHW: ToTensor + Normalize with ImageNet's mean and std.
import jpeg from 'jpeg-js';
import type { Generator } from '../../../engine/index.ts';
import { CorruptMediaError } from './wav.ts';

export interface RgbImage {
  width: number;
  height: number;
  /** RGB, row-major, 3 bytes per pixel. */
  data: Uint8Array;
}

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

export function decodeJpeg(bytes: Uint8Array, file: string): RgbImage {
  try {
    const img = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      tolerantDecoding: false,
      maxResolutionInMP: 50,
    });
    if (!(img.width > 0 && img.height > 0)) throw new Error(`size ${img.width}×${img.height}`);
    return { width: img.width, height: img.height, data: img.data };
  } catch (e) {
    throw new CorruptMediaError(`${file}: not a decodable JPEG (${(e as Error).message || String(e)})`);
  }
}

/** A crop box in pixels: rows [top, top + height), columns [left, left + width). */
export interface Box {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** torchvision.transforms.RandomResizedCrop.get_params(img, (0.08, 1.0), (3/4, 4/3)). */
export function randomResizedCropBox(width: number, height: number, g: Generator): Box {
  const area = width * height;
  const [lr0, lr1] = [Math.log(3 / 4), Math.log(4 / 3)];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (0.08 + 0.92 * g.uniform());
    const aspect = Math.exp(lr0 + (lr1 - lr0) * g.uniform());
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      return { top: g.int(height - h + 1), left: g.int(width - w + 1), height: h, width: w };
    }
  }
  const ratio = width / height;
  let [w, h] = [width, height];
  if (ratio < 3 / 4) h = Math.round(w / (3 / 4));
  else if (ratio > 4 / 3) w = Math.round(h * (4 / 3));
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/** Per output index along one axis: the first input index and the normalised weights. */
function axisWeights(start: number, inLen: number, outLen: number): { first: Int32Array; weights: Float32Array[] } {
  const scale = inLen / outLen;
  const support = Math.max(scale, 1);
  const first = new Int32Array(outLen);
  const weights: Float32Array[] = [];
  for (let o = 0; o < outLen; o++) {
    const centre = (o + 0.5) * scale;
    const lo = Math.max(0, Math.floor(centre - support));
    const hi = Math.min(inLen, Math.ceil(centre + support));
    const w = new Float32Array(hi - lo);
    let total = 0;
    for (let i = lo; i < hi; i++) total += w[i - lo] = Math.max(0, 1 - Math.abs(i + 0.5 - centre) / support);
    for (let k = 0; k < w.length; k++) w[k]! /= total;
    first[o] = start + lo;
    weights.push(w);
  }
  return { first, weights };
}

/**
 * The `box` of `img` resized to size × size (Pillow bilinear, antialiased), optionally flipped
 * left-right, as ImageNet-normalised CHW floats written into `out` (3·size·size values).
 */
export function toNormalizedCHW(img: RgbImage, box: Box, size: number, flip: boolean, out: Float32Array): void {
  const h = axisWeights(box.left, box.width, size);
  const v = axisWeights(box.top, box.height, size);
  // Horizontal pass over the box's rows: rows × size × 3.
  const tmp = new Float32Array(box.height * size * 3);
  for (let r = 0; r < box.height; r++) {
    const row = (box.top + r) * img.width * 3;
    for (let o = 0; o < size; o++) {
      const w = h.weights[o]!;
      const x0 = h.first[o]!;
      let s0 = 0,
        s1 = 0,
        s2 = 0;
      for (let k = 0; k < w.length; k++) {
        const p = row + (x0 + k) * 3;
        s0 += w[k]! * img.data[p]!;
        s1 += w[k]! * img.data[p + 1]!;
        s2 += w[k]! * img.data[p + 2]!;
      }
      const t = (r * size + o) * 3;
      tmp[t] = s0;
      tmp[t + 1] = s1;
      tmp[t + 2] = s2;
    }
  }
  const plane = size * size;
  for (let o = 0; o < size; o++) {
    const w = v.weights[o]!;
    const r0 = v.first[o]! - box.top;
    for (let x = 0; x < size; x++) {
      let s0 = 0,
        s1 = 0,
        s2 = 0;
      for (let k = 0; k < w.length; k++) {
        const t = ((r0 + k) * size + x) * 3;
        s0 += w[k]! * tmp[t]!;
        s1 += w[k]! * tmp[t + 1]!;
        s2 += w[k]! * tmp[t + 2]!;
      }
      const at = o * size + (flip ? size - 1 - x : x);
      out[at] = (s0 / 255 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
      out[plane + at] = (s1 / 255 - IMAGENET_MEAN[1]) / IMAGENET_STD[1];
      out[2 * plane + at] = (s2 / 255 - IMAGENET_MEAN[2]) / IMAGENET_STD[2];
    }
  }
}
