import { engine, getBackend, mul, reshape, transpose, type Tensor4D } from '@tensorflow/tfjs-core';
import type { Perspective } from '../grid.js';
import { imageToTiles, tilesToImage } from '../dcm/layouts.js';
import { layerNorm } from '../ops/layerNorm.js';
import { linear } from '../ops/linear.js';
import { attentionTransposedKeys, type AttentionLayout } from '../ops/attention.js';
import type { DemAttentionWeights } from './weights.js';
import { windowedAttentionPlan, windowedFlashAttention } from '../kernels/webgpu/windowedFlashAttention.js';

/**
 * Whether the DEM runs its webgpu kernels (src/kernels/webgpu/windowedFlashAttention.ts,
 * bilinearDown.ts) where they apply: on webgpu, while no gradient tape records. `false` forces
 * the composition of tfjs ops everywhere (the reference; tests compare the two).
 */
export const demKernels = { enabled: true };

/** True when the DEM's webgpu kernels run now: enabled, the webgpu backend, no gradient tape. */
export function demKernelsActive(): boolean {
  return demKernels.enabled && getBackend() === 'webgpu' && !engine().isTapeOn();
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
 * per token, so it commutes with windowing); windowing and the head split are one transpose
 * each; keys are laid out transposed (`[.., dk, t]`) because a batched matMul with
 * `transposeB` runs at half speed on tfjs-node.
 *
 * On webgpu (no gradient tape recording, {@link demKernels} enabled) the windowing and the head
 * split are folded into one kernel's indexing (src/kernels/webgpu/windowedFlashAttention.ts):
 * 3 projections → one windowed attention kernel reading q/k/v windows from the projected maps
 * and writing map order → output projection → residual + LayerNorm, with no imageToTiles /
 * tilesToImage / head-split transposes. The composition below is the reference and the
 * fallback (other backends, under `tf.grad`, shapes the kernel refuses).
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
  const [B, H, W, d] = qMap.shape;
  const h = H / rows;
  const wd = W / cols;
  const heads = w.heads;
  const dk = d / heads;
  const N = B * rows * cols; // windows
  const t = h * wd; // tokens per window

  // webgpu: 3 projections → one windowed attention kernel reading windows and heads by index
  // from the projected maps and writing map order → output projection → residual + LayerNorm.
  if (demKernelsActive()) {
    const tiles = windowedAttentionPlan({ B, H, W, heads, dk, rows, cols });
    if (typeof tiles !== 'string') {
      const attendedMap = windowedFlashAttention(linear(qMap, w.query), linear(kvMap, w.key), linear(kvMap, w.value), { heads, rows, cols, windows, scale: 1 / Math.sqrt(dk) }, tiles);
      return layerNorm(linear(attendedMap, w.output), w.norm, { residual: qMap }) as Tensor4D; // residual + LayerNorm: one kernel
    }
  }

  // [B, H, W, d] → [N, heads, t, dk] (or [N, heads, dk, t] for keys); channel = head*dk + k.
  const toHeads = (map: Tensor4D, keys: boolean): Tensor4D => {
    const tiles = reshape(imageToTiles(map, windows, rows, cols, h, wd), [N, t, heads, dk]);
    return transpose(tiles, keys ? [0, 2, 3, 1] : [0, 2, 1, 3]) as Tensor4D;
  };
  // Scale folded into q (t·d multiplies instead of t·t).
  const q = toHeads(mul(linear(qMap, w.query), 1 / Math.sqrt(dk)), false); // [N, heads, t, dk]
  const kT = toHeads(linear(kvMap, w.key), true); // [N, heads, dk, t]
  const v = toHeads(linear(kvMap, w.value), false); // [N, heads, t, dk]

  // One attention op for the library: one-shot per window where the scores are small, in
  // query × key blocks with an online softmax where they are not (src/ops/attention.ts).
  const attended = attentionTransposedKeys(q, kT, v, { scale: 1, layout }); // [N, heads, t, dk]
  const merged = reshape(transpose(attended, [0, 2, 1, 3]), [N, h, wd, d]) as Tensor4D;
  const map = tilesToImage(merged, windows, rows, cols); // [B, H, W, d]
  return layerNorm(linear(map, w.output), w.norm, { residual: qMap }) as Tensor4D; // LayerNorm(output(map) + qMap)
}
