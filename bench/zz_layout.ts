import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-node';
import { initSpatialEmbed, spatialEmbed } from '../src/index.js';
await tf.setBackend('tensorflow');
const w = initSpatialEmbed(1024, { seed: 0 });
const l = tf.randomNormal([9, 24, 24, 1024]) as tf.Tensor4D, g = tf.randomNormal([9, 24, 24, 1024]) as tf.Tensor4D;
for (const layout of ['batched', 'per-window', 'batched', 'per-window'] as const) {
  const ts = [];
  for (let i = 0; i < 4; i++) { const t0 = performance.now(); const y = spatialEmbed(l, g, w, { grid: 3, layout }); await y.data(); y.dispose(); ts.push(performance.now() - t0); }
  console.log(layout, ts.map((x) => x.toFixed(0)).join(' '));
}
