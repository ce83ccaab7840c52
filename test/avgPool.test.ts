import * as tf from '@tensorflow/tfjs-core';
import ndarray from 'ndarray';
import { expect, it } from 'vitest';
import { avgPool } from '../src/index.js';
import { describeEachBackend, expectTensorsCreated, expectThrowsClean } from './backends.js';
import { expectClose, randomData, type Shape4 } from './oracle.js';

/** Window means read off ndarray sub-views, accumulated in float64. */
function oracleAvgPool(data: ArrayLike<number>, shape: Shape4, [fh, fw]: [number, number]): Float64Array {
  const [B, H, W, C] = shape;
  const x = ndarray(Float64Array.from(data), shape);
  const out = new Float64Array(B * (H / fh) * (W / fw) * C);
  let o = 0;
  for (let b = 0; b < B; b++)
    for (let i = 0; i < H / fh; i++)
      for (let j = 0; j < W / fw; j++) {
        const win = x.hi(b + 1, (i + 1) * fh, (j + 1) * fw, C).lo(b, i * fh, j * fw, 0);
        for (let c = 0; c < C; c++) {
          let s = 0;
          for (let u = 0; u < fh; u++) for (let v = 0; v < fw; v++) s += win.get(0, u, v, c);
          out[o++] = s / (fh * fw);
        }
      }
  return out;
}

const cases: Array<[Shape4, number | [number, number], [number, number]]> = [
  [[1, 6, 6, 3], 3, [3, 3]],
  [[3, 8, 10, 5], [2, 5], [2, 5]],
  [[2, 4, 9, 1], [4, 1], [4, 1]],
  [[1, 5, 7, 3], 1, [1, 1]],
  [[1, 72, 72, 16], 3, [3, 3]], // the paper's 72 -> 24 reduction, fewer channels
];

await describeEachBackend('avgPool', () => {
  for (const [shape, factor, [fh, fw]] of cases) {
    it(`factor ${JSON.stringify(factor)} on ${JSON.stringify(shape)} matches the window-mean oracle; gradient spreads dy / window`, async () => {
      const size = shape.reduce((a, b) => a * b);
      const data = randomData(size, size);
      const x = tf.tensor4d(data, shape);
      const y = expectTensorsCreated(() => avgPool(x, factor));
      const outShape = [shape[0], shape[1] / fh, shape[2] / fw, shape[3]];
      expect(y.shape).toEqual(outShape);
      expectClose(await y.data(), oracleAvgPool(data, shape, [fh, fw]), 1e-5, 1e-6, 'avgPool vs oracle');

      const dyData = randomData(y.size, 5);
      const dy = tf.tensor4d(dyData, y.shape as Shape4);
      const dx = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(avgPool(v as tf.Tensor4D, factor), dy)))(x);
      const dyView = ndarray(dyData, outShape);
      const expected = new Float64Array(size);
      const X = ndarray(expected, shape);
      for (let b = 0; b < shape[0]; b++)
        for (let i = 0; i < shape[1]; i++)
          for (let j = 0; j < shape[2]; j++)
            for (let c = 0; c < shape[3]; c++) X.set(b, i, j, c, dyView.get(b, Math.floor(i / fh), Math.floor(j / fw), c) / (fh * fw));
      expectClose(await dx.data(), expected, 1e-6, 1e-7, 'd avgPool / dx');
      tf.dispose([x, y, dy, dx]);
    });
  }

  it('int32 input gives the float32 mean; TensorLike accepted', async () => {
    const xi = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 9], [1, 2, 4, 1], 'int32');
    const y = expectTensorsCreated(() => avgPool(xi, 2));
    expect(y.dtype).toBe('float32');
    expectClose(await y.data(), [3.5, 5.75], 0, 0, 'int32 mean');
    const z = avgPool([[[[1], [3]], [[5], [7]]]], 2);
    expectClose(await z.data(), [4], 0, 0, 'TensorLike mean');
    tf.dispose([xi, y, z]);
  });

  it('rejects bad input with a message that names the problem', () => {
    const x = tf.zeros([1, 6, 6, 3]) as tf.Tensor4D;
    const rank2 = tf.zeros([6, 6]);
    const bool = tf.zeros([1, 6, 6, 3], 'bool');
    expectThrowsClean(() => avgPool(x, 4), /avgPool: factor \[4, 4\] does not divide x of shape \[1,6,6,3\] \(height 6 % 4 = 2, width 6 % 4 = 2\)/);
    expectThrowsClean(() => avgPool(x, 0), /avgPool: factor must be a positive integer n or \[rows, cols\]/);
    expectThrowsClean(() => avgPool(x, [2, 1.5]), /avgPool: factor must be a positive integer/);
    expectThrowsClean(() => avgPool(rank2 as unknown as tf.Tensor4D, 2), /avgPool: x must be rank 4 \(NHWC\), got rank 2/);
    expectThrowsClean(() => avgPool(bool as tf.Tensor4D, 2), /avgPool: x must have dtype float32 or int32, got bool/);
    tf.dispose([x, rank2, bool]);
  });
});
