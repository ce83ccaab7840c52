/** Timing one variant (bench/measure.ts's calls: read back, and pipelined) and checking it against the case's first variant. */
import * as tf from '@tensorflow/tfjs-core';
import { median, pipelinedCall, timedCall } from '../measure.js';
import { log } from './options.js';

/** The timing fields of a GPU row (JSON names as written to bench/results/). */
export interface VariantTiming {
  median_ms: number;
  dispatch_ms: number;
  pipelined_ms: number | null;
  times_ms: number[];
  reps: number;
}

/** A variant whose warm-up call takes longer than this gets one timed call and no pipelined run. */
export const SLOW_CALL_MS = 15_000;

/** `warmup` calls (stopping at a slow one), the median of `reps` read back, then `reps` pipelined when `pipeline`. */
export async function timeVariant(run: () => tf.Tensor, warmup: number, pipeline: boolean, reps: number): Promise<VariantTiming> {
  let last = 0;
  for (let i = 0; i < warmup && last < SLOW_CALL_MS; i++) last = (await timedCall(run)).total_ms;
  const slow = last >= SLOW_CALL_MS;
  const n = slow ? 1 : reps;
  if (slow) log(`  (a call took ${(last / 1000).toFixed(0)} s: one timed call, no pipelined run)`);
  pipeline &&= !slow;
  const total: number[] = [];
  const dispatch: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = await timedCall(run);
    total.push(t.total_ms);
    dispatch.push(t.dispatch_ms);
  }
  const pipelined = pipeline ? await pipelinedCall(run, reps) : null;
  return { median_ms: median(total), dispatch_ms: median(dispatch), pipelined_ms: pipelined, times_ms: total.map((t) => Math.round(t * 1000) / 1000), reps: n };
}

/** Variants of one case disagreeing by more than this (relative to the largest output) are flagged MISMATCH. */
export const MISMATCH = 1e-3;

/** max |a − b| / max |ref| (on the device; one scalar read back), and whether `a` is finite. */
export async function compare(a: tf.Tensor, ref: tf.Tensor): Promise<{ rel: number; finite: boolean }> {
  const [diff, scale, bad] = tf.tidy(() => [tf.max(tf.abs(tf.sub(a, ref))), tf.max(tf.abs(ref)), tf.sum(tf.cast(tf.logicalNot(tf.isFinite(a)), 'float32'))]);
  const [d, s, b] = await Promise.all([diff!.data(), scale!.data(), bad!.data()]);
  tf.dispose([diff!, scale!, bad!]);
  return { rel: d[0]! / Math.max(s[0]!, 1e-30), finite: b[0] === 0 };
}
