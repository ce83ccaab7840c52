import { Tensor, tensor, type Tensor4D, type TensorLike } from '@tensorflow/tfjs-core';

import { showJson as show } from './util/format.js';

/** A grid of sub-images: `n` for an n×n grid, or `[rows, cols]`. */
export type Grid = number | readonly [rows: number, cols: number];

/** How a crop treats a size the grid does not divide. */
export interface FitOptions {
  /**
   * `'error'` (default, as the official code asserts divisibility): throw, naming the shape
   * and the grid. `'crop'`: drop the trailing rows/columns (the paper's floor).
   */
  fit?: 'error' | 'crop';
}

/** The two ways to cut an image into sub-images (docs/spec.md, DCM). */
export type Perspective = 'local' | 'global';

function isPositiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

/** Parses a grid into `[rows, cols]`, throwing an error that names `fn` and the bad value. */
export function parseGrid(grid: Grid, fn: string, arg = 'grid'): [number, number] {
  if (isPositiveInt(grid)) return [grid, grid];
  if (Array.isArray(grid) && grid.length === 2 && isPositiveInt(grid[0]) && isPositiveInt(grid[1])) {
    return [grid[0], grid[1]];
  }
  throw new Error(
    `${fn}: ${arg} must be a positive integer n or [rows, cols] of positive integers, got ${show(grid)}`,
  );
}

/** Parses a pooling factor (same rules as a grid, different wording). */
export function parseFactor(factor: number | readonly [number, number], fn: string): [number, number] {
  return parseGrid(factor as Grid, fn, 'factor');
}

function isTensor(x: unknown): x is Tensor {
  // `instanceof` fails when two copies of tfjs-core are loaded; duck-type as tfjs does.
  return x instanceof Tensor || (x != null && typeof x === 'object' && 'dataId' in x && 'shape' in x && 'dtype' in x);
}

/**
 * Converts `x` to a tensor and checks rank and dtype. Call inside `tf.tidy` so a tensor made
 * from a `TensorLike` is disposed with the scope.
 */
export function toTensor4D(x: Tensor | TensorLike, fn: string, arg: string): Tensor4D {
  const rank = 4;
  let t: Tensor;
  if (isTensor(x)) {
    t = x;
  } else {
    try {
      t = tensor(x as TensorLike);
    } catch (e) {
      throw new Error(`${fn}: ${arg} must be a tf.Tensor or TensorLike: ${(e as Error).message}`);
    }
  }
  if (t.isDisposed) throw new Error(`${fn}: ${arg} is a disposed tensor`);
  if (t.rank !== rank) {
    throw new Error(`${fn}: ${arg} must be rank ${rank} (NHWC), got rank ${t.rank} with shape ${show(t.shape)}`);
  }
  if (t.dtype !== 'float32' && t.dtype !== 'int32') {
    throw new Error(`${fn}: ${arg} must have dtype float32 or int32, got ${t.dtype}`);
  }
  return t as Tensor4D;
}

/**
 * Sub-image size for cutting `[B, H, W, C]` into `rows × cols`; throws when the grid does not
 * divide the size (unless `fit: 'crop'`) or is larger than it.
 */
export function tileSize(
  shape: readonly number[],
  [rows, cols]: [number, number],
  fn: string,
  fit: FitOptions['fit'] = 'error',
): [h: number, w: number] {
  if (fit !== 'error' && fit !== 'crop') {
    throw new Error(`${fn}: opts.fit must be 'error' or 'crop', got ${show(fit)}`);
  }
  const [, H, W] = shape as [number, number, number, number];
  if (rows > H || cols > W) {
    throw new Error(`${fn}: grid [${rows}, ${cols}] is larger than the image (shape ${show(shape)}: height ${H}, width ${W})`);
  }
  if (fit === 'error' && (H % rows !== 0 || W % cols !== 0)) {
    throw new Error(
      `${fn}: grid [${rows}, ${cols}] does not divide the image of shape ${show(shape)} ` +
        `(height ${H} % ${rows} = ${H % rows}, width ${W} % ${cols} = ${W % cols}); ` +
        `resize the image first or pass { fit: 'crop' } to drop the trailing rows/columns`,
    );
  }
  return [Math.floor(H / rows), Math.floor(W / cols)];
}

export function parsePerspective(p: unknown, fn: string): Perspective {
  if (p === 'local' || p === 'global') return p;
  throw new Error(`${fn}: perspective must be 'local' or 'global', got ${show(p)}`);
}
