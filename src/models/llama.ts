/**
 * LLaMA, as Hugging Face's `LlamaForCausalLM` computes it, with its weight names: the language
 * model of LLaVA and INF-LLaVA (LLaMA-3-8B-Instruct: 32 layers of width 4096, 32 query heads
 * sharing 8 key/value heads, SwiGLU MLP of width 14336, vocabulary 128256).
 *
 *   ids [B, T] → embed_tokens → x [B, T, d]          (or inputsEmbeds [B, T, d]: visual tokens spliced in)
 *   for each layer (pre-norm):
 *     h = rmsNorm(x)                                   input_layernorm
 *     q = rope(q_proj(h))       [B, H,   T, hd]
 *     k = rope(k_proj(h))       [B, kvH, T, hd]  → appended to the cache: [B, kvH, P+T, hd]
 *     v = v_proj(h)             [B, kvH, T, hd]  → appended to the cache
 *     x = x + o_proj(attention(q, k, v, causal))       (ops/attention: each kv head serves H/kvH query heads; blocked for long prompts)
 *     x = x + down_proj(silu(gate_proj(h2)) · up_proj(h2)),  h2 = rmsNorm(x)   post_attention_layernorm
 *   logits = lm_head(rmsNorm(x))   [B, T, V]           norm; lm_head tied to embed_tokens if asked
 *
 * Weights (under an optional prefix; INF-LLaVA checkpoints use these same names):
 *   model.embed_tokens.weight                        [V, d]
 *   model.layers.i.input_layernorm.weight            [d]
 *   model.layers.i.self_attn.{q,k,v,o}_proj.weight   [H·hd, d], [kvH·hd, d], [kvH·hd, d], [d, H·hd]  (+ .bias if attention_bias)
 *   model.layers.i.post_attention_layernorm.weight   [d]
 *   model.layers.i.mlp.{gate,up,down}_proj.weight    [I, d], [I, d], [d, I]                        (+ .bias if mlp_bias)
 *   model.norm.weight                                [d]
 *   lm_head.weight                                   [V, d]  (absent, or ignored, when tied)
 *
 * Two weight residencies: float32 tfjs tensors (`llamaFromTensors(record)`), or a
 * {@link LazyWeights} store of checkpoint bytes (bf16 for LLaMA-3-8B: 16 GB instead of 32). From
 * the store, each matrix is decoded to float32 in blocks of rows just before their matMul and
 * disposed just after (prompts); inputs of a few rows (decode steps) are multiplied directly on
 * the bf16 bytes by a WebAssembly SIMD kernel; the embedding gathers only the prompt's rows.
 * Norms (1-D) are decoded once and held. See {@link loadLlama} for the numbers. With
 * `quantize: 'q8' | 'q4'` the store holds the linear weights packed instead
 * (docs/quantization.md), dequantised per block the same way and multiplied in place by the SIMD
 * gemv in decode steps.
 */
import {
  add,
  cast,
  concat,
  getBackend,
  dispose,
  gather,
  mul,
  reshape,
  slice,
  tensor,
  tensor1d,
  tensor2d,
  tidy,
  zeros,
  backend,
  engine,
  type DataId,
  transpose,
  type Tensor,
  type Tensor1D,
  type Tensor2D,
  type Tensor3D,
  type Tensor4D,
} from '@tensorflow/tfjs-core';
import { loadSafetensors } from '../io/loadSafetensors.js';
import { throwIfMismatch } from '../io/nameCheck.js';
import { attention } from '../ops/attention.js';
import { kvCacheWrite } from '../ops/kvCache.js';
import { packedLinear, type PackedLinear } from '../ops/packedLinear.js';
import { rmsNorm } from '../ops/rmsNorm.js'; // x · rsqrt(mean(x²) + eps) · w: one kernel on webgpu
import { linear, linearEpilogue, type LinearOptions } from '../ops/linear.js';
import { ConfigReader, isJsonObject, readConfigJson, type JsonObject } from './config.js';
import { LazyWeights, isLazyWeights, listSafetensorsEntries, loadSafetensorsRaw } from './llamaWeights.js';
import { toDirectory, type CheckpointSource } from '../io/source.js';
import { checkOptionNames } from '../util/options.js';
import { checkQuantizeOption, type QuantFormat } from '../quant/groups.js';

// ---------------------------------------------------------------------------------------
// Config

/** Rotary frequency scaling (Hugging Face `rope_type`). */
export type LlamaRopeScaling =
  | { type: 'default' }
  /** Positions divided by `factor` (all frequencies divided by it). */
  | { type: 'linear'; factor: number }
  /** LLaMA-3.1's: low frequencies divided by `factor`, high ones kept, a smooth ramp between. */
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

/** A LLaMA's shape (Hugging Face `LlamaConfig`, camel-cased). */
export interface LlamaConfig {
  /** `V` (LLaMA-3: 128256). */
  vocabSize: number;
  /** Width `d` (8B: 4096). */
  hiddenSize: number;
  /** MLP width `I` (8B: 14336). */
  intermediateSize: number;
  /** Decoder layers (8B: 32). */
  numHiddenLayers: number;
  /** Query heads `H` (8B: 32). */
  numAttentionHeads: number;
  /** Key/value heads `kvH` (8B: 8); divides `H`. */
  numKeyValueHeads: number;
  /** Per-head width `hd` (default `d / H`; 8B: 128); even. */
  headDim: number;
  /** RMSNorm epsilon (LLaMA-3: 1e-5; transformers' default 1e-6). */
  rmsNormEps: number;
  /** Rotary base (LLaMA-3: 500000; default 10000). */
  ropeTheta: number;
  ropeScaling: LlamaRopeScaling;
  /** Informational (positions beyond it still work, as in transformers). */
  maxPositionEmbeddings: number;
  /** lm_head shares embed_tokens' weight. */
  tieWordEmbeddings: boolean;
  /** q/k/v/o projections have biases. */
  attentionBias: boolean;
  /** gate/up/down projections have biases. */
  mlpBias: boolean;
  /** From the checkpoint's config (never a constant; see docs/spec.md "Reading Hugging Face configs"). */
  bosTokenId?: number;
  /** `eos_token_id` as a list (a single id becomes `[id]`; none: `[]`). */
  eosTokenIds: number[];
  padTokenId?: number;
}

const FN_CONFIG = 'llamaConfigFromJson';

function optionalId(r: ConfigReader, key: string): number | undefined {
  return r.has(key) ? r.int(key, 0, 0) : undefined;
}

function bool(json: JsonObject, key: string, fallback: boolean, where: string): boolean {
  const v = Object.prototype.hasOwnProperty.call(json, key) ? json[key] : undefined;
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw new Error(`${where}: "${key}" must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Reads a LLaMA config from a parsed Hugging Face `config.json`: a `LlamaConfig` (fields at
 * the top level; LLaVA / INF-LLaVA `llava_llama` configs too) or a config with a `text_config`
 * object (Hugging Face LLaVA). Missing fields take transformers' `LlamaConfig` defaults.
 *
 * Rotary parameters are read where either transformers writes them: `rope_theta` and
 * `rope_scaling` at the top level (4.x, e.g. Meta's LLaMA-3 / 3.1 configs; `rope_scaling.type`
 * or `.rope_type`), or `rope_parameters` (≥ 5: `{rope_type, rope_theta, factor, ...}`), the
 * latter winning a key both define. Supported types: `default`, `linear`, `llama3` (its
 * `original_max_position_embeddings` defaults to `max_position_embeddings`, as transformers);
 * others (`dynamic`, `yarn`, …) and `partial_rotary_factor` ≠ 1 are refused with an error.
 */
export function llamaConfigFromJson(json: object): LlamaConfig {
  const fn = FN_CONFIG;
  if (!isJsonObject(json)) throw new Error(`${fn}: expected a parsed config.json object, got ${JSON.stringify(json)}`);
  const nested = new ConfigReader(json, fn).object('text_config');
  const src = nested ?? json;
  const where = nested ? `${fn}: text_config` : fn;
  const r = new ConfigReader(src, where);

  const hiddenAct = r.string('hidden_act', 'silu');
  if (hiddenAct !== 'silu') throw new Error(`${where}: hidden_act ${JSON.stringify(hiddenAct)} is not supported (LLaMA uses "silu")`);
  const hiddenSize = r.int('hidden_size', 4096);
  const numAttentionHeads = r.int('num_attention_heads', 32);
  const maxPositionEmbeddings = r.int('max_position_embeddings', 2048);

  // Rotary: transformers 4.x top-level rope_theta / rope_scaling, or ≥ 5 rope_parameters.
  const scaling = r.object('rope_scaling');
  const params = r.object('rope_parameters');
  if (params && Object.values(params).some((v) => isJsonObject(v))) {
    throw new Error(`${where}: per-layer-type rope_parameters (${Object.keys(params).join(', ')}) are not supported by LLaMA`);
  }
  const rope: JsonObject = { ...(scaling ?? {}), ...(params ?? {}) };
  const rw = new ConfigReader(rope, `${where}: ${params ? 'rope_parameters' : 'rope_scaling'}`);
  const ropeTheta = rw.has('rope_theta') ? rw.positive('rope_theta', 10000) : r.positive('rope_theta', 10000);
  const ropeType = rw.has('rope_type') ? rw.string('rope_type', 'default') : rw.string('type', 'default');
  const partial = rw.has('partial_rotary_factor') ? rw.positive('partial_rotary_factor', 1) : r.has('partial_rotary_factor') ? r.positive('partial_rotary_factor', 1) : 1;
  if (partial !== 1) throw new Error(`${where}: partial_rotary_factor ${partial} is not supported (LLaMA rotates the whole head)`);
  let ropeScaling: LlamaRopeScaling;
  switch (ropeType) {
    case 'default':
      ropeScaling = { type: 'default' };
      break;
    case 'linear':
      ropeScaling = { type: 'linear', factor: rw.positive('factor', 1) };
      break;
    case 'llama3':
      for (const k of ['factor', 'low_freq_factor', 'high_freq_factor']) {
        if (!rw.has(k)) throw new Error(`${rw.where}: rope_type "llama3" needs "${k}"`);
      }
      ropeScaling = {
        type: 'llama3',
        factor: rw.positive('factor', 1),
        lowFreqFactor: rw.positive('low_freq_factor', 1),
        highFreqFactor: rw.positive('high_freq_factor', 4),
        originalMaxPositionEmbeddings: rw.int('original_max_position_embeddings', r.int('original_max_position_embeddings', maxPositionEmbeddings)),
      };
      break;
    default:
      throw new Error(`${rw.where}: rope type ${JSON.stringify(ropeType)} is not supported (supported: default, linear, llama3)`);
  }

  const eosRaw = src['eos_token_id'];
  let eosTokenIds: number[];
  if (eosRaw === undefined || eosRaw === null) eosTokenIds = [];
  else if (Array.isArray(eosRaw)) {
    eosTokenIds = eosRaw.map((v, i) => new ConfigReader({ [`eos_token_id[${i}]`]: v }, where).int(`eos_token_id[${i}]`, 0, 0));
  } else eosTokenIds = [r.int('eos_token_id', 0, 0)];

  const config: LlamaConfig = {
    vocabSize: r.int('vocab_size', 32000),
    hiddenSize,
    intermediateSize: r.int('intermediate_size', 11008),
    numHiddenLayers: r.int('num_hidden_layers', 32),
    numAttentionHeads,
    numKeyValueHeads: r.int('num_key_value_heads', numAttentionHeads),
    headDim: r.int('head_dim', Math.floor(hiddenSize / numAttentionHeads)),
    rmsNormEps: r.positive('rms_norm_eps', 1e-6),
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings,
    tieWordEmbeddings: bool(src, 'tie_word_embeddings', false, where),
    attentionBias: bool(src, 'attention_bias', false, where),
    mlpBias: bool(src, 'mlp_bias', false, where),
    eosTokenIds,
  };
  const bos = optionalId(r, 'bos_token_id');
  if (bos !== undefined) config.bosTokenId = bos;
  const pad = optionalId(r, 'pad_token_id');
  if (pad !== undefined) config.padTokenId = pad;
  checkConfig(config, fn);
  return config;
}

function checkConfig(c: LlamaConfig, fn: string): void {
  if (!c || typeof c !== 'object') throw new Error(`${fn}: config must be a LlamaConfig object`);
  const ints = ['vocabSize', 'hiddenSize', 'intermediateSize', 'numHiddenLayers', 'numAttentionHeads', 'numKeyValueHeads', 'headDim'] as const;
  for (const k of ints) {
    if (!Number.isInteger(c[k]) || c[k] < 1) throw new Error(`${fn}: config.${k} must be a positive integer, got ${JSON.stringify(c[k])}`);
  }
  if (c.numAttentionHeads % c.numKeyValueHeads !== 0) {
    throw new Error(`${fn}: numKeyValueHeads ${c.numKeyValueHeads} must divide numAttentionHeads ${c.numAttentionHeads}`);
  }
  if (c.headDim % 2 !== 0) throw new Error(`${fn}: headDim ${c.headDim} must be even (rotary embeddings rotate halves)`);
  if (!(c.rmsNormEps > 0)) throw new Error(`${fn}: config.rmsNormEps must be > 0, got ${c.rmsNormEps}`);
  if (!(c.ropeTheta > 0)) throw new Error(`${fn}: config.ropeTheta must be > 0, got ${c.ropeTheta}`);
  const s = c.ropeScaling;
  if (!s || !['default', 'linear', 'llama3'].includes(s.type)) throw new Error(`${fn}: config.ropeScaling must be {type: 'default' | 'linear' | 'llama3', ...}, got ${JSON.stringify(s)}`);
  if (s.type !== 'default' && !(s.factor > 0)) throw new Error(`${fn}: config.ropeScaling.factor must be > 0, got ${s.factor}`);
  if (s.type === 'llama3' && !(s.highFreqFactor > s.lowFreqFactor)) {
    throw new Error(`${fn}: config.ropeScaling needs highFreqFactor > lowFreqFactor, got ${s.highFreqFactor} and ${s.lowFreqFactor}`);
  }
}

// ---------------------------------------------------------------------------------------
// Rotary embeddings

/**
 * The rotary inverse frequencies, `[headDim / 2]`, as transformers computes them in float32
 * (every step rounded to float32 as torch does; `pow` may differ from torch's by an ulp):
 * `1 / theta^(2i / hd)`, then for `llama3` its `_compute_llama3_parameters`: wavelengths
 * `2π / f` longer than `orig / low_freq_factor` are divided by `factor`, shorter than
 * `orig / high_freq_factor` kept, and in between interpolated with
 * `s = (orig / wavelen - low) / (high - low)`: `(1 - s) · f / factor + s · f`.
 */
export function llamaRopeInvFreq(config: LlamaConfig): Float32Array {
  checkConfig(config, 'llamaRopeInvFreq');
  const f = Math.fround;
  const dim = config.headDim;
  const base = f(config.ropeTheta);
  const inv = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) inv[i] = f(1 / f(Math.pow(base, f((2 * i) / dim))));
  const s = config.ropeScaling;
  if (s.type === 'linear') {
    for (let i = 0; i < inv.length; i++) inv[i] = f(inv[i]! / f(s.factor));
  } else if (s.type === 'llama3') {
    const factor = f(s.factor);
    const low = f(s.lowFreqFactor);
    const old = f(s.originalMaxPositionEmbeddings);
    const lowWavelen = f(s.originalMaxPositionEmbeddings / s.lowFreqFactor);
    const highWavelen = f(s.originalMaxPositionEmbeddings / s.highFreqFactor);
    const span = f(s.highFreqFactor - s.lowFreqFactor);
    const twoPi = f(2 * Math.PI);
    for (let i = 0; i < inv.length; i++) {
      const fr = inv[i]!;
      const wavelen = f(f(1 / fr) * twoPi); // torch: scalar / t = t.reciprocal() * scalar
      const scaled = wavelen > lowWavelen ? f(fr / factor) : fr;
      const smooth = f(f(f(f(1 / wavelen) * old) - low) / span);
      const smoothed = f(f(f(f(1 - smooth) * scaled) / factor) + f(smooth * scaled));
      const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
      inv[i] = medium ? smoothed : scaled;
    }
  }
  return inv;
}

/**
 * cos and "signed" sin tables for positions `[start, start + T)`, each `[T, hd]`:
 * `cos = cos(cat(f, f))`, `sinSigned = cat(-sin(f), sin(f))` with `f = pos · invFreq` (float32),
 * so that HF's `x·cos + rotate_half(x)·sin` = `x·cos + cat(x2, x1)·sinSigned`.
 */
function ropeTables(invFreq: Float32Array, start: number, T: number): { cos: Tensor2D; sinSigned: Tensor2D } {
  const half = invFreq.length;
  const hd = 2 * half;
  const cos = new Float32Array(T * hd);
  const sin = new Float32Array(T * hd);
  for (let t = 0; t < T; t++) {
    const pos = Math.fround(start + t);
    for (let j = 0; j < half; j++) {
      const a = Math.fround(pos * invFreq[j]!);
      const c = Math.cos(a);
      const s = Math.sin(a);
      cos[t * hd + j] = c;
      cos[t * hd + half + j] = c;
      sin[t * hd + j] = -s;
      sin[t * hd + half + j] = s;
    }
  }
  return { cos: tensor2d(cos, [T, hd]), sinSigned: tensor2d(sin, [T, hd]) };
}

/** x·cos + rotate_half(x)·sin over `[B, n, T, hd]`, tables `[T, hd]`. */
function applyRope(x: Tensor4D, cos: Tensor2D, sinSigned: Tensor2D): Tensor4D {
  const half = x.shape[3] / 2;
  const x1 = slice(x, [0, 0, 0, 0], [-1, -1, -1, half]); // [B, n, T, hd/2]
  const x2 = slice(x, [0, 0, 0, half], [-1, -1, -1, half]);
  return add(mul(x, cos), mul(concat([x2, x1], 3), sinSigned));
}

// ---------------------------------------------------------------------------------------
// KV cache

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

// ---------------------------------------------------------------------------------------
// Weights

/** A projection: its weight resident (float32), or decoded from the lazy store by name when used. */
/** What {@link LlamaModel.project} applies after `x · Wᵀ + b`: linear's epilogue. */
type ProjEpilogue = Pick<LinearOptions, 'activation' | 'multiply' | 'residual'>;

interface Proj {
  name: string;
  rows: number; // out
  cols: number; // in
  weight?: Tensor2D; // [out, in]
  /** Packed and resident (webgpu): int32 words [out, in/2|in/4|in/8] (+ scales, mins), dequantised in the kernel. */
  packed?: PackedLinear;
  bias?: Tensor1D; // [out]
}

interface DecoderLayer {
  inputNorm: Tensor1D; // [d]
  q: Proj; // [H·hd, d]
  k: Proj; // [kvH·hd, d]
  v: Proj; // [kvH·hd, d]
  o: Proj; // [d, H·hd]
  postNorm: Tensor1D; // [d]
  gate: Proj; // [I, d]
  up: Proj; // [I, d]
  down: Proj; // [d, I]
}

interface LlamaWeights {
  /** The checkpoint bytes of every non-resident weight (lazy residency), else undefined. */
  store?: LazyWeights;
  embed: Proj; // [V, d]
  layers: DecoderLayer[];
  norm: Tensor1D; // [d]
  lmHead: Proj; // [V, d]; tied: same name as embed
}

/** The tensor names a config needs (required) and may use (lm_head, unless tied). */
export function llamaTensorNames(config: LlamaConfig, prefix = ''): { required: string[]; lmHead: string } {
  checkConfig(config, 'llamaTensorNames');
  const names = [`${prefix}model.embed_tokens.weight`, `${prefix}model.norm.weight`];
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const at = `${prefix}model.layers.${i}`;
    names.push(`${at}.input_layernorm.weight`, `${at}.post_attention_layernorm.weight`);
    for (const p of ['q', 'k', 'v', 'o']) {
      names.push(`${at}.self_attn.${p}_proj.weight`);
      if (config.attentionBias) names.push(`${at}.self_attn.${p}_proj.bias`);
    }
    for (const p of ['gate', 'up', 'down']) {
      names.push(`${at}.mlp.${p}_proj.weight`);
      if (config.mlpBias) names.push(`${at}.mlp.${p}_proj.bias`);
    }
  }
  return { required: names, lmHead: `${prefix}lm_head.weight` };
}

/** Options of {@link llamaFromTensors}. */
export interface LlamaFromTensorsOptions {
  /** Prepended to every tensor name (default `''`). */
  prefix?: string;
  /**
   * Lazy residency: a matrix is decoded and multiplied in blocks of rows of at most this many
   * elements (default 2^20: 4 MiB of float32, 256 rows at d = 4096). Small blocks are reused by
   * the allocators (no fresh pages to fault in per matMul) and stay in cache between the decode,
   * tfjs-node's copy and the matMul: a LLaMA-3-8B decode step measured 2–3× faster than with
   * 16 MiB blocks, and 2× faster than whole matrices (bench/llama-8b-synthetic.ts).
   */
  lazyBlockElements?: number;
  /**
   * Lazy residency: inputs of at most this many rows (`B·T`: decode steps, short prompts) are
   * multiplied directly on the bf16 bytes or the q8 / q4 codes ({@link LazyWeights.matMulTransposed},
   * WebAssembly SIMD) instead of decoding each matrix to float32 for a backend matMul (default 8; 0: never).
   * The input is read back to the CPU for it (a few KB per projection); on the cpu, wasm and
   * tensorflow backends only.
   */
  lazyGemvMaxRows?: number;
  /**
   * Quantise the linear weights — every decoder layer's q, k, v, o, gate, up and down
   * projections, and lm_head unless it is tied to the embedding — to `'q8'` (int8, a scale per
   * group: 1.06 bytes per weight) or `'q4'` (4-bit, a scale and a min per group: 0.625 bytes per
   * weight), group-wise along the input dimension (docs/quantization.md). The embedding stays
   * in its checkpoint dtype (only the prompt's rows are ever decoded), norms and biases float32.
   * Decode steps run the SIMD gemv on the packed weights; longer inputs dequantise a block of
   * rows at a time. From a {@link LazyWeights} store the model quantises a copy (the given store
   * is left as it is); from a record of float32 tensors it reads them back (CPU backends).
   * Default: none.
   */
  quantize?: QuantFormat;
  /**
   * On the webgpu backend, the matrices of a {@link LazyWeights} store (bf16, q8, q4) are
   * uploaded once, at build time, as packed int32 tensors (with float32 scales and mins) and stay
   * resident: every projection runs the dequantising GEMV/GEMM kernel on them
   * (src/kernels/webgpu/packedMatMul.ts), so no step uploads weights. f16/f32 matrices are
   * uploaded as float32. The embedding stays in the store: a step uploads only its tokens'
   * rows. A store the model owns (loadLlama) drops the uploaded matrices' bytes. Default `true`;
   * `false`: decode and upload blocks of rows at every step (the CPU path, for a GPU too small to
   * hold the weights).
   */
  webgpuResident?: boolean;
}

const DEFAULT_LAZY_BLOCK_ELEMENTS = 1 << 20;
const DEFAULT_LAZY_GEMV_MAX_ROWS = 8;
/**
 * Backends whose tensors live in CPU memory, where reading a projection's input back for the
 * bf16 gemv is a copy of a few KB. Not webgpu: a synchronous read of GPU data needs
 * OffscreenCanvas (absent in Node), and there the weights go to the GPU anyway.
 */
const CPU_BACKENDS: ReadonlySet<string> = new Set(['cpu', 'wasm', 'tensorflow']);

/**
 * Builds a LLaMA from tensors under Hugging Face names, asserting every name and shape against
 * `config`: missing and mis-shaped tensors (and unknown names under `model.layers.`) are all
 * named in one error. Other tensors are ignored (INF-LLaVA checkpoints hold the vision tower
 * and projector under `model.` too). lm_head is tied to embed_tokens when
 * `config.tieWordEmbeddings` or when `lm_head.weight` is absent.
 *
 * - A record of float32 tensors: the model holds its own views (no copy); the given tensors
 *   stay the caller's to dispose.
 * - A {@link LazyWeights} store: 1-D weights (norms, biases) are decoded to float32 once and
 *   held; every matrix is decoded when the forward pass reaches it and disposed after its
 *   matMul. The model keeps a reference to the store (not a copy); the store stays the
 *   caller's (`dispose()` of the model does not clear it).
 */
export function llamaFromTensors(tensors: Record<string, Tensor> | LazyWeights, config: LlamaConfig, opts: LlamaFromTensorsOptions = {}): Llama {
  checkOptionNames('llamaFromTensors', opts, LLAMA_FROM_TENSORS_OPTIONS);
  return build(tensors, config, opts, false);
}

// The option names accepted (others are errors); the checks below make tsc insist every
// option of the interfaces is listed.
const LLAMA_FROM_TENSORS_OPTIONS = ['prefix', 'lazyBlockElements', 'lazyGemvMaxRows', 'quantize', 'webgpuResident'] as const satisfies readonly (keyof LlamaFromTensorsOptions)[];
const LOAD_LLAMA_OPTIONS = [...LLAMA_FROM_TENSORS_OPTIONS, 'lazy', 'config'] as const satisfies readonly (keyof LoadLlamaOptions)[];
const _allFromTensorsOptions: Exclude<keyof LlamaFromTensorsOptions, (typeof LLAMA_FROM_TENSORS_OPTIONS)[number]> extends never ? true : never = true;
const _allLoadOptions: Exclude<keyof LoadLlamaOptions, (typeof LOAD_LLAMA_OPTIONS)[number]> extends never ? true : never = true;
void _allFromTensorsOptions;
void _allLoadOptions;

function build(source: Record<string, Tensor> | LazyWeights, config: LlamaConfig, opts: LlamaFromTensorsOptions, ownStore: boolean): Llama {
  const fn = 'llamaFromTensors';
  checkConfig(config, fn);
  if (!source || typeof source !== 'object') throw new Error(`${fn}: tensors must be a record of tensors or a LazyWeights store`);
  const prefix = opts.prefix ?? '';
  const blockElements = opts.lazyBlockElements ?? DEFAULT_LAZY_BLOCK_ELEMENTS;
  if (!Number.isInteger(blockElements) || blockElements < 1) throw new Error(`${fn}: lazyBlockElements must be a positive integer, got ${blockElements}`);
  const gemvMaxRows = opts.lazyGemvMaxRows ?? DEFAULT_LAZY_GEMV_MAX_ROWS;
  if (!Number.isInteger(gemvMaxRows) || gemvMaxRows < 0) throw new Error(`${fn}: lazyGemvMaxRows must be a non-negative integer, got ${gemvMaxRows}`);
  const quantize = checkQuantizeOption(fn, opts.quantize);
  let store = isLazyWeights(source) ? source : undefined;
  let record = store ? undefined : (source as Record<string, Tensor>);
  const { vocabSize: V, hiddenSize: d, intermediateSize: I, numAttentionHeads: H, numKeyValueHeads: kvH, headDim: hd } = config;

  const has = (key: string) => (store ? store.has(key) : Object.prototype.hasOwnProperty.call(record, key) && record![key] !== undefined);
  const missing: string[] = [];
  const problems: string[] = [];
  const used = new Set<string>();
  // Checks `key` and returns its dtype/shape source; resident tensors are collected in `owned`.
  const check = (key: string, shape: number[]): boolean => {
    used.add(key);
    if (!has(key)) {
      missing.push(key);
      return false;
    }
    let dtype: string;
    let actual: readonly number[];
    if (store) {
      const e = store.info(key)!;
      dtype = e.dtype;
      actual = e.shape;
      if (!['F32', 'F16', 'BF16', 'q8', 'q4'].includes(dtype)) problems.push(`${key} must be F32, F16 or BF16, got ${dtype}`);
    } else {
      const t = record![key]!;
      dtype = t.dtype;
      actual = t.shape;
      if (t.isDisposed) problems.push(`${key} is a disposed tensor`);
      else if (dtype !== 'float32') problems.push(`${key} must be float32, got ${dtype}`);
    }
    if (actual.length !== shape.length || actual.some((s, i) => s !== shape[i])) {
      problems.push(`${key} must have shape ${JSON.stringify(shape)}, got ${JSON.stringify(actual)}`);
      return false;
    }
    return true;
  };
  const vec = (name: string, n: number): string => {
    check(prefix + name, [n]);
    return prefix + name;
  };
  const proj = (name: string, outDim: number, inDim: number, bias: boolean): { w: string; b?: string } => {
    check(`${prefix}${name}.weight`, [outDim, inDim]);
    return bias ? { w: `${prefix}${name}.weight`, b: vec(`${name}.bias`, outDim) } : { w: `${prefix}${name}.weight` };
  };

  const embedName = `${prefix}model.embed_tokens.weight`;
  check(embedName, [V, d]);
  const names = {
    norm: vec('model.norm.weight', d),
    layers: [] as Array<Record<'inputNorm' | 'postNorm', string> & Record<'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down', { w: string; b?: string }>>,
  };
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const at = `model.layers.${i}`;
    const ab = config.attentionBias;
    const mb = config.mlpBias;
    names.layers.push({
      inputNorm: vec(`${at}.input_layernorm.weight`, d),
      q: proj(`${at}.self_attn.q_proj`, H * hd, d, ab),
      k: proj(`${at}.self_attn.k_proj`, kvH * hd, d, ab),
      v: proj(`${at}.self_attn.v_proj`, kvH * hd, d, ab),
      o: proj(`${at}.self_attn.o_proj`, d, H * hd, ab),
      postNorm: vec(`${at}.post_attention_layernorm.weight`, d),
      gate: proj(`${at}.mlp.gate_proj`, I, d, mb),
      up: proj(`${at}.mlp.up_proj`, I, d, mb),
      down: proj(`${at}.mlp.down_proj`, d, I, mb),
    });
  }
  const lmHeadKey = `${prefix}lm_head.weight`;
  const tied = config.tieWordEmbeddings || !has(lmHeadKey);
  if (!tied) check(lmHeadKey, [V, d]);
  else used.add(lmHeadKey);
  // Unknown names under model.layers. (an extra layer, a misspelt projection) are errors;
  // transformers' old non-persistent rotary buffer is accepted.
  const all = store ? store.names() : Object.keys(record!);
  const unexpected = all.filter((k) => k.startsWith(`${prefix}model.layers.`) && !used.has(k) && !k.endsWith('.rotary_emb.inv_freq'));
  throwIfMismatch(`${fn}: tensors (prefix '${prefix}') do not match the config (${describe(config)})`, { missing, unexpected, problems });

  // Quantisation: into a store of the model's own (a copy of the given one's entries, or the
  // record's values read back), the linear weights replaced by their packed form.
  if (quantize) {
    const targets = names.layers.flatMap((l) => [l.q, l.k, l.v, l.o, l.gate, l.up, l.down].map((p) => p.w));
    if (!tied) targets.push(lmHeadKey);
    if (!store || !ownStore) {
      const copy = new LazyWeights();
      for (const key of used) {
        if (!has(key)) continue;
        if (store) {
          const raw = store.get(key);
          if (raw) copy.set(key, raw);
          else copy.setPacked(key, store.packed(key)!);
          continue;
        }
        const t = record![key]!;
        let values: Float32Array;
        try {
          values = (t.dataSync() as Float32Array).slice();
        } catch (e) {
          throw new Error(`${fn}: quantize: cannot read ${key} back from the ${getBackend()} backend (${(e as Error).message}); pass a LazyWeights store or use loadLlama(dir, { quantize })`);
        }
        copy.set(key, { dtype: 'F32', shape: [...t.shape], bytes: new Uint8Array(values.buffer) });
      }
      store = copy;
      record = undefined;
      ownStore = true;
    }
    for (const key of targets) {
      try {
        store.quantize(key, quantize);
      } catch (e) {
        throw new Error(`${fn}: quantize ${quantize}: ${(e as Error).message}`);
      }
    }
  }

  // Residency. Record: own views of every tensor. Store: 1-D tensors decoded now, matrices by name.
  const made: Tensor[] = [];
  try {
    const resident1d = (key: string): Tensor1D => {
      const t = store ? (store.materialize(key) as Tensor1D) : own<Tensor1D>(record![key]!);
      made.push(t);
      return t;
    };
    const matrix = (key: string): Proj => {
      const [rows, cols] = (store ? store.info(key)!.shape : record![key]!.shape) as [number, number];
      if (store) return { name: key, rows, cols };
      const t = own<Tensor2D>(record![key]!);
      made.push(t);
      return { name: key, rows, cols, weight: t };
    };
    const projOf = (p: { w: string; b?: string }): Proj => {
      const out = matrix(p.w);
      if (p.b) out.bias = resident1d(p.b);
      return out;
    };
    const weights: LlamaWeights = {
      embed: matrix(embedName),
      layers: names.layers.map((l) => ({
        inputNorm: resident1d(l.inputNorm),
        q: projOf(l.q),
        k: projOf(l.k),
        v: projOf(l.v),
        o: projOf(l.o),
        postNorm: resident1d(l.postNorm),
        gate: projOf(l.gate),
        up: projOf(l.up),
        down: projOf(l.down),
      })),
      norm: resident1d(names.norm),
      lmHead: matrix(tied ? embedName : lmHeadKey),
    };
    if (store) {
      weights.store = store;
      const resident = opts.webgpuResident ?? true;
      if (typeof resident !== 'boolean') throw new Error(`${fn}: webgpuResident must be a boolean, got ${JSON.stringify(resident)}`);
      if (resident && getBackend() === 'webgpu') uploadResident(weights, store, ownStore, made);
    }
    return new LlamaModel({ ...config, eosTokenIds: [...config.eosTokenIds], ropeScaling: { ...config.ropeScaling } }, weights, made, blockElements, gemvMaxRows, ownStore);
  } catch (e) {
    dispose(made);
    throw e;
  }
}

/**
 * webgpu: every projection's matrix from the store becomes resident tensors (packed int32 for
 * bf16/q8/q4, float32 otherwise), collected in `made`; an owned store forgets their bytes
 * (the embedding's stay: lookups read rows from the store).
 */
function uploadResident(w: LlamaWeights, store: LazyWeights, ownStore: boolean, made: Tensor[]): void {
  const keep = new Set([w.embed.name]);
  const upload = (p: Proj) => {
    if (p.weight || p.packed) return;
    const info = store.info(p.name)!;
    const pk = info.dtype === 'F32' || info.dtype === 'F16' ? undefined : store.packed(p.name);
    if (!pk) {
      p.weight = store.materialize(p.name) as Tensor2D;
      made.push(p.weight);
    } else {
      const words = pk.data.length / pk.rows; // [out, in/2|in/4|in/8]
      const t = (data: Int32Array | Float32Array, cols: number, dtype: 'int32' | 'float32') => {
        const out = tensor2d(data.slice(), [pk.rows, cols], dtype); // a copy: the store's views may be wasm memory
        made.push(out);
        // Upload now, so the JS copy is released matrix by matrix (tfjs uploads on first use otherwise).
        (backend() as unknown as { uploadToGPU?: (id: DataId) => void }).uploadToGPU?.(out.dataId);
        return out;
      };
      const groups = pk.groupSize ? pk.cols / pk.groupSize : 0;
      p.packed = {
        format: pk.format,
        data: t(pk.data, words, 'int32'),
        ...(pk.scales ? { scales: t(pk.scales, groups, 'float32') } : {}),
        ...(pk.mins ? { mins: t(pk.mins, groups, 'float32') } : {}),
        ...(p.bias ? { bias: p.bias } : {}),
      };
    }
    if (ownStore && !keep.has(p.name)) store.delete(p.name);
  };
  for (const l of w.layers) for (const p of [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]) upload(p);
  if (w.lmHead.name === w.embed.name) {
    // Tied: lm_head gets its own resident copy; the embedding's rows stay in the store.
    const head: Proj = { ...w.lmHead };
    upload(head);
    w.lmHead = head;
  } else upload(w.lmHead);
}

function describe(c: LlamaConfig): string {
  return `V ${c.vocabSize}, d ${c.hiddenSize}, mlp ${c.intermediateSize}, ${c.numHiddenLayers} layers, ${c.numAttentionHeads} heads, ${c.numKeyValueHeads} kv heads, head_dim ${c.headDim}`;
}

/** Options of {@link loadLlama}. */
export interface LoadLlamaOptions extends LlamaFromTensorsOptions {
  /**
   * Weight residency. `true`: keep the checkpoint bytes and decode each matrix when used
   * ({@link LazyWeights}); `false`: decode everything to float32 tensors at load; `'auto'`
   * (default): lazy when the checkpoint's matrices are bf16 or f16 (float32 would double them).
   */
  lazy?: 'auto' | boolean;
  /** The config; default: read from the folder's `config.json` ({@link llamaConfigFromJson}). */
  config?: LlamaConfig;
}

/**
 * Loads a `LlamaForCausalLM` from a Hugging Face checkpoint folder — a local path (Node), a base
 * URL or the `File`s of a picked folder (see {@link CheckpointSource}): `config.json` plus
 * `model.safetensors` or a sharded `model.safetensors.index.json`. Only the language model's
 * tensors are read (a full INF-LLaVA checkpoint's vision tower and projector are skipped; over
 * HTTP only the wanted byte ranges are fetched).
 * A missing tensor is an error naming it.
 *
 * A bf16 or f16 checkpoint loads lazily by default (`lazy: 'auto'`): tfjs has no bf16, and
 * LLaMA-3-8B is 16.06 GB of bf16 but 32.1 GB of float32, more than a 24 GB machine has. Measured
 * on the project's 2-core, 24 GB machine, tfjs-node, synthetic LLaMA-3-8B
 * (bench/llama-8b-synthetic.ts): load 23 s, RSS 16.5 GB after load (the bf16 bytes + 0.45 GB of
 * runtime), peak 17.7 GB while prefilling 600 tokens (70 s, 120 GFLOP/s including the decoding),
 * 1.5–1.9 s per generated token (each step reads the 16 GB of bf16 once, ~10 GB/s).
 */
export async function loadLlama(source: CheckpointSource, opts: LoadLlamaOptions = {}): Promise<Llama> {
  const fn = 'loadLlama';
  checkOptionNames(fn, opts, LOAD_LLAMA_OPTIONS);
  const quantize = checkQuantizeOption(fn, opts.quantize);
  if (quantize && opts.lazy === false) throw new Error(`${fn}: quantize needs the lazy residency (the packed weights live in a LazyWeights store): leave out lazy: false`);
  const dir = await toDirectory(source, fn);
  const config = opts.config ?? llamaConfigFromJson(await readConfigJson(dir));
  const prefix = opts.prefix ?? '';
  const lazyOpt = opts.lazy ?? 'auto';
  if (lazyOpt !== 'auto' && typeof lazyOpt !== 'boolean') throw new Error(`${fn}: opts.lazy must be 'auto', true or false, got ${JSON.stringify(lazyOpt)}`);
  const { entries } = await listSafetensorsEntries(dir);
  const { required, lmHead } = llamaTensorNames(config, prefix);
  const missing = required.filter((n) => !entries.has(n));
  if (missing.length) throw new Error(`${fn}: ${dir.name}: missing tensors: ${missing.join(', ')} (prefix '${prefix}')`);
  const wanted = new Set(required);
  if (!config.tieWordEmbeddings && entries.has(lmHead)) wanted.add(lmHead);
  const lazy = quantize ? true : lazyOpt === 'auto' ? [...wanted].some((n) => ['BF16', 'F16'].includes(entries.get(n)!.entry.dtype) && entries.get(n)!.entry.shape.length === 2) : lazyOpt;
  if (lazy) {
    // Quantising: each linear weight as soon as it is read (its checkpoint bytes then dropped),
    // so the checkpoint is never whole in memory.
    const targets = new Set(required.filter((n) => /\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/.test(n)));
    if (wanted.has(lmHead)) targets.add(lmHead);
    const onTensor = quantize
      ? (name: string, w: LazyWeights) => {
          if (!targets.has(name)) return;
          try {
            w.quantize(name, quantize);
          } catch (e) {
            throw new Error(`${fn}: quantize ${quantize}: ${(e as Error).message}`);
          }
        }
      : undefined;
    // lm_head (the largest matrix: 1 GB of bf16 for LLaMA-3) first, while little else is
    // resident: its checkpoint bytes are then long collected when the load ends (peak RSS).
    const head = quantize && wanted.has(lmHead) ? (await loadSafetensorsRaw(dir, { filter: (n) => n === lmHead, onTensor })).weights : undefined;
    const { weights } = await loadSafetensorsRaw(dir, { filter: (n) => wanted.has(n) && !(head && n === lmHead), onTensor });
    if (head) weights.setPacked(lmHead, head.packed(lmHead)!);
    try {
      return build(weights, config, opts, true);
    } catch (e) {
      weights.dispose();
      throw e;
    }
  }
  const { tensors } = await loadSafetensors(dir, { prefix: [...wanted] });
  try {
    return build(tensors, config, opts, false);
  } finally {
    dispose(Object.values(tensors)); // the model holds its own views
  }
}

// ---------------------------------------------------------------------------------------
// Forward

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
  /** Frees the model's tensors (and the bytes of a store that {@link loadLlama} made). */
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

class LlamaModel implements Llama {
  private w: LlamaWeights | null;
  private readonly invFreq: Float32Array;

  constructor(
    readonly config: LlamaConfig,
    weights: LlamaWeights,
    private readonly owned: Tensor[],
    private readonly blockElements: number,
    private readonly gemvMaxRows: number,
    private readonly ownStore: boolean,
  ) {
    this.w = weights;
    this.invFreq = llamaRopeInvFreq(config);
  }

  private weights(fn: string): LlamaWeights {
    if (!this.w) throw new Error(`${fn}: the model has been disposed`);
    return this.w;
  }

  /**
   * `epilogue(x · Wᵀ + b)` over the last axis (linear's activation, multiply, residual). W
   * resident, or decoded from the store in blocks of rows (`blockElements` at most), each block
   * disposed right after its matMul with the epilogue applied to its columns: `[..., in] → [..., out]`.
   */
  private project<T extends Tensor>(x: T, p: Proj, epilogue: ProjEpilogue = {}): T {
    if (p.weight) return tidy(() => linear(x, { weight: p.weight!, bias: p.bias }, epilogue));
    if (p.packed) return tidy(() => packedLinear(x, p.packed!, epilogue));
    const store = this.w!.store!;
    const m = x.size / p.cols;
    if (m <= this.gemvMaxRows && CPU_BACKENDS.has(getBackend())) {
      const y = store.matMulTransposed(p.name, x.dataSync() as Float32Array, m); // [m, out], or undefined: not bf16
      if (y) {
        return tidy(() => {
          const out = tensor(y, [...x.shape.slice(0, -1), p.rows], 'float32');
          return linearEpilogue(p.bias ? add(out, p.bias) : out, epilogue);
        }) as T;
      }
    }
    const block = Math.max(1, Math.floor(this.blockElements / p.cols));
    if (block >= p.rows) return tidy(() => linear(x, { weight: store.materialize(p.name) as Tensor2D, bias: p.bias }, epilogue));
    return tidy(() => {
      const parts: Tensor[] = [];
      const cols = (t: Tensor | undefined, start: number, n: number) => t && slice(t, [...t.shape.map(() => 0).slice(0, -1), start], [...t.shape.slice(0, -1), n]);
      for (let start = 0; start < p.rows; start += block) {
        const n = Math.min(block, p.rows - start);
        parts.push(
          tidy(() =>
            linear(x, { weight: store.rows(p.name, start, n), bias: cols(p.bias, start, n) as Tensor1D | undefined }, {
              activation: epilogue.activation,
              multiply: cols(epilogue.multiply, start, n),
              residual: cols(epilogue.residual, start, n),
            }),
          ),
        ); // [..., n]
      }
      return concat(parts, -1) as T; // [..., out]
    });
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
    if (w.embed.weight && !Array.isArray(ids)) {
      // Resident table and ids on the device: gather there (no read-back). Out-of-range ids are the backend's.
      if (ids?.rank !== 2) throw new Error(`${fn}: ids must be [B, T], got ${JSON.stringify(ids?.shape)}`);
      const table = w.embed.weight;
      return tidy(() => reshape(gather(table, ids.dtype === 'int32' ? ids : cast(ids, 'int32'), 0), [ids.shape[0], ids.shape[1], d]));
    }
    const { flat, B, T } = this.idRows(ids, fn);
    if (w.embed.weight) {
      const table = w.embed.weight;
      return tidy(() => reshape(gather(table, tensor1dInt(flat), 0), [B, T, d]));
    }
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
    const { cos, sinSigned } = ropeTables(this.invFreq, P, T);
    const keys: Tensor4D[] = [];
    const values: Tensor4D[] = [];
    // webgpu: a preallocated cache written in place; it grows (doubling) only when full.
    const inPlace = getBackend() === 'webgpu' && !engine().isTapeOn();
    const room = !inPlace ? P + T : P + T <= capacity && cache ? capacity : Math.max(P + T, newCapacity ?? 0, cache ? 2 * capacity : 0);
    try {
      for (let i = 0; i < L; i++) {
        const layer = w.layers[i]!;
        const past = cache ? { k: cache.keys[i]!, v: cache.values[i]! } : undefined;
        const [y, k, v] = tidy(() => this.decoderLayer(x, layer, cos, sinSigned, { past, P, room, inPlace }));
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
      dispose([cos, sinSigned]);
    }
  }

  /**
   * One decoder layer: x [B, T, d] → [x', keys, values], keys/values [B, kvH, room, hd] holding
   * positions [0, P + T) (room = P + T unless written in place into a preallocated cache).
   */
  private decoderLayer(
    x: Tensor3D,
    l: DecoderLayer,
    cos: Tensor2D,
    sinSigned: Tensor2D,
    kv: { past?: { k: Tensor4D; v: Tensor4D }; P: number; room: number; inPlace: boolean },
  ): Tensor[] {
    const { past, P, room, inPlace } = kv;
    const c = this.config;
    const [B, T] = x.shape; // x: [B, T, d]
    const H = c.numAttentionHeads;
    const kvH = c.numKeyValueHeads;
    const hd = c.headDim;
    const heads = (t: Tensor, n: number) => transpose(reshape(t, [B, T, n, hd]), [0, 2, 1, 3]) as Tensor4D; // [B, n, T, hd]

    // Nested tidies free each half's intermediates as soon as it is done: a 4,000-token prefill
    // of LLaMA-3-8B holds ~1 GB of [T, 14336] MLP buffers per layer otherwise.
    const [x1, k, v] = tidy(() => {
      const h = rmsNorm(x, l.inputNorm, c.rmsNormEps); // [B, T, d]
      const q = applyRope(heads(this.project(h, l.q), H), cos, sinSigned); // [B, H, T, hd]
      let kAll: Tensor4D; // [B, kvH, room, hd], positions [0, S) valid, S = P + T
      let vAll: Tensor4D;
      if (inPlace) {
        // The new keys (RoPE applied in the write) and values go straight into the cache buffer.
        const target = (t: Tensor4D | undefined) => {
          if (t && t.shape[2] === room) return t;
          const fresh = zeros([B, kvH, room, hd]) as Tensor4D; // a new or a grown cache
          return t ? kvCacheWrite(fresh, slice(t, [0, 0, 0, 0], [-1, -1, P, -1]) as Tensor4D, 0) : fresh;
        };
        const bthd = (t: Tensor) => reshape(t, [B, T, kvH, hd]) as Tensor4D; // no head transpose
        kAll = kvCacheWrite(target(past?.k), bthd(this.project(h, l.k)), P, { layout: 'BTHD', rope: { cos, sinSigned } });
        vAll = kvCacheWrite(target(past?.v), bthd(this.project(h, l.v)), P, { layout: 'BTHD' });
      } else {
        const valid = (t: Tensor4D) => (t.shape[2] === P ? t : (slice(t, [0, 0, 0, 0], [-1, -1, P, -1]) as Tensor4D));
        const kNew = applyRope(heads(this.project(h, l.k), kvH), cos, sinSigned); // [B, kvH, T, hd]
        const vNew = heads(this.project(h, l.v), kvH); // [B, kvH, T, hd]
        kAll = past ? concat([valid(past.k), kNew], 2) : kNew; // [B, kvH, S, hd]
        vAll = past ? concat([valid(past.v), vNew], 2) : vNew;
      }
      // Causal, grouped-query (query head h reads kv head ⌊h / rep⌋), memory-bounded: a long
      // prompt runs in query × key blocks with an online softmax, never a [H, T, S] score tensor.
      const attn = attention(q, kAll, vAll, { causal: true, scale: 1 / Math.sqrt(hd), ...(inPlace ? { validKeys: P + T } : {}) }); // [B, H, T, hd]
      const merged = reshape(transpose(attn, [0, 2, 1, 3]), [B, T, H * hd]); // [B, T, H·hd]
      return [this.project(merged, l.o, { residual: x }), kAll, vAll]; // x1 = x + o(merged): [B, T, d]
    });

    const out = tidy(() => {
      const h2 = rmsNorm(x1!, l.postNorm, c.rmsNormEps);
      // SwiGLU as linear epilogues: silu(h2·W_gᵀ) ⊙ (h2·W_uᵀ) in the gate projection, the residual in down's.
      const act = tidy(() => {
        const up = this.project(h2, l.up); // [B, T, I]
        return this.project(h2, l.gate, { activation: 'silu', multiply: up }); // [B, T, I]
      });
      return this.project(act, l.down, { residual: x1! }); // [B, T, d]
    });
    return [out, k!, v!];
  }

  /** Final norm and lm_head: [B, T, d] → [B, T, V] (lazy: in blocks of vocabulary rows). */
  private head(x: Tensor3D): Tensor3D {
    const w = this.w!;
    return this.project(rmsNorm(x, w.norm, this.config.rmsNormEps), w.lmHead);
  }

  weightBytes(): LlamaWeightBytes {
    const w = this.weights('Llama.weightBytes');
    const out: LlamaWeightBytes = { total: 0, linear: 0, scales: 0, embedding: 0, other: 0 };
    const matrix = (p: Proj): { data: number; scales: number; format?: QuantFormat } => {
      if (p.weight) return { data: 4 * p.weight.size, scales: 0 };
      if (p.packed) {
        const extra = 4 * ((p.packed.scales?.size ?? 0) + (p.packed.mins?.size ?? 0));
        return { data: 4 * p.packed.data.size, scales: extra, ...(p.packed.format === 'bf16' ? {} : { format: p.packed.format }) };
      }
      const info = w.store!.info(p.name)!;
      if (info.dtype !== 'q8' && info.dtype !== 'q4') return { data: info.byteLength, scales: 0 };
      const pk = w.store!.packed(p.name)!;
      return { data: pk.data.byteLength, scales: info.byteLength - pk.data.byteLength, format: info.dtype };
    };
    const linear = (p: Proj) => {
      const m = matrix(p);
      out.linear += m.data;
      out.scales += m.scales;
      if (m.format) out.quantized = m.format;
      if (p.bias) out.other += 4 * p.bias.size;
    };
    for (const l of w.layers) {
      for (const p of [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]) linear(p);
      out.other += 4 * (l.inputNorm.size + l.postNorm.size);
    }
    out.other += 4 * w.norm.size;
    const e = matrix(w.embed);
    out.embedding = e.data + e.scales;
    if (w.lmHead.name !== w.embed.name) linear(w.lmHead);
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

/** A new tensor sharing `t`'s data (its own reference: freed when both are disposed). */
function own<T extends Tensor>(t: Tensor): T {
  return reshape(t, [...t.shape]) as T;
}

function tensor1dInt(values: Int32Array): Tensor1D {
  return tensor1d(values, 'int32');
}
