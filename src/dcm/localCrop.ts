import type { Tensor4D, TensorLike } from '@tensorflow/tfjs-core';
import type { FitOptions, Grid } from '../grid.js';
import { crop } from './crop.js';

/**
 * Cuts each image into a `rows × cols` grid of contiguous sub-images (the DCM's local perspective).
 *
 * Sub-image `k = b*rows*cols + r*cols + c` is `x[b, r*h:(r+1)*h, c*w:(c+1)*w, :]`, with
 * `h = H / rows`, `w = W / cols`. One reshape → transpose → reshape on the backend's own kernels.
 *
 * @param x Images `[B, H, W, C]`, NHWC, float32 or int32.
 * @param grid `n` or `[rows, cols]`.
 * @returns Sub-images `[B*rows*cols, h, w, C]`.
 * @throws When `x` is not rank 4 or float32/int32, the grid is not positive integers, larger
 *   than the image, or does not divide it (unless `fit: 'crop'`).
 */
export function localCrop(x: Tensor4D | TensorLike, grid: Grid, opts: FitOptions = {}): Tensor4D {
  return crop('localCrop', 'local', x, grid, opts);
}
