import { tidy, type Tensor4D, type TensorLike } from '@tensorflow/tfjs-core';
import { parseGrid, parsePerspective, toTensor4D, type Grid, type Perspective } from '../grid.js';
import { tilesToImage } from './layouts.js';

/**
 * Reassembles sub-images into images: the exact inverse of {@link localCrop}
 * (`perspective: 'local'`, grid concatenation) or {@link globalStrideCrop}
 * (`'global'`, interleave: tile `(i, j)` goes to `out[b, i::rows, j::cols, :]`).
 * Round trips are bit-exact.
 *
 * @param tiles Sub-images `[B*rows*cols, h, w, C]` in batch-major, row-major order.
 * @param grid `n` or `[rows, cols]`.
 * @returns Images `[B, rows*h, cols*w, C]`.
 * @throws When `tiles` is not rank 4 or float32/int32, the grid is not positive integers, the
 *   tile count is not a multiple of `rows*cols`, or `perspective` is neither `'local'` nor `'global'`.
 */
export function recombine2D(tiles: Tensor4D | TensorLike, grid: Grid, perspective: Perspective): Tensor4D {
  const fn = 'recombine2D';
  const [rows, cols] = parseGrid(grid, fn);
  const p = parsePerspective(perspective, fn);
  return tidy(() => {
    const t = toTensor4D(tiles, fn, 'tiles');
    const n = t.shape[0];
    if (n % (rows * cols) !== 0) {
      throw new Error(
        `${fn}: tile count ${n} (tiles shape ${JSON.stringify(t.shape)}) is not a multiple of ` +
          `rows*cols = ${rows}*${cols} = ${rows * cols}`,
      );
    }
    return tilesToImage(t, p, rows, cols);
  });
}
