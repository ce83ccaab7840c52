import { tidy, type Tensor4D, type TensorLike } from '@tensorflow/tfjs-core';
import { parseGrid, tileSize, toTensor4D, type FitOptions, type Grid, type Perspective } from '../grid.js';
import { imageToTiles } from './layouts.js';

/** Validation + tidy shared by both crops; `fn` names the public op in error messages. */
export function crop(fn: string, perspective: Perspective, x: Tensor4D | TensorLike, grid: Grid, opts: FitOptions = {}): Tensor4D {
  const [rows, cols] = parseGrid(grid, fn);
  return tidy(() => {
    const img = toTensor4D(x, fn, 'x');
    const [h, w] = tileSize(img.shape, [rows, cols], fn, opts?.fit);
    return imageToTiles(img, perspective, rows, cols, h, w);
  });
}
