/**
 * A preallocated KV cache: `[B, kvH, Smax, hd]` float32, of which the first `S` positions are
 * valid; each step writes its `T` new keys (values) at positions `[P, P + T)` and attends over the
 * first `P + T` (`attention(q, kCache, vCache, { causal: true, validKeys: P + T })`): no concat per
 * step, no slice.
 *
 * {@link kvCacheWrite} on webgpu writes IN PLACE (src/kernels/webgpu/kvCacheWrite.ts: the cache
 * tensor is mutated, nothing is allocated, positions outside `[P, P + T)` are untouched); the
 * composition (every backend, and webgpu with `kernel: 'composition'` or under a gradient tape)
 * builds a new tensor `concat([cache[:P], update, cache[P+T:]])`. Both return the cache holding the
 * write, so one calling pattern serves both:
 *
 *   const next = kvCacheWrite(cache, k, P);
 *   if (next !== cache) { cache.dispose(); cache = next; }
 *
 * A tensor that shares the cache's buffer (`cache.clone()`, a `reshape` of it: tfjs shares the data
 * of those) would see an in-place write, so `'auto'` writes in place only when no other tensor holds
 * the buffer, and takes the composition otherwise (the other tensor keeps its contents); `'fused'`
 * writes in place regardless. To keep a copy of a cache (a shared prompt prefix), make a real one
 * (`tf.add(cache, 0)`), not `clone()`.
 */
import { add, concat, engine, mul, slice, split, tidy, transpose, type Tensor, type Tensor2D, type Tensor4D } from '@tensorflow/tfjs-core';
import { cannotFuse, checkKernelChoice, webgpuKernelRefusal } from './kernelChoice.js';
import { checkOptionNames } from '../util/options.js';
import { kvCacheWriteInPlace, type KvUpdateLayout } from '../kernels/webgpu/kvCacheWrite.js';

export type { KvUpdateLayout } from '../kernels/webgpu/kvCacheWrite.js';

/** Options of {@link kvCacheWrite}. */
export interface KvCacheWriteOptions {
  /**
   * Layout of `update`: `'BHTD'` (default) `[B, kvH, T, hd]`, the cache's own; `'BTHD'`
   * `[B, T, kvH, hd]`, a k/v projection's output reshaped without the head transpose.
   */
  layout?: KvUpdateLayout;
  /**
   * Rotary embedding applied to `update` before it is written (LLaMA's keys): tables `[T, hd]` for
   * positions `P … P + T − 1`, `x·cos + rotate_half(x)·sinSigned`, with `sinSigned = cat(−sin, sin)`
   * (src/models/llama/rope.ts's `ropeTables`).
   */
  rope?: { cos: Tensor2D; sinSigned: Tensor2D };
  /**
   * `'auto'` (default): in place on webgpu while no gradient tape records and no other tensor
   * shares the cache's buffer (a clone or reshape of it), else the composition; `'fused'`: in place
   * (visible through such views too), or an error saying why not; `'composition'`: a new tensor
   * (every backend).
   */
  kernel?: 'auto' | 'fused' | 'composition';
}

const FN = 'kvCacheWrite';
const OPTION_KEYS = ['layout', 'rope', 'kernel'] as const;
const LAYOUTS = ['BHTD', 'BTHD'] as const;

const shapeOf = (t: Tensor) => `[${t.shape.join(', ')}]`;

function tensorArg(t: unknown, name: string, form: string, rank: number): Tensor {
  if (t === null || typeof t !== 'object' || !Array.isArray((t as Tensor).shape)) throw new Error(`${FN}: ${name} must be a float32 tensor ${form}, got ${t === null ? 'null' : typeof t}`);
  const x = t as Tensor;
  if (x.isDisposed) throw new Error(`${FN}: ${name} is a disposed tensor`);
  if (x.rank !== rank) throw new Error(`${FN}: ${name} must be ${form}, got shape ${shapeOf(x)}`);
  if (x.dtype !== 'float32') throw new Error(`${FN}: ${name} must be float32, got ${x.dtype}`);
  return x;
}

/**
 * Writes `update` (new keys or values of `T` positions) into `cache` `[B, kvH, Smax, hd]` at
 * positions `[position, position + T)`; `position + T > Smax` is an error. Returns the cache
 * holding the write: `cache` itself, mutated, on webgpu's in-place path; a new tensor from the
 * composition (then `cache` is unchanged and the caller disposes it when done). See the header.
 */
export function kvCacheWrite(cache: Tensor4D, update: Tensor4D, position: number, opts: KvCacheWriteOptions = {}): Tensor4D {
  if (opts === null || typeof opts !== 'object') throw new Error(`${FN}: opts must be an object, got ${JSON.stringify(opts)}`);
  checkOptionNames(FN, opts, OPTION_KEYS);
  const layout = opts.layout ?? 'BHTD';
  if (!(LAYOUTS as readonly string[]).includes(layout)) throw new Error(`${FN}: opts.layout must be one of ${LAYOUTS.join(', ')}, got ${JSON.stringify(layout)}`);
  const kernel = checkKernelChoice(FN, opts.kernel);
  tensorArg(cache, 'cache', '[B, kvH, Smax, hd]', 4);
  const form = layout === 'BHTD' ? '[B, kvH, T, hd]' : '[B, T, kvH, hd]';
  tensorArg(update, 'update', form, 4);
  if (update === cache) throw new Error(`${FN}: update must not be the cache itself`);
  const [B, H, Smax, hd] = cache.shape;
  const [uB, a, b, uD] = update.shape;
  const [uH, T] = layout === 'BHTD' ? [a, b] : [b, a];
  if (uB !== B || uH !== H || uD !== hd) throw new Error(`${FN}: update ${shapeOf(update)} (${form}) does not match the cache ${shapeOf(cache)} ([B, kvH, Smax, hd]) in B, kvH or hd`);
  if (T < 1) throw new Error(`${FN}: update has no positions (shape ${shapeOf(update)})`);
  if (!Number.isInteger(position) || position < 0) throw new Error(`${FN}: position must be a non-negative integer, got ${JSON.stringify(position)}`);
  if (position + T > Smax) throw new Error(`${FN}: position ${position} + ${T} new positions = ${position + T} exceeds the cache's ${Smax} positions (Smax)`);
  if (opts.rope !== undefined) {
    const r = opts.rope;
    if (r === null || typeof r !== 'object') throw new Error(`${FN}: opts.rope must be { cos, sinSigned }, got ${JSON.stringify(r)}`);
    for (const key of ['cos', 'sinSigned'] as const) {
      const t = tensorArg(r[key], `opts.rope.${key}`, `[T, hd] = [${T}, ${hd}]`, 2);
      if (t.shape[0] !== T || t.shape[1] !== hd) throw new Error(`${FN}: opts.rope.${key} must be [T, hd] = [${T}, ${hd}], got ${shapeOf(t)}`);
    }
    if (hd % 2 !== 0) throw new Error(`${FN}: the rotary embedding needs an even head width, got hd = ${hd}`);
  }

  const why = webgpuKernelRefusal('a gradient tape is recording (the in-place write has no gradient)');
  if (kernel === 'fused' && why) throw cannotFuse(FN, why);
  if (kernel === 'fused' || (kernel === 'auto' && !why && !sharedBuffer(cache))) {
    kvCacheWriteInPlace(cache, update, position, layout, opts.rope);
    return cache;
  }
  return composition(cache, update, position, layout, opts.rope);
}

/** Whether another tensor holds the cache's data (tfjs's clone and reshape share it; the backend counts them). */
function sharedBuffer(cache: Tensor): boolean {
  const backend = engine().backend as unknown as { refCount?(dataId: object): number };
  return (backend.refCount?.(cache.dataId) ?? 1) > 1;
}

/** The reference: rotate (tfjs ops, the same expression as llama.ts's applyRope), then slice, concat. One new tensor. */
function composition(cache: Tensor4D, update: Tensor4D, P: number, layout: KvUpdateLayout, rope?: { cos: Tensor2D; sinSigned: Tensor2D }): Tensor4D {
  return tidy(() => {
    let u = layout === 'BHTD' ? update : (transpose(update, [0, 2, 1, 3]) as Tensor4D);
    if (rope) {
      const [x1, x2] = split(u, 2, 3);
      u = add(mul(u, rope.cos), mul(concat([x2!, x1!], 3), rope.sinSigned)) as Tensor4D;
    }
    const [, , Smax] = cache.shape;
    const T = u.shape[2];
    const parts: Tensor4D[] = [];
    if (P > 0) parts.push(slice(cache, [0, 0, 0, 0], [-1, -1, P, -1]));
    parts.push(u);
    if (P + T < Smax) parts.push(slice(cache, [0, 0, P + T, 0], [-1, -1, Smax - P - T, -1]));
    return concat(parts, 2);
  });
}
