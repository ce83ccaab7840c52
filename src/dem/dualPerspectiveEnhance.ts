import { tidy, type Tensor4D } from '@tensorflow/tfjs-core';
import type { Grid, Perspective } from '../grid.js';
import { ATTENTION_LAYOUTS, windowedAttention, type AttentionLayout } from './attention.js';
import { checkMap, checkSameShape, mapGrid, pick } from './checks.js';
import { checkAttention, type DemAttentionWeights } from './weights.js';

/** Options of {@link dualPerspectiveEnhance}. */
export interface EnhanceOptions {
  /** The DCM grid the maps were recombined from: `n` or `[rows, cols]`. */
  grid: Grid;
  /** `'both'` (default), or one direction only, the other map passing through (paper Table 4). */
  mode?: 'both' | 'global' | 'local';
  /**
   * `'official'` (default, the released code and weights): global queries local over contiguous
   * windows, local queries global over strided windows. `'paper'` (eqs. 18–25) swaps the windowing.
   */
  windows?: 'official' | 'paper';
  /**
   * Attention layout: `'auto'` (default) picks the fastest of `'batched'`, `'per-window'` and
   * `'per-head'` for the active backend, as measured by `npm run bench`. Results agree to float rounding.
   */
  layout?: AttentionLayout;
}

/**
 * The DEM's windowed cross-attention between the two perspectives (official `SpatialEmbed`).
 *
 * Both directions read the original maps and share one attention module:
 * - global enhanced by local: `G' = LN(MHA(q = G, kv = L) + G)` over contiguous windows (official);
 * - local enhanced by global: `L' = LN(MHA(q = L, kv = G) + L)` over strided windows (official).
 *
 * Cost at the official size (`[1, 72, 72, 1024]`, n = 3, 8 heads): 6 projections over 5,184
 * tokens (≈ 65 GFLOP), 18 windows of 576×576 attention (≈ 24.5 GFLOP).
 *
 * @param local `L = recombine2D(localFeatures, grid, 'local')`, `[B, n*h, n*w, d]`, float32.
 * @param global `G = recombine2D(globalFeatures, grid, 'global')`, same shape.
 * @returns `{ local: L', global: G' }`, new tensors of the same shape (a map that a one-direction
 *   `mode` does not enhance is returned as a copy).
 */
export function dualPerspectiveEnhance(
  local: Tensor4D,
  global: Tensor4D,
  w: DemAttentionWeights,
  opts: EnhanceOptions,
): { local: Tensor4D; global: Tensor4D } {
  const fn = 'dualPerspectiveEnhance';
  checkMap(local, 'local', fn);
  checkMap(global, 'global', fn);
  checkSameShape(local, global, ['local', 'global'], fn);
  const [rows, cols] = mapGrid(opts?.grid, local.shape, fn);
  const mode = pick(opts.mode, ['both', 'global', 'local'], 'opts.mode', fn);
  const windows = pick(opts.windows, ['official', 'paper'], 'opts.windows', fn);
  const layout = pick<AttentionLayout>(opts.layout, ['auto', ...ATTENTION_LAYOUTS], 'opts.layout', fn);
  checkAttention(w, local.shape[3], fn);

  // Which windows each direction uses: the released code's layout, or the paper's.
  const globalQueryWindows: Perspective = windows === 'official' ? 'local' : 'global';
  const localQueryWindows: Perspective = windows === 'official' ? 'global' : 'local';
  const out = tidy(() => ({
    global: mode === 'local' ? global.clone() : windowedAttention(global, local, w, rows, cols, globalQueryWindows, layout),
    local: mode === 'global' ? local.clone() : windowedAttention(local, global, w, rows, cols, localQueryWindows, layout),
  }));
  return { local: out.local, global: out.global };
}
