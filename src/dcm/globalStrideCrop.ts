import type { Tensor4D, TensorLike } from '@tensorflow/tfjs-core';
import type { FitOptions, Grid } from '../grid.js';
import { crop } from './crop.js';

/**
 * Cuts each image into `rows × cols` interleaved, dilated sub-images (the DCM's global
 * perspective, paper eq. 17): each sees the whole image at `1/rows × 1/cols` resolution.
 *
 * Sub-image `k = b*rows*cols + i*cols + j` is `x[b, i::rows, j::cols, :]`: its pixel `(u, v)` is
 * `x[b, i + u*rows, j + v*cols, :]`. One reshape → transpose → reshape on the backend's own kernels.
 *
 * @param x Images `[B, H, W, C]`, NHWC, float32 or int32.
 * @param grid `n` or `[rows, cols]`.
 * @returns Sub-images `[B*rows*cols, h, w, C]`.
 * @throws When `x` is not rank 4 or float32/int32, the grid is not positive integers, larger
 *   than the image, or does not divide it (unless `fit: 'crop'`).
 */
export function globalStrideCrop(x: Tensor4D | TensorLike, grid: Grid, opts: FitOptions = {}): Tensor4D {
  return crop('globalStrideCrop', 'global', x, grid, opts);
}
