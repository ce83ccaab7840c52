/**
 * CLIP ViT-L/14-336 at the official pipeline's size (not a test): `features` of 19 images of
 * 336×336 to hidden_states[-2] (the 9 + 9 sub-images and the 336×336 view), with random
 * weights; prints wall time, GFLOP/s and memory. `--patch` instead compares the two ways to
 * compute the patch embedding (rearrange + one matMul, as src/models/clip.ts does, vs conv2d).
 *
 *   npx tsx bench/clip-real-size.ts [backend=tensorflow] [--images 19] [--batch 4] [--reps 1]
 *   npx tsx bench/clip-real-size.ts [backend] --patch [--batch 4]
 *   npx tsx bench/clip-real-size.ts [backend] --profile [--images 1]   (time per kernel and shape)
 */
import * as tf from '@tensorflow/tfjs-core';
import { useBackend, type BackendName } from '../src/backends/node.js';
import { rearrange } from '../src/dcm/rearrange.js';
import { CLIP_VIT_L_14_336, clipVisionFromTensors, initClipVisionTensors } from '../src/models/clip.js';
import { linear } from '../src/ops/linear.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const backend = (args.find((a) => !a.startsWith('--') && Number.isNaN(Number(a))) ?? 'tensorflow') as BackendName;
await useBackend(backend);
const c = CLIP_VIT_L_14_336;
const S = c.imageSize;
const p = c.patchSize;
const d = c.hiddenSize;
const g = S / p;
const N = g * g;
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

/** FLOPs of one image to hidden_states[-2] (multiply-adds × 2), from the shapes. */
function gflopPerImage(layers: number): number {
  const T = N + 1;
  const I = c.intermediateSize;
  const patch = 2 * N * p * p * c.numChannels * d;
  const perLayer = 2 * T * (4 * d * d + 2 * d * I) + 2 * 2 * T * T * d;
  return (patch + layers * perLayer) / 1e9;
}

async function median(f: () => tf.Tensor, reps: number): Promise<number> {
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const y = f();
    await y.data();
    ts.push(performance.now() - t0);
    y.dispose();
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)]!;
}

if (args.includes('--patch')) {
  const B = flag('--batch', 4);
  const pixels = tf.randomNormal([B, S, S, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const conv = tf.randomNormal([d, 3, p, p], 0, 0.05, 'float32', 2);
  const wLinear = tf.tidy(() => tf.reshape(tf.transpose(conv, [0, 2, 3, 1]), [d, p * p * 3])) as tf.Tensor2D; // [d, p·p·C]
  const wConv = tf.tidy(() => tf.transpose(conv, [2, 3, 1, 0])) as tf.Tensor4D; // HWIO
  const viaMatMul = () => tf.tidy(() => tf.reshape(linear(rearrange(pixels, [B, g, p, g, p, 3], [0, 1, 3, 2, 4, 5], [B * N, p * p * 3]), { weight: wLinear }), [B, N, d]));
  const viaConv = () => tf.tidy(() => tf.reshape(tf.conv2d(pixels, wConv, p, 'valid'), [B, N, d]));
  const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(viaMatMul(), viaConv()))));
  console.log(`patch embedding, ${backend}, ${B} images: max |matMul - conv2d| = ${(await diff.data())[0]!.toExponential(2)}`);
  diff.dispose();
  for (let round = 0; round < 2; round++) {
    const mm = await median(viaMatMul, 5);
    const cv = await median(viaConv, 5);
    console.log(`  round ${round + 1}: rearrange + matMul ${mm.toFixed(1)} ms, conv2d ${cv.toFixed(1)} ms (median of 5)`);
  }
  tf.dispose([pixels, conv, wLinear, wConv]);
  process.exit(0);
}

const images = flag('--images', 19);
const batchSize = flag('--batch', 4);
const reps = flag('--reps', 1);
const rss0 = process.memoryUsage().rss;
const tensors0 = tf.memory().numTensors;
const t0 = performance.now();
const tensors = initClipVisionTensors(c, { seed: 0 });
const model = clipVisionFromTensors(tensors, c);
tf.dispose(Object.values(tensors));
console.log(`backend ${backend}: random ViT-L/14-336 weights in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${mib(tf.memory().numBytes)} of tensors`);

const pixels = tf.randomNormal([images, S, S, 3], 0, 1, 'float32', 7) as tf.Tensor4D;
{
  const first = tf.slice(pixels, [0, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D;
  const warm = model.features(first, { layer: -2 });
  await warm.data();
  tf.dispose([first, warm]);
}
const work = gflopPerImage(c.numHiddenLayers - 1) * images;
/** The backend's matMul rate at the MLP's shape (4 images' tokens × 1024 × 4096), measured now: the ceiling. */
async function matMulCeiling(): Promise<number> {
  const rows = 4 * (N + 1);
  const x = tf.randomNormal([rows, d], 0, 1, 'float32', 11);
  const w = tf.randomNormal([d, c.intermediateSize], 0, 0.03, 'float32', 12);
  const ms = await median(() => tf.matMul(x, w), 3);
  tf.dispose([x, w]);
  return (2 * rows * d * c.intermediateSize) / 1e9 / (ms / 1000);
}
if (args.includes('--profile')) {
  const info = await tf.profile(() => model.features(pixels, { layer: -2, batchSize }));
  (info.result as tf.Tensor).dispose();
  const byKernel = new Map<string, { ms: number; n: number }>();
  let total = 0;
  for (const k of info.kernels) {
    const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
    const e = byKernel.get(key) ?? { ms: 0, n: 0 };
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    e.ms += ms;
    e.n++;
    total += ms;
    byKernel.set(key, e);
  }
  console.log(`kernel time ${(total / 1000).toFixed(2)} s over ${info.kernels.length} kernels; peak ${mib(info.peakBytes)}; top 15:`);
  for (const [key, e] of [...byKernel].sort((a, b) => b[1].ms - a[1].ms).slice(0, 15)) {
    console.log(`  ${(e.ms / 1000).toFixed(3).padStart(7)} s  ${String(e.n).padStart(4)}×  ${key}`);
  }
  model.dispose();
  process.exit(0);
}
const ceiling = await matMulCeiling();
console.log(`  matMul ceiling now: ${ceiling.toFixed(0)} GFLOP/s ([${4 * (N + 1)}, ${d}] × [${d}, ${c.intermediateSize}])`);
for (let r = 0; r < reps; r++) {
  const start = performance.now();
  const y = model.features(pixels, {
    layer: -2,
    batchSize,
    onProgress: (done, total) => console.log(`  ${done}/${total} images queued at ${((performance.now() - start) / 1000).toFixed(1)} s`),
  });
  const values = await y.data();
  const s = (performance.now() - start) / 1000;
  let finite = true;
  for (let i = 0; i < values.length; i += 997) finite &&= Number.isFinite(values[i]!);
  console.log(
    `features of ${images} images [${images}, ${S}, ${S}, 3] → [${y.shape.join(', ')}] (layer -2, batchSize ${batchSize}): ` +
      `${s.toFixed(1)} s = ${((s * 1000) / images).toFixed(0)} ms/image, ${(work / s).toFixed(0)} GFLOP/s at ${work.toFixed(0)} GFLOP (${((100 * work) / s / ceiling).toFixed(0)} % of the matMul ceiling); finite ${finite}`,
  );
  y.dispose();
}
console.log(`  max RSS ${mib(process.resourceUsage().maxRSS * 1024)} (start ${mib(rss0)})`);
tf.dispose(pixels);
model.dispose();
console.log(`  tensors left after dispose: ${tf.memory().numTensors - tensors0}`);
