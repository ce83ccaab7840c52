// Faster paths against the simple composition they replace, on random inputs.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { cpuTranspose, setCpuTransposeKernel } from '../src/kernels/cpuRearrange.js';
import { transposeRuns } from '../src/kernels/transposeRuns.js';
import { globalStrideCrop, localCrop, recombine2D } from '../src/index.js';
import { expectExact, randomData } from './oracle.js';

function rng(seed: number) {
  let s = seed;
  return (n: number) => ((s = (s * 1103515245 + 12345) % 2 ** 31), s % n);
}

describe('cpu run-copying transpose kernel', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('transposeRuns equals tf.transpose for 300 random shapes and permutations (rank 1–6)', async () => {
    const rand = rng(42);
    for (let i = 0; i < 300; i++) {
      const rank = 1 + rand(6);
      // Small dims, now and then a long one (runs of >= 8 take the memcpy path); at most ~100k elements.
      const shape = Array.from({ length: rank }, () => 1 + rand(rank > 3 ? 4 : 7) + (rank <= 4 && rand(4) === 0 ? 16 : 0));
      const perm = Array.from({ length: rank }, (_, k) => k).sort(() => rand(3) - 1);
      const n = shape.reduce((a, b) => a * b, 1);
      const data = randomData(n, i);
      const expected = tf.tidy(() => tf.transpose(tf.tensor(data, shape), perm).dataSync());
      const got = transposeRuns(data, shape, perm, new Float32Array(n));
      expectExact(got, expected, `shape ${JSON.stringify(shape)} perm ${JSON.stringify(perm)}`);
    }
  });

  it('the registered kernel matches tfjs (float32 and int32) and leaves no tensor behind', async () => {
    const before = tf.memory().numTensors;
    const x = tf.tensor(randomData(2 * 3 * 40 * 5, 1), [2, 3, 40, 5]);
    const xi = tf.tensor(Int32Array.from(randomData(2 * 3 * 40 * 5, 2), (v) => Math.round(v * 2 ** 31 - 0.5)), [2, 3, 40, 5], 'int32');
    for (const t of [x, xi]) {
      const fast = cpuTranspose(t, [1, 0, 2, 3])!;
      expect(fast.dtype).toBe(t.dtype);
      const slow = tf.transpose(t, [1, 0, 2, 3]);
      expectExact(await fast.data(), await slow.data(), `kernel ${t.dtype}`);
      tf.dispose([fast, slow]);
    }
    tf.dispose([x, xi]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('DCM ops give identical results with the kernel on and off', async () => {
    const x = tf.tensor4d(randomData(2 * 12 * 15 * 7, 3), [2, 12, 15, 7]);
    const run = () => tf.tidy(() => [localCrop(x, [3, 5]), globalStrideCrop(x, [4, 3]), recombine2D(globalStrideCrop(x, 3), 3, 'global')].map((t) => t.dataSync()));
    const fast = run();
    setCpuTransposeKernel(false);
    const slow = run();
    setCpuTransposeKernel(true);
    fast.forEach((f, i) => expectExact(f, slow[i]!, `op ${i}`));
    x.dispose();
  });
});

describe('block-swap decomposition (wasm rank > 4)', () => {
  it('composes to the same permutation as one transpose, for every permutation of rank 5 and 6', async () => {
    const { blockSwaps } = await import('../src/kernels/blockSwaps.js');
    const perms = (r: number): number[][] => (r === 0 ? [[]] : perms(r - 1).flatMap((p) => Array.from({ length: r }, (_, i) => [...p.slice(0, i), r - 1, ...p.slice(i)])));
    for (const r of [5, 6]) {
      const shape = [2, 3, 1, 4, 5, 2].slice(0, r);
      const n = shape.reduce((a, b) => a * b, 1);
      const data = randomData(n, r);
      for (const perm of perms(r)) {
        const steps = blockSwaps(shape, perm);
        expect(steps.length).toBeLessThanOrEqual(r - 1);
        const got = tf.tidy(() => {
          let t: tf.Tensor = tf.tensor(data, shape);
          for (const { view } of steps) t = tf.transpose(tf.reshape(t, view), [0, 2, 1, 3]);
          return t.dataSync();
        });
        const expected = tf.tidy(() => tf.transpose(tf.tensor(data, shape), perm).dataSync());
        expectExact(got, expected, `perm ${perm}`);
      }
    }
  });
});
