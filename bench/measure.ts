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

let lastWarmup = 0;
/** The middle value (the upper one of an even count), as every benchmark here reports it. */
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** One call with its result read back (`await data()`), then disposed: ms until it returned, and until the data was read. */
export async function timedCall(run: () => tf.Tensor): Promise<{ dispatch_ms: number; total_ms: number }> {
  const t0 = performance.now();
  const y = run();
  const t1 = performance.now();
  await y.data();
  const t2 = performance.now();
  y.dispose();
  return { dispatch_ms: t1 - t0, total_ms: t2 - t0 };
}

/**
 * `n` calls queued back to back, only the last one read back: ms per call. Each result but the
 * last is disposed before the next call (queued work keeps its buffers; the next call may reuse them).
 */
export async function pipelinedCall(run: () => tf.Tensor, n: number): Promise<number> {
  const t0 = performance.now();
  let y: tf.Tensor | undefined;
  for (let i = 0; i < n; i++) {
    y?.dispose();
    y = run();
  }
  await y!.data();
  const ms = (performance.now() - t0) / n;
  y!.dispose();
  return ms;
}

/** Times `reps` calls after `warmup`; fewer repetitions (at least 1) when the warm-up says they would exceed `budgetMs`. */
export async function time(p: Prepared, reps: number, warmup = 1, budgetMs = Infinity): Promise<Timing> {
  const total: number[] = [];
  const dispatch: number[] = [];
  for (let i = 0; i < warmup + reps; i++) {
    if (i === warmup && total.length === 0 && lastWarmup * reps > budgetMs) reps = Math.max(1, Math.floor(budgetMs / lastWarmup));
    const t = await timedCall(p.run);
    lastWarmup = t.total_ms;
    if (i >= warmup) {
      dispatch.push(t.dispatch_ms);
      total.push(t.total_ms);
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

/** The backend's own copy rate: `x + 0` over the same bytes (GB/s of read + write), with and without read-back. */
export async function copyCeiling(elements: number, reps: number): Promise<{ gbps: number; gbps_no_readback: number }> {
  const x = tf.randomUniform([elements]);
  const t = await time({ run: () => tf.add(x, 0), dispose: () => undefined }, reps);
  x.dispose();
  const bytes = 2 * elements * 4;
  return { gbps: bytes / (t.median_ms * 1e6), gbps_no_readback: bytes / (t.median_ms_no_readback * 1e6) };
}

/** The backend's matMul rate on the DEM's projection shape `[tokens, d] × [d, d]` (GFLOP/s). */
export async function matMulCeiling(tokens: number, d: number, reps: number): Promise<number> {
  const a = tf.randomNormal([tokens, d]);
  const b = tf.randomNormal([d, d]);
  const t = await time({ run: () => tf.matMul(a, b), dispose: () => undefined }, reps);
  tf.dispose([a, b]);
  return (2 * tokens * d * d) / (t.median_ms * 1e6);
}
