/**
 * Smoke run (not a test, not the benchmark harness): spatialEmbed at the official size —
 * 9 + 9 sub-features of 24×24×1024, n = 3, 8 heads — on one backend; prints time and memory.
 *
 *   npx tsx bench/smoke-spatial-embed.ts [backend=tensorflow] [reps=3]
 */
import * as tf from '@tensorflow/tfjs-core';
import { initSpatialEmbed, spatialEmbed, spatialEmbedToStateDict } from '../src/index.js';

const backend = process.argv[2] ?? 'tensorflow';
const reps = Number(process.argv[3] ?? 3);
if (backend === 'tensorflow') await import('@tensorflow/tfjs-node');
else if (backend === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
else await import('@tensorflow/tfjs-backend-cpu');
await tf.setBackend(backend);
await tf.ready();

const d = 1024;
const w = initSpatialEmbed(d, { heads: 8, seed: 0 });
const local = tf.randomNormal([9, 24, 24, d]) as tf.Tensor4D;
const global = tf.randomNormal([9, 24, 24, d]) as tf.Tensor4D;
const GFLOP = 113; // docs/spec.md: ≈ 87 projections + 24.5 attention + 2 fusion

const times: number[] = [];
let profile: Awaited<ReturnType<typeof tf.profile>> | undefined;
for (let i = 0; i <= reps; i++) {
  const t0 = performance.now();
  const info = await tf.profile(async () => {
    const y = spatialEmbed(local, global, w, { grid: 3 });
    await y.data();
    y.dispose();
  });
  const ms = performance.now() - t0;
  if (i === 0) console.log(`warm-up: ${ms.toFixed(0)} ms`);
  else times.push(ms);
  profile = info;
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)]!;
console.log(`backend ${tf.getBackend()}: spatialEmbed [9+9, 24, 24, 1024] n=3 heads=8 → [1, 24, 24, 1024]`);
console.log(`  median ${median.toFixed(0)} ms over ${reps} runs (${(GFLOP / (median / 1000)).toFixed(1)} GFLOP/s at ${GFLOP} GFLOP)`);
console.log(`  peak tensor bytes during the call: ${(profile!.peakBytes / 2 ** 20).toFixed(0)} MiB; tensors after: ${tf.memory().numTensors}`);
tf.dispose([local, global, ...Object.values(spatialEmbedToStateDict(w))]);
console.log(`  tensors after disposing inputs and weights: ${tf.memory().numTensors}`);
