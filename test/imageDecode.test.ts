// decodeImage (sharp) against Pillow's Image.open(...).convert('RGB') — what LLaVA runs — on the
// test photos and on small images Pillow encoded in many modes (scripts/golden/generate_image_fixtures.py);
// then the pure-JS fallback (pngjs, jpeg-js) used without sharp: PNG exact, JPEG within measured bounds.
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readSafetensors } from '../src/index.js';
import { useBackend } from '../src/backends/node.js';
import { decodeImage, resolveImageDecoder } from '../src/image/decode.js';
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

/** max and mean |a − b|. */
function absDiff(a: ArrayLike<number>, b: ArrayLike<number>): { max: number; mean: number } {
  expect(a.length).toBe(b.length);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});
function crc32(bytes: Uint8Array): number {
  let c = -1;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** A PNG written by hand (for what sharp does not write): IHDR, optional tRNS, one IDAT of filter-0 rows. */
function handPng(o: { width: number; height: number; depth: number; colourType: number; rows: Uint8Array[]; trns?: number[] }): Uint8Array {
  const chunk = (type: string, data: Uint8Array) => {
    const out = new Uint8Array(12 + data.length);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, data.length);
    out.set(new TextEncoder().encode(type), 4);
    out.set(data, 8);
    dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
    return out;
  };
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, o.width);
  dv.setUint32(4, o.height);
  ihdr.set([o.depth, o.colourType, 0, 0, 0], 8);
  const raw = new Uint8Array(o.rows.reduce((n, r) => n + r.length + 1, 0));
  let w = 0;
  for (const r of o.rows) {
    raw[w++] = 0;
    raw.set(r, w);
    w += r.length;
  }
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    ...(o.trns ? [chunk('tRNS', Uint8Array.from(o.trns))] : []),
    chunk('IDAT', new Uint8Array(deflateSync(raw))),
    chunk('IEND', new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
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

  describe("the JS fallback (decoder: 'js'; what runs without sharp)", () => {
    const js = { decoder: 'js' } as const;
    const caseBytes = async (name: string) => Uint8Array.from(await cases.tensors[`${name}.bytes`]!.data());

    for (const name of ['png_rgb', 'png_rgba', 'png_gray', 'png_gray_alpha', 'png_palette', 'png_palette_trns']) {
      it(`${name} (pngjs): identical to Pillow's convert('RGB')`, async () => {
        const ref = cases.tensors[`${name}.pil_rgb`]!;
        const img = await decodeImage(await caseBytes(name), js);
        expect(img.shape).toEqual(ref.shape);
        expect(img.dtype).toBe('int32');
        expectExact(await img.data(), await ref.data(), name);
        img.dispose();
      });
    }

    it('png_gray16 (pngjs): the high byte of each sample, as the sharp path', async () => {
      const bytes = await caseBytes('png_gray16');
      const [a, b] = [await decodeImage(bytes, js), await decodeImage(bytes, { decoder: 'sharp' })];
      expectExact(await a.data(), await b.data(), 'gray16: js vs sharp');
      tf.dispose([a, b]);
    });

    it('PNG variants (interlaced, palette 1/4-bit, gray 1/2/4-bit, 16-bit RGB and RGBA, colour-keyed RGB and gray): identical to the sharp path and to the pixels written', async () => {
      const H = 9;
      const W = 13;
      const pixels = Uint8Array.from({ length: H * W * 3 }, (_, i) => (i * 53 + (i >> 4) * 7) & 255);
      const raw = { raw: { width: W, height: H, channels: 3 as const } };
      const gray = (depth: number) => {
        const max = (1 << depth) - 1;
        const values = Array.from({ length: H }, (_, y) => Array.from({ length: W }, (_, x) => (x * 3 + y * 5) % (max + 1)));
        const rows = values.map((row) => {
          const out = new Uint8Array(Math.ceil((W * depth) / 8));
          row.forEach((v, x) => (out[(x * depth) >> 3]! |= v << (8 - depth - ((x * depth) & 7))));
          return out;
        });
        // Pillow (and sharp) scale low-depth gray to 0..255: v · 255 / max.
        const rgb = Int32Array.from(values.flat().flatMap((v) => [0, 0, 0].map(() => (v * 255) / max)));
        return { bytes: handPng({ width: W, height: H, depth, colourType: 0, rows }), rgb };
      };
      const keyedRgb = handPng({
        width: W, height: H, depth: 8, colourType: 2,
        rows: Array.from({ length: H }, (_, y) => pixels.subarray(y * W * 3, (y + 1) * W * 3)),
        trns: [0, pixels[0]!, 0, pixels[1]!, 0, pixels[2]!], // the first pixel's colour is "transparent"
      });
      const keyedGray = gray(8);
      const keyedGrayBytes = handPng({
        width: W, height: H, depth: 8, colourType: 0, trns: [0, 0],
        rows: Array.from({ length: H }, (_, y) => Uint8Array.from({ length: W }, (_, x) => (x * 3 + y * 5) % 256)),
      });
      const variants: Array<[string, Uint8Array, ArrayLike<number> | undefined]> = [
        ['interlaced (Adam7)', new Uint8Array(await sharp(Buffer.from(pixels), raw).png({ progressive: true }).toBuffer()), pixels],
        ['palette, 4-bit', new Uint8Array(await sharp(Buffer.from(pixels), raw).png({ palette: true, colours: 16, dither: 0 }).toBuffer()), undefined],
        ['palette, 1-bit', new Uint8Array(await sharp(Buffer.from(pixels), raw).png({ palette: true, colours: 2, dither: 0 }).toBuffer()), undefined],
        ['16-bit RGB', new Uint8Array(await sharp(Buffer.from(pixels), raw).toColourspace('rgb16').png().toBuffer()), pixels],
        ['16-bit RGBA', new Uint8Array(await sharp(Buffer.from(pixels), raw).ensureAlpha(0.25).toColourspace('rgb16').png().toBuffer()), pixels],
        ['gray, 1-bit', gray(1).bytes, gray(1).rgb],
        ['gray, 2-bit', gray(2).bytes, gray(2).rgb],
        ['gray, 4-bit', gray(4).bytes, gray(4).rgb],
        ['RGB with a tRNS colour key', keyedRgb, pixels],
        ['gray with a tRNS colour key', keyedGrayBytes, keyedGray.rgb],
      ];
      for (const [what, bytes, written] of variants) {
        const a = await decodeImage(bytes, js);
        const b = await decodeImage(bytes, { decoder: 'sharp' });
        expect(a.shape, what).toEqual([H, W, 3]);
        expectExact(await a.data(), await b.data(), `${what}: js vs sharp`);
        if (written) expectExact(await a.data(), written, `${what}: js vs the pixels written`);
        tf.dispose([a, b]);
      }
    });

    // jpeg-js replicates chroma where libjpeg-turbo interpolates ("fancy upsampling") and converts
    // YCbCr in floating point: close to Pillow, not bit-identical. Bounds = the values measured.
    const JPEG_BOUNDS: Record<string, { max: number; mean: number }> = {
      jpeg_rgb_q95: { max: 19, mean: 4.7 },
      jpeg_exif_orientation6: { max: 19, mean: 4.7 },
      jpeg_gray: { max: 1, mean: 0.5 },
      jpeg_cmyk: { max: 2, mean: 1 },
    };
    for (const [name, bound] of Object.entries(JPEG_BOUNDS)) {
      it(`${name} (jpeg-js): within ${bound.max} of Pillow (not bit-identical)`, async () => {
        const ref = cases.tensors[`${name}.pil_rgb`]!;
        const img = await decodeImage(await caseBytes(name), js);
        expect(img.shape).toEqual(ref.shape);
        const d = absDiff(await img.data(), await ref.data());
        console.log(`[${backend}] ${name}: |jpeg-js − Pillow| max ${d.max}, mean ${d.mean.toFixed(3)}`);
        expect(d.max).toBeLessThanOrEqual(bound.max);
        expect(d.mean).toBeLessThanOrEqual(bound.mean);
        img.dispose();
      });
    }

    it('extreme_ironing.jpg (jpeg-js): max |Δ| 32, mean |Δ| 1.05 against Pillow (measured)', async () => {
      const { tensors: t } = load('photo_extreme_ironing.safetensors');
      const img = await decodeImage(new Uint8Array(readFileSync(`${DIR}/extreme_ironing.jpg`)), js);
      expect(img.shape).toEqual([380, 570, 3]);
      const d = absDiff(await img.data(), await t.decoded!.data());
      console.log(`[${backend}] extreme_ironing.jpg: |jpeg-js − Pillow| max ${d.max}, mean ${d.mean.toFixed(4)}`);
      expect(d.max).toBeLessThanOrEqual(32);
      expect(d.mean).toBeLessThan(1.06);
      tf.dispose([img, ...Object.values(t)]);
    });

    it('what it cannot read: other formats name sharp; corrupt and truncated files are decoding errors', async () => {
      const webp = await caseBytes('webp_lossy');
      await expect(decodeImage(webp, js)).rejects.toThrow(
        /^decodeImage: could not decode 216 bytes starting 52 49 46 46 .*: a WebP image, and the built-in decoders \(used because decoder: 'js' requested\) read only JPEG and PNG; .*npm install sharp$/,
      );
      await expect(decodeImage(new TextEncoder().encode('definitely not an image'), js)).rejects.toThrow(/: neither JPEG nor PNG, .*npm install sharp$/);
      const jpeg = readFileSync(`${DIR}/extreme_ironing.jpg`);
      const truncated = (await decodeImage(new Uint8Array(jpeg.subarray(0, 2000)), js).catch((e: unknown) => e)) as Error;
      expect(truncated.message).toMatch(/^decodeImage: could not decode 2000 bytes starting ff d8 ff .* as JPEG \(built-in decoder jpeg-js\): /);
      expect(truncated.cause).toBeInstanceOf(Error);
      const png = await caseBytes('png_rgb');
      await expect(decodeImage(png.subarray(0, png.length - 30), js)).rejects.toThrow(/^decodeImage: could not decode \d+ bytes starting 89 50 4e 47 .* as PNG \(built-in decoder pngjs\): /);
      await expect(decodeImage(png, { decoder: 'gif' as never })).rejects.toThrow(/decoder must be 'auto', 'sharp' or 'js', got "gif"/);
    });

    it('INF_LLAVA_NO_SHARP=1 makes the default decoder the JS one (sharp stays preferred otherwise)', async () => {
      const old = process.env.INF_LLAVA_NO_SHARP;
      try {
        delete process.env.INF_LLAVA_NO_SHARP;
        expect(await resolveImageDecoder()).toEqual({ decoder: 'sharp', why: 'sharp is installed' });
        for (const off of ['', '0', 'false']) {
          process.env.INF_LLAVA_NO_SHARP = off;
          expect((await resolveImageDecoder()).decoder, `INF_LLAVA_NO_SHARP=${JSON.stringify(off)}`).toBe('sharp');
        }
        process.env.INF_LLAVA_NO_SHARP = '1';
        expect(await resolveImageDecoder()).toEqual({ decoder: 'js', why: 'INF_LLAVA_NO_SHARP is set' });
        expect((await resolveImageDecoder('sharp')).decoder).toBe('sharp'); // an explicit choice wins
        await expect(decodeImage(await caseBytes('webp_lossy'))).rejects.toThrow(/used because INF_LLAVA_NO_SHARP is set/);
        const jpegBytes = await caseBytes('jpeg_rgb_q95');
        const [viaEnv, viaJs] = [await decodeImage(jpegBytes), await decodeImage(jpegBytes, js)];
        expectExact(await viaEnv.data(), await viaJs.data(), 'INF_LLAVA_NO_SHARP=1 → the JS decoder');
        tf.dispose([viaEnv, viaJs]);
      } finally {
        if (old === undefined) delete process.env.INF_LLAVA_NO_SHARP;
        else process.env.INF_LLAVA_NO_SHARP = old;
      }
    });
  });
});

describe('decodeImage without sharp: falls back to the JS decoders', () => {
  let decodeFresh: typeof decodeImage;
  let resolveFresh: typeof resolveImageDecoder;
  beforeAll(async () => {
    await useBackend('cpu');
    vi.resetModules();
    vi.doMock('sharp', () => {
      // What Node throws when the package is not installed.
      throw Object.assign(new Error("Cannot find package 'sharp' imported from /project/node_modules/inf-llava/dist/index.js"), { code: 'ERR_MODULE_NOT_FOUND' });
    });
    ({ decodeImage: decodeFresh, resolveImageDecoder: resolveFresh } = await import('../src/image/decode.js'));
  });
  afterAll(() => {
    vi.doUnmock('sharp');
    vi.resetModules();
  });

  it('says why it uses them', async () => {
    expect(await resolveFresh()).toEqual({ decoder: 'js', why: 'sharp is not installed' });
  });

  it('decodes a JPEG (close to Pillow) and a PNG (exactly Pillow) end to end', async () => {
    const { tensors: t } = load('photo_extreme_ironing.safetensors');
    const jpeg = await decodeFresh(new Uint8Array(readFileSync(`${DIR}/extreme_ironing.jpg`)));
    expect(absDiff(await jpeg.data(), await t.decoded!.data()).max).toBeLessThanOrEqual(32);
    const cases = load('decode_cases.safetensors');
    const png = await decodeFresh(Uint8Array.from(await cases.tensors['png_palette_trns.bytes']!.data()));
    expectExact(await png.data(), await cases.tensors['png_palette_trns.pil_rgb']!.data(), 'png_palette_trns');
    tf.dispose([jpeg, png, ...Object.values(t), ...Object.values(cases.tensors)]);
  });

  it('other formats, and { decoder: "sharp" }, say how to install the optional peer dependency', async () => {
    const cases = load('decode_cases.safetensors');
    const webp = Uint8Array.from(await cases.tensors['webp_lossy.bytes']!.data());
    tf.dispose(Object.values(cases.tensors));
    await expect(decodeFresh(webp)).rejects.toThrow(/a WebP image, and the built-in decoders \(used because sharp is not installed\) read only JPEG and PNG; .*npm install sharp$/);
    await expect(decodeFresh(new Uint8Array([1, 2, 3]), { decoder: 'sharp' })).rejects.toThrow(
      /^decodeImage needs the optional peer dependency 'sharp' \(Node only\): npm install sharp \(import failed: .*\)$/,
    );
  });
});
