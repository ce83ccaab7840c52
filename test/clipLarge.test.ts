// CLIP at the real ViT-L/14-336 shapes (1024 wide, 4096 MLP, 24 layers, 16 heads, 336×336 in
// 14×14 patches) with random weights made in TS: no parity (tiny-model parity is in
// clip.test.ts), but the shapes, finiteness, time, peak memory and release of ~1.2 GB of
// weights. Slow and memory-hungry, so skipped unless INF_LLAVA_LARGE=1; it then runs on the
// backends in INF_LLAVA_LARGE_BACKENDS (default tensorflow,wasm):
//
//   INF_LLAVA_LARGE=1 npx vitest run test/clipLarge
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKENDS, useBackend, type BackendName } from '../src/backends/node.js';
import { CLIP_VIT_L_14_336, clipVisionFromTensors, initClipVisionTensors, type ClipVision } from '../src/models/clip.js';

const enabled = process.env.INF_LLAVA_LARGE === '1';
const requested = (process.env.INF_LLAVA_LARGE_BACKENDS ?? 'tensorflow,wasm').split(',').map((s) => s.trim()).filter(Boolean);
const unknown = requested.filter((b) => !(BACKENDS as readonly string[]).includes(b));
if (enabled && unknown.length) throw new Error(`INF_LLAVA_LARGE_BACKENDS: unknown backend(s) ${unknown.join(', ')} (known: ${BACKENDS.join(', ')})`);
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

for (const backend of requested as BackendName[]) {
  describe.skipIf(!enabled)(`[${backend}] CLIP ViT-L/14-336 at real shapes, random weights (INF_LLAVA_LARGE=1)`, () => {
    let model: ClipVision;
    let before: tf.MemoryInfo;
    beforeAll(async () => {
      await useBackend(backend);
      before = tf.memory();
      const t0 = performance.now();
      const tensors = initClipVisionTensors(CLIP_VIT_L_14_336, { seed: 0 });
      model = clipVisionFromTensors(tensors, CLIP_VIT_L_14_336);
      tf.dispose(Object.values(tensors)); // the model keeps its own views
      console.log(`[${backend}] random ViT-L weights: ${mib(tf.memory().numBytes - before.numBytes)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }, 600_000);
    afterAll(() => model?.dispose());

    it('1 image, layer -2 → [1, 576, 1024], finite; prints wall time and tf.profile peak; dispose releases everything', async () => {
      const pixels = tf.randomNormal([1, 336, 336, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
      const tensorsBefore = tf.memory().numTensors;
      const bytesBefore = tf.memory().numBytes;

      // Wall time of a plain call (tf.profile times and checks every kernel, so it is timed apart).
      const t0 = performance.now();
      const timed = model.features(pixels, { layer: -2 });
      await timed.data();
      const wall = performance.now() - t0;
      timed.dispose();

      const info = await tf.profile(() => model.features(pixels, { layer: -2 }));
      const out = info.result as tf.Tensor3D;
      expect(out.shape).toEqual([1, 576, 1024]);
      const values = await out.data();
      let bad = -1;
      for (let i = 0; i < values.length && bad < 0; i++) if (!Number.isFinite(values[i]!)) bad = i;
      expect(bad, `element ${bad} is ${values[bad]}`).toBe(-1);
      out.dispose();
      expect(tf.memory().numTensors).toBe(tensorsBefore);
      expect(tf.memory().numBytes).toBe(bytesBefore);
      pixels.dispose();

      const gflop = 365;
      console.log(
        `[${backend}] ViT-L/14-336, 1 image to hidden_states[-2]: ${(wall / 1000).toFixed(2)} s (${(gflop / (wall / 1000)).toFixed(0)} GFLOP/s at ≈${gflop} GFLOP); ` +
          `tf.profile peak ${mib(info.peakBytes)} = weights ${mib(bytesBefore - before.numBytes)} + ${mib(info.peakBytes - bytesBefore)} above them ` +
          `(tfjs counts each reshape view's bytes again), ${info.kernels.length} kernels`,
      );

      model.dispose();
      expect(tf.memory().numTensors, 'tensors left after dispose()').toBe(before.numTensors);
      expect(tf.memory().numBytes, 'bytes left after dispose()').toBe(before.numBytes);
    }, 600_000);
  });
}
