/**
 * Encode one image into INF-LLaVA visual tokens, stage by stage.
 *
 *   npx tsx examples/encode-image.ts [--image photo.jpg] [--model DIR] [--vision DIR] [--backend tensorflow]
 *
 * Without --model it uses the bundled tiny random checkpoint (assets/) (its numbers mean
 * nothing; the shapes and stages are the real ones). With the real weights (see README:
 * WeihuangLin/INF-LLaVA-sft and openai/clip-vit-large-patch14-336, downloaded by you) it
 * produces the 576 × 4096 tokens LLaMA-3 reads. Nothing is downloaded here.
 */
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { useBackend, type BackendName } from '../src/backends/node.js';
import { decodeImage, globalStrideCrop, loadInfLlavaVision, localCrop, preprocessImage } from '../src/index.js';

const arg = (name: string, fallback?: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const backend = (arg('backend', 'tensorflow') as BackendName);
const imagePath = arg('image', 'assets/extreme_ironing.jpg')!;
const model = arg('model', 'assets/tiny-inf-llava')!;
const vision = arg('vision');

try {
  await useBackend(backend);
} catch (e) {
  console.warn(`${(e as Error).message}\nfalling back to cpu`);
  await useBackend('cpu');
}
const t = (label: string, t0: number) => console.log(`  ${label.padEnd(34)} ${(performance.now() - t0).toFixed(0).padStart(6)} ms`);
console.log(`backend ${tf.getBackend()}, image ${imagePath}, model ${model}${vision ? `, vision ${vision}` : ''}`);

let t0 = performance.now();
const vis = await loadInfLlavaVision(model, vision ? { visionDir: vision } : {});
t('load weights (vision side only)', t0);
const { grid: n, imageSize: S, patchSize } = vis.config;

t0 = performance.now();
const image = await decodeImage(new Uint8Array(readFileSync(imagePath)));
t(`decode ${image.shape[1]}×${image.shape[0]}`, t0);
t0 = performance.now();
const pixels = preprocessImage(image, { size: n * S });
t(`preprocess → ${n * S}×${n * S}`, t0);

const local = localCrop(pixels, n);
const global = globalStrideCrop(pixels, n);
console.log(`  sub-images: ${local.shape[0]} local + ${global.shape[0]} global of ${S}×${S}, plus the ${S}×${S} view (reused: global tile ((n−1)/2, (n−1)/2))`);
tf.dispose([local, global]);

t0 = performance.now();
const tokens = vis.encodePixels(pixels, { onProgress: (done, total) => process.stdout.write(`\r  CLIP ${done}/${total} sub-images`) });
await tokens.data();
process.stdout.write('\n');
t('CLIP + DEM + projector', t0);
console.log(`visual tokens: [${tokens.shape.join(', ')}] (${(S / patchSize) ** 2} tokens of width ${tokens.shape[2]})`);
tf.dispose([image, pixels, tokens]);
vis.dispose();
console.log(`tensors left: ${tf.memory().numTensors}`);
