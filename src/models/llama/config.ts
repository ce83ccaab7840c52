/**
 * A LLaMA's shape, read from a Hugging Face `config.json` (transformers' `LlamaConfig`, camel-cased)
 * and checked once: every later step may assume a valid config.
 */
import { ConfigReader, isJsonObject, type JsonObject } from '../config.js';

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

/** Throws `${fn}: …` naming the first field of `c` that is not a valid LLaMA shape. */
export function checkConfig(c: LlamaConfig, fn: string): void {
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

/** The shape in one line, for messages. */
export function describeConfig(c: LlamaConfig): string {
  return `V ${c.vocabSize}, d ${c.hiddenSize}, mlp ${c.intermediateSize}, ${c.numHiddenLayers} layers, ${c.numAttentionHeads} heads, ${c.numKeyValueHeads} kv heads, head_dim ${c.headDim}`;
}
