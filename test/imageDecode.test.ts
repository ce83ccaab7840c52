// decodeImage (sharp) against Pillow's Image.open(...).convert('RGB') — what LLaVA runs — on the
// test photos and on small images Pillow encoded in many modes (scripts/golden/generate_image_fixtures.py).
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readSafetensors } from '../src/index.js';
import { decodeImage } from '../src/image/decode.js';
import { describeEachBackend, type BackendName } from './backends.js';
import { expectExact } from './oracle.js';

const DIR = 'test/fixtures/image';
const load = (file: string) => readSafetensors(new Uint8Array(readFileSync(`${DIR}/${file}`)));

/** max |a − b| and how many differ. */
function compare(a: ArrayLike<number>, b: ArrayLike<number>): { max: number; count: number } {
  expect(a.length).toBe(b.length);
  let max = 0;
  let count = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= 255)) throw new Error(`element ${i} is ${a[i]}, expected ${b[i]}`);
    if (d) count++;
    max = Math.max(max, d);
  }
  return { max, count };
}

await describeEachBackend('decodeImage vs Pillow', (backend: BackendName) => {
  let cases: ReturnType<typeof load>;
  beforeAll(() => {
    cases = load('decode_cases.safetensors');
  });
  afterAll(() => tf.dispose(Object.values(cases.tensors)));

  it('extreme_ironing.jpg (baseline JPEG): Pillow\'s pixels within ±2 — measured: identical', async () => {
    const { tensors: t } = load('photo_extreme_ironing.safetensors');
    const img = await decodeImage(new Uint8Array(readFileSync(`${DIR}/extreme_ironing.jpg`)));
    expect(img.shape).toEqual([380, 570, 3]);
    expect(img.dtype).toBe('int32');
    const d = compare(await img.data(), await t.decoded!.data());
    // sharp's libjpeg-turbo (mozjpeg build) and Pillow's libjpeg-turbo decode this file identically.
    expect(d.max, `max |sharp − Pillow| = ${d.max} (${d.count} values differ)`).toBeLessThanOrEqual(2);
    expect(d.max).toBe(0);
    tf.dispose([img, ...Object.values(t)]);
  });

  it('waterview.jpg (progressive, with an ICC profile): identical to Pillow (SHA-256, row sums, patches)', async () => {
    const { tensors: t, metadata: m } = load('photo_waterview.safetensors');
    const img = await decodeImage(new Uint8Array(readFileSync(`${DIR}/waterview.jpg`)));
    expect(img.shape).toEqual(JSON.parse(m.decoded_shape!));
    const data = await img.data();
    expect(createHash('sha256').update(Uint8Array.from(data)).digest('hex')).toBe(m.decoded_sha256);
    const [H, W] = img.shape;
    const sums = new Int32Array(H * 3);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < 3; c++) sums[y * 3 + c]! += data[(y * W + x) * 3 + c]!;
    expectExact(sums, await t['decoded.row_sums']!.data(), 'row sums');
    const origins = JSON.parse(m.decoded_patch_origins!) as Array<[number, number]>;
    for (let p = 0; p < origins.length; p++) {
      const [py, px] = origins[p]!;
      const patch = tf.slice(img, [py, px, 0], [32, 32, 3]);
      expectExact(await patch.data(), await t[`decoded.patch${p}`]!.data(), `patch ${p}`);
      patch.dispose();
    }
    tf.dispose([img, ...Object.values(t)]);
  });

  it('a PNG and a lossless WebP made by sharp from the same pixels decode to exactly those pixels', async () => {
    const H = 23;
    const W = 31;
    const pixels = Uint8Array.from({ length: H * W * 3 }, (_, i) => (i * 37 + (i >> 5) * 11) & 255);
    const raw = { raw: { width: W, height: H, channels: 3 as const } };
    for (const [fmt, bytes] of [
      ['png', await sharp(Buffer.from(pixels), raw).png().toBuffer()],
      ['webp', await sharp(Buffer.from(pixels), raw).webp({ lossless: true }).toBuffer()],
      ['png with alpha', await sharp(Buffer.from(pixels), raw).ensureAlpha(0.5).png().toBuffer()],
    ] as const) {
      const img = await decodeImage(new Uint8Array(bytes));
      expect(img.shape, fmt).toEqual([H, W, 3]);
      expectExact(await img.data(), pixels, fmt);
      img.dispose();
    }
  });

  const EXACT = [
    'png_rgb', 'png_rgba', 'png_gray', 'png_gray_alpha', 'png_palette', 'png_palette_trns', 'jpeg_rgb_q95', 'jpeg_gray',
    'jpeg_cmyk', 'jpeg_exif_orientation6', 'webp_lossless_rgb', 'webp_lossless_rgba', 'webp_lossy',
  ];
  for (const name of EXACT) {
    it(`${name}: identical to Pillow's convert('RGB')`, async () => {
      const bytes = Uint8Array.from(await cases.tensors[`${name}.bytes`]!.data());
      const ref = cases.tensors[`${name}.pil_rgb`]!;
      const img = await decodeImage(bytes);
      // EXIF orientation 6 is not applied (Pillow does not apply it): still 12 rows × 17 columns.
      expect(img.shape).toEqual(ref.shape);
      const d = compare(await img.data(), await ref.data());
      expect(d, `${name}: ${d.count} values differ, by up to ${d.max}`).toEqual({ max: 0, count: 0 });
      img.dispose();
    });
  }

  it("png_gray16: 16-bit samples are scaled to 8 bits (Pillow clips them to 255 instead — not reproduced)", async () => {
    const bytes = Uint8Array.from(await cases.tensors['png_gray16.bytes']!.data());
    const img = await decodeImage(bytes);
    expect(img.shape).toEqual([12, 17, 3]);
    const samples = await cases.tensors['png_gray16.samples16']!.data();
    const expected = Int32Array.from({ length: samples.length * 3 }, (_, i) => samples[Math.floor(i / 3)]! >> 8);
    expectExact(await img.data(), expected, 'gray16 → the high byte of each sample, as RGB');
    const pil = await cases.tensors['png_gray16.pil_rgb']!.data();
    expectExact(pil, Int32Array.from(expected, (_, i) => Math.min(samples[Math.floor(i / 3)]!, 255)), "Pillow's clipping");
    img.dispose();
  });

  it('rejects what is not an image with a clear message', async () => {
    const before = tf.memory().numTensors;
    await expect(decodeImage(new TextEncoder().encode('definitely not an image'))).rejects.toThrow(
      /^decodeImage: could not decode 23 bytes starting 64 65 66 69 6e 69 74 65 as an image \(JPEG, PNG, WebP, …\): /,
    );
    const jpeg = readFileSync(`${DIR}/extreme_ironing.jpg`);
    await expect(decodeImage(new Uint8Array(jpeg.subarray(0, 2000)))).rejects.toThrow(/^decodeImage: could not decode 2000 bytes starting ff d8 ff/);
    await expect(decodeImage(new Uint8Array(0))).rejects.toThrow(/^decodeImage: bytes is empty$/);
    await expect(decodeImage('x.jpg' as unknown as Uint8Array)).rejects.toThrow(/^decodeImage: bytes must be a Uint8Array/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a failure making the tensor (the backend) is reported as what it is, not as bytes that are no image', async () => {
    const png = new Uint8Array(await sharp(Buffer.from([1, 2, 3, 4, 5, 6]), { raw: { width: 2, height: 1, channels: 3 } }).png().toBuffer());
    // A backend whose every tensor allocation fails.
    class FailingWrites extends tf.KernelBackend {
      override write(): never {
        throw new Error('the backend cannot allocate');
      }
      override numDataIds(): number {
        return 0;
      }
      override dispose(): void {}
    }
    tf.registerBackend('failing-writes', () => new FailingWrites());
    try {
      await tf.setBackend('failing-writes');
      const e = (await decodeImage(png).catch((err: unknown) => err)) as Error;
      expect(e).toBeInstanceOf(Error);
      expect(e.message).toBe('the backend cannot allocate');
      expect(e.message).not.toMatch(/could not decode/);
    } finally {
      await tf.setBackend(backend);
      tf.removeBackend('failing-writes');
    }
    // Decoding failures keep their message and carry sharp's error as the cause.
    const bad = (await decodeImage(new Uint8Array([1, 2, 3])).catch((err: unknown) => err)) as Error;
    expect(bad.message).toMatch(/^decodeImage: could not decode 3 bytes starting 01 02 03 as an image/);
    expect(bad.cause).toBeInstanceOf(Error);
  });
});

describe('decodeImage without sharp', () => {
  afterAll(() => {
    vi.doUnmock('sharp');
    vi.resetModules();
  });

  it('says how to install the optional peer dependency', async () => {
    vi.resetModules();
    vi.doMock('sharp', () => {
      throw new Error("Cannot find package 'sharp' imported from decode.ts");
    });
    const { decodeImage: decodeFresh } = await import('../src/image/decode.js');
    await expect(decodeFresh(new Uint8Array([1, 2, 3]))).rejects.toThrow(
      /^decodeImage needs the optional peer dependency 'sharp' \(Node only\): npm install sharp \(import failed: .*\)$/,
    );
  });
});
