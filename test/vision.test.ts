// The INF-LLaVA visual path against a PyTorch composition (transformers' CLIP + the DEM
// reference + the projector), on every backend. Fixtures: scripts/golden/generate_vision_fixtures.py.
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { globalStrideCrop, loadInfLlavaVision, localCrop, project, readSafetensors, resizeBicubic, spatialEmbed } from '../src/index.js';
import { describeEachBackend, type BackendName } from './backends.js';
import { copyWithPoisonedTensor } from './checkpointCopy.js';
import { expectClose, expectCloseScaled, expectExact, maxRelErr } from './oracle.js';

const CKPT = 'assets/tiny-inf-llava';

async function relErr(a: tf.Tensor, ref: tf.Tensor, what = 'visual tokens'): Promise<number> {
  expect(a.shape, what).toEqual(ref.shape);
  return maxRelErr(await a.data(), await ref.data(), what);
}

/**
 * Against PyTorch, element by element: |a − ref| ≤ ATOL·max|ref| + RTOL·|ref|. Measured worst
 * atol at RTOL, in units of max|ref|, over the four backends: 5.7e-7 (CLIP features, cpu).
 * Returns max|err|/max|ref| for the printed report.
 */
const RTOL = 1e-6;
const ATOL = 3e-6;
async function expectParity(a: tf.Tensor, ref: tf.Tensor, what = 'visual tokens'): Promise<number> {
  expect(a.shape, what).toEqual(ref.shape);
  const [x, r] = [await a.data(), await ref.data()];
  expectCloseScaled(x, r, RTOL, ATOL, what);
  return maxRelErr(x, r, what);
}

await describeEachBackend('INF-LLaVA vision pipeline', (backend: BackendName) => {
  const tol = `${ATOL}·max|ref| + ${RTOL}·|ref|`;

  it(`encodePixels matches PyTorch (visual tokens, element-wise |err| <= ${tol}); the reused centre tile equals the S×S view`, async () => {
    const before = tf.memory().numTensors;
    const { tensors: t } = readSafetensors(new Uint8Array(readFileSync('test/fixtures/infllava/expected.safetensors')));
    const vision = await loadInfLlavaVision(CKPT);
    expect(vision.config).toMatchObject({ grid: 3, imageSize: 28, patchSize: 14, mmHiddenSize: 32, hiddenSize: 48, projectorType: 'mlp2x_gelu', selectLayer: -2 });
    const pixels = t['input.pixels'] as tf.Tensor4D;
    const reused = vision.encodePixels(pixels);
    const viaView = vision.encodePixels(pixels, { reuseCenterTile: false });
    const errReused = await expectParity(reused, t['output.tokens']!);
    const errView = await expectParity(viaView, t['output.tokens']!);
    console.log(`[${backend}] visual tokens: max|err|/max|ref| ${errReused.toExponential(2)} (reused centre tile), ${errView.toExponential(2)} (19th CLIP pass)`);
    // The view pixels and the centre global tile are the same numbers, so the two paths agree.
    expectClose(await reused.data(), await viaView.data(), 0, 1e-6, 'reused centre tile vs the 19th pass');
    tf.dispose([reused, viaView, ...Object.values(t)]);
    vision.dispose();
    expect(tf.memory().numTensors, 'tensors left after dispose').toBe(before);
  });

  it(`every stage matches PyTorch (each from the fixture's own input to that stage; element-wise |err| <= ${tol}); a second image's tokens too`, async () => {
    const { tensors: t } = readSafetensors(new Uint8Array(readFileSync('test/fixtures/infllava/expected.safetensors')));
    const vision = await loadInfLlavaVision(CKPT);
    const { grid: n, imageSize: S, patchSize, selectLayer } = vision.config;
    const g = S / patchSize;
    const D = vision.config.mmHiddenSize;
    const pixels = t['input.pixels'] as tf.Tensor4D;
    const features = (images: tf.Tensor4D) => vision.clip.features(images, { layer: selectLayer, dropCls: true });
    const T = n * n;
    // Each stage computed with the public parts the pipeline is made of, from the reference's previous stage.
    const stages: Array<[string, () => tf.Tensor]> = [
      ['stage.view_pixels', () => resizeBicubic(pixels, [S, S])], // F.interpolate bicubic, align_corners=False
      ['stage.features_local', () => features(localCrop(pixels, n))], // [9, g², D]
      ['stage.features_global', () => features(globalStrideCrop(pixels, n))],
      ['stage.features_view', () => features(t['stage.view_pixels'] as tf.Tensor4D)],
      ['stage.dem', () => {
        const tiles = (name: string) => tf.reshape(t[name]!, [T, g, g, D]) as tf.Tensor4D;
        return tf.reshape(spatialEmbed(tiles('stage.features_local'), tiles('stage.features_global'), vision.dem, { grid: n, outSize: [g, g] }), [1, g * g, D]);
      }],
      ['stage.mean', () => tf.mul(tf.add(t['stage.features_view']!, t['stage.dem']!), 0.5)],
      ['output.tokens', () => project(t['stage.mean']!, vision.projector)],
      ['output.tokens_b', () => vision.encodePixels(t['input.pixels_b'] as tf.Tensor4D)],
    ];
    const errs: string[] = [];
    for (const [name, run] of stages) {
      const ours = tf.tidy(run);
      const err = await expectParity(ours, t[name]!, name).finally(() => ours.dispose());
      errs.push(`${name} ${err.toExponential(1)}`);
    }
    console.log(`[${backend}] stages, max|err|/max|ref|: ${errs.join(', ')}`);
    // Every stored tensor is checked here or above (input.* are inputs).
    expect(Object.keys(t).filter((k) => !k.startsWith('input.')).sort()).toEqual(stages.map(([k]) => k).sort());
    // The second image is another image: its tokens are not the first one's.
    expect(await relErr(t['output.tokens_b']!, t['output.tokens']!)).toBeGreaterThan(0.1);
    tf.dispose(Object.values(t));
    vision.dispose();
  });

  it('loads only the vision-side tensors, and a separate vision directory gives the same tokens', async () => {
    const before = tf.memory().numTensors;
    // The language model's tensors are never decoded: poisoned copies still load.
    for (const name of ['model.embed_tokens.weight', 'lm_head.weight', 'model.layers.0.mlp.up_proj.weight']) {
      const v = await loadInfLlavaVision(copyWithPoisonedTensor(CKPT, name));
      v.dispose();
    }
    await expect(loadInfLlavaVision(copyWithPoisonedTensor(CKPT, 'model.mm_projector.0.weight'))).rejects.toThrow(/I64|int32/); // the control
    expect(tf.memory().numTensors).toBe(before);
    const embedded = await loadInfLlavaVision(CKPT);
    const separate = await loadInfLlavaVision(CKPT, { visionDir: 'assets/tiny-clip' });
    const pixels = tf.randomUniform([1, 84, 84, 3], -1, 1, 'float32', 3) as tf.Tensor4D;
    const a = embedded.encodePixels(pixels);
    const b = separate.encodePixels(pixels);
    expectExact(await a.data(), await b.data(), 'embedded vs separate vision directory'); // the same weights: measured bit-identical
    const progress: number[] = [];
    const c = embedded.encodePixels(pixels, { batchSize: 5, onProgress: (done) => progress.push(done) });
    expect(progress.at(-1)).toBe(18);
    expect(progress.length).toBeGreaterThan(1);
    tf.dispose([pixels, a, b, c]);
    embedded.dispose();
    separate.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('errors name the problem', async () => {
    const vision = await loadInfLlavaVision(CKPT);
    const bad = tf.zeros([1, 84, 84, 4]) as tf.Tensor4D;
    expect(() => vision.encodePixels(bad)).toThrow(/encodePixels: pixels must be \[1, 84, 84, 3\] normalised NHWC, got \[1,84,84,4\]/);
    bad.dispose();
    vision.dispose();
    await expect(loadInfLlavaVision('test/fixtures')).rejects.toThrow(/loadInfLlavaVision: cannot read test\/fixtures\/config.json/);
  });
});
