/**
 * Where one position of a DEM feature map attends: the softmax probabilities of the DEM's
 * windowed cross-attention (docs/spec.md, DEM; src/dem/attention.ts) for one query position,
 * per head, laid out over the key map. For pictures of what the module does (the demo's DEM
 * view), not on the model's path: it recomputes one query row, nothing is cached.
 */
import { matMul, mul, pad, reshape, slice, softmax, tidy, transpose, type Tensor2D, type Tensor3D, type Tensor4D } from '@tensorflow/tfjs-core';
import type { Grid, Perspective } from '../grid.js';
import { imageToTiles, tilesToImage } from '../dcm/layouts.js';
import { linear } from '../ops/linear.js';
import { checkMap, checkSameShape, mapGrid, pick } from './checks.js';
import { checkAttention, type DemAttentionWeights } from './weights.js';

/** Options of {@link demAttentionMap}. */
export interface AttentionMapOptions {
  /** The DCM grid the maps were recombined from: `n` or `[rows, cols]`. */
  grid: Grid;
  /** The query's window: `'local'` (contiguous `h × w` block) or `'global'` (strided: every rows-th row and cols-th column). */
  windows: Perspective;
  /** The query position `[row, col]` in the map (integers, 0-based). */
  position: readonly [number, number];
  /** Which image of the batch (default 0). */
  batch?: number;
}

/** Options of {@link dualPerspectiveAttentionMaps}. */
export interface DualAttentionMapOptions {
  grid: Grid;
  position: readonly [number, number];
  batch?: number;
  /** `'official'` (default, the released code's windows) or `'paper'`, as `dualPerspectiveEnhance`'s `windows`. */
  windows?: 'official' | 'paper';
}

/**
 * The attention probabilities of the query at `position` of `qMap` over its window of `kvMap`,
 * as the DEM computes them: `q = qMap[b, row, col]·W0ᵀ + b0`, `k = kvMap·W1ᵀ + b1` over the window,
 * per head `softmax(q kᵀ / sqrt(d/heads))`.
 *
 * @param qMap The query map `[B, H, W, d]` (e.g. `G` for global-as-query).
 * @param kvMap The key map, same shape (e.g. `L`).
 * @returns `[heads, H, W]` float32: the probability each position of `kvMap` (image `batch`)
 *   gets from each head; zero outside the query's window; each head sums to 1.
 */
export function demAttentionMap(qMap: Tensor4D, kvMap: Tensor4D, w: DemAttentionWeights, opts: AttentionMapOptions): Tensor3D {
  const fn = 'demAttentionMap';
  checkMap(qMap, 'qMap', fn);
  checkMap(kvMap, 'kvMap', fn);
  checkSameShape(qMap, kvMap, ['qMap', 'kvMap'], fn);
  if (opts == null || typeof opts !== 'object') throw new Error(`${fn}: opts { grid, windows, position } is required`);
  const [B, H, W, d] = qMap.shape;
  const [rows, cols] = mapGrid(opts.grid, qMap.shape, fn);
  if (opts.windows === undefined) throw new Error(`${fn}: opts.windows is required ('local' or 'global')`);
  const windows = pick<Perspective>(opts.windows, ['local', 'global'], 'opts.windows', fn);
  const pos = opts.position;
  if (!Array.isArray(pos) || pos.length !== 2 || !pos.every((v) => Number.isInteger(v))) {
    throw new Error(`${fn}: opts.position must be [row, col] of integers, got ${JSON.stringify(pos)}`);
  }
  const [row, col] = pos as [number, number];
  if (row < 0 || row >= H || col < 0 || col >= W) throw new Error(`${fn}: opts.position [${row}, ${col}] is outside the ${H}×${W} map`);
  const b = opts.batch ?? 0;
  if (!Number.isInteger(b) || b < 0 || b >= B) throw new Error(`${fn}: opts.batch must be an integer in [0, ${B - 1}], got ${JSON.stringify(opts.batch)}`);
  checkAttention(w, d, fn);

  const h = H / rows;
  const wd = W / cols;
  const heads = w.heads;
  const dk = d / heads;
  const t = h * wd;
  // The query's window (its tile index in imageToTiles order).
  const [wr, wc] = windows === 'local' ? [Math.floor(row / h), Math.floor(col / wd)] : [row % rows, col % cols];
  const k = b * rows * cols + wr * cols + wc;
  const N = B * rows * cols;
  return tidy(() => {
    const x = reshape(slice(qMap, [b, row, col, 0], [1, 1, 1, d]), [1, d]) as Tensor2D;
    const q = reshape(mul(linear(x, w.query), 1 / Math.sqrt(dk)), [heads, 1, dk]); // [heads, 1, dk]
    const window = reshape(slice(imageToTiles(kvMap, windows, rows, cols, h, wd), [k, 0, 0, 0], [1, h, wd, d]), [t, d]) as Tensor2D;
    const keys = transpose(reshape(linear(window, w.key), [t, heads, dk]), [1, 2, 0]); // [heads, dk, t]
    const p = softmax(reshape(matMul(q, keys), [heads, t])); // [heads, t]
    const tile = reshape(transpose(p), [1, h, wd, heads]); // the window's tile, channels = heads
    const tiles = pad(tile, [[k, N - 1 - k], [0, 0], [0, 0], [0, 0]]) as Tensor4D; // zero elsewhere
    const map = slice(tilesToImage(tiles, windows, rows, cols), [b, 0, 0, 0], [1, H, W, heads]); // [1, H, W, heads]
    return transpose(reshape(map, [H, W, heads]), [2, 0, 1]) as Tensor3D;
  });
}

/**
 * Both directions of the DEM for the position `position` of the aligned maps `L` and `G`
 * (as {@link dualPerspectiveEnhance} pairs them):
 * - `global`: global as query, `G[position]` over its window of `L` (official: the contiguous
 *   window holding the position; `'paper'`: the strided one);
 * - `local`: local as query, `L[position]` over its window of `G` (official: strided, spread over
 *   the whole image; `'paper'`: contiguous).
 *
 * @returns Two `[heads, H, W]` maps (see {@link demAttentionMap}).
 */
export function dualPerspectiveAttentionMaps(
  local: Tensor4D,
  global: Tensor4D,
  w: DemAttentionWeights,
  opts: DualAttentionMapOptions,
): { local: Tensor3D; global: Tensor3D } {
  const fn = 'dualPerspectiveAttentionMaps';
  const mode = pick(opts?.windows, ['official', 'paper'], 'opts.windows', fn);
  const globalQuery: Perspective = mode === 'official' ? 'local' : 'global';
  const localQuery: Perspective = mode === 'official' ? 'global' : 'local';
  const base = { grid: opts.grid, position: opts.position, batch: opts.batch };
  const g = demAttentionMap(global, local, w, { ...base, windows: globalQuery });
  try {
    return { global: g, local: demAttentionMap(local, global, w, { ...base, windows: localQuery }) };
  } catch (e) {
    g.dispose();
    throw e;
  }
}
