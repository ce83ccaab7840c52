import { add, dispose, getBackend, matMul, mul, reshape, softmax, stack, tidy, transpose, unstack, type Tensor, type Tensor4D } from '@tensorflow/tfjs-core';
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
 * - `'per-head'`: a loop over windows × heads of 2-D matMuls (for backends whose batched
 *   matMul is much slower than their 2-D one, like wasm);
 * - `'auto'`: the faster one for the active backend, as measured by `npm run bench` (bench/NOTES.md).
 */
export type AttentionLayout = 'auto' | 'batched' | 'per-window' | 'per-head';

/** Every concrete layout, for option checks and benchmarks. */
export const ATTENTION_LAYOUTS = ['batched', 'per-window', 'per-head'] as const;

/**
 * Measured choice per backend for windows of at least 256 tokens (bench/NOTES.md); smaller
 * windows, and backends not listed, use `'batched'`. tensorflow: per-window is as fast as
 * batched at the official size (698 vs 693 ms) with a 10× smaller score buffer; wasm: its
 * batched matMul is ~10× slower than its 2-D one, so per-head wins (6.8 s vs 13.6 s).
 */
const LARGE_WINDOW_LAYOUT: Record<string, Exclude<AttentionLayout, 'auto'>> = {
  tensorflow: 'per-window',
  wasm: 'per-head',
};

export function resolveLayout(layout: AttentionLayout, tokensPerWindow: number): Exclude<AttentionLayout, 'auto'> {
  if (layout !== 'auto') return layout;
  return tokensPerWindow >= 256 ? (LARGE_WINDOW_LAYOUT[getBackend()] ?? 'batched') : 'batched';
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
  const flat = (x: Tensor, a: number, b: number) => reshape(x, [N * heads, a, b]);
  const resolved = resolveLayout(layout, t);
  if (resolved === 'batched') {
    attended = reshape(attend(flat(q, t, dk), flat(kT, dk, t), flat(v, t, dk)), [N, heads, t, dk]);
  } else {
    // per-window: one [heads, t, dk] slice per window; per-head: one 2-D [t, dk] slice per window × head.
    const split = (x: Tensor, a: number, b: number) => unstack(resolved === 'per-window' ? x : flat(x, a, b));
    const [qs, ks, vs] = [split(q, t, dk), split(kT, dk, t), split(v, t, dk)];
    const outs = qs.map((qi, i) => tidy(() => attend(qi, ks[i]!, vs[i]!)));
    attended = reshape(stack(outs), [N, heads, t, dk]);
    dispose([...qs, ...ks, ...vs, ...outs]);
  }
  const merged = reshape(transpose(attended, [0, 2, 1, 3]), [N, h, wd, d]) as Tensor4D;
  const map = tilesToImage(merged, windows, rows, cols); // [B, H, W, d]
  return layerNorm(add(linear(map, w.output), qMap), w.norm) as Tensor4D;
}
