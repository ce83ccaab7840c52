import type { Tensor4D } from '@tensorflow/tfjs-core';
import type { Perspective } from '../grid.js';
import { layerNorm } from '../ops/layerNorm.js';
import { linear } from '../ops/linear.js';
import type { AttentionLayout } from '../ops/attention.js';
import { windowAttention } from '../ops/windowedAttention.js';
import type { DemAttentionWeights } from './weights.js';

/**
 * Whether the DEM's ops run their webgpu kernels where they apply (the windowed attention,
 * src/ops/windowedAttention.ts, and the bilinear reduction, src/ops/resizeBilinear.ts: on webgpu,
 * while no gradient tape records). `false` forces their compositions of tfjs ops everywhere (the
 * reference; tests compare the two).
 */
export const demKernels = { enabled: true };

/** The `kernel` option the DEM passes its ops: theirs ('auto') unless {@link demKernels} is off. */
export function demKernel(): 'auto' | 'composition' {
  return demKernels.enabled ? 'auto' : 'composition';
}

/** The layouts are the attention op's (src/ops/attention.ts); re-exported for the DEM's options. */
export { ATTENTION_LAYOUTS, resolveLayout, type AttentionLayout } from '../ops/attention.js';

/**
 * Windowed multi-head cross-attention: the map is cut into `rows × cols` windows (contiguous
 * for `'local'`, strided for `'global'`), each query window attends to the same window of
 * `kvMap`, and the result goes back to where its queries came from. Returns
 * `LayerNorm(output(attn) + qMap)` — the residual is the un-projected query (official code).
 *
 * Few large operations: each projection is one matMul over the whole map (a projection is
 * per token, so it commutes with windowing). The windowing and the head split are the op's
 * (src/ops/windowedAttention.ts): on webgpu (no
 * gradient tape recording, {@link demKernels} enabled) one kernel reads q/k/v windows from the
 * projected maps by index and writes map order, with no imageToTiles / tilesToImage / head-split
 * transposes; its composition of tfjs ops is the reference and the fallback (other backends,
 * under `tf.grad`, shapes the kernel refuses).
 */
export function windowedAttention(
  qMap: Tensor4D, // [B, H, W, d]
  kvMap: Tensor4D, // [B, H, W, d]
  w: DemAttentionWeights,
  rows: number,
  cols: number,
  windows: Perspective,
  layout: AttentionLayout = 'auto',
): Tensor4D {
  const heads = w.heads;
  const dk = qMap.shape[3] / heads;
  // 3 projections → attention within the windows (map order in and out) → output projection → residual + LayerNorm.
  const map = windowAttention(linear(qMap, w.query), linear(kvMap, w.key), linear(kvMap, w.value), { heads, rows, cols, windows, scale: 1 / Math.sqrt(dk), layout, kernel: demKernel() });
  return layerNorm(linear(map, w.output), w.norm, { residual: qMap }) as Tensor4D; // LayerNorm(output(map) + qMap): one kernel on webgpu
}
