/** The official DEM forward (`spatialEmbed`): enhancement (both directions) + fusion MLPs, counted as bench/cases.ts counts them. */
import * as tf from '@tensorflow/tfjs-core';
import { initSpatialEmbed, spatialEmbed, spatialEmbedToStateDict, type AttentionLayout } from '../../src/index.js';
import { attentionFlops, fusionFlops } from '../cases.js';
import { attentionKernelFor } from './attention.js';
import { randn, type GpuCase } from './case.js';

/** spatialEmbed layouts (on webgpu 'auto' is 'batched' for the DEM's 576² windows). */
const DEM_LAYOUTS: AttentionLayout[] = ['auto', 'batched', 'per-window'];

export function demCase(label: string, n: number, h: number, d: number, heads: number): GpuCase {
  const H = n * h;
  const t = h * h;
  const T = n * n;
  return {
    name: `spatialEmbed ${label} ${2 * T}x${h}x${h}x${d} n${n} h${heads}`,
    kind: 'dem',
    params: { n, h, d, heads },
    shape: `2 × [${T}, ${h}, ${h}, ${d}] → [1, ${h}, ${h}, ${d}]`,
    flops: 2 * attentionFlops(1, H, H, d, T) + fusionFlops(H, d),
    pipeline: true,
    warmup: 2,
    prepare: () => {
      const w = initSpatialEmbed(d, { heads, seed: 0 });
      const lt = randn([T, h, h, d], 3) as tf.Tensor4D;
      const gt = randn([T, h, h, d], 4) as tf.Tensor4D;
      return {
        variants: DEM_LAYOUTS.map((layout) => ({ label: `layout ${layout}${attentionKernelFor([T, heads, t, d / heads], { layout })}`, run: () => spatialEmbed(lt, gt, w, { grid: n, layout }) })),
        dispose: () => tf.dispose([lt, gt, ...Object.values(spatialEmbedToStateDict(w))]),
      };
    },
  };
}
