import { concat, tidy, type Tensor4D } from '@tensorflow/tfjs-core';
import { layerNorm } from '../ops/layerNorm.js';
import { linear, type Linear } from '../ops/linear.js';
import { checkMap, checkSameShape, pick } from './checks.js';
import { checkFuse, type FuseWeights } from './weights.js';

/** Options of {@link linearConcatFuse}. */
export interface FuseOptions {
  /** Channel order of the concatenation: `'local-first'` (default, official) or `'global-first'` (paper). */
  order?: 'local-first' | 'global-first';
}

/**
 * Linear → GELU → Linear → … (GELU between consecutive layers only), each GELU as the epilogue of
 * the linear before it: one kernel per layer on webgpu, the same ops in the same order elsewhere.
 */
function mlp(x: Tensor4D, layers: Linear[]): Tensor4D {
  return layers.reduce((h, layer, i) => linear(h, layer, { activation: i < layers.length - 1 ? 'gelu' : 'none' }), x);
}

/**
 * The DEM's fusion: `LayerNorm(concat([mlpLocal(local), mlpGlobal(global)]) + local + global)`
 * with the official weights (`ffn_crop`, `ffn_stride`, `ln_fuse`), or, without `w.norm`, the
 * paper's plain concatenation of one Linear per branch (use `order: 'global-first'` for the paper).
 *
 * @param local Enhanced local map `[B, H, W, d]`, float32.
 * @param global Enhanced global map, same shape.
 * @returns `[B, H, W, d]` (or `[B, H, W, outLocal + outGlobal]` without `norm`).
 */
export function linearConcatFuse(local: Tensor4D, global: Tensor4D, w: FuseWeights, opts: FuseOptions = {}): Tensor4D {
  const fn = 'linearConcatFuse';
  checkMap(local, 'local', fn);
  checkMap(global, 'global', fn);
  checkSameShape(local, global, ['local', 'global'], fn);
  const order = pick(opts?.order, ['local-first', 'global-first'], 'opts.order', fn);
  checkFuse(w, local.shape[3], fn);
  return tidy(() => {
    const l = mlp(local, w.local);
    const g = mlp(global, w.global);
    const cat = concat(order === 'local-first' ? [l, g] : [g, l], -1);
    if (!w.norm) return cat;
    return layerNorm(cat, w.norm, { residual: global, residual2: local }); // LayerNorm((cat + global) + local): one kernel on webgpu
  });
}
