import { add, matMul, mul, reshape, softmax, transpose, type Tensor, type Tensor4D } from '@tensorflow/tfjs-core';
import type { Perspective } from '../grid.js';
import { imageToTiles, tilesToImage } from '../dcm/layouts.js';
import { layerNorm } from '../ops/layerNorm.js';
import { linear } from '../ops/linear.js';
import type { DemAttentionWeights } from './weights.js';

/**
 * Windowed multi-head cross-attention: the map is cut into `rows × cols` windows (contiguous
 * for `'local'`, strided for `'global'`), each query window attends to the same window of
 * `kvMap`, and the result goes back to where its queries came from. Returns
 * `LayerNorm(output(attn) + qMap)` — the residual is the un-projected query (official code).
 *
 * Few large operations: each projection is one matMul over the whole map (a projection is
 * per token, so it commutes with windowing), and all windows × heads run in two batched matMuls.
 */
export function windowedAttention(
  qMap: Tensor4D, // [B, H, W, d]
  kvMap: Tensor4D, // [B, H, W, d]
  w: DemAttentionWeights,
  rows: number,
  cols: number,
  windows: Perspective,
): Tensor4D {
  const [B, H, W, d] = qMap.shape;
  const h = H / rows;
  const wd = W / cols;
  const heads = w.heads;
  const dk = d / heads;
  const T = rows * cols;
  const t = h * wd; // tokens per window

  // [B, H, W, d] → [B*T*heads, t, dk]: window, then split heads (channel = head*dk + k).
  const toHeads = (map: Tensor4D): Tensor => {
    const tiles = imageToTiles(map, windows, rows, cols, h, wd); // [B*T, h, w, d]
    const split = reshape(tiles, [B * T, t, heads, dk]);
    return reshape(transpose(split, [0, 2, 1, 3]), [B * T * heads, t, dk]);
  };

  // Scale folded into q (t·d multiplies instead of t·t).
  const q = toHeads(mul(linear(qMap, w.query), 1 / Math.sqrt(dk)));
  const k = toHeads(linear(kvMap, w.key));
  const v = toHeads(linear(kvMap, w.value));
  const probs = softmax(matMul(q, k, false, true)); // [B*T*heads, t, t]
  const attended = matMul(probs, v); // [B*T*heads, t, dk]

  const merged = reshape(transpose(reshape(attended, [B * T, heads, t, dk]), [0, 2, 1, 3]), [B * T, h, wd, d]);
  const map = tilesToImage(merged as Tensor4D, windows, rows, cols); // [B, H, W, d]
  return layerNorm(add(linear(map, w.output), qMap), w.norm) as Tensor4D;
}
