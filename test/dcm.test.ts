import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { globalStrideCrop, localCrop, recombine2D, type Grid } from '../src/index.js';
import { describeEachBackend, expectTensorsCreated, expectThrowsClean } from './backends.js';
import { cropIndexMap, expectExact, gather, randomData, scatter, type Shape4 } from './oracle.js';

const grids: Array<[Grid, [number, number]]> = [
  [3, [3, 3]],
  [[2, 5], [2, 5]],
  [[1, 4], [1, 4]],
  [[4, 1], [4, 1]],
  [1, [1, 1]],
];
// [batch, h, w, channels] per sub-image: odd channel counts, batch 1 and 3, non-square tiles.
const sizes: Array<[number, number, number, number]> = [
  [1, 4, 3, 3],
  [3, 5, 2, 1],
  [1, 2, 7, 5],
];
const crops = { local: localCrop, global: globalStrideCrop } as const;
const perspectives = ['local', 'global'] as const;

await describeEachBackend('DCM', (backend) => {
  // tfjs-backend-webgpu computes int32 through f32: exact only for |v| <= 2^24 (see rearrange.ts).
  const int32Range = backend === 'webgpu' ? 2 ** 24 : 2 ** 31;
  for (const perspective of perspectives) {
    const cropFn = crops[perspective];
    for (const [grid, [rows, cols]] of grids) {
      for (const [B, h, w, C] of sizes) {
        const shape: Shape4 = [B, rows * h, cols * w, C];
        const label = `${cropFn.name} grid ${JSON.stringify(grid)} on ${JSON.stringify(shape)}`;

        it(`${label}: matches the ndarray view oracle; round trips are bit-exact`, async () => {
          const data = randomData(shape.reduce((a, b) => a * b), rows * 100 + cols + B);
          const index = cropIndexMap(shape, [rows, cols], perspective);
          const x = tf.tensor4d(data, shape);
          const tiles = expectTensorsCreated(() => cropFn(x, grid));
          expect(tiles.shape).toEqual([B * rows * cols, h, w, C]);
          expect(tiles.dtype).toBe('float32');
          expectExact(await tiles.data(), gather(data, index), 'crop vs oracle');

          const back = expectTensorsCreated(() => recombine2D(tiles, grid, perspective));
          expect(back.shape).toEqual(shape);
          expectExact(await back.data(), data, 'recombine2D(crop(x)) vs x');

          const t = tf.tensor4d(randomData(tiles.size, 7), tiles.shape as Shape4);
          const img = recombine2D(t, grid, perspective);
          const again = cropFn(img, grid);
          expectExact(await img.data(), scatter(await t.data(), index, data.length), 'recombine2D vs oracle');
          expectExact(await again.data(), await t.data(), 'crop(recombine2D(t)) vs t');
          tf.dispose([x, tiles, back, t, img, again]);
        });

        it(`${label}: int32 over the backend's exact range matches the oracle and round-trips`, async () => {
          const size = shape.reduce((a, b) => a * b);
          const data = Int32Array.from(randomData(size, 11 + B), (v) => Math.round(v * int32Range - 0.5));
          const index = cropIndexMap(shape, [rows, cols], perspective);
          const x = tf.tensor4d(data, shape, 'int32');
          const tiles = expectTensorsCreated(() => cropFn(x, grid));
          expect(tiles.dtype).toBe('int32');
          expectExact(await tiles.data(), gather(data, index), 'int32 crop vs oracle');
          const back = expectTensorsCreated(() => recombine2D(tiles, grid, perspective));
          expect(back.dtype).toBe('int32');
          expectExact(await back.data(), data, 'int32 round trip');
          tf.dispose([x, tiles, back]);
        });

        it(`${label}: gradients are the exact inverse rearrangement`, async () => {
          const size = shape.reduce((a, b) => a * b);
          const index = cropIndexMap(shape, [rows, cols], perspective);
          const x = tf.tensor4d(randomData(size, 3), shape);
          const wData = randomData(size, 4);
          const wt = tf.tensor4d(wData, [B * rows * cols, h, w, C]);
          const dx = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(cropFn(v as tf.Tensor4D, grid), wt)))(x);
          expectExact(await dx.data(), scatter(wData, index, size), 'd crop / dx');
          const dt = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(recombine2D(v as tf.Tensor4D, grid, perspective), x)))(wt);
          expectExact(await dt.data(), gather(await x.data(), index), 'd recombine2D / dtiles');
          tf.dispose([x, wt, dx, dt]);
        });
      }
    }

    it(`${cropFn.name} at 1008x1008x3 (n = 3) matches the oracle and round-trips`, async () => {
      const shape: Shape4 = [1, 1008, 1008, 3];
      const data = randomData(1008 * 1008 * 3, 1008);
      const x = tf.tensor4d(data, shape);
      const tiles = expectTensorsCreated(() => cropFn(x, 3));
      expect(tiles.shape).toEqual([9, 336, 336, 3]);
      expectExact(await tiles.data(), gather(data, cropIndexMap(shape, [3, 3], perspective)), 'crop vs oracle');
      const back = recombine2D(tiles, 3, perspective);
      expectExact(await back.data(), data, 'round trip');
      tf.dispose([x, tiles, back]);
    });

    it(`${cropFn.name} with fit: 'crop' drops trailing rows/columns (floor), gradient zero there`, async () => {
      const shape: Shape4 = [2, 14, 17, 3];
      const size = shape.reduce((a, b) => a * b);
      const data = randomData(size, 14);
      const index = cropIndexMap(shape, [3, 4], perspective);
      const x = tf.tensor4d(data, shape);
      const tiles = expectTensorsCreated(() => cropFn(x, [3, 4], { fit: 'crop' }));
      expect(tiles.shape).toEqual([24, 4, 4, 3]);
      expectExact(await tiles.data(), gather(data, index), 'crop vs oracle');
      const wData = randomData(tiles.size, 15);
      const dx = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(cropFn(v as tf.Tensor4D, [3, 4], { fit: 'crop' }), tf.tensor(wData, tiles.shape))))(x);
      expectExact(await dx.data(), scatter(wData, index, size), 'gradient');
      tf.dispose([x, tiles, dx]);
    });

    it(`${cropFn.name} keeps int32 and accepts a TensorLike`, async () => {
      const nested = [[[[1], [2], [3], [4]], [[5], [6], [7], [8]]]]; // [1, 2, 4, 1]
      const tiles = expectTensorsCreated(() => cropFn(nested, [1, 2]));
      expect(tiles.dtype).toBe('float32'); // tf.tensor infers float32 from JS numbers
      const xi = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 4, 1], 'int32');
      const ti = cropFn(xi, [1, 2]);
      expect(ti.dtype).toBe('int32');
      const expected = perspective === 'local' ? [1, 2, 5, 6, 3, 4, 7, 8] : [1, 3, 5, 7, 2, 4, 6, 8];
      expectExact(await ti.data(), expected, 'int32 crop');
      expectExact(await tiles.data(), expected, 'TensorLike crop');
      const back = recombine2D(ti, [1, 2], perspective);
      expectExact(await back.data(), [1, 2, 3, 4, 5, 6, 7, 8], 'int32 round trip');
      tf.dispose([tiles, xi, ti, back]);
    });

    it(`${cropFn.name} rejects bad input with a message that names the problem`, () => {
      const fn = cropFn.name;
      const x = tf.zeros([1, 6, 6, 3]) as tf.Tensor4D;
      const rank3 = tf.zeros([6, 6, 3]);
      const bool = tf.zeros([1, 6, 6, 3], 'bool');
      expectThrowsClean(() => cropFn(rank3 as unknown as tf.Tensor4D, 2), new RegExp(`${fn}: x must be rank 4 .*got rank 3 with shape \\[6,6,3\\]`));
      expectThrowsClean(() => cropFn([[1, 2], [3, 4]], 2), new RegExp(`${fn}: x must be rank 4`));
      expectThrowsClean(() => cropFn(bool as tf.Tensor4D, 2), new RegExp(`${fn}: x must have dtype float32 or int32, got bool`));
      tf.dispose([rank3, bool]);
      for (const bad of [0, -2, 2.5, Number.NaN, [2], [2, 0], [1, 2, 3], '3', null]) {
        expectThrowsClean(() => cropFn(x, bad as unknown as Grid), new RegExp(`${fn}: grid must be a positive integer n or \\[rows, cols\\]`));
      }
      expectThrowsClean(() => cropFn(x, 4), new RegExp(`${fn}: grid \\[4, 4\\] does not divide the image of shape \\[1,6,6,3\\] \\(height 6 % 4 = 2, width 6 % 4 = 2\\).*fit: 'crop'`));
      expectThrowsClean(() => cropFn(x, [2, 7], { fit: 'crop' }), new RegExp(`${fn}: grid \\[2, 7\\] is larger than the image \\(shape \\[1,6,6,3\\]`));
      expectThrowsClean(() => cropFn(x, 2, { fit: 'pad' as 'crop' }), new RegExp(`${fn}: opts.fit must be 'error' or 'crop', got "pad"`));
      const disposed = tf.zeros([1, 6, 6, 3]);
      disposed.dispose();
      expectThrowsClean(() => cropFn(disposed as tf.Tensor4D, 2), new RegExp(`${fn}: x is a disposed tensor`));
      x.dispose();
    });
  }

  it('recombine2D rejects bad input with a message that names the problem', () => {
    const t = tf.zeros([8, 2, 2, 3]) as tf.Tensor4D;
    const rank3 = tf.zeros([8, 2, 2]);
    const strings = tf.tensor(Array.from({ length: 32 }, () => 'a'), [8, 2, 2, 1]);
    expectThrowsClean(() => recombine2D(t, 3, 'local'), /recombine2D: tile count 8 \(tiles shape \[8,2,2,3\]\) is not a multiple of rows\*cols = 3\*3 = 9/);
    expectThrowsClean(() => recombine2D(t, 2, 'strided' as 'local'), /recombine2D: perspective must be 'local' or 'global', got "strided"/);
    expectThrowsClean(() => recombine2D(t, [2, -1], 'local'), /recombine2D: grid must be a positive integer/);
    expectThrowsClean(() => recombine2D(rank3 as unknown as tf.Tensor4D, 2, 'global'), /recombine2D: tiles must be rank 4/);
    expectThrowsClean(() => recombine2D(strings as tf.Tensor4D, 2, 'global'), /recombine2D: tiles must have dtype float32 or int32, got string/);
    tf.dispose([t, rank3, strings]);
  });

  it('local and global perspectives differ as docs/spec.md says on a labelled 6x6 image', async () => {
    // pixel value = row*10 + col: local tile (0,1) holds rows 0-1, cols 3-5; global tile (0,1) holds rows 0,3 and cols 1,4.
    const img = tf.tensor4d(Array.from({ length: 36 }, (_, i) => Math.floor(i / 6) * 10 + (i % 6)), [1, 6, 6, 1]);
    const local = localCrop(img, [3, 2]);
    const global = globalStrideCrop(img, [3, 2]);
    expectExact((await local.data()).slice(6, 12), [3, 4, 5, 13, 14, 15], 'local tile (0,1)');
    expectExact((await global.data()).slice(6, 12), [1, 3, 5, 31, 33, 35], 'global tile (0,1)');
    tf.dispose([img, local, global]);
  });
});
