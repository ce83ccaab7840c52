import {
  add,
  broadcastTo,
  cast,
  clipByValue,
  concat,
  div,
  expandDims,
  floor,
  mul,
  round,
  sub,
  tensor1d,
  tidy,
  type Tensor,
  type Tensor3D,
  type Tensor4D,
} from '@tensorflow/tfjs-core';
import { applyTapsMulti, choosePassMethod, resizeBicubic, strideOf, type PassMethod, type Taps } from './resizeBicubic.js';

/** CLIP's normalisation mean (RGB), as in `openai/clip-vit-large-patch14-336`'s preprocessor config. */
export const CLIP_MEAN = Object.freeze([0.48145466, 0.4578275, 0.40821073] as const);
/** CLIP's normalisation std (RGB). */
export const CLIP_STD = Object.freeze([0.26862954, 0.26130258, 0.27577711] as const);
/** LLaVA's padding colour: `tuple(int(x * 255) for x in image_mean)`, truncated, = (122, 116, 104). */
export const LLAVA_PAD_RGB = Object.freeze(CLIP_MEAN.map((m) => Math.trunc(m * 255)) as unknown as readonly [number, number, number]);

/**
 * Which image processor feeds INF-LLaVA's `encode_images` (docs/spec.md, "The official visual pipeline";
 * docs/paper-vs-code.md):
 * - `'native'`: the training run's CLIP processor scaled ×n: pad, Pillow bicubic (antialiased) straight to
 *   n·S (1008 for the official checkpoint). What the model was trained on.
 * - `'upsampled'`: the released inference scripts: pad, the tower's own S-pixel processor (Pillow bicubic to
 *   S = 336), then a float bicubic upsample of the normalised S×S tensor to n·S
 *   (`F.interpolate(mode='bicubic', align_corners=False)`, no antialiasing).
 */
export type PreprocessMode = 'native' | 'upsampled';
/** The values of {@link PreprocessMode}. */
export const PREPROCESS_MODES: readonly PreprocessMode[] = Object.freeze(['native', 'upsampled'] as const);

/** Options of {@link preprocessImage}. */
export interface PreprocessOptions {
  /** Output side (default 1008, the official INF-LLaVA resolution; 336 for plain LLaVA-1.5). */
  size?: number;
  /** Pad to a centred square with {@link LLAVA_PAD_RGB} first (default true; LLaVA's `image_aspect_ratio pad`). */
  pad?: boolean;
  /**
   * How the bicubic resize is computed (default `'pil'`):
   * - `'pil'`: Pillow's arithmetic on 8-bit images (what transformers' CLIPImageProcessor runs),
   *   bit-exact on every backend: the image is first rounded to integers (half to even) and clipped
   *   to 0..255 (a PIL image is uint8); fixed-point weights with 22 fraction bits; each pass rounded half up and clipped to 0..255.
   * - `'float'`: {@link resizeBicubic} with `antialias: true` (PyTorch's float
   *   `F.interpolate(..., antialias=True)`) on the float image, clipped to 0..255 at the end.
   *   Differentiable; it differs from Pillow where Pillow's per-pass rounding and clipping bite
   *   (up to ~7 levels of 255 at hard edges on the test photos, ~0.2 on average).
   */
  resample?: 'pil' | 'float';
}

// ------------------------------------------------------------------------------------------------
// Pillow's bicubic resampling (libImaging/Resample.c), emulated exactly in float32.

/** Pillow's `PRECISION_BITS` (32 − 8 − 2): fixed-point fraction bits of the 8-bit weights. */
const PRECISION_BITS = 22;
/** Weights are split as `k = hi·2^SPLIT + lo` (0 <= lo < 2^SPLIT) so every partial sum stays an integer below 2^24. */
const SPLIT = 8;

/** Pillow's `bicubic_filter` (a = −0.5), in double precision exactly as the C code evaluates it. */
function pilBicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/**
 * Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for a full-image resize of one axis:
 * integer weights (`k / 2^22`), in double arithmetic identical to the C code's.
 */
export function pilTaps(inSize: number, outSize: number): Taps & { readonly intWeight: Int32Array } {
  const support0 = 2; // bicubic
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = support0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const mins = new Int32Array(outSize);
  const sizes = new Int32Array(outSize);
  const kk = new Int32Array(outSize * ksize);
  let k = 1;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const w = new Float64Array(xmax);
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = pilBicubic((x + xmin - center + 0.5) * ss);
      ww += w[x]!;
    }
    for (let x = 0; x < xmax; x++) {
      if (ww !== 0) w[x] = w[x]! / ww;
      const v = w[x]! * (1 << PRECISION_BITS);
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v) : Math.trunc(0.5 + v);
    }
    mins[xx] = xmin;
    sizes[xx] = xmax;
    k = Math.max(k, xmax);
  }
  const index = new Int32Array(k * outSize);
  const intWeight = new Int32Array(k * outSize);
  for (let o = 0; o < outSize; o++) {
    for (let j = 0; j < k; j++) {
      const used = j < sizes[o]!;
      index[j * outSize + o] = used ? mins[o]! + j : Math.min(mins[o]!, inSize - 1);
      intWeight[j * outSize + o] = used ? kk[o * ksize + j]! : 0;
    }
  }
  const weight = Float32Array.from(intWeight, (v) => v / (1 << PRECISION_BITS));
  return { inSize, outSize, k, index, weight, intWeight };
}

/**
 * One Pillow pass on integer-valued float32 pixels (0..255): `clip8((Σ x·k + 2^21) >> 22)`.
 * The sum can need 31 bits, beyond float32's exact integers (2^24), so the weights are split
 * `k = hi·256 + lo`: `A = Σ x·hi` and `L = Σ x·lo` are exact integers below 2^24, and
 * `floor((A·256 + L + 2^21) / 2^22) = floor((A + floor((L + 2^21) / 256)) / 2^14)` exactly.
 * Scaling by powers of two and `floor` are exact, so every backend gets Pillow's bytes.
 */
function pilPass(x: Tensor4D, axis: 1 | 2, taps: ReturnType<typeof pilTaps>, method: PassMethod): Tensor4D {
  const stride = strideOf(taps);
  if (stride && stride.step === 1 && stride.start === 0 && taps.outSize === taps.inSize) return x; // Pillow skips it too
  const hi = new Float32Array(taps.intWeight.length);
  const lo = new Float32Array(taps.intWeight.length);
  let sumHi = 0;
  const perOut = new Float64Array(taps.outSize);
  taps.intWeight.forEach((v, i) => {
    hi[i] = Math.floor(v / 2 ** SPLIT);
    lo[i] = v - hi[i]! * 2 ** SPLIT;
    perOut[i % taps.outSize] = perOut[i % taps.outSize]! + Math.abs(hi[i]!);
  });
  for (const v of perOut) sumHi = Math.max(sumHi, v);
  if (255 * sumHi >= 2 ** 24 || 255 * 255 * taps.k + 2 ** (PRECISION_BITS - 1) >= 2 ** 24) {
    throw new Error(
      `preprocessImage: a ${taps.inSize} → ${taps.outSize} Pillow resize needs ${taps.k} taps, more than float32 can sum exactly; ` +
        `shrink the image first or use resample: 'float'`,
    );
  }
  const [a, l] = applyTapsMulti(x, axis, taps, [hi, lo], method) as [Tensor4D, Tensor4D];
  const q = floor(mul(add(l, 2 ** (PRECISION_BITS - 1)), 2 ** -SPLIT));
  return clipByValue(floor(mul(add(a, q), 2 ** -(PRECISION_BITS - SPLIT))), 0, 255) as Tensor4D;
}

/**
 * `PIL.Image.resize((size, size), Image.BICUBIC)` of an 8-bit image held as integer-valued
 * float32 `[B, H, W, C]` (0..255): the horizontal pass, then the vertical one, each rounded and
 * clipped to 8 bits, as Pillow computes them.
 * @internal
 */
export function pilResizeBicubic(x: Tensor4D, [oh, ow]: readonly [number, number], method?: PassMethod): Tensor4D {
  return tidy(() => {
    const [, H, W] = x.shape;
    const tw = pilTaps(W, ow);
    const th = pilTaps(H, oh);
    const t = pilPass(x, 2, tw, method ?? choosePassMethod(tw));
    const y = pilPass(t, 1, th, method ?? choosePassMethod(th));
    return y === x ? x.clone() : y;
  });
}

// ------------------------------------------------------------------------------------------------

function checkImage(image: Tensor3D, fn: string): void {
  if (image == null || typeof (image as { rank?: unknown }).rank !== 'number') throw new Error(`${fn}: image must be a tf.Tensor3D, got ${String(image)}`);
  if (image.rank !== 3 || image.shape[2] !== 3) {
    throw new Error(`${fn}: image must be [height, width, 3] (RGB), got shape ${JSON.stringify(image.shape)}`);
  }
  if (image.dtype !== 'int32' && image.dtype !== 'float32') throw new Error(`${fn}: image must be int32 or float32 (0..255), got ${image.dtype}`);
  if (image.shape[0] === 0 || image.shape[1] === 0) throw new Error(`${fn}: image is empty (shape ${JSON.stringify(image.shape)})`);
}

/**
 * LLaVA's `expand2square`: pads `[H, W, 3]` to a `max(H, W)` square with `color`, the image at
 * `((side − W) // 2, (side − H) // 2)`.
 */
export function expandToSquare(image: Tensor3D, color: readonly [number, number, number] = LLAVA_PAD_RGB): Tensor3D {
  checkImage(image, 'expandToSquare');
  return tidy(() => {
    const x = image.dtype === 'float32' ? image : cast(image, 'float32');
    const [H, W] = x.shape;
    if (H === W) return x.clone();
    const side = Math.max(H, W);
    const axis = H < W ? 0 : 1;
    const before = Math.floor((side - (axis === 0 ? H : W)) / 2);
    const after = side - (axis === 0 ? H : W) - before;
    const c = tensor1d(color as unknown as number[], 'float32');
    const band = (n: number): Tensor => broadcastTo(c, axis === 0 ? [n, W, 3] : [H, n, 3]);
    const parts: Tensor[] = [];
    if (before > 0) parts.push(band(before));
    parts.push(x);
    if (after > 0) parts.push(band(after));
    return concat(parts, axis) as Tensor3D;
  });
}

/**
 * docs/spec.md's official visual pipeline, step 1 (LLaVA's `image_aspect_ratio pad` + CLIP's image
 * processor scaled to 1008): pad to a centred square with (122, 116, 104), bicubic resize with
 * antialiasing to `size × size` (Pillow's, by default bit-exact), scale to [0, 1], normalise with
 * {@link CLIP_MEAN} and {@link CLIP_STD}.
 *
 * @param image `[H, W, 3]` RGB, 0..255, int32 or float32 (as `decodeImage` returns).
 * @returns `[1, size, size, 3]` float32, NHWC.
 */
export function preprocessImage(image: Tensor3D, opts: PreprocessOptions = {}): Tensor4D {
  const fn = 'preprocessImage';
  checkImage(image, fn);
  if (opts == null || typeof opts !== 'object') throw new Error(`${fn}: opts must be an object, got ${String(opts)}`);
  const size = opts.size ?? 1008;
  const pad = opts.pad ?? true;
  const resample = opts.resample ?? 'pil';
  if (!Number.isSafeInteger(size) || size <= 0) throw new Error(`${fn}: opts.size must be a positive integer, got ${JSON.stringify(opts.size)}`);
  if (typeof pad !== 'boolean') throw new Error(`${fn}: opts.pad must be a boolean, got ${JSON.stringify(opts.pad)}`);
  if (resample !== 'pil' && resample !== 'float') throw new Error(`${fn}: opts.resample must be 'pil' or 'float', got ${JSON.stringify(opts.resample)}`);
  return tidy(() => {
    let x: Tensor3D = image.dtype === 'float32' ? image : cast(image, 'float32');
    if (resample === 'pil') x = clipByValue(image.dtype === 'float32' ? round(x) : x, 0, 255);
    if (pad) x = expandToSquare(x);
    const x4 = expandDims(x, 0) as Tensor4D;
    const resized =
      resample === 'pil'
        ? pilResizeBicubic(x4, [size, size])
        : (clipByValue(resizeBicubic(x4, [size, size], { antialias: true }), 0, 255) as Tensor4D);
    // transformers: rescale (u8 × (1/255) in double, stored as float32 — the same float32 as
    // u8 / 255 for all 256 values), then (x − mean) / std in float32.
    const mean = tensor1d(CLIP_MEAN as unknown as number[], 'float32');
    const std = tensor1d(CLIP_STD as unknown as number[], 'float32');
    return div(sub(div(resized, 255), mean), std) as Tensor4D;
  });
}
