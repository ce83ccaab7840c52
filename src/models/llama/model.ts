/**
 * LLaMA, as Hugging Face's `LlamaForCausalLM` computes it: the language model of LLaVA and
 * INF-LLaVA (LLaMA-3-8B-Instruct: 32 layers of width 4096, 32 query heads sharing 8 key/value
 * heads, SwiGLU MLP of width 14336, vocabulary 128256).
 *
 *   ids [B, T] → embed_tokens → x [B, T, d]          (or inputsEmbeds [B, T, d]: visual tokens spliced in)
 *   for each layer (pre-norm; ./layer.ts):
 *     h = rmsNorm(x)                                   input_layernorm
 *     q = rope(q_proj(h))       [B, H,   T, hd]
 *     k = rope(k_proj(h))       [B, kvH, T, hd]  → appended to the cache: [B, kvH, P+T, hd]
 *     v = v_proj(h)             [B, kvH, T, hd]  → appended to the cache
 *     x = x + o_proj(attention(q, k, v, causal))       (ops/attention: each kv head serves H/kvH query heads; blocked for long prompts)
 *     x = x + down_proj(silu(gate_proj(h2)) · up_proj(h2)),  h2 = rmsNorm(x)   post_attention_layernorm
 *   logits = lm_head(rmsNorm(x))   [B, T, V]           norm; lm_head tied to embed_tokens if asked
 *
 * Each projection holds its weight in one residency (./projection.ts): float32 tensors, a
 * LazyWeights store decoded per block or multiplied in place by the CPU GEMV, or packed tensors
 * resident on webgpu. The embedding gathers only the prompt's rows.
 */
import { cast, dispose, engine, gather, getBackend, reshape, slice, tensor1d, tidy, type Tensor, type Tensor2D, type Tensor3D, type Tensor4D } from '@tensorflow/tfjs-core';
import { rmsNorm } from '../../ops/rmsNorm.js';
import type { QuantFormat } from '../../quant/groups.js';
import type { LlamaConfig } from './config.js';
import { decoderLayer } from './layer.js';
import { storedBytes, type Projection } from './projection.js';
import { llamaRopeInvFreq, ropeTables } from './rope.js';
import { LAYER_PROJECTIONS, type LlamaWeights } from './weights.js';

/** What {@link Llama.forward} takes: token ids or embeddings, and optionally a cache to extend. */
export interface LlamaForwardInput {
  /**
   * `[B, T]` token ids in `[0, V)`. A Tensor2D is read back synchronously for a lazy embedding
   * (on webgpu in Node that works only for tensors made from CPU values: prefer `number[][]`).
   */
  inputIds?: number[][] | Tensor2D;
  /** `[B, T, d]` float32 embeddings (e.g. prompt embeddings with visual tokens spliced in); not disposed. */
  inputsEmbeds?: Tensor3D;
  /** Positions already seen; consumed (see {@link KVCache}). New positions start at `cache.length`. */
  cache?: KVCache;
  /** Logits only for the last `n` positions (transformers' `logits_to_keep`; default 0: all). */
  logitsToKeep?: number;
  /**
   * webgpu: positions a new cache (no `cache` given) is preallocated for, e.g. prompt + answer
   * length; later steps write in place until it is full, then it doubles. Default: the input's
   * length. Ignored elsewhere.
   */
  cacheCapacity?: number;
}

/** A loaded LLaMA. */
export interface Llama {
  readonly config: LlamaConfig;
  /** `[B, T]` ids → `[B, T, d]` embeddings (embed_tokens rows; a new tensor, the caller's). */
  embed(ids: number[][] | Tensor2D): Tensor3D;
  /**
   * Causal LM forward over new positions `[P, P + T)` (`P = cache.length`, 0 without a cache):
   * `logits` `[B, T (or logitsToKeep), V]`, and the cache extended by the `T` new positions.
   * The given cache is consumed (disposed on return, or on an error once the forward has begun).
   */
  forward(input: LlamaForwardInput): { logits: Tensor3D; cache: KVCache };
  /** The bytes the model's weights take, as held (packed, checkpoint bytes or float32 tensors). */
  weightBytes(): LlamaWeightBytes;
  /** Frees the model's tensors (and the bytes of a store that `loadLlama` made). */
  dispose(): void;
}

/** What {@link Llama.weightBytes} reports, in bytes. */
export interface LlamaWeightBytes {
  /** All of the below. */
  total: number;
  /** The linear weights (decoder projections, and lm_head unless tied): q8 / q4 code words, or checkpoint bytes, or float32. */
  linear: number;
  /** Their float32 scales and mins (q8, q4; else 0). */
  scales: number;
  /** embed_tokens as held (its checkpoint dtype; a tied lm_head is counted here only). */
  embedding: number;
  /** Norms and biases (float32). */
  other: number;
  /** The quantised format of the linear weights, if any. */
  quantized?: QuantFormat;
}

/**
 * Keys and values of the positions seen so far, per layer `[B, kvH, length, hd]` (keys after
 * rotary embedding, as transformers' `DynamicCache`).
 *
 * Ownership: {@link Llama.forward} *consumes* the cache it is given — it returns a new cache
 * holding old + new positions and disposes the old one's tensors — so a generation loop is
 * `({ logits, cache } = llm.forward({ inputIds: [[next]], cache }))` with no leak. To keep a
 * cache (e.g. a shared prompt prefix) for reuse, pass `cache.clone()` instead. Dispose the last
 * cache when done.
 *
 * On webgpu the tensors are preallocated for `capacity ≥ length` positions and each step writes
 * its keys and values in place (src/kernels/webgpu/kvCacheWrite.ts, RoPE applied on the way):
 * attention reads the first `length` positions, nothing is concatenated. A cache whose buffers
 * are shared (a clone) is copied before the write, so clones stay intact. Elsewhere
 * `capacity === length`.
 */
export interface KVCache {
  /** Positions held (`P`); the next token's position. */
  readonly length: number;
  /** Positions the tensors hold room for (`≥ length`; the first `length` are valid). */
  readonly capacity: number;
  /** Per layer, `[B, kvH, capacity, hd]`. */
  readonly keys: Tensor4D[];
  readonly values: Tensor4D[];
  dispose(): void;
  /** An independent copy (shares data until either is disposed; no memory copied). */
  clone(): KVCache;
}

class LlamaKVCache implements KVCache {
  constructor(
    readonly keys: Tensor4D[],
    readonly values: Tensor4D[],
    readonly length: number,
    readonly capacity = length,
  ) {}

  dispose(): void {
    dispose(this.keys);
    dispose(this.values);
  }

  clone(): KVCache {
    const view = (t: Tensor4D) => reshape(t, t.shape) as Tensor4D;
    return new LlamaKVCache(this.keys.map(view), this.values.map(view), this.length, this.capacity);
  }
}

export class LlamaModel implements Llama {
  private w: LlamaWeights | null;
  private readonly invFreq: Float32Array;

  /** `owned`: the tensors the model made (disposed with it); `ownStore`: the store is the model's too. */
  constructor(
    readonly config: LlamaConfig,
    weights: LlamaWeights,
    private readonly owned: Tensor[],
    private readonly ownStore: boolean,
  ) {
    this.w = weights;
    this.invFreq = llamaRopeInvFreq(config);
  }

  private weights(fn: string): LlamaWeights {
    if (!this.w) throw new Error(`${fn}: the model has been disposed`);
    return this.w;
  }

  /** Validated `[B, T]` ids as rows of numbers (reads a tensor synchronously). */
  private idRows(ids: number[][] | Tensor2D, fn: string): { flat: Int32Array; B: number; T: number } {
    const V = this.config.vocabSize;
    let B: number;
    let T: number;
    let flat: Int32Array;
    if (Array.isArray(ids)) {
      B = ids.length;
      T = Array.isArray(ids[0]) ? ids[0].length : 0;
      if (B === 0 || T === 0 || !ids.every((row) => Array.isArray(row) && row.length === T)) {
        throw new Error(`${fn}: ids must be a non-empty rectangular [B, T] array of token ids`);
      }
      flat = Int32Array.from(ids.flat());
      for (let i = 0; i < flat.length; i++) {
        const v = ids[Math.floor(i / T)]![i % T]!;
        if (!Number.isInteger(v) || v < 0 || v >= V) throw new Error(`${fn}: token id ${JSON.stringify(v)} at [${Math.floor(i / T)}, ${i % T}] is outside [0, ${V})`);
      }
    } else {
      if (ids?.rank !== 2 || ids.shape[0] < 1 || ids.shape[1] < 1) throw new Error(`${fn}: ids must be [B, T], got ${JSON.stringify(ids?.shape)}`);
      [B, T] = ids.shape;
      const vals = ids.dataSync();
      flat = Int32Array.from(vals);
      for (let i = 0; i < flat.length; i++) {
        if (flat[i] !== vals[i] || flat[i]! < 0 || flat[i]! >= V) throw new Error(`${fn}: token id ${vals[i]} at flat index ${i} is outside [0, ${V})`);
      }
    }
    return { flat, B, T };
  }

  embed(ids: number[][] | Tensor2D): Tensor3D {
    const fn = 'Llama.embed';
    const w = this.weights(fn);
    const d = this.config.hiddenSize;
    const table = w.embed.table;
    if (table && !Array.isArray(ids)) {
      // Resident table and ids on the device: gather there (no read-back). Out-of-range ids are the backend's.
      if (ids?.rank !== 2) throw new Error(`${fn}: ids must be [B, T], got ${JSON.stringify(ids?.shape)}`);
      return tidy(() => reshape(gather(table, ids.dtype === 'int32' ? ids : cast(ids, 'int32'), 0), [ids.shape[0], ids.shape[1], d]));
    }
    const { flat, B, T } = this.idRows(ids, fn);
    if (table) return tidy(() => reshape(gather(table, tensor1d(flat, 'int32'), 0), [B, T, d]));
    return tidy(() => reshape(w.store!.gatherRows(w.embed.name, flat), [B, T, d]));
  }

  forward(input: LlamaForwardInput): { logits: Tensor3D; cache: KVCache } {
    const fn = 'Llama.forward';
    const w = this.weights(fn);
    const c = this.config;
    if (!input || typeof input !== 'object') throw new Error(`${fn}: expected { inputIds } or { inputsEmbeds }`);
    const { inputIds, inputsEmbeds, cache } = input;
    if ((inputIds === undefined) === (inputsEmbeds === undefined)) throw new Error(`${fn}: pass exactly one of inputIds and inputsEmbeds`);
    const d = c.hiddenSize;
    const L = c.numHiddenLayers;
    const kvH = c.numKeyValueHeads;
    const hd = c.headDim;
    if (inputsEmbeds !== undefined) {
      if (inputsEmbeds?.rank !== 3 || inputsEmbeds.shape[2] !== d || inputsEmbeds.shape[0] < 1 || inputsEmbeds.shape[1] < 1) {
        throw new Error(`${fn}: inputsEmbeds must be [B, T, ${d}], got ${JSON.stringify(inputsEmbeds?.shape)}`);
      }
      if (inputsEmbeds.dtype !== 'float32') throw new Error(`${fn}: inputsEmbeds must be float32, got ${inputsEmbeds.dtype}`);
    }
    const keep = input.logitsToKeep ?? 0;
    if (!Number.isInteger(keep) || keep < 0) throw new Error(`${fn}: logitsToKeep must be a non-negative integer, got ${keep}`);
    const P = cache ? cache.length : 0;
    const capacity = cache ? (cache.capacity ?? P) : 0;
    const newCapacity = input.cacheCapacity;
    if (newCapacity !== undefined && (!Number.isInteger(newCapacity) || newCapacity < 1)) throw new Error(`${fn}: cacheCapacity must be a positive integer, got ${newCapacity}`);
    if (cache) {
      if (!Array.isArray(cache.keys) || !Array.isArray(cache.values) || cache.keys.length !== L || cache.values.length !== L) {
        throw new Error(`${fn}: cache must hold keys and values for ${L} layers`);
      }
      if (!Number.isInteger(P) || P < 0) throw new Error(`${fn}: cache.length must be a non-negative integer, got ${P}`);
      if (!Number.isInteger(capacity) || capacity < P) throw new Error(`${fn}: cache.capacity must be an integer ≥ its length ${P}, got ${capacity}`);
      for (const t of [...cache.keys, ...cache.values]) {
        if (!t || t.isDisposed) throw new Error(`${fn}: the cache has been disposed (forward() consumes the cache it is given; pass cache.clone() to keep one)`);
        if (t.rank !== 4 || t.shape[1] !== kvH || t.shape[2] !== capacity || t.shape[3] !== hd) {
          throw new Error(`${fn}: cache tensors must be [B, ${kvH}, ${capacity}, ${hd}] (capacity ${capacity}), got ${JSON.stringify(t.shape)}`);
        }
      }
    }

    // x: [B, T, d]. Embeddings from ids are ours to dispose; inputsEmbeds stays the caller's.
    let x: Tensor3D = inputsEmbeds ?? this.embed(inputIds!);
    const [B, T] = x.shape;
    if (cache && cache.keys[0]!.shape[0] !== B) {
      if (x !== inputsEmbeds) x.dispose();
      throw new Error(`${fn}: batch ${B} does not match the cache's batch ${cache.keys[0]!.shape[0]}`);
    }
    const rope = ropeTables(this.invFreq, P, T);
    const keys: Tensor4D[] = [];
    const values: Tensor4D[] = [];
    // webgpu: a preallocated cache written in place; it grows (doubling) only when full.
    const inPlace = getBackend() === 'webgpu' && !engine().isTapeOn();
    const room = !inPlace ? P + T : P + T <= capacity && cache ? capacity : Math.max(P + T, newCapacity ?? 0, cache ? 2 * capacity : 0);
    try {
      for (let i = 0; i < L; i++) {
        const layer = w.layers[i]!;
        const past = cache ? { k: cache.keys[i]!, v: cache.values[i]! } : undefined;
        const [y, k, v] = tidy(() => decoderLayer(x, layer, c, rope, { past, P, room, inPlace }));
        if (x !== inputsEmbeds) x.dispose();
        x = y as Tensor3D;
        keys.push(k as Tensor4D);
        values.push(v as Tensor4D);
        // Consumed: release layer by layer (unless written in place: then it is the new cache).
        if (past) dispose([past.k, past.v].filter((t) => t !== k && t !== v));
      }
      const last = keep > 0 && keep < T ? keep : T;
      const h = x;
      const logits = tidy(() => this.head(last === T ? h : (slice(h, [0, T - last, 0], [-1, last, -1]) as Tensor3D)));
      return { logits, cache: new LlamaKVCache(keys, values, P + T, keys[0]!.shape[2]) };
    } catch (e) {
      dispose(keys);
      dispose(values);
      cache?.dispose();
      throw e;
    } finally {
      if (x !== inputsEmbeds) x.dispose();
      dispose([rope.cos, rope.sinSigned]);
    }
  }

  /** Final norm and lm_head: [B, T, d] → [B, T, V] (lazy: in blocks of vocabulary rows). */
  private head(x: Tensor3D): Tensor3D {
    const w = this.w!;
    return w.lmHead.apply(rmsNorm(x, w.norm, this.config.rmsNormEps));
  }

  weightBytes(): LlamaWeightBytes {
    const w = this.weights('Llama.weightBytes');
    const out: LlamaWeightBytes = { total: 0, linear: 0, scales: 0, embedding: 0, other: 0 };
    const linear = (p: Projection) => {
      const m = p.bytes();
      out.linear += m.data;
      out.scales += m.scales;
      if (m.format) out.quantized = m.format;
      if (p.bias) out.other += 4 * p.bias.size;
    };
    for (const l of w.layers) {
      for (const key of LAYER_PROJECTIONS) linear(l[key]);
      out.other += 4 * (l.inputNorm.size + l.postNorm.size);
    }
    out.other += 4 * w.norm.size;
    const e = w.embed.table ? { data: 4 * w.embed.table.size, scales: 0 } : storedBytes(w.store!, w.embed.name);
    out.embedding = e.data + e.scales;
    if (!w.tied) linear(w.lmHead);
    out.total = out.linear + out.scales + out.embedding + out.other;
    return out;
  }

  dispose(): void {
    const w = this.w;
    if (!w) return;
    this.w = null;
    dispose(this.owned);
    this.owned.length = 0;
    if (this.ownStore) w.store?.dispose();
  }
}
