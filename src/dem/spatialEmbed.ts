import { tidy, type Tensor4D } from '@tensorflow/tfjs-core';
import { recombine2D } from '../dcm/recombine2D.js';
import { avgPool } from '../ops/avgPool.js';
import { resizeBilinear } from '../ops/resizeBilinear.js';
import { parseGrid } from '../grid.js';
import { checkMap, checkSameShape, pick } from './checks.js';
import { dualPerspectiveEnhance, type EnhanceOptions } from './dualPerspectiveEnhance.js';
import { linearConcatFuse, type FuseOptions } from './linearConcatFuse.js';
import { checkAttention, checkFuse, type SpatialEmbedWeights } from './weights.js';
import { demKernel } from './attention.js';

/** Options of {@link spatialEmbed}. */
export interface SpatialEmbedOptions extends EnhanceOptions, FuseOptions {
  /** Output spatial size `[height, width]`; default the sub-image feature size `[h, w]` (official: 24×24). */
  outSize?: readonly [number, number];
  /**
   * `'bilinear'` (default, official): `resizeBilinear(x, outSize, alignCorners = false,
   * halfPixelCenters = true)`, PyTorch's `align_corners=False` (the op: on webgpu without a gradient
   * tape, the same bilinear as one kernel, src/kernels/webgpu/bilinearDown.ts). `'avg'`: the paper's average
   * pooling (the size must divide).
   */
  reduce?: 'bilinear' | 'avg';
}

/**
 * The whole Dual-perspective Enhancement Module, as the released checkpoint's `SpatialEmbed`:
 * recombine both perspectives → {@link dualPerspectiveEnhance} → {@link linearConcatFuse} →
 * reduce to `outSize`.
 *
 * Official size: 9 + 9 sub-features of 24×24×1024, n = 3, 8 heads: ≈ 113 GFLOP
 * (≈ 87 GFLOP of projections, ≈ 24.5 of attention, ≈ 2 of fusion MLPs) → `[1, 24, 24, 1024]`.
 *
 * @param localTiles Encoder features of the local sub-images, `[B*rows*cols, h, w, d]`, float32,
 *   batch-major then row-major (the order `localCrop` produces).
 * @param globalTiles Features of the global sub-images, same shape (order of `globalStrideCrop`).
 * @returns `[B, outSize[0], outSize[1], d]`.
 */
export function spatialEmbed(localTiles: Tensor4D, globalTiles: Tensor4D, w: SpatialEmbedWeights, opts: SpatialEmbedOptions): Tensor4D {
  const fn = 'spatialEmbed';
  checkMap(localTiles, 'localTiles', fn);
  checkMap(globalTiles, 'globalTiles', fn);
  checkSameShape(localTiles, globalTiles, ['localTiles', 'globalTiles'], fn);
  const [N, h, wd, d] = localTiles.shape;
  if (opts?.grid === undefined) throw new Error(`${fn}: opts.grid is required (the DCM grid, e.g. 3)`);
  // Everything is validated before any work: grid, options, weights.
  const [rows, cols] = parseGrid(opts.grid, fn, 'opts.grid');
  if (N % (rows * cols) !== 0) {
    throw new Error(`${fn}: tile count ${N} (localTiles shape ${JSON.stringify(localTiles.shape)}) is not a multiple of rows*cols = ${rows * cols}`);
  }
  const reduce = pick(opts.reduce, ['bilinear', 'avg'], 'opts.reduce', fn);
  const outSize = opts.outSize ?? [h, wd];
  if (!Array.isArray(outSize) || outSize.length !== 2 || !outSize.every((s) => Number.isInteger(s) && s > 0)) {
    throw new Error(`${fn}: opts.outSize must be [height, width] of positive integers, got ${JSON.stringify(opts.outSize)}`);
  }
  const [H, W] = [rows * h, cols * wd];
  if (reduce === 'avg' && (H % outSize[0] !== 0 || W % outSize[1] !== 0)) {
    throw new Error(`${fn}: reduce 'avg' needs outSize ${JSON.stringify(outSize)} to divide the fused map ${H}×${W}`);
  }
  checkAttention(w?.attention, d, fn);
  checkFuse(w?.fuse, d, fn);

  return tidy(() => {
    const L = recombine2D(localTiles, [rows, cols], 'local'); // [B, H, W, d]
    const G = recombine2D(globalTiles, [rows, cols], 'global'); // [B, H, W, d]
    const enhanced = dualPerspectiveEnhance(L, G, w.attention, opts);
    const fused = linearConcatFuse(enhanced.local, enhanced.global, w.fuse, opts); // [B, H, W, d]
    if (reduce === 'avg') return avgPool(fused, [H / outSize[0], W / outSize[1]]);
    return resizeBilinear(fused, outSize, { kernel: demKernel() }); // one kernel on webgpu, no gradient tape
  });
}
