/**
 * Train a freshly initialised DEM in JS: fit a student `spatialEmbed` to a fixed random
 * teacher with Adam, watch the loss fall, save the weights as safetensors and reload them.
 *
 *   npx tsx examples/train-dem.ts [steps=300]
 *
 * Training needs tfjs's gradient kernels (matMul, softmax, …): they come with
 * `@tensorflow/tfjs-node` (used here when its binding loads) or `@tensorflow/tfjs`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import {
  initSpatialEmbed,
  readSafetensors,
  saveSafetensors,
  spatialEmbed,
  spatialEmbedFromStateDict,
  spatialEmbedToStateDict,
  type SpatialEmbedWeights,
} from '../src/index.js';

const steps = Number(process.argv[2] ?? 300);
try {
  await import('@tensorflow/tfjs-node');
} catch {
  await import('@tensorflow/tfjs'); // cpu backend + gradients
}
await tf.ready();
console.log(`backend: ${tf.getBackend()}`);

const d = 32;
const grid = 2;
const opts = { grid, outSize: [4, 4] as const };
const batch = () => tf.tidy(() => [tf.randomNormal([grid * grid, 4, 4, d]), tf.randomNormal([grid * grid, 4, 4, d])] as [tf.Tensor4D, tf.Tensor4D]);

const teacher = initSpatialEmbed(d, { heads: 4, hidden: 8, seed: 1 });
// The student: PyTorch-default init, every tensor a trainable variable.
const init = spatialEmbedToStateDict(initSpatialEmbed(d, { heads: 4, hidden: 8, seed: 2 }));
const vars = Object.fromEntries(Object.entries(init).map(([k, t]) => [k, tf.variable(t, true, k)]));
tf.dispose(Object.values(init));
const student = spatialEmbedFromStateDict(vars, { heads: 4 });

const optimizer = tf.train.adam(3e-3);
const [evalL, evalG] = batch();
const target = spatialEmbed(evalL, evalG, teacher, opts);
const evalLoss = (w: SpatialEmbedWeights) => tf.tidy(() => tf.losses.meanSquaredError(target, spatialEmbed(evalL, evalG, w, opts)).dataSync()[0]!);

console.log(`step    0  eval loss ${evalLoss(student).toFixed(5)}`);
for (let step = 1; step <= steps; step++) {
  const [l, g] = batch();
  const y = spatialEmbed(l, g, teacher, opts);
  optimizer.minimize(() => tf.losses.meanSquaredError(y, spatialEmbed(l, g, student, opts)) as tf.Scalar);
  tf.dispose([l, g, y]);
  if (step % 50 === 0) console.log(`step ${String(step).padStart(4)}  eval loss ${evalLoss(student).toFixed(5)}`);
}

mkdirSync('examples/out', { recursive: true });
const path = 'examples/out/dem-student.safetensors';
writeFileSync(path, saveSafetensors(spatialEmbedToStateDict(student), { format: 'pt', note: 'inf-llava train-dem example' }));
const reloaded = readSafetensors(new Uint8Array(readFileSync(path)));
const again = spatialEmbedFromStateDict(reloaded.tensors, { heads: 4 });
const same = tf.tidy(() => tf.max(tf.abs(tf.sub(spatialEmbed(evalL, evalG, student, opts), spatialEmbed(evalL, evalG, again, opts)))).dataSync()[0]);
console.log(`saved ${path}; reloaded weights reproduce the outputs (max |diff| = ${same})`);

tf.dispose([evalL, evalG, target, ...Object.values(reloaded.tensors), ...Object.values(vars), ...Object.values(spatialEmbedToStateDict(teacher))]);
optimizer.dispose();
console.log(`tensors left: ${tf.memory().numTensors}`);
