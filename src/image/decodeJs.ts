/**
 * The pure-JavaScript image decoders `decodeImage` falls back to when the optional peer
 * dependency `sharp` is not installed: `jpeg-js` for JPEG and `pngjs` for PNG (regular
 * dependencies, no native code). Both are imported on first use; jpeg-js also in a browser
 * bundle, pngjs only in Node.
 *
 * PNG pixels equal Pillow's `convert('RGB')` (and sharp's). JPEG pixels do **not** equal
 * libjpeg-turbo's (Pillow's, sharp's): jpeg-js upsamples chroma by replication where
 * libjpeg-turbo interpolates ("fancy upsampling") and converts YCbCr to RGB in floating point.
 * Measured on assets/extreme_ironing.jpg (570×380, 4:2:0): max |Δ| 32, mean |Δ| 1.05 per value,
 * 90.6% of values within ±2; on test/fixtures/image/waterview.jpg (1000×667): max 15, mean 0.65.
 * @internal
 * @packageDocumentation
 */

import { isNode } from '../io/nodeFiles.js';

/** A decoded image: `width·height·3` RGB values, 0..255. */
export interface RgbImage {
  rgb: Int32Array;
  width: number;
  height: number;
}

/** The formats the JS fallback reads. */
export const JS_FORMATS = ['jpeg', 'png'] as const;
export type JsFormat = (typeof JS_FORMATS)[number];

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** The container format by its magic bytes (what `sharp` would be needed for, in words), or null. */
export function sniffImageFormat(b: Uint8Array): string | null {
  const at = (o: number, s: string) => b.length >= o + s.length && Array.from(s).every((c, i) => b[o + i] === c.charCodeAt(0));
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (PNG_SIGNATURE.every((v, i) => b[i] === v)) return 'png';
  if (at(0, 'RIFF') && at(8, 'WEBP')) return 'webp';
  if (at(0, 'GIF87a') || at(0, 'GIF89a')) return 'gif';
  if (at(4, 'ftyp') && (at(8, 'avif') || at(8, 'avis'))) return 'avif';
  if (at(4, 'ftyp') && (at(8, 'heic') || at(8, 'heix') || at(8, 'mif1'))) return 'heif';
  if (at(0, 'II*\u0000') || at(0, 'MM\u0000*')) return 'tiff';
  if (at(0, 'BM')) return 'bmp';
  return null;
}

const FORMAT_NAMES: Record<string, string> = { jpeg: 'JPEG', png: 'PNG', webp: 'WebP', gif: 'GIF', avif: 'AVIF', heif: 'HEIF', tiff: 'TIFF', bmp: 'BMP' };

/** A {@link sniffImageFormat} result as people write it: `'webp'` → `'WebP'`. */
export function formatName(format: string): string {
  return FORMAT_NAMES[format] ?? format;
}

type JpegJs = { decode(data: Uint8Array, opts: Record<string, unknown>): { width: number; height: number; data: Uint8Array } };
type PngJs = { PNG: { sync: { read(data: Uint8Array, opts?: Record<string, unknown>): { width: number; height: number; data: Uint8Array | Uint16Array } } } };

// A computed specifier for pngjs, as for sharp: bundlers leave it alone (pngjs needs Node's zlib
// and streams); Node resolves it from this package's dependencies at run time.
async function load<T>(name: string): Promise<T> {
  const m = (await import(/* webpackIgnore: true */ /* @vite-ignore */ name)) as { default?: T };
  return (m.default ?? m) as T;
}

let jpegJs: Promise<JpegJs> | undefined;
let pngJs: Promise<PngJs> | undefined;

/** Decodes a JPEG with jpeg-js (grayscale, YCbCr, Adobe CMYK/YCCK). */
export async function decodeJpegJs(bytes: Uint8Array): Promise<RgbImage> {
  // A literal import: jpeg-js is plain JavaScript, so a browser bundle includes it (Node
  // resolves it from this package's dependencies, as before).
  jpegJs ??= import('jpeg-js').then(
    (m) => ((m as { default?: JpegJs }).default ?? (m as unknown as JpegJs)),
    (e: unknown) => ((jpegJs = undefined), Promise.reject(e)),
  );
  const { decode } = await jpegJs;
  // tolerantDecoding off: a truncated or corrupt file is an error (as in Pillow and sharp),
  // not a partly grey image.
  const img = decode(bytes, { useTArray: true, formatAsRGBA: false, tolerantDecoding: false });
  if (img.data.length !== img.width * img.height * 3) throw new Error(`jpeg-js returned ${img.data.length} values for ${img.width}×${img.height} RGB`);
  return { rgb: Int32Array.from(img.data), width: img.width, height: img.height };
}

const u32 = (b: Uint8Array, o: number) => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;

/**
 * The PNG's chunks without `tRNS` (for grayscale and RGB images only). pngjs zeroes the colour
 * of every pixel that matches the transparent colour; Pillow's `convert('RGB')` keeps it (the
 * transparency lives in alpha only, which is dropped anyway).
 */
function withoutColourKey(b: Uint8Array, colourType: number): Uint8Array {
  if (colourType !== 0 && colourType !== 2) return b;
  const keep: Array<[number, number]> = [];
  let o = 8;
  let dropped = false;
  while (o + 8 <= b.length) {
    const end = o + 12 + u32(b, o);
    if (end > b.length) break; // truncated: let pngjs report it
    if (String.fromCharCode(b[o + 4]!, b[o + 5]!, b[o + 6]!, b[o + 7]!) === 'tRNS') dropped = true;
    else keep.push([o, end]);
    o = end;
  }
  if (!dropped) return b;
  if (o < b.length) keep.push([o, b.length]);
  const out = new Uint8Array(8 + keep.reduce((n, [s, e]) => n + e - s, 0));
  out.set(b.subarray(0, 8));
  let w = 8;
  for (const [s, e] of keep) {
    out.set(b.subarray(s, e), w);
    w += e - s;
  }
  return out;
}

/**
 * Decodes a PNG with pngjs: any bit depth, palette, grayscale, alpha (dropped, not composited),
 * interlaced. 16-bit samples keep their high byte (as sharp; Pillow does the same for RGB but
 * clips 16-bit grayscale). Gamma and colour profiles are ignored, as in Pillow.
 */
export async function decodePngJs(bytes: Uint8Array): Promise<RgbImage> {
  if (bytes.length < 33 || String.fromCharCode(...bytes.subarray(12, 16)) !== 'IHDR') throw new Error('no IHDR chunk after the PNG signature');
  const depth = bytes[24]!;
  const colourType = bytes[25]!;
  if (!isNode()) throw new Error("pngjs needs Node (zlib, streams); in a browser use the browser's decoder (decoder: 'browser')");
  pngJs ??= load<PngJs>('pngjs').catch((e: unknown) => ((pngJs = undefined), Promise.reject(e)));
  const { PNG } = await pngJs;
  // pngjs takes a Buffer (it calls Buffer methods on the input).
  const input = withoutColourKey(bytes, colourType);
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  // skipRescale for 16 bits: pngjs would round v·255/65535; sharp (and Pillow's RGB) keep v >> 8.
  // Lower depths (1, 2, 4-bit grayscale) are scaled to 0..255 as in Pillow.
  const png = PNG.sync.read(buf, { skipRescale: depth === 16 });
  const { width, height, data } = png;
  const pixels = width * height;
  if (data.length !== pixels * 4) throw new Error(`pngjs returned ${data.length} values for ${width}×${height} RGBA`);
  const shift = depth === 16 ? 8 : 0;
  const rgb = new Int32Array(pixels * 3);
  for (let p = 0; p < pixels; p++) {
    rgb[p * 3] = data[p * 4]! >> shift;
    rgb[p * 3 + 1] = data[p * 4 + 1]! >> shift;
    rgb[p * 3 + 2] = data[p * 4 + 2]! >> shift;
  }
  return { rgb, width, height };
}
