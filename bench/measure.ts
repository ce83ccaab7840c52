/** Timing: warm-up, repetitions, median; read-back awaited so asynchronous backends are honest. */
import * as tf from '@tensorflow/tfjs-core';
import type { Prepared } from './cases.js';

export interface Timing {
  /** Median wall time of one call including `await data()` of the result. */
  median_ms: number;
  /** Median time until the call returned (work may still be queued on async backends). */
  median_ms_no_readback: number;
  reps: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function time(p: Prepared, reps: number, warmup = 1): Promise<Timing> {
  const total: number[] = [];
  const dispatch: number[] = [];
  for (let i = 0; i < warmup + reps; i++) {
    const t0 = performance.now();
    const y = p.run();
    const t1 = performance.now();
    await y.data();
    const t2 = performance.now();
    y.dispose();
    if (i >= warmup) {
      dispatch.push(t1 - t0);
      total.push(t2 - t0);
    }
  }
  return { median_ms: median(total), median_ms_no_readback: median(dispatch), reps };
}

/** Peak bytes of live tensors during one call (tf.profile), result disposed. */
export async function peakBytes(p: Prepared): Promise<number> {
  const info = await tf.profile(async () => {
    const y = p.run();
    await y.data();
    y.dispose();
  });
  return info.peakBytes;
}

/** The backend's own copy rate: `x + 0` over the same bytes (GB/s of read + write). */
export async function copyCeiling(elements: number, reps: number): Promise<number> {
  const x = tf.randomUniform([elements]);
  const t = await time({ run: () => tf.add(x, 0), dispose: () => undefined }, reps);
  x.dispose();
  return (2 * elements * 4) / (t.median_ms * 1e6);
}

/** The backend's matMul rate on the DEM's projection shape `[tokens, d] × [d, d]` (GFLOP/s). */
export async function matMulCeiling(tokens: number, d: number, reps: number): Promise<number> {
  const a = tf.randomNormal([tokens, d]);
  const b = tf.randomNormal([d, d]);
  const t = await time({ run: () => tf.matMul(a, b), dispose: () => undefined }, reps);
  tf.dispose([a, b]);
  return (2 * tokens * d * d) / (t.median_ms * 1e6);
}
