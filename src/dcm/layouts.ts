/**
 * The index algebra of the DCM, in one place. An image `[B, H, W, C]` with `H = rows*h`,
 * `W = cols*w` is viewed as six axes; each perspective is a permutation of them, and its
 * inverse recombines.
 *
 * - local:  H = (r, u) (row-block major), tile (r, c) = x[b, r*h + u, c*w + v]
 * - global: H = (u, i) (pixel major),     tile (i, j) = x[b, u*rows + i, v*cols + j]
 *
 * Tiles are `[B, rows, cols, h, w, C]` = sub-image `k = b*rows*cols + r*cols + c`.
 */
import { pad, slice, type Tensor4D } from '@tensorflow/tfjs-core';
import { withGradient } from '../ops/withGradient.js';
import { rearrange } from './rearrange.js';
import type { Perspective } from '../grid.js';

export interface Layout {
  /** The image viewed as six axes. */
  imageView: [number, number, number, number, number, number];
  /** The permutation taking `imageView` to tile order `[B, rows, cols, h, w, C]`. */
  toTiles: [number, number, number, number, number, number];
  /** The inverse permutation, tiles → `imageView`. */
  toImage: [number, number, number, number, number, number];
}

export function layout(perspective: Perspective, B: number, rows: number, cols: number, h: number, w: number, C: number): Layout {
  if (perspective === 'local') {
    // imageView [B, rows, h, cols, w, C]
    return { imageView: [B, rows, h, cols, w, C], toTiles: [0, 1, 3, 2, 4, 5], toImage: [0, 1, 3, 2, 4, 5] };
  }
  // imageView [B, h, rows, w, cols, C]
  return { imageView: [B, h, rows, w, cols, C], toTiles: [0, 2, 4, 1, 3, 5], toImage: [0, 3, 1, 4, 2, 5] };
}

/**
 * Image `[B, H, W, C]` → tiles `[B*rows*cols, h, w, C]`; rows/columns past `rows*h`, `cols*w`
 * are dropped. The gradient is the inverse rearrangement (zero-padded where rows were
 * dropped), so it needs no registered gradient kernels.
 */
export function imageToTiles(img: Tensor4D, perspective: Perspective, rows: number, cols: number, h: number, w: number): Tensor4D {
  const [B, H, W, C] = img.shape;
  const { imageView, toTiles, toImage } = layout(perspective, B, rows, cols, h, w, C);
  const cropped = H !== rows * h || W !== cols * w;
  return withGradient<Tensor4D>(
    img,
    (x) => {
      const used = cropped ? slice(x, [0, 0, 0, 0], [B, rows * h, cols * w, C]) : x;
      return rearrange(used, imageView, toTiles, [B * rows * cols, h, w, C]);
    },
    (dy) => {
      const back = rearrange(dy, [B, rows, cols, h, w, C], toImage, [B, rows * h, cols * w, C]);
      return cropped ? pad(back, [[0, 0], [0, H - rows * h], [0, W - cols * w], [0, 0]]) : back;
    },
  );
}

/** Tiles `[B*rows*cols, h, w, C]` → image `[B, rows*h, cols*w, C]`; exact inverse of {@link imageToTiles}. */
export function tilesToImage(tiles: Tensor4D, perspective: Perspective, rows: number, cols: number): Tensor4D {
  const [N, h, w, C] = tiles.shape;
  const B = N / (rows * cols);
  const { imageView, toTiles, toImage } = layout(perspective, B, rows, cols, h, w, C);
  return withGradient<Tensor4D>(
    tiles,
    (x) => rearrange(x, [B, rows, cols, h, w, C], toImage, [B, rows * h, cols * w, C]),
    (dy) => rearrange(dy, imageView, toTiles, [N, h, w, C]),
  );
}
