import { add, getBackend, matMul, mul, reshape, softmax, stack, tidy, transpose, unstack, type Tensor, type Tensor4D } from '@tensorflow/tfjs-core';
import type { Perspective } from '../grid.js';
import { imageToTiles, tilesToImage } from '../dcm/layouts.js';
import { layerNorm } from '../ops/layerNorm.js';
import { linear } from '../ops/linear.js';
import type { DemAttentionWeights } from './weights.js';

/**
 * How the windows × heads attention is laid out:
 * - `'batched'`: all windows and heads in two batched matMuls (`[windows·heads, t, t]` scores);
 * - `'per-window'`: a loop over windows, each with its heads batched (`[heads, t, t]` scores),
 *   so a window's working set stays small and its buffers are reused;
 * - `'auto'`: the faster one for the active backend, as measured by `npm run bench` (bench/NOTES.md).
 */
export type AttentionLayout = 'auto' | 'batched' | 'per-window';

/** Measured choice per backend (bench/NOTES.md); unknown backends get `'batched'`. */
const MEASURED_LAYOUT: Record<string, Exclude<AttentionLayout, 'auto'>> = {
  tensorflow: 'per-window',
  cpu: 'batched',
  wasm: 'batched',
  webgpu: 'batched',
};

export function resolveLayout(layout: AttentionLayout = 'auto'): Exclude<AttentionLayout, 'auto'> {
  return layout === 'auto' ? (MEASURED_LAYOUT[getBackend()] ?? 'batched') : layout;
}

/** softmax(q kᵀ) v over `[N, t, dk]` queries with keys pre-transposed `[N, dk, t]`. */
function attend(q: Tensor, kT: Tensor, v: Tensor): Tensor {
  return matMul(softmax(matMul(q, kT)), v);
}

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

  // [B, H, W, d] → [N, heads, t, dk] (or [N, heads, dk, t] for keys); channel = head*dk + k.
  const toHeads = (map: Tensor4D, keys: boolean): Tensor => {
    const tiles = reshape(imageToTiles(map, windows, rows, cols, h, wd), [N, t, heads, dk]);
    return transpose(tiles, keys ? [0, 2, 3, 1] : [0, 2, 1, 3]);
  };
  // Scale folded into q (t·d multiplies instead of t·t).
  const q = toHeads(mul(linear(qMap, w.query), 1 / Math.sqrt(dk)), false); // [N, heads, t, dk]
  const kT = toHeads(linear(kvMap, w.key), true); // [N, heads, dk, t]
  const v = toHeads(linear(kvMap, w.value), false); // [N, heads, t, dk]

  let attended: Tensor; // [N, heads, t, dk]
  if (resolveLayout(layout) === 'batched') {
    const flat = (x: Tensor, a: number, b: number) => reshape(x, [N * heads, a, b]);
    attended = reshape(attend(flat(q, t, dk), flat(kT, dk, t), flat(v, t, dk)), [N, heads, t, dk]);
  } else {
    const [qs, ks, vs] = [unstack(q), unstack(kT), unstack(v)];
    const outs = qs.map((qi, i) => tidy(() => attend(qi, ks[i]!, vs[i]!))); // [heads, t, dk] each
    attended = stack(outs);
  }
  const merged = reshape(transpose(attended, [0, 2, 1, 3]), [N, h, wd, d]) as Tensor4D;
  const map = tilesToImage(merged, windows, rows, cols); // [B, H, W, d]
  return layerNorm(add(linear(map, w.output), qMap), w.norm) as Tensor4D;
}
