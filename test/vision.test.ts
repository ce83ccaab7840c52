// The INF-LLaVA visual path against a PyTorch composition (transformers' CLIP + the DEM
// reference + the projector), on every backend. Fixtures: scripts/golden/generate_vision_fixtures.py.
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { loadInfLlavaVision, readSafetensors } from '../src/index.js';
import { describeEachBackend, type BackendName } from './backends.js';
import { copyWithPoisonedTensor } from './checkpointCopy.js';
import { maxRelErr } from './oracle.js';

const CKPT = 'assets/tiny-inf-llava';

async function relErr(a: tf.Tensor, ref: tf.Tensor): Promise<number> {
  expect(a.shape).toEqual(ref.shape);
  return maxRelErr(await a.data(), await ref.data(), 'visual tokens');
}

await describeEachBackend('INF-LLaVA vision pipeline', (backend: BackendName) => {
  const tol = backend === 'cpu' ? 1e-5 : 1e-4;

  it(`encodePixels matches PyTorch (visual tokens, max|err|/max|ref| <= ${tol}); the reused centre tile equals the S×S view`, async () => {
    const before = tf.memory().numTensors;
    const { tensors: t } = readSafetensors(new Uint8Array(readFileSync('test/fixtures/infllava/expected.safetensors')));
    const vision = await loadInfLlavaVision(CKPT);
    expect(vision.config).toMatchObject({ grid: 3, imageSize: 28, patchSize: 14, mmHiddenSize: 32, hiddenSize: 48, projectorType: 'mlp2x_gelu', selectLayer: -2 });
    const pixels = t['input.pixels'] as tf.Tensor4D;
    const reused = vision.encodePixels(pixels);
    const viaView = vision.encodePixels(pixels, { reuseCenterTile: false });
    const errReused = await relErr(reused, t['output.tokens']!);
    const errView = await relErr(viaView, t['output.tokens']!);
    console.log(`[${backend}] visual tokens: max|err|/max|ref| ${errReused.toExponential(2)} (reused centre tile), ${errView.toExponential(2)} (19th CLIP pass)`);
    expect(errReused).toBeLessThanOrEqual(tol);
    expect(errView).toBeLessThanOrEqual(tol);
    // The view pixels and the centre global tile are the same numbers, so the two paths agree.
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(reused, viaView))));
    expect((await diff.data())[0]).toBeLessThanOrEqual(1e-6);
    tf.dispose([reused, viaView, diff, ...Object.values(t)]);
    vision.dispose();
    expect(tf.memory().numTensors, 'tensors left after dispose').toBe(before);
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
    expect(await relErr(a, b)).toBeLessThanOrEqual(1e-6);
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
