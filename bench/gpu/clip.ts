/** CLIP's vision tower to hidden_states[layer] on `images` crops, random weights (as bench/clip-real-size.ts). */
import * as tf from '@tensorflow/tfjs-core';
import { clipVisionFromTensors, CLIP_VIT_L_14_336, initClipVisionTensors, type ClipVisionConfig } from '../../src/index.js';
import { attentionKernelFor } from './attention.js';
import { randn, type GpuCase } from './case.js';

/** CLIP: images per forward pass (4 is the library's default). */
export const CLIP_BATCH_SIZES = [4, 18];

/** --quick: ViT-L/14-336's architecture, tiny. */
export const TINY_CLIP: ClipVisionConfig = { ...CLIP_VIT_L_14_336, hiddenSize: 64, intermediateSize: 128, numHiddenLayers: 3, numAttentionHeads: 4, imageSize: 28, patchSize: 14 };

export function clipCase(label: string, c: ClipVisionConfig, images: number, layer: number, batchSizes: number[]): GpuCase {
  const g = c.imageSize / c.patchSize;
  const N = g * g;
  const T = N + 1;
  const d = c.hiddenSize;
  const used = layer >= 0 ? layer : c.numHiddenLayers + 1 + layer;
  const perImage = 2 * N * c.patchSize ** 2 * c.numChannels * d + used * (2 * T * (4 * d * d + 2 * d * c.intermediateSize) + 2 * 2 * T * T * d);
  return {
    name: `CLIP ${label} ${images}x${c.imageSize}x${c.imageSize} to layer ${layer}`,
    kind: 'clip',
    params: { ...c, images, layer },
    shape: `[${images}, ${c.imageSize}, ${c.imageSize}, ${c.numChannels}] → [${images}, ${N}, ${d}]`,
    flops: perImage * images,
    pipeline: false,
    warmup: 1,
    prepare: () => {
      const tensors = initClipVisionTensors(c, { seed: 0 });
      const model = clipVisionFromTensors(tensors, c);
      tf.dispose(Object.values(tensors));
      const pixels = randn([images, c.imageSize, c.imageSize, c.numChannels], 7) as tf.Tensor4D;
      return {
        variants: batchSizes.map((batchSize) => ({ label: `batchSize ${batchSize}${attentionKernelFor([Math.min(batchSize, images), c.numAttentionHeads, T, d / c.numAttentionHeads])}`, run: () => model.features(pixels, { layer, batchSize }) })),
        dispose: () => (pixels.dispose(), model.dispose()),
      };
    },
  };
}
