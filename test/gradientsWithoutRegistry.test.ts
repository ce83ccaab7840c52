// This file loads tfjs-core and the cpu backend only: no gradient kernels are registered
// (they come with @tensorflow/tfjs or tfjs-node). Our primitives carry their own gradients.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import { avgPool, globalStrideCrop, localCrop, recombine2D } from '../src/index.js';

describe('gradients with tfjs-core alone', () => {
  it('tf.grad works through every primitive although no gradient kernels are registered', async () => {
    await tf.setBackend('cpu');
    const x = tf.randomUniform([2, 6, 6, 3]) as tf.Tensor4D;
    // The control: a plain transpose has no registered gradient here.
    const ones = tf.onesLike(x);
    expect(() => tf.grad((v: tf.Tensor) => tf.transpose(v, [0, 2, 1, 3]))(x, ones)).toThrow(/gradient function not found for Transpose/);
    const f = (v: tf.Tensor) =>
      avgPool(recombine2D(globalStrideCrop(recombine2D(localCrop(v as tf.Tensor4D, [2, 3], { fit: 'crop' }), [2, 3], 'local'), 3), 3, 'global'), 2);
    const dy = tf.ones([2, 3, 3, 3]);
    const dx = tf.grad(f)(x, dy);
    // With dy = 1 the chain is a sum of window means: every element's gradient is 1 / 4.
    expect(Array.from(await dx.data()).every((g) => g === 0.25)).toBe(true);
    tf.dispose([x, ones, dy, dx]);
  });
});
