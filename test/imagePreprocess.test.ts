// preprocessImage against LLaVA's preprocessing (expand2square + transformers' CLIPImageProcessor,
// Pillow bicubic) of the two test photos at 336 and 1008 (fixtures: scripts/golden/
// generate_image_fixtures.py), on every backend.
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readSafetensors } from '../src/index.js';
import { decodeImage } from '../src/image/decode.js';
import { CLIP_MEAN, CLIP_STD, LLAVA_PAD_RGB, expandToSquare, pilResizeBicubic, pilTaps, preprocessImage } from '../src/image/preprocess.js';
import { describeEachBackend, expectTensorsCreated, expectThrowsClean, type BackendName } from './backends.js';
import { expectClose, expectExact, randomData } from './oracle.js';

const DIR = 'test/fixtures/image';
const PHOTOS = ['extreme_ironing', 'waterview'] as const;
const PHOTO_PATH: Record<(typeof PHOTOS)[number], string> = {
  extreme_ironing: `${DIR}/extreme_ironing.jpg`,
  waterview: `${DIR}/waterview.jpg`,
};
const SIZES = [336, 1008] as const;
const PATCH = 32;
const float = new Map<string, { max: number; mean: number }>();
const pilWorst = new Map<string, number>();

function load(file: string) {
  return readSafetensors(new Uint8Array(readFileSync(`${DIR}/${file}`)));
}

/** The processor's float32 output for CLIP input `u8` ([.., 3] pixels, 0..255), as transformers computes it. */
function normalise(u8: ArrayLike<number>): Float32Array {
  const out = new Float32Array(u8.length);
  const f = Math.fround;
  for (let i = 0; i < u8.length; i++) out[i] = f(f(f(u8[i]! / 255) - f(CLIP_MEAN[i % 3]!)) / f(CLIP_STD[i % 3]!));
  return out;
}

/** Max |a − b| over elements, and the max in units of one 8-bit level after normalisation (|d|·std·255). */
function diff(a: ArrayLike<number>, b: ArrayLike<number>): { abs: number; levels: number; meanLevels: number } {
  expect(a.length).toBe(b.length);
  let abs = 0;
  let levels = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= Number.MAX_VALUE)) throw new Error(`element ${i} is ${a[i]}, expected ${b[i]}`);
    abs = Math.max(abs, d);
    const l = d * CLIP_STD[i % 3]! * 255;
    levels = Math.max(levels, l);
    sum += l;
  }
  return { abs, levels, meanLevels: sum / a.length };
}

await describeEachBackend('preprocessImage vs CLIPImageProcessor', (backend: BackendName) => {
  // Decoded once per backend, before the per-test leak accounting starts.
  const photos = new Map<string, { decoded: tf.Tensor3D; fixture: ReturnType<typeof load> }>();
  beforeAll(async () => {
    for (const name of PHOTOS) {
      const decoded = await decodeImage(new Uint8Array(readFileSync(PHOTO_PATH[name])));
      photos.set(name, { decoded, fixture: load(`photo_${name}.safetensors`) });
    }
  });
  afterAll(() => {
    for (const { decoded, fixture } of photos.values()) tf.dispose([decoded, ...Object.values(fixture.tensors)]);
    console.log(`[${backend}] resample 'pil': max |preprocessImage − CLIPImageProcessor| = ${pilWorst.get(backend) ?? 'n/a'}`);
    for (const [k, v] of float) if (k.startsWith(`${backend}/`)) console.log(`[${k}] resample 'float' vs Pillow: max ${v.max.toFixed(2)} levels, mean ${v.mean.toFixed(3)} levels (of 255)`);
  });
  const photo = async (name: string) => photos.get(name)!;

  for (const name of PHOTOS) {
    for (const size of SIZES) {
      it(`${name} at ${size}: equals the processor's output (Pillow's 8-bit resize reproduced byte for byte)`, async () => {
        const { decoded, fixture } = await photo(name);
        const { tensors: t, metadata: m } = fixture;
        const out = expectTensorsCreated(() => preprocessImage(decoded, { size }));
        expect(out.shape).toEqual([1, size, size, 3]);
        expect(out.dtype).toBe('float32');
        // cpu, wasm, tensorflow: bit-exact. webgpu: WGSL's division is within 2.5 ulp, not correctly
        // rounded, so each value may be 2.5·2⁻²³ ≈ 3e-7 of itself off (bit-exact on SwiftShader);
        // one 8-bit level is 1/(255·std) ≈ 0.015, so that still pins every byte.
        const rtol = backend === 'webgpu' ? 3e-7 : 0;
        // Against the 8-bit image Pillow made (336: every pixel; 1008: every 16th row and the last),
        // normalised as transformers does (the generator checked that this is the processor's output).
        const rows = size === 336 ? null : Array.from(await t['clip1008.row_index']!.data());
        const ref = size === 336 ? await t['clip336.resized_u8']!.data() : await t['clip1008.resized_u8_rows']!.data();
        const sel = tf.tidy(() => (rows ? tf.gather(out, tf.tensor1d(rows, 'int32'), 1) : out.clone()));
        const selData = await sel.data();
        const d = diff(selData, normalise(ref));
        expectClose(selData, normalise(ref), rtol, 0, `${name} ${size}: preprocessImage vs normalised Pillow bytes (max ${d.levels.toFixed(3)} levels off)`);
        pilWorst.set(backend, Math.max(pilWorst.get(backend) ?? 0, d.abs));
        // Against the processor's own float output: 32×32 patches and the channel means.
        const origins = JSON.parse(m[`clip${size}.patch_origins`]!) as Array<[number, number]>;
        for (let p = 0; p < origins.length; p++) {
          const [py, px] = origins[p]!;
          const patch = tf.slice(out, [0, py, px, 0], [1, PATCH, PATCH, 3]);
          const [got, want] = [await patch.data(), await t[`clip${size}.pixel_values.patch${p}`]!.data()];
          const dp = diff(got, want).abs;
          expectClose(got, want, rtol, 0, `patch ${p} at ${origins[p]}`);
          pilWorst.set(backend, Math.max(pilWorst.get(backend) ?? 0, dp));
          patch.dispose();
        }
        // Channel means in float64 (a float32 tf.mean over 10^6 values is itself off by ~1e-4).
        const all = await out.data();
        const mean = [0, 0, 0];
        for (let i = 0; i < all.length; i++) mean[i % 3]! += all[i]! / (all.length / 3);
        expect(diff(mean, await t[`clip${size}.pixel_values.channel_mean`]!.data()).abs).toBeLessThan(1e-6);
        tf.dispose([out, sel]);
      });

      it(`${name} at ${size}, resample 'float': within a few 8-bit levels of the processor (measured)`, async () => {
        const { decoded, fixture } = await photo(name);
        const { tensors: t, metadata: m } = fixture;
        const out = preprocessImage(decoded, { size, resample: 'float' });
        const origins = JSON.parse(m[`clip${size}.patch_origins`]!) as Array<[number, number]>;
        let worst = 0;
        let sum = 0;
        for (let p = 0; p < origins.length; p++) {
          const [py, px] = origins[p]!;
          const patch = tf.slice(out, [0, py, px, 0], [1, PATCH, PATCH, 3]);
          const d = diff(await patch.data(), await t[`clip${size}.pixel_values.patch${p}`]!.data());
          worst = Math.max(worst, d.levels);
          sum += d.meanLevels / origins.length;
          patch.dispose();
        }
        // Against the full 8-bit image where the fixture has it (336: all pixels; 1008: every 16th row).
        const ref = size === 336 ? await t['clip336.resized_u8']!.data() : await t['clip1008.resized_u8_rows']!.data();
        const rows = size === 336 ? null : Array.from(await t['clip1008.row_index']!.data());
        const sel = tf.tidy(() => (rows ? tf.gather(out, tf.tensor1d(rows, 'int32'), 1) : out.clone()));
        const d = diff(await sel.data(), normalise(ref));
        worst = Math.max(worst, d.levels);
        float.set(`${backend}/${name}/${size}`, { max: worst, mean: d.meanLevels });
        // Measured on these pixels (every backend alike): extreme_ironing 336: max 2.60, mean 0.194;
        // 1008: max 2.14, mean 0.191; waterview 336: max 2.27, mean 0.160; 1008: max 3.96, mean
        // 0.140 levels of 255. Over the whole 1008 images the max is 5.42 and 7.14 (fixture README):
        // Pillow rounds and clips each pass to 8 bits, the float path clips once at the end.
        expect(worst).toBeLessThan(8);
        expect(d.meanLevels).toBeLessThan(0.25);
        tf.dispose([out, sel]);
      });
    }
  }

  it('pads like expand2square: centred, (side − short) // 2 before, with (122, 116, 104)', async () => {
    expect(Array.from(LLAVA_PAD_RGB)).toEqual([122, 116, 104]);
    for (const [H, W] of [[2, 5], [5, 2], [3, 6], [4, 4], [1, 4]] as Array<[number, number]>) {
      const data = Int32Array.from(randomData(H * W * 3, H * 10 + W), (v) => Math.floor((v + 1) * 127.5));
      const img = tf.tensor3d(data, [H, W, 3], 'int32');
      const sq = expectTensorsCreated(() => expandToSquare(img));
      const side = Math.max(H, W);
      expect(sq.shape).toEqual([side, side, 3]);
      const top = Math.floor((side - H) / 2);
      const left = Math.floor((side - W) / 2);
      const expected = new Float32Array(side * side * 3);
      for (let y = 0; y < side; y++)
        for (let x = 0; x < side; x++)
          for (let c = 0; c < 3; c++) {
            const inside = y >= top && y < top + H && x >= left && x < left + W;
            expected[(y * side + x) * 3 + c] = inside ? data[((y - top) * W + (x - left)) * 3 + c]! : LLAVA_PAD_RGB[c]!;
          }
      expectExact(await sq.data(), expected, `expandToSquare ${H}x${W}`);
      tf.dispose([img, sq]);
    }
  });

  it('pad: false resizes the whole image to size × size; size defaults to 1008; float input is rounded for Pillow', async () => {
    const data = Float32Array.from(randomData(20 * 13 * 3, 4), (v) => (v + 1) * 127.5);
    const img = tf.tensor3d(data, [20, 13, 3]);
    const rounded = tf.tensor3d(Float32Array.from(data, (v) => Math.round(v)), [20, 13, 3]);
    const a = preprocessImage(img, { pad: false, size: 24 });
    const u8 = tf.tidy(() => pilResizeBicubic(tf.expandDims(rounded, 0) as tf.Tensor4D, [24, 24]));
    expectExact(await a.data(), normalise(await u8.data()), 'pad: false');
    const b = preprocessImage(rounded, { pad: false, size: 24 });
    expectExact(await b.data(), await a.data(), 'float input rounded first');
    const int = tf.cast(rounded, 'int32') as tf.Tensor3D;
    const d = preprocessImage(int, {});
    expect(d.shape).toEqual([1, 1008, 1008, 3]);
    const e = preprocessImage(int, { pad: false, size: 24 });
    expectExact(await e.data(), await b.data(), 'int32 input');
    tf.dispose([img, rounded, a, u8, b, int, d, e]);
  });

  it("Pillow's weights: integer, summing to 2^22 per output ± rounding", () => {
    for (const [i, o] of [[570, 1008], [1000, 336], [7, 7], [1, 5], [100, 3]] as Array<[number, number]>) {
      const t = pilTaps(i, o);
      for (let r = 0; r < o; r++) {
        let s = 0;
        for (let j = 0; j < t.k; j++) s += t.intWeight[j * o + r]!;
        expect(Math.abs(s - 2 ** 22), `${i} → ${o} row ${r}`).toBeLessThanOrEqual(t.k);
      }
    }
  });

  it('rejects bad arguments with errors naming them, leaving no tensor behind', () => {
    const img = tf.zeros([4, 5, 3]);
    const gray = tf.zeros([4, 5, 1]);
    const rank4 = tf.zeros([1, 4, 5, 3]);
    const bool = tf.zeros([4, 5, 3], 'bool');
    const empty = tf.zeros([0, 5, 3]);
    expectThrowsClean(() => preprocessImage(gray as tf.Tensor3D), /preprocessImage: image must be \[height, width, 3\] \(RGB\), got shape \[4,5,1\]/);
    expectThrowsClean(() => preprocessImage(rank4 as unknown as tf.Tensor3D), /preprocessImage: image must be \[height, width, 3\]/);
    expectThrowsClean(() => preprocessImage(bool as tf.Tensor3D), /preprocessImage: image must be int32 or float32/);
    expectThrowsClean(() => preprocessImage(empty as tf.Tensor3D), /preprocessImage: image is empty/);
    expectThrowsClean(() => preprocessImage(null as unknown as tf.Tensor3D), /preprocessImage: image must be a tf.Tensor3D/);
    for (const size of [0, -336, 1.5, NaN, '336']) {
      expectThrowsClean(() => preprocessImage(img as tf.Tensor3D, { size: size as number }), /preprocessImage: opts.size must be a positive integer/);
    }
    expectThrowsClean(() => preprocessImage(img as tf.Tensor3D, { pad: 1 as unknown as boolean }), /preprocessImage: opts.pad must be a boolean/);
    expectThrowsClean(() => preprocessImage(img as tf.Tensor3D, { resample: 'lanczos' as 'pil' }), /preprocessImage: opts.resample must be 'pil' or 'float'/);
    tf.dispose([img, gray, rank4, bool, empty]);
  });
});
