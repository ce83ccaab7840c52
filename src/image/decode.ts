import { tensor3d, type Tensor3D } from '@tensorflow/tfjs-core';
import { isNode } from '../io/nodeFiles.js';
import { decodeJpegJs, decodePngJs, formatName, sniffImageFormat, type RgbImage } from './decodeJs.js';

type SharpFactory = typeof import('sharp');

let sharpModule: Promise<SharpFactory> | undefined;

/** Hint given when the optional peer dependency is missing. */
export const SHARP_HINT = "decodeImage needs the optional peer dependency 'sharp' (Node only): npm install sharp";

/**
 * Which decoder {@link decodeImage} uses: `'auto'` (default) in Node sharp when it is installed,
 * else the built-in JavaScript decoders (JPEG and PNG only), and outside Node (a browser, a
 * worker) the platform's decoder when there is one, else the JavaScript JPEG decoder; `'sharp'`
 * sharp only; `'js'` the JavaScript decoders only (PNG needs Node); `'browser'` the platform's
 * decoder only (`createImageBitmap` + `OffscreenCanvas`). The environment variable
 * `INF_LLAVA_NO_SHARP=1` turns `'auto'` into `'js'` in Node (for trying the fallback where sharp
 * is installed; the CLI honours it too).
 */
export type ImageDecoder = 'auto' | 'sharp' | 'js' | 'browser';

/** Options of {@link decodeImage}. */
export interface DecodeImageOptions {
  /** Default `'auto'`. See {@link ImageDecoder}. */
  decoder?: ImageDecoder;
}

/** `INF_LLAVA_NO_SHARP` is set to something other than '', '0' or 'false'. */
function noSharpRequested(): boolean {
  const v = typeof process !== 'undefined' ? process.env?.INF_LLAVA_NO_SHARP : undefined;
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

/** Whether the platform decodes images (`createImageBitmap` and `OffscreenCanvas`: browsers and workers). */
function hasPlatformDecoder(): boolean {
  const g = globalThis as { createImageBitmap?: unknown; OffscreenCanvas?: unknown };
  return typeof g.createImageBitmap === 'function' && typeof g.OffscreenCanvas === 'function';
}

/**
 * The decoder `decodeImage(bytes, { decoder })` would use, without decoding: `'sharp'`, or
 * `'js'` (sharp not installed, not wanted, or `INF_LLAVA_NO_SHARP=1`) with `why` saying which;
 * outside Node `'browser'` (the platform's decoder) or `'js'`, never sharp.
 * Throws {@link SHARP_HINT} when `decoder` is `'sharp'` and sharp does not import.
 */
export async function resolveImageDecoder(decoder: ImageDecoder = 'auto'): Promise<{ decoder: 'sharp' | 'js' | 'browser'; why: string }> {
  if (decoder === 'js') return { decoder: 'js', why: "decoder: 'js' requested" };
  if (decoder === 'browser') {
    if (!hasPlatformDecoder()) throw new Error("decodeImage: decoder 'browser' needs createImageBitmap and OffscreenCanvas (a browser or a worker)");
    return { decoder: 'browser', why: "decoder: 'browser' requested" };
  }
  if (decoder === 'auto' && !isNode()) {
    return hasPlatformDecoder()
      ? { decoder: 'browser', why: "not Node: the platform's decoder" }
      : { decoder: 'js', why: 'not Node, and no createImageBitmap / OffscreenCanvas' };
  }
  if (decoder === 'auto' && noSharpRequested()) return { decoder: 'js', why: 'INF_LLAVA_NO_SHARP is set' };
  if (decoder === 'sharp') return (await loadSharp(), { decoder: 'sharp', why: "decoder: 'sharp' requested" });
  if (decoder !== 'auto') throw new Error(`decodeImage: decoder must be 'auto', 'sharp' or 'js', got ${JSON.stringify(decoder)} (or, in a browser, 'browser')`);
  try {
    await loadSharp();
    return { decoder: 'sharp', why: 'sharp is installed' };
  } catch (e) {
    // loadSharp's error has the import's as its cause (which may itself wrap the resolver's).
    const chain: unknown[] = [];
    for (let c: unknown = (e as Error).cause; c !== undefined && chain.length < 8; c = (c as Error)?.cause) chain.push(c);
    const missing = chain.some((c) => /Cannot find (package|module) 'sharp'/.test((c as Error)?.message ?? ''));
    const why = ((chain[0] as Error)?.message ?? String(chain[0])).split('\n')[0]!.trim();
    return { decoder: 'js', why: missing ? 'sharp is not installed' : `sharp does not load (${why})` };
  }
}

async function loadSharp(): Promise<SharpFactory> {
  // A computed specifier: bundlers (esbuild/tsup, webpack, vite) leave it alone instead of
  // resolving or bundling the native package; Node resolves it at run time.
  const name = 'sharp';
  sharpModule ??= (import(/* webpackIgnore: true */ /* @vite-ignore */ name) as Promise<unknown>).then(
    (m) => ((m as { default?: SharpFactory }).default ?? (m as unknown as SharpFactory)),
    (e: unknown) => {
      sharpModule = undefined; // let a later call retry after an install
      const why = ((e as Error)?.message ?? String(e)).split('\n')[0]!.trim();
      throw new Error(`${SHARP_HINT} (import failed: ${why})`, { cause: e });
    },
  );
  return sharpModule;
}

function describeBytes(bytes: Uint8Array): string {
  const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
  return `${bytes.length} bytes starting ${head}`;
}

/** Pillow's CMYK → RGB (libImaging/Convert.c `cmyk2rgb`): `nk − nk·c/255`, nk = 255 − k, rounded as MULDIV255. */
function cmykToRgb(cmyk: Uint8Array, pixels: number): Int32Array {
  const out = new Int32Array(pixels * 3);
  for (let p = 0; p < pixels; p++) {
    const nk = 255 - cmyk[p * 4 + 3]!;
    for (let c = 0; c < 3; c++) {
      const tmp = cmyk[p * 4 + c]! * nk + 128;
      out[p * 3 + c] = nk - (((tmp >> 8) + tmp) >> 8);
    }
  }
  return out;
}

/**
 * Decodes a JPEG, PNG, WebP (or anything else `sharp` reads: GIF, AVIF, TIFF…; first frame) into
 * `[H, W, 3]` **int32** RGB pixels, 0..255 — the pixels LLaVA's `Image.open(f).convert('RGB')`
 * gives (Pillow): measured equal on the test photos and on grayscale, gray+alpha, palette (with
 * transparency), RGBA, CMYK JPEGs, lossless and lossy WebP.
 *
 * - Alpha is dropped, not composited (as Pillow's `convert('RGB')`).
 * - EXIF orientation is **not** applied (Pillow does not apply it; rotate the tensor yourself
 *   if you want the upright image).
 * - Embedded ICC profiles are ignored (Pillow ignores them): the stored values are returned.
 * - CMYK is converted with Pillow's naive formula, not through a colour profile.
 * - 16-bit images are scaled to 8 bits (sharp's conversion). Pillow instead clips 16-bit
 *   grayscale PNG values above 255 to 255, which LLaVA would then see; that is not reproduced.
 *
 * Uses the optional peer dependency `sharp` (Node; imported on first use) when it is installed.
 * Without it (or with `{ decoder: 'js' }`, or `INF_LLAVA_NO_SHARP=1`) it falls back to
 * pure-JavaScript decoders, for **JPEG and PNG only**: `pngjs` (PNG pixels identical to Pillow's)
 * and `jpeg-js`, whose JPEG pixels are close to but **not bit-identical** with Pillow's
 * libjpeg-turbo (no "fancy" chroma upsampling): on assets/extreme_ironing.jpg max |Δ| 32,
 * mean |Δ| 1.05 per value. Install sharp for exact JPEG pixels and other formats.
 *
 * Outside Node (a browser, a worker) sharp is never tried: the platform's decoder is used
 * (`createImageBitmap` + `OffscreenCanvas`: every format the browser reads; no colour
 * conversion; the browser applies EXIF orientation, and transparent pixels' colour can differ
 * because a canvas stores it premultiplied), or where there is none, jpeg-js for JPEG.
 */
export async function decodeImage(bytes: Uint8Array, options: DecodeImageOptions = {}): Promise<Tensor3D> {
  const fn = 'decodeImage';
  if (!(bytes instanceof Uint8Array)) throw new Error(`${fn}: bytes must be a Uint8Array (e.g. a Buffer), got ${Object.prototype.toString.call(bytes)}`);
  if (bytes.length === 0) throw new Error(`${fn}: bytes is empty`);
  const { decoder, why: whyJs } = await resolveImageDecoder(options.decoder ?? 'auto');
  // Only the decoder's work is a decoding failure; making the tensor (a backend's failure) and a
  // missing sharp are reported as what they are.
  let img: RgbImage;
  if (decoder === 'js') {
    const format = sniffImageFormat(bytes);
    if (format !== 'jpeg' && format !== 'png') {
      const what = format ? `a ${formatName(format)} image` : 'neither JPEG nor PNG';
      throw new Error(
        `${fn}: could not decode ${describeBytes(bytes)}: ${what}, and the built-in decoders (used because ${whyJs}) read only JPEG and PNG; ` +
          `for WebP, GIF, AVIF, TIFF… install the optional peer dependency 'sharp': npm install sharp`,
      );
    }
    try {
      img = format === 'jpeg' ? await decodeJpegJs(bytes) : await decodePngJs(bytes);
    } catch (e) {
      const why = ((e as Error)?.message ?? String(e)).split('\n')[0]!.trim();
      throw new Error(`${fn}: could not decode ${describeBytes(bytes)} as ${formatName(format)} (built-in decoder ${format === 'jpeg' ? 'jpeg-js' : 'pngjs'}): ${why}`, { cause: e });
    }
  } else if (decoder === 'browser') {
    img = await decodeWithPlatform(bytes);
  } else {
    img = await decodeWithSharp(bytes, await loadSharp());
  }
  return tensor3d(img.rgb, [img.height, img.width, 3], 'int32');
}

/**
 * The platform's decoder (browsers, workers): `createImageBitmap` without colour conversion or
 * alpha premultiplication, drawn on an `OffscreenCanvas` and read back. Pixels are the
 * browser's (Chromium decodes JPEG with libjpeg-turbo, as Pillow does); the canvas keeps colour
 * premultiplied by alpha, so (semi-)transparent pixels can differ from Pillow's, and browsers
 * apply the EXIF orientation.
 */
async function decodeWithPlatform(bytes: Uint8Array): Promise<RgbImage> {
  const g = globalThis as unknown as {
    createImageBitmap(b: Blob, o?: Record<string, string>): Promise<ImageBitmap>;
    OffscreenCanvas: new (w: number, h: number) => OffscreenCanvas;
  };
  let bitmap: ImageBitmap;
  try {
    bitmap = await g.createImageBitmap(new Blob([bytes as Uint8Array<ArrayBuffer>]), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    const why = ((e as Error)?.message ?? String(e)).split('\n')[0]!.trim();
    throw new Error(`decodeImage: could not decode ${describeBytes(bytes)} with the browser's decoder (createImageBitmap): ${why}`, { cause: e });
  }
  try {
    const { width, height } = bitmap;
    const ctx = new g.OffscreenCanvas(width, height).getContext('2d', { willReadFrequently: true }) as OffscreenCanvasRenderingContext2D | null;
    if (!ctx) throw new Error("decodeImage: the browser's OffscreenCanvas has no 2d context");
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, width, height).data;
    const pixels = width * height;
    const rgb = new Int32Array(pixels * 3);
    for (let p = 0; p < pixels; p++) {
      rgb[p * 3] = rgba[p * 4]!;
      rgb[p * 3 + 1] = rgba[p * 4 + 1]!;
      rgb[p * 3 + 2] = rgba[p * 4 + 2]!;
    }
    return { rgb, width, height };
  } finally {
    bitmap.close();
  }
}

async function decodeWithSharp(bytes: Uint8Array, sharp: SharpFactory): Promise<RgbImage> {
  try {
    const meta = await sharp(bytes).metadata();
    if (meta.space === 'cmyk') {
      const { data, info } = await sharp(bytes, { ignoreIcc: true }).pipelineColourspace('cmyk').toColourspace('cmyk').raw().toBuffer({ resolveWithObject: true });
      if (info.channels !== 4) throw new Error(`expected 4 CMYK channels, got ${info.channels}`);
      return { rgb: cmykToRgb(data, info.width * info.height), width: info.width, height: info.height };
    }
    const { data, info } = await sharp(bytes, { ignoreIcc: true })
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`expected 3 channels after conversion to sRGB, got ${info.channels}`);
    return { rgb: Int32Array.from(data), width: info.width, height: info.height };
  } catch (e) {
    const why = ((e as Error)?.message ?? String(e)).split('\n')[0]!.trim();
    throw new Error(`decodeImage: could not decode ${describeBytes(bytes)} as an image (JPEG, PNG, WebP, …): ${why}`, { cause: e });
  }
}
