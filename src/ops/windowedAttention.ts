/**
 * Multi-head attention within windows of feature maps (the DEM's cross-attention core):
 *
 *   q, k, v [B, H, W, heads·dk] (projected maps) → out [B, H, W, heads·dk]
 *
 * The maps are cut into `rows × cols` windows of h × w tokens (`H = rows·h`, `W = cols·w`):
 * contiguous for `'local'`, strided for `'global'` (src/dcm/layouts.ts); head `e` is channels
 * `e·dk .. (e+1)·dk`. Each query window attends to the same window of k and v, and the result is
 * written where its queries came from.
 *
 * Two implementations ({@link WindowAttentionOptions.kernel}): a composition of tfjs ops (every
 * backend, differentiable, the reference: windows and heads split out by imageToTiles and one
 * transpose each, the attention op with keys transposed, merged back by tilesToImage), and on
 * webgpu one kernel with the windowing folded into its indexing
 * (src/kernels/webgpu/windowedFlashAttention.ts), used by default there while no gradient tape
 * records.
 */
import { mul, reshape, tidy, transpose, type Tensor, type Tensor4D } from '@tensorflow/tfjs-core';
import { cannotFuse, checkKernelChoice, webgpuKernelRefusal, type KernelChoice } from './kernelChoice.js';
import type { Perspective } from '../grid.js';
import { imageToTiles, tilesToImage } from '../dcm/layouts.js';
import { windowedAttentionPlan, windowedFlashAttention } from '../kernels/webgpu/windowedFlashAttention.js';
import type { FlashAttentionTiles } from '../kernels/webgpu/flashAttention.js';
import { showJson as show, showValue } from '../util/format.js';
import { checkOptionNames } from '../util/options.js';
import { ATTENTION_LAYOUTS, attentionTransposedKeys, type AttentionLayout } from './attention.js';

/** Options of {@link windowAttention}. */
export interface WindowAttentionOptions {
  /** Attention heads: channels `e·dk .. (e+1)·dk` are head e. */
  heads: number;
  /** Windows per column and per row of the map; they divide H and W. */
  rows: number;
  cols: number;
  /** `'local'`: contiguous h × w blocks; `'global'`: strided (pixel (u·rows + r, x·cols + c) of window (r, c)). */
  windows: Perspective;
  /** Multiplies q·kᵀ. Default `1 / √dk`. */
  scale?: number;
  /** The composition's grouping of windows and heads into calls (the attention op's `layout`; default `'auto'`). The kernel has none. */
  layout?: AttentionLayout;
  /**
   * - `'auto'` (default): the kernel on webgpu when it takes the shapes (head width ≤ 256, a tile
   *   fits the device) and no gradient tape records; the composition otherwise;
   * - `'fused'`: the kernel, or an error saying why it cannot run (not webgpu, under tf.grad, shapes);
   * - `'composition'`: tfjs ops (every backend, differentiable).
   */
  kernel?: 'auto' | 'fused' | 'composition';
}

const FN = 'windowAttention';
const OPTION_KEYS = ['heads', 'rows', 'cols', 'windows', 'scale', 'layout', 'kernel'] as const;
const WINDOWS = ['local', 'global'] as const;

function checkTensor(t: Tensor, name: string): void {
  if (t === null || typeof t !== 'object' || !Array.isArray((t as Tensor).shape)) throw new Error(`${FN}: ${name} must be a tensor [B, H, W, heads·dk], got ${t === null ? 'null' : typeof t}`);
  if (t.isDisposed) throw new Error(`${FN}: ${name} is a disposed tensor`);
  if (t.rank !== 4) throw new Error(`${FN}: ${name} must be [B, H, W, heads·dk], got shape ${show(t.shape)}`);
  if (t.dtype !== 'float32') throw new Error(`${FN}: ${name} must be float32, got ${t.dtype}`);
}

function positiveInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${FN}: opts.${name} must be a positive integer, got ${showValue(v)}`);
  return v;
}

interface Checked {
  heads: number;
  rows: number;
  cols: number;
  windows: Perspective;
  scale: number;
  layout: AttentionLayout;
  kernel: KernelChoice;
}

function check(q: Tensor4D, k: Tensor4D, v: Tensor4D, opts: WindowAttentionOptions): Checked {
  checkTensor(q, 'q');
  checkTensor(k, 'k');
  checkTensor(v, 'v');
  for (const [t, name] of [[k, 'k'], [v, 'v']] as const) {
    if (t.shape.some((s, i) => s !== q.shape[i])) throw new Error(`${FN}: q ${show(q.shape)} and ${name} ${show(t.shape)} must have the same shape`);
  }
  if (opts === null || typeof opts !== 'object') throw new Error(`${FN}: opts must be an object with heads, rows, cols and windows, got ${showValue(opts)}`);
  checkOptionNames(FN, opts, OPTION_KEYS);
  const [, H, W, C] = q.shape;
  const heads = positiveInt(opts.heads, 'heads');
  if (C % heads !== 0) throw new Error(`${FN}: opts.heads ${heads} does not divide the ${C} channels of q ${show(q.shape)}`);
  const rows = positiveInt(opts.rows, 'rows');
  const cols = positiveInt(opts.cols, 'cols');
  if (H % rows !== 0 || W % cols !== 0) throw new Error(`${FN}: opts.rows × opts.cols = ${rows} × ${cols} windows do not divide the ${H} × ${W} map of q ${show(q.shape)}`);
  if (!(WINDOWS as readonly unknown[]).includes(opts.windows)) throw new Error(`${FN}: opts.windows must be one of ${WINDOWS.join(', ')}, got ${showValue(opts.windows)}`);
  const scale = opts.scale ?? 1 / Math.sqrt(C / heads);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new Error(`${FN}: opts.scale must be a finite number, got ${showValue(opts.scale)}`);
  const layout = opts.layout ?? 'auto';
  if (!(['auto', ...ATTENTION_LAYOUTS] as string[]).includes(layout)) throw new Error(`${FN}: opts.layout must be one of auto, ${ATTENTION_LAYOUTS.join(', ')}, got ${showValue(layout)}`);
  const kernel = checkKernelChoice(FN, opts.kernel);
  return { heads, rows, cols, windows: opts.windows, scale, layout, kernel };
}

/** The kernel's tiles for this call, or why it cannot run it. */
function fusedPlan(q: Tensor4D, c: Checked): FlashAttentionTiles | string {
  const refusal = webgpuKernelRefusal();
  if (refusal) return refusal;
  const [B, H, W, C] = q.shape;
  return windowedAttentionPlan({ B, H, W, heads: c.heads, dk: C / c.heads, rows: c.rows, cols: c.cols });
}

/**
 * `softmax(q·kᵀ·scale)·v` within each window and head, read from and written to map order (see
 * the file comment). Inputs are validated up front; returns one new tensor `[B, H, W, heads·dk]`.
 */
export function windowAttention(q: Tensor4D, k: Tensor4D, v: Tensor4D, opts: WindowAttentionOptions): Tensor4D {
  const c = check(q, k, v, opts);
  if (c.kernel !== 'composition') {
    const tiles = fusedPlan(q, c);
    if (typeof tiles !== 'string') return windowedFlashAttention(q, k, v, c, tiles);
    if (c.kernel === 'fused') throw cannotFuse(FN, tiles);
  }
  const { heads, rows, cols, windows } = c;
  const [B, H, W, d] = q.shape;
  const [h, wd] = [H / rows, W / cols];
  const dk = d / heads;
  const N = B * rows * cols; // windows
  const t = h * wd; // tokens per window
  return tidy(() => {
    // [B, H, W, d] → [N, heads, t, dk] (or [N, heads, dk, t] for keys: batched matMuls with
    // transposeB run at half speed on tfjs-node); channel = head·dk + k.
    const toHeads = (map: Tensor4D, keys: boolean): Tensor4D => {
      const tiles = reshape(imageToTiles(map, windows, rows, cols, h, wd), [N, t, heads, dk]);
      return transpose(tiles, keys ? [0, 2, 3, 1] : [0, 2, 1, 3]) as Tensor4D;
    };
    // Scale folded into q (t·d multiplies instead of t·t).
    const qh = toHeads(mul(q, c.scale), false); // [N, heads, t, dk]
    const kT = toHeads(k, true); // [N, heads, dk, t]
    const vh = toHeads(v, false); // [N, heads, t, dk]
    const attended = attentionTransposedKeys(qh, kT, vh, { scale: 1, layout: c.layout }); // [N, heads, t, dk]
    const merged = reshape(transpose(attended, [0, 2, 1, 3]), [N, h, wd, d]) as Tensor4D;
    return tilesToImage(merged, windows, rows, cols); // [B, H, W, d]
  });
}
