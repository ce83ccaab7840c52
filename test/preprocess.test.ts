// The two preprocessing paths of the visual pipeline ('native': the CLIP processor scaled ×n, as in
// training; 'upsampled': the S-pixel processor + a float bicubic upsample, as the released inference
// scripts) against a PyTorch composition of the released encode_images, on every backend.
// Fixtures: scripts/golden/generate_preprocess_fixtures.py (the bundled photo and a portrait crop of it).
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../src/cli/main.js';
import { loadInfLlava, loadInfLlavaVision, readSafetensors, resizeBicubic, type EncodeImageOptions, type PreprocessMode } from '../src/index.js';
import { describeEachBackend, type BackendName } from './backends.js';
import { expectCloseScaled, maxRelErr } from './oracle.js';

const CKPT = 'assets/tiny-inf-llava';
const FIXTURE = 'test/fixtures/preprocess/expected.safetensors';
const IMAGES = ['photo', 'portrait'] as const;
const PATHS: readonly PreprocessMode[] = ['native', 'upsampled'];
const N = 3;
const S = 28;

const fixtureBytes = new Uint8Array(readFileSync(FIXTURE));
// The header's __metadata__ (no backend is set yet at import time, so no tensors).
const headerLength = Number(new DataView(fixtureBytes.buffer, fixtureBytes.byteOffset, 8).getBigUint64(0, true));
const metadata = (JSON.parse(new TextDecoder().decode(fixtureBytes.subarray(8, 8 + headerLength))) as { __metadata__: Record<string, string> }).__metadata__;
const checkpointSha = createHash('sha256').update(readFileSync(`${CKPT}/model.safetensors`)).digest('hex');
const stale =
  checkpointSha === metadata.checkpoint_sha256
    ? ''
    : ` (${CKPT}/model.safetensors changed since the fixture was made: rerun .venv/bin/python scripts/golden/generate_preprocess_fixtures.py)`;

function loadFixture(): Record<string, tf.Tensor> {
  return readSafetensors(fixtureBytes).tensors;
}

async function maxAbs(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  expect(a.shape).toEqual(b.shape);
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const v = (await d.data())[0]!;
  d.dispose();
  return v;
}

async function relErr(a: tf.Tensor, ref: tf.Tensor, what: string): Promise<number> {
  expect(a.shape).toEqual(ref.shape);
  return maxRelErr(await a.data(), await ref.data(), what);
}

/**
 * Visual tokens against PyTorch, element by element: |a − ref| ≤ ATOL·max|ref| + RTOL·|ref|.
 * Measured worst atol at RTOL, in units of max|ref|, over the four backends: 5.0e-7
 * (tensorflow). Returns max|err|/max|ref| for the printed report.
 */
const RTOL = 1e-6;
const ATOL = 3e-6;
async function expectTokens(a: tf.Tensor, ref: tf.Tensor, what: string): Promise<number> {
  expect(a.shape).toEqual(ref.shape);
  const [x, r] = [await a.data(), await ref.data()];
  expectCloseScaled(x, r, RTOL, ATOL, what);
  return maxRelErr(x, r, what);
}

/** Global sub-image ((n−1)/2, (n−1)/2): pixels c, c + n, … of each axis. */
function centreTile(big: tf.Tensor4D): tf.Tensor4D {
  const c = (N - 1) / 2;
  return tf.stridedSlice(big, [0, c, c, 0], big.shape, [1, N, N, 1]) as tf.Tensor4D;
}

await describeEachBackend('preprocess: native and upsampled paths', (backend: BackendName) => {
  const tol = `${ATOL}·max|ref| + ${RTOL}·|ref|`;
  // webgpu runs on a slow software GPU here, where every new shape compiles shaders: the smaller image only.
  const images = backend === 'webgpu' ? (['portrait'] as const) : IMAGES;
  const viewImage = images[0]; // where the 19th-pass variant runs too

  it('pixels and the S×S view equal PyTorch; the centre global tile equals the view exactly on both paths', async () => {
    const fx = loadFixture();
    const vision = await loadInfLlavaVision(CKPT);
    expect(vision.config).toMatchObject({ grid: N, imageSize: S });
    const report: string[] = [];
    try {
      for (const name of images) {
        const image = fx[`${name}.input`] as tf.Tensor3D;
        // native: the processor at n·S (Pillow, integer) is the crops' tensor; the view is its bicubic shrink by 3.
        const native = vision.preprocess(image);
        expect(native.shape).toEqual([1, N * S, N * S, 3]);
        const dNative = await maxAbs(native, fx[`${name}.native.pixels`]!);
        const nativeView = resizeBicubic(native, [S, S]);
        const dNativeView = await maxAbs(nativeView, fx[`${name}.native.view`]!);
        const nativeTile = centreTile(native);
        expect(await maxAbs(nativeTile, nativeView), 'native: centre tile vs view').toBe(0);
        // upsampled: the processor at S (Pillow, integer) is the view; F.interpolate(bicubic) ×3 gives the crops' tensor.
        const small = vision.preprocess(image, 'upsampled');
        expect(small.shape).toEqual([1, S, S, 3]);
        const dSmall = await maxAbs(small, fx[`${name}.upsampled.view`]!);
        const big = resizeBicubic(small, [N * S, N * S]);
        const dBig = await maxAbs(big, fx[`${name}.upsampled.pixels`]!);
        const upTile = centreTile(big);
        expect(await maxAbs(upTile, small), 'upsampled: centre tile of the upsample vs the S image').toBe(0);
        report.push(`${name}: native pixels ${dNative.toExponential(1)}, view ${dNativeView.toExponential(1)}; upsampled S image ${dSmall.toExponential(1)}, ×3 upsample ${dBig.toExponential(1)}`);
        expect(dNative).toBeLessThanOrEqual(1e-6);
        expect(dNativeView).toBeLessThanOrEqual(1e-6);
        expect(dSmall).toBeLessThanOrEqual(1e-6);
        expect(dBig).toBeLessThanOrEqual(1e-6);
        tf.dispose([native, nativeView, nativeTile, small, big, upTile]);
      }
      console.log(`[${backend}] max|diff| vs PyTorch: ${report.join('; ')}`);
    } finally {
      vision.dispose();
      tf.dispose(Object.values(fx));
    }
  });

  it(`encode(image, { preprocess }) matches PyTorch on both paths (visual tokens, element-wise |err| <= ${tol}), and the paths differ`, async () => {
    const fx = loadFixture();
    const vision = await loadInfLlavaVision(CKPT);
    const report: string[] = [];
    try {
      for (const name of images) {
        const image = fx[`${name}.input`] as tf.Tensor3D;
        const got: Partial<Record<PreprocessMode, tf.Tensor3D>> = {};
        for (const path of PATHS) {
          const ref = fx[`${name}.${path}.tokens`]!;
          const progress: number[] = [];
          const opts: EncodeImageOptions = path === 'native' ? {} : { preprocess: path }; // 'native' is the default
          const reused = await vision.encode(image, { ...opts, onProgress: (done) => progress.push(done) });
          const eReused = await expectTokens(reused, ref, `${name} ${path} tokens${stale}`);
          expect(progress.at(-1), 'the centre tile is reused: 18 CLIP images').toBe(2 * N * N);
          let line = `${name} ${path} ${eReused.toExponential(2)}`;
          if (name === viewImage) {
            // The official 19 CLIP passes (the view on its own) give the same tokens.
            const viaView = await vision.encode(image, { preprocess: path, reuseCenterTile: false });
            const eView = await expectTokens(viaView, ref, `${name} ${path} tokens (19th pass)${stale}`);
            line += ` (reused centre tile) / ${eView.toExponential(2)} (19th pass)`;
            viaView.dispose();
          }
          report.push(line);
          got[path] = reused;
        }
        const between = await relErr(got.upsampled!, got.native!, `${name} native vs upsampled`);
        report.push(`${name} native vs upsampled ${between.toExponential(2)}`);
        expect(between, 'the two paths give different tokens').toBeGreaterThan(1e-2);
        tf.dispose([got.native!, got.upsampled!]);
      }
      console.log(`[${backend}] visual tokens, max|err|/max|ref| vs PyTorch: ${report.join('; ')}`);
    } finally {
      vision.dispose();
      tf.dispose(Object.values(fx));
    }
  });

  it('encodePixels takes either input: an S×S tensor is upsampled (the official encode_images), an n·S one is cropped as is', async () => {
    const fx = loadFixture();
    const vision = await loadInfLlavaVision(CKPT);
    try {
      const name = 'portrait';
      const a = vision.encodePixels(fx[`${name}.upsampled.view`] as tf.Tensor4D);
      const b = vision.encodePixels(fx[`${name}.upsampled.pixels`] as tf.Tensor4D, { reuseCenterTile: false }); // the view from the 84 tensor: its shrink
      const ref = fx[`${name}.upsampled.tokens`]!;
      await expectTokens(a, ref, 'S input');
      // From the upsampled 84 tensor alone the view is its shrink by 3 = its centre tile = the S image: the same tokens.
      await expectTokens(b, ref, 'n·S input');
      // Another size: no exact centre tile, so the view runs through CLIP (19 images).
      const odd = tf.tidy(() => resizeBicubic(fx[`${name}.upsampled.view`] as tf.Tensor4D, [40, 40]));
      const progress: number[] = [];
      const c = vision.encodePixels(odd, { onProgress: (done) => progress.push(done) });
      expect(progress.at(-1)).toBe(2 * N * N + 1);
      tf.dispose([a, b, c, odd]);
    } finally {
      vision.dispose();
      tf.dispose(Object.values(fx));
    }
  });

  it('preprocess is checked: an unknown value is named, before any work, without leaks', async () => {
    const vision = await loadInfLlavaVision(CKPT);
    const image = tf.zeros([10, 12, 3], 'int32') as tf.Tensor3D;
    try {
      const before = tf.memory().numTensors;
      await expect(vision.encode(image, { preprocess: 'bilinear' as PreprocessMode })).rejects.toThrow(
        /^encode: opts\.preprocess must be 'native' or 'upsampled', got "bilinear"$/,
      );
      await expect(vision.encode(image, { preprocess: 3 as unknown as PreprocessMode })).rejects.toThrow(/opts\.preprocess must be 'native' or 'upsampled', got 3/);
      expect(() => vision.preprocess(image, 'Native' as PreprocessMode)).toThrow(/^preprocess: mode must be 'native' or 'upsampled', got "Native"$/);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      image.dispose();
      vision.dispose();
    }
  });

  it('generate passes preprocess through to encode (default native) and checks it up front', async () => {
    const fx = loadFixture();
    const model = await loadInfLlava(CKPT);
    const encode = model.vision.encode;
    const seen: Array<EncodeImageOptions | undefined> = [];
    const tokens: Array<[Float32Array, Float32Array]> = [];
    model.vision.encode = async (img, opts) => {
      seen.push(opts);
      const out = await encode(img, opts);
      tokens.push([(await out.data()) as Float32Array, (await fx[`portrait.${opts?.preprocess ?? 'native'}.tokens`]!.data()) as Float32Array]);
      return out;
    };
    const image = fx['portrait.input'] as tf.Tensor3D;
    try {
      const question = 'What is unusual about this image?';
      await model.generate({ image, question, maxNewTokens: 1 });
      await model.generate({ image, question, maxNewTokens: 1, preprocess: 'upsampled' });
      expect(seen.map((o) => o?.preprocess)).toEqual(['native', 'upsampled']);
      for (const [got, want] of tokens) expectCloseScaled(got, want, RTOL, ATOL, `generate visual tokens${stale}`);
      await expect(model.generate({ image, question, maxNewTokens: 1, preprocess: 'resized' as PreprocessMode })).rejects.toThrow(
        /^generate: preprocess must be 'native' or 'upsampled', got "resized"$/,
      );
      await expect(model.generate({ image, question, maxNewTokens: 1, preprocess: 1 as unknown as PreprocessMode })).rejects.toThrow(/preprocess must be 'native' or 'upsampled', got 1$/);
      await expect(model.generate({ image, question, maxNewTokens: 1, preprocessing: 'native' } as never)).rejects.toThrow(/unknown option "preprocessing" \(did you mean preprocess\?\)/);
      expect(seen).toHaveLength(2); // refused before the image was encoded
    } finally {
      model.vision.encode = encode;
      model.dispose();
      tf.dispose(Object.values(fx));
    }
  });
});

describe('inf-llava chat --preprocess', () => {
  let stderr = '';
  let stdout = '';
  beforeEach(() => {
    stderr = '';
    stdout = '';
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr += String(chunk);
      return true;
    });
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout += String(chunk);
      return true;
    });
  });
  afterEach(() => vi.restoreAllMocks());

  it('is validated (usage error, exit 2, naming the value) and documented in --help', async () => {
    expect(await main(['chat', '--preprocess', 'bicubic', 'q'])).toBe(2);
    expect(stderr).toMatch(/--preprocess must be native or upsampled, got "bicubic"/);
    stderr = '';
    expect(await main(['chat', '--preprocess'])).toBe(2);
    expect(stderr).toMatch(/--preprocess needs a value/);
    expect(await main(['chat', '--help'])).toBe(0); // help goes to stdout, exit 0
    expect(stdout).toMatch(/--preprocess native\|upsampled/);
  });
});
