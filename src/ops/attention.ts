/**
 * One scaled dot-product attention for the whole library: LLaMA (prefill and cached decode),
 * CLIP's self-attention and the DEM's windowed cross-attention all call it.
 *
 *   out = softmax(q·kᵀ·scale + mask) · v      q [B, H, Tq, dk], k [B, Hkv, Tk, dk], v [B, Hkv, Tk, dv]
 *
 * Memory-bounded on every backend: when a chunk's score tensor would exceed
 * {@link AttentionOptions.oneShotMaxElements}, queries are taken in blocks and keys in blocks,
 * with an online softmax (running row max and sum, as FlashAttention) so that no intermediate
 * is O(Tq·Tk). Small problems run one-shot (one score tensor), which is faster there.
 *
 * Grouped-query attention without repeating k/v: query head h reads kv head ⌊h / rep⌋
 * (rep = H / Hkv), so the rep query heads of one kv head are contiguous and a kv head's
 * queries are the rows of one matrix: [B, H, Tq, dk] = [B·Hkv, rep·Tq, dk]. Everything below
 * works on those G = B·Hkv groups.
 *
 * Two implementations (`opts.kernel`): this composition of tfjs ops (every backend, the reference,
 * differentiable) and, on webgpu, one fused WGSL kernel (src/kernels/webgpu/flashAttention.ts:
 * tiles in workgroup memory, online softmax, split-K for decode), used by default there while no
 * gradient tape is recording — the kernel has no gradient, so under tf.grad the composition runs.
 */
import {
  add,
  concat,
  dispose,
  div,
  exp,
  getBackend,
  matMul,
  max,
  maximum,
  mul,
  reshape,
  slice,
  sub,
  sum,
  tensor2d,
  tidy,
  transpose,
  type Tensor,
  type Tensor2D,
  type Tensor4D,
} from '@tensorflow/tfjs-core';
import { cannotFuse, checkKernelChoice, webgpuKernelRefusal } from './kernelChoice.js';
import { checkOptionNames } from '../util/options.js';
import { flashAttention, flashAttentionPlan, type FlashAttentionPlan } from '../kernels/webgpu/flashAttention.js';
import { webgpuLimits } from '../kernels/webgpu/program.js';

/**
 * How independent attention problems are grouped into calls:
 * - `'batched'`: every batch item and head in one batched matMul;
 * - `'per-window'`: one batch item (a DEM window, a CLIP image) at a time, its heads batched;
 * - `'per-head'`: one kv head of one batch item at a time, as 2-D matMuls (for backends whose
 *   batched matMul is much slower than their 2-D one, like wasm);
 * - `'auto'`: the faster one for the active backend, as measured by `npm run bench` (bench/NOTES.md).
 */
export type AttentionLayout = 'auto' | 'batched' | 'per-window' | 'per-head';

/** Every concrete layout, for option checks and benchmarks. */
export const ATTENTION_LAYOUTS = ['batched', 'per-window', 'per-head'] as const;

/**
 * Measured choice per backend for problems of at least 256 × 256 (bench/NOTES.md); smaller
 * ones, and backends not listed, use `'batched'`. tensorflow: per-window is as fast as batched
 * at the DEM's official size (698 vs 693 ms) with a 10× smaller score buffer; wasm: its batched
 * matMul is ~10× slower than its 2-D one, so per-head wins (6.8 s vs 13.6 s).
 */
const LARGE_LAYOUT: Record<string, Exclude<AttentionLayout, 'auto'>> = {
  tensorflow: 'per-window',
  wasm: 'per-head',
};

/** The concrete layout `'auto'` stands for on the active backend, for `Tq × Tk` problems. */
export function resolveLayout(layout: AttentionLayout, tq: number, tk: number = tq): Exclude<AttentionLayout, 'auto'> {
  if (layout !== 'auto') return layout;
  return tq * tk >= 256 * 256 ? (LARGE_LAYOUT[getBackend()] ?? 'batched') : 'batched';
}

/**
 * Backends whose batched matMul with `transposeB` is much slower than without (tfjs-node:
 * 30 vs ~100 GFLOP/s on the DEM's shapes; wasm: 2.3 vs 31 GFLOP/s, bench/NOTES.md): keys are
 * transposed once to `[.., dk, Tk]` there when the query side has enough rows to matter.
 */
const TRANSPOSE_KEYS_ON: ReadonlySet<string> = new Set(['tensorflow', 'wasm']);

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Query `i` attends to keys `j ≤ Tk − Tq + i` (the queries are the last Tq positions). Default false. */
  causal?: boolean;
  /** Multiplies q·kᵀ. Default `1 / √dk`. */
  scale?: number;
  /** How batch items and heads are grouped into calls (default `'auto'`). */
  layout?: AttentionLayout;
  /**
   * `'auto'` (default): one-shot when a call's score tensor has at most
   * {@link AttentionOptions.oneShotMaxElements} elements, else blocked. `'one-shot'` /
   * `'blocked'` force one (tests, benchmarks).
   */
  method?: 'auto' | 'one-shot' | 'blocked';
  /**
   * Largest score tensor of one call (all the heads it computes together: every head for
   * `'batched'`, one batch item's for `'per-window'`, one kv head's group for `'per-head'`) computed
   * in one piece (default 2^23 elements: 32 MiB of float32; CLIP ViT-L's 16 heads of 577² fit). One head's `Tq × Tk` above 2^19
   * elements is always blocked.
   */
  oneShotMaxElements?: number;
  /** Blocked: elements of one block's scores over the call's heads (default 2^19: 2 MiB); at most 2^17 per head. */
  blockElements?: number;
  /** Blocked: queries per block (default: as many as `blockElements` allows). */
  queryBlock?: number;
  /** Blocked: keys per block (default `min(Tk, 1024)`). */
  keyBlock?: number;
  /**
   * Which implementation runs:
   * - `'auto'` (default): the fused WGSL kernel on webgpu when it takes the shapes (head widths
   *   ≤ 256, a tile fits the device's workgroup memory), no gradient tape is recording and no
   *   composition option (`layout`/`method` other than `'auto'`, `oneShotMaxElements`,
   *   `blockElements`, `queryBlock`, `keyBlock`) is given; the composition otherwise;
   * - `'fused'`: the fused kernel, or an error saying why it cannot run (not webgpu, under
   *   tf.grad, unsupported shapes, composition options given);
   * - `'composition'`: the tfjs-op composition (one-shot or blocked), differentiable, every backend.
   */
  kernel?: 'auto' | 'fused' | 'composition';
  /**
   * Fused kernel: key chunks per query block (split-K, merged by a second small kernel); 1 turns
   * split-K off. Default: automatic (split only when there are ≤ 2 query blocks per kv head and
   * too few workgroups to fill the GPU, e.g. a decode step). Ignored by the composition.
   */
  keySplits?: number;
  /**
   * Attend to the first `validKeys` keys only (default: all `Tk`): k and v may be a preallocated
   * KV cache `[B, Hkv, Smax, d]` whose first `S = validKeys` positions are filled
   * (src/ops/kvCache.ts). Causal masking then places the queries at the last `Tq` of those `S`
   * positions (query `i` sees keys `j ≤ S − Tq + i`). The fused kernel reads the valid prefix in
   * place (the buffer's length is only its row stride); the composition slices it first.
   */
  validKeys?: number;
}

const DEFAULT_ONE_SHOT_MAX = 1 << 23;
const DEFAULT_BLOCK_ELEMENTS = 1 << 19;
const DEFAULT_KEY_BLOCK = 1024;
/** One head's score matrix is computed whole only up to this many elements (2 MiB: ~724²)… */
const HEAD_ONE_SHOT_MAX = 1 << 19;
/** …and one head's block of scores holds at most this many (512 KiB: 128 queries × 1024 keys). */
const HEAD_BLOCK_MAX = 1 << 17;
/** Added to masked scores: exp(−1e30 − max) is exactly 0 in float32, and no inf − inf NaN. */
const MASKED = -1e30;

const FN = 'attention';

function positiveInt(v: unknown, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${FN}: opts.${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

interface Checked {
  B: number;
  H: number;
  Hkv: number;
  Tq: number;
  /** Keys attended to (opts.validKeys, default all). */
  Tk: number;
  /** Keys k and v hold (≥ Tk). */
  keyStride: number;
  dk: number;
  dv: number;
  causal: boolean;
  scale: number;
  layout: AttentionLayout;
  method: 'auto' | 'one-shot' | 'blocked';
  oneShotMax: number;
  blockElements: number;
  queryBlock?: number;
  keyBlock?: number;
  kernel: 'auto' | 'fused' | 'composition';
  keySplits?: number;
  /** A composition-only option was given (then 'auto' means the composition). */
  compositionOptions: boolean;
}

const OPTION_KEYS = ['causal', 'scale', 'layout', 'method', 'oneShotMaxElements', 'blockElements', 'queryBlock', 'keyBlock', 'kernel', 'keySplits', 'validKeys'] as const;

function check(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions, keysTransposed: boolean): Checked {
  const kName = keysTransposed ? 'kT' : 'k';
  const tensorArg = (t: Tensor, name: string, form: string) => {
    if (t === null || typeof t !== 'object' || !Array.isArray((t as Tensor).shape)) throw new Error(`${FN}: ${name} must be a tensor ${form}, got ${t === null ? 'null' : typeof t}`);
    if (t.isDisposed) throw new Error(`${FN}: ${name} is a disposed tensor`);
    if (t.rank !== 4) throw new Error(`${FN}: ${name} must be ${form}, got shape ${JSON.stringify(t.shape)}`);
    if (t.dtype !== 'float32') throw new Error(`${FN}: ${name} must be float32, got ${t.dtype}`);
    if (t.size === 0) throw new Error(`${FN}: ${name} is empty (shape ${JSON.stringify(t.shape)})`);
  };
  tensorArg(q, 'q', '[B, H, Tq, dk]');
  tensorArg(k, kName, keysTransposed ? '[B, Hkv, dk, Tk]' : '[B, Hkv, Tk, dk]');
  tensorArg(v, 'v', '[B, Hkv, Tk, dv]');
  const [B, H, Tq, dk] = q.shape as [number, number, number, number];
  const [kB, Hkv, a, b] = k.shape as [number, number, number, number];
  const [kdk, keyStride] = keysTransposed ? [a, b] : [b, a];
  const [vB, vH, vT, dv] = v.shape as [number, number, number, number];
  const shapes = `q ${JSON.stringify(q.shape)}, ${kName} ${JSON.stringify(k.shape)}, v ${JSON.stringify(v.shape)}`;
  if (kB !== B || vB !== B) throw new Error(`${FN}: batch sizes differ: ${shapes}`);
  if (kdk !== dk) throw new Error(`${FN}: q and ${kName} have different head widths dk (${dk} vs ${kdk}): ${shapes}`);
  if (vH !== Hkv || vT !== keyStride) throw new Error(`${FN}: ${kName} and v must have the same kv heads and keys: ${shapes}`);
  if (H % Hkv !== 0) throw new Error(`${FN}: kv heads ${Hkv} must divide query heads ${H}: ${shapes}`);
  if (opts === null || typeof opts !== 'object') throw new Error(`${FN}: opts must be an object, got ${JSON.stringify(opts)}`);
  checkOptionNames(FN, opts, OPTION_KEYS);
  const validKeys = positiveInt(opts.validKeys, 'validKeys');
  if (validKeys !== undefined && validKeys > keyStride) throw new Error(`${FN}: opts.validKeys ${validKeys} exceeds the ${keyStride} keys ${kName} and v hold: ${shapes}`);
  const Tk = validKeys ?? keyStride;
  const causal = opts.causal ?? false;
  if (typeof causal !== 'boolean') throw new Error(`${FN}: opts.causal must be a boolean, got ${JSON.stringify(causal)}`);
  if (causal && Tk < Tq) throw new Error(`${FN}: causal attention needs at least as many keys as queries (the queries are the last Tq positions), got Tq ${Tq} and Tk ${Tk}`);
  const scale = opts.scale ?? 1 / Math.sqrt(dk);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new Error(`${FN}: opts.scale must be a finite number, got ${JSON.stringify(opts.scale)}`);
  const layout = opts.layout ?? 'auto';
  if (!(['auto', ...ATTENTION_LAYOUTS] as string[]).includes(layout)) throw new Error(`${FN}: opts.layout must be one of auto, ${ATTENTION_LAYOUTS.join(', ')}, got ${JSON.stringify(layout)}`);
  const method = opts.method ?? 'auto';
  if (!['auto', 'one-shot', 'blocked'].includes(method)) throw new Error(`${FN}: opts.method must be 'auto', 'one-shot' or 'blocked', got ${JSON.stringify(method)}`);
  const kernel = checkKernelChoice(FN, opts.kernel);
  const compositionOptions = layout !== 'auto' || method !== 'auto' || ['oneShotMaxElements', 'blockElements', 'queryBlock', 'keyBlock'].some((key) => (opts as Record<string, unknown>)[key] !== undefined);
  if (kernel === 'fused' && compositionOptions) throw new Error(`${FN}: opts.kernel 'fused' takes no composition option (layout, method other than 'auto', oneShotMaxElements, blockElements, queryBlock, keyBlock)`);
  return {
    B, H, Hkv, Tq, Tk, keyStride, dk, dv, causal, scale, layout, method, kernel, compositionOptions,
    keySplits: positiveInt(opts.keySplits, 'keySplits'),
    oneShotMax: positiveInt(opts.oneShotMaxElements, 'oneShotMaxElements') ?? DEFAULT_ONE_SHOT_MAX,
    blockElements: positiveInt(opts.blockElements, 'blockElements') ?? DEFAULT_BLOCK_ELEMENTS,
    queryBlock: positiveInt(opts.queryBlock, 'queryBlock'),
    keyBlock: positiveInt(opts.keyBlock, 'keyBlock'),
  };
}

/**
 * Scaled dot-product attention, `[B, H, Tq, dk] × [B, Hkv, Tk, dk] × [B, Hkv, Tk, dv] → [B, H, Tq, dv]`:
 * `softmax(q·kᵀ·scale + mask)·v`, grouped-query when `Hkv` divides `H` (query head `h` reads kv
 * head `⌊h / (H/Hkv)⌋`), causal on request (query `i` sees keys `j ≤ Tk − Tq + i`).
 *
 * Memory-bounded: above {@link AttentionOptions.oneShotMaxElements} score elements per call, it
 * runs in query × key blocks with an online softmax (no `[Tq, Tk]` intermediate); below, one-shot.
 * On webgpu it runs one fused kernel instead ({@link AttentionOptions.kernel}: no score tensor at
 * all), except while a gradient tape records: differentiable through the composition of tfjs ops
 * (`tf.grad` needs the gradients that `@tensorflow/tfjs` registers). Inputs are validated up
 * front; nothing is left behind.
 */
export function attention(q: Tensor4D, k: Tensor4D, v: Tensor4D, opts: AttentionOptions = {}): Tensor4D {
  const c = check(q, k, v, opts, false);
  const fused = fusedChoice(c);
  return fused ? flashAttention(q, k, v, { ...c, keysTransposed: false }, fused) : run(q, k, v, c, false);
}

/**
 * {@link attention} with the keys already laid out transposed, `kT: [B, Hkv, dk, Tk]` — for
 * callers whose head split can produce that layout for free (the DEM, CLIP).
 */
export function attentionTransposedKeys(q: Tensor4D, kT: Tensor4D, v: Tensor4D, opts: AttentionOptions = {}): Tensor4D {
  const c = check(q, kT, v, opts, true);
  const fused = fusedChoice(c);
  return fused ? flashAttention(q, kT, v, { ...c, keysTransposed: true }, fused) : run(q, kT, v, c, true);
}

/** The fused kernel's plan for this call, or why it cannot run it. */
function fusedPlan(c: Checked): FlashAttentionPlan | string {
  const refusal = webgpuKernelRefusal();
  if (refusal) return refusal;
  return flashAttentionPlan(c, webgpuLimits(), c.keySplits);
}

/** The fused plan when this call runs the fused kernel, null for the composition; throws for an impossible `kernel: 'fused'`. */
function fusedChoice(c: Checked): FlashAttentionPlan | null {
  if (c.kernel === 'composition' || (c.kernel === 'auto' && c.compositionOptions)) return null;
  const p = fusedPlan(c);
  if (typeof p !== 'string') return p;
  if (c.kernel === 'fused') throw cannotFuse(FN, p);
  return null;
}

/** What {@link attention} will do for these shapes on the active backend. */
export interface AttentionPlan {
  /** The implementation that runs: the fused webgpu kernel or the composition (the fields below describe the composition). */
  kernel: 'fused' | 'composition';
  /** The fused kernel's tiles, grid and split-K, when `kernel` is `'fused'`. */
  fused?: FlashAttentionPlan;
  layout: Exclude<AttentionLayout, 'auto'>;
  /** Heads computed together in one call. */
  callHeads: number;
  oneShot: boolean;
  /** Queries and keys per block (one-shot: Tq and Tk). */
  queryBlock: number;
  keyBlock: number;
}

function plan(c: Checked): AttentionPlan {
  const { B, H, Hkv, Tq, Tk } = c;
  const rep = H / Hkv;
  const headOneShot = Tq * Tk <= HEAD_ONE_SHOT_MAX;
  let layout = resolveLayout(c.layout, Tq, Tk);
  // 'auto' that would batch a problem too big for one piece: one batch item per call instead,
  // when that fits in one piece (a loop of one-shot calls beats small blocks over everything).
  if (c.layout === 'auto' && layout === 'batched' && B > 1 && B * H * Tq * Tk > c.oneShotMax && H * Tq * Tk <= c.oneShotMax && headOneShot) layout = 'per-window';
  const callHeads = layout === 'batched' || B * Hkv === 1 ? B * H : layout === 'per-window' ? H : rep;
  const oneShot = c.method === 'one-shot' || (c.method === 'auto' && callHeads * Tq * Tk <= c.oneShotMax && headOneShot);
  const keyBlock = oneShot ? Tk : Math.min(Tk, c.keyBlock ?? DEFAULT_KEY_BLOCK);
  const rowsFit = Math.min(Math.floor(c.blockElements / (callHeads * keyBlock)), Math.floor(HEAD_BLOCK_MAX / keyBlock));
  const queryBlock = oneShot ? Tq : Math.min(Tq, c.queryBlock ?? Math.max(1, rowsFit));
  return { kernel: 'composition', layout, callHeads, oneShot, queryBlock, keyBlock };
}

/** The plan {@link attention} follows for q `[B, H, Tq, dk]`, k `[B, Hkv, Tk, dk]`, v `[B, Hkv, Tk, dv]` (for tests and benchmarks). */
export function attentionPlan(qShape: readonly number[], kShape: readonly number[], vShape: readonly number[], opts: AttentionOptions = {}): AttentionPlan {
  const fake = (shape: readonly number[]) => ({ shape: [...shape], rank: shape.length, dtype: 'float32', size: shape.reduce((x, y) => x * y, 1), isDisposed: false }) as unknown as Tensor;
  const c = check(fake(qShape), fake(kShape), fake(vShape), opts, false);
  const fused = fusedChoice(c);
  const p = plan(c);
  return fused ? { ...p, kernel: 'fused', fused } : p;
}

function run(q: Tensor4D, k: Tensor4D, v: Tensor4D, c: Checked, keysTransposed: boolean): Tensor4D {
  const { B, H, Hkv, Tq, dv } = c;
  const rep = H / Hkv;
  const p = plan(c);
  const layout = p.layout;
  return tidy(() => {
    if (c.keyStride > c.Tk) {
      // The valid prefix of a preallocated cache.
      k = (keysTransposed ? slice(k, [0, 0, 0, 0], [-1, -1, -1, c.Tk]) : slice(k, [0, 0, 0, 0], [-1, -1, c.Tk, -1])) as Tensor4D;
      v = slice(v, [0, 0, 0, 0], [-1, -1, c.Tk, -1]) as Tensor4D;
    }
    let K = k;
    let kT = keysTransposed;
    if (!kT && rep * Tq >= 16 && TRANSPOSE_KEYS_ON.has(getBackend())) {
      K = transpose(k, [0, 1, 3, 2]);
      kT = true;
    }
    // Calls as [batch start, batch count, kv head start, kv head count]. Nothing is reshaped or
    // scaled as a whole: each query block is sliced (and scaled) on its own, so the only
    // full-size tensors alive are the inputs, the output and its pieces.
    const calls: Array<[number, number, number, number]> = [];
    if (layout === 'batched' || (layout === 'per-window' && B === 1) || B * Hkv === 1) calls.push([0, B, 0, Hkv]);
    else if (layout === 'per-window') for (let b = 0; b < B; b++) calls.push([b, 1, 0, Hkv]);
    else for (let b = 0; b < B; b++) for (let h = 0; h < Hkv; h++) calls.push([b, 1, h, 1]);
    if (calls.length === 1) return groups(q, K, kT, v, c, p);
    const outs = calls.map(([b0, nb, h0, nh]) =>
      tidy(() => groups(slice(q, [b0, h0 * rep, 0, 0], [nb, nh * rep, -1, -1]), slice(K, [b0, h0, 0, 0], [nb, nh, -1, -1]), kT, slice(v, [b0, h0, 0, 0], [nb, nh, -1, -1]), c, p)),
    );
    const joined = concat(outs, layout === 'per-window' ? 0 : 1); // per-head: [1, B·H, Tq, dv]
    dispose(outs);
    return (layout === 'per-window' ? joined : reshape(joined, [B, H, Tq, dv])) as Tensor4D;
  });
}

/** Additive causal mask of the block of queries `[q0, q0+nq)` × keys `[k0, k0+nk)`, or null when nothing in it is masked. */
function blockMask(c: Checked, q0: number, nq: number, k0: number, nk: number): Tensor2D | null {
  if (!c.causal) return null;
  const offset = c.Tk - c.Tq; // query i sees keys ≤ offset + i
  if (k0 + nk - 1 <= offset + q0) return null;
  const m = new Float32Array(nq * nk);
  for (let i = 0; i < nq; i++) {
    const firstMasked = Math.max(0, offset + q0 + i + 1 - k0);
    if (firstMasked < nk) m.fill(MASKED, i * nk + firstMasked, (i + 1) * nk);
  }
  return tensor2d(m, [nq, nk]);
}

/** Scores of query rows `Qb` `[b, h, rep·nq, dk]` against keys `[k0, k0+nk)`, masked: `[b, h, rep·nq, nk]`. */
function scores(Qb: Tensor4D, K: Tensor4D, kT: boolean, c: Checked, rep: number, q0: number, nq: number, k0: number, nk: number): Tensor4D {
  const [b, h] = Qb.shape;
  const Kb = keyRange(K, kT, k0, nk, c.Tk);
  const s = matMul(Qb, Kb, false, !kT) as Tensor4D; // [b, h, rep·nq, nk]
  if (Kb !== K) Kb.dispose();
  const mask = blockMask(c, q0, nq, k0, nk);
  if (!mask) return s;
  // Views count as memory too: each is disposed as soon as it is used, so one extra buffer lives.
  const s4 = reshape(s, [b * h, rep, nq, nk]);
  s.dispose();
  const masked4 = add(s4, mask);
  dispose([s4, mask]);
  const masked = reshape(masked4, [b, h, rep * nq, nk]) as Tensor4D;
  masked4.dispose();
  return masked;
}

/** Keys `[k0, k0+nk)` of K `[b, h, Tk, d]` (or `[b, h, d, Tk]` when transposed); K itself when that is all of them. */
function keyRange(K: Tensor4D, kT: boolean, k0: number, nk: number, Tk: number): Tensor4D {
  if (k0 === 0 && nk === Tk) return K;
  return kT ? slice(K, [0, 0, 0, k0], [-1, -1, -1, nk]) : slice(K, [0, 0, k0, 0], [-1, -1, nk, -1]);
}

/**
 * One call: q `[b, h·rep, Tq, dk]`, K `[b, h, Tk, dk]` (or `[b, h, dk, Tk]`), v `[b, h, Tk, dv]` →
 * `[b, h·rep, Tq, dv]`. One-shot is the single block `Tq × Tk`; otherwise queries in blocks,
 * each over the key blocks it can see (causal blocks above the diagonal are skipped).
 */
function groups(q: Tensor4D, K: Tensor4D, kT: boolean, v: Tensor4D, c: Checked, p: AttentionPlan): Tensor4D {
  const [b, hq, Tq, dk] = q.shape;
  const h = K.shape[1];
  const rep = hq / h;
  const { Tk, dv } = c;
  const { queryBlock: bq, keyBlock: bk } = p;
  const outs: Tensor4D[] = [];
  for (let q0 = 0; q0 < Tq; q0 += bq) {
    const nq = Math.min(bq, Tq - q0);
    const kEnd = c.causal ? Math.min(Tk, Tk - Tq + q0 + nq) : Tk;
    outs.push(
      tidy(() => {
        const rows = nq === Tq ? q : slice(q, [0, 0, q0, 0], [-1, -1, nq, -1]);
        const Qb = reshape(c.scale === 1 ? rows : mul(rows, c.scale), [b, h, rep * nq, dk]) as Tensor4D; // scale on q: nq·dk multiplies, not nq·nk
        return reshape(online(Qb, K, kT, v, c, rep, q0, nq, bk, kEnd), [b, hq, nq, dv]) as Tensor4D;
      }),
    );
  }
  if (outs.length === 1) return outs[0]!;
  const out = concat(outs, 2);
  dispose(outs);
  return out;
}

/**
 * Online softmax over key blocks (FlashAttention's recurrence) for rows `[b, h, r, ·]`; the
 * normalisation divides the `[r, dv]` output, not the `[r, nk]` probabilities:
 *   m' = max(m, rowmax(s)),  l' = l·e^(m−m') + Σ e^(s−m'),  acc' = acc·e^(m−m') + e^(s−m')·v;  out = acc / l.
 * The first block holds key 0, which every query sees, so m is finite from the first block on.
 */
function online(Qb: Tensor4D, K: Tensor4D, kT: boolean, V: Tensor4D, c: Checked, rep: number, q0: number, nq: number, bk: number, kEnd: number): Tensor {
  let m: Tensor | null = null; // [b, h, r, 1]
  let l: Tensor | null = null; // [b, h, r, 1]
  let acc: Tensor | null = null; // [b, h, r, dv]
  for (let k0 = 0; k0 < kEnd; k0 += bk) {
    const nk = Math.min(bk, kEnd - k0);
    const [m1, l1, acc1] = tidy(() => {
      // Each [b, h, r, nk] buffer is freed as soon as the next exists: at most two are alive.
      const s = scores(Qb, K, kT, c, rep, q0, nq, k0, nk);
      const mb = max(s, -1, true);
      const mNew = m ? maximum(m, mb) : mb;
      const shifted = sub(s, mNew);
      s.dispose();
      const p = exp(shifted);
      shifted.dispose();
      const Vb = keyRange(V, false, k0, nk, c.Tk);
      const pv = matMul(p, Vb); // [b, h, r, dv]
      const ps = sum(p, -1, true);
      p.dispose();
      if (!m) return [mNew, ps, pv];
      const corr = exp(sub(m, mNew));
      return [mNew, add(mul(l!, corr), ps), add(mul(acc!, corr), pv)];
    });
    dispose([m, l, acc].filter((t): t is Tensor => t !== null));
    [m, l, acc] = [m1!, l1!, acc1!];
  }
  const out = div(acc!, l!);
  dispose([m!, l!, acc!]);
  return out;
}
