import { tensor3d, type Tensor3D } from '@tensorflow/tfjs-core';

type SharpFactory = typeof import('sharp');

let sharpModule: Promise<SharpFactory> | undefined;

/** Hint given when the optional peer dependency is missing. */
export const SHARP_HINT = "decodeImage needs the optional peer dependency 'sharp' (Node only): npm install sharp";

async function loadSharp(): Promise<SharpFactory> {
  // A computed specifier: bundlers (esbuild/tsup, webpack, vite) leave it alone instead of
  // resolving or bundling the native package; Node resolves it at run time.
  const name = 'sharp';
  sharpModule ??= (import(/* webpackIgnore: true */ /* @vite-ignore */ name) as Promise<unknown>).then(
    (m) => ((m as { default?: SharpFactory }).default ?? (m as unknown as SharpFactory)),
    (e: unknown) => {
      sharpModule = undefined; // let a later call retry after an install
      const why = ((e as Error)?.message ?? String(e)).split('\n')[0]!.trim();
      throw new Error(`${SHARP_HINT} (import failed: ${why})`);
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
 * Needs the optional peer dependency `sharp` (Node; imported on first use).
 */
export async function decodeImage(bytes: Uint8Array): Promise<Tensor3D> {
  const fn = 'decodeImage';
  if (!(bytes instanceof Uint8Array)) throw new Error(`${fn}: bytes must be a Uint8Array (e.g. a Buffer), got ${Object.prototype.toString.call(bytes)}`);
  if (bytes.length === 0) throw new Error(`${fn}: bytes is empty`);
  const sharp = await loadSharp();
  // Only sharp's work is a decoding failure; making the tensor (a backend's failure) and a
  // missing sharp are reported as what they are.
  let rgb: Int32Array;
  let height: number;
  let width: number;
  try {
    const meta = await sharp(bytes).metadata();
    if (meta.space === 'cmyk') {
      const { data, info } = await sharp(bytes, { ignoreIcc: true }).pipelineColourspace('cmyk').toColourspace('cmyk').raw().toBuffer({ resolveWithObject: true });
      if (info.channels !== 4) throw new Error(`expected 4 CMYK channels, got ${info.channels}`);
      rgb = cmykToRgb(data, info.width * info.height);
      [height, width] = [info.height, info.width];
    } else {
      const { data, info } = await sharp(bytes, { ignoreIcc: true })
        .removeAlpha()
        .toColourspace('srgb')
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true });
      if (info.channels !== 3) throw new Error(`expected 3 channels after conversion to sRGB, got ${info.channels}`);
      rgb = Int32Array.from(data);
      [height, width] = [info.height, info.width];
    }
  } catch (e) {
    const why = ((e as Error)?.message ?? String(e)).split('\n')[0]!.trim();
    throw new Error(`${fn}: could not decode ${describeBytes(bytes)} as an image (JPEG, PNG, WebP, …): ${why}`, { cause: e });
  }
  return tensor3d(rgb, [height, width, 3], 'int32');
}
