/**
 * Building a LLaMA from tensors under Hugging Face names ({@link llamaFromTensors}: a record of
 * float32 tensors or a LazyWeights store), and loading one from a checkpoint folder
 * ({@link loadLlama}): names and shapes checked against the config, the linear weights
 * optionally quantised, each projection given its residency (./projection.ts).
 *
 * Residency: float32 tfjs tensors (`llamaFromTensors(record)`), or a {@link LazyWeights} store
 * of checkpoint bytes (bf16 for LLaMA-3-8B: 16 GB instead of 32). From the store, each matrix is
 * decoded to float32 in blocks of rows just before their matMul and disposed just after
 * (prompts); inputs of a few rows (decode steps) are multiplied directly on the bf16 bytes by a
 * WebAssembly SIMD kernel; the embedding gathers only the prompt's rows. Norms (1-D) are decoded
 * once and held. With `quantize: 'q8' | 'q4'` the store holds the linear weights packed instead
 * (docs/quantization.md). On webgpu the store's matrices are uploaded once, packed.
 */
import { dispose, getBackend, reshape, type Tensor, type Tensor1D, type Tensor2D } from '@tensorflow/tfjs-core';
import { LazyWeights, isLazyWeights } from '../../io/lazyWeights.js';
import { loadSafetensors } from '../../io/loadSafetensors.js';
import { throwIfMismatch } from '../../io/nameCheck.js';
import { listSafetensorsEntries, loadSafetensorsRaw } from '../../io/safetensorsRaw.js';
import { toDirectory, type CheckpointSource } from '../../io/sources/index.js';
import { checkQuantizeOption, type QuantFormat } from '../../quant/groups.js';
import { errorMessage } from '../../util/format.js';
import { checkOptionNames } from '../../util/options.js';
import { readConfigJson } from '../config.js';
import { checkConfig, describeConfig, llamaConfigFromJson, type LlamaConfig } from './config.js';
import { LlamaModel, type Llama } from './model.js';
import { DenseProjection, LazyProjection, type LazyMatMul, type Projection } from './projection.js';
import { LAYER_KEYS, llamaNames, llamaTensorNames, quantizeTargets, uploadResident, type LayerWeights, type LlamaNames, type LlamaWeights } from './weights.js';

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

// The option names accepted (others are errors); the checks below make tsc insist every
// option of the interfaces is listed.
const LLAMA_FROM_TENSORS_OPTIONS = ['prefix', 'lazyBlockElements', 'lazyGemvMaxRows', 'quantize', 'webgpuResident'] as const satisfies readonly (keyof LlamaFromTensorsOptions)[];
const LOAD_LLAMA_OPTIONS = [...LLAMA_FROM_TENSORS_OPTIONS, 'lazy', 'config'] as const satisfies readonly (keyof LoadLlamaOptions)[];
const _allFromTensorsOptions: Exclude<keyof LlamaFromTensorsOptions, (typeof LLAMA_FROM_TENSORS_OPTIONS)[number]> extends never ? true : never = true;
const _allLoadOptions: Exclude<keyof LoadLlamaOptions, (typeof LOAD_LLAMA_OPTIONS)[number]> extends never ? true : never = true;
void _allFromTensorsOptions;
void _allLoadOptions;

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
    const targets = new Set(quantizeTargets(llamaNames(config, prefix), wanted.has(lmHead)));
    const onTensor = quantize
      ? (name: string, w: LazyWeights) => {
          if (targets.has(name)) quantizeEntry(w, name, quantize, fn);
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

const DEFAULT_LAZY_BLOCK_ELEMENTS = 1 << 20;
const DEFAULT_LAZY_GEMV_MAX_ROWS = 8;

/** A record of float32 tensors, or a store. */
type Source = Record<string, Tensor> | LazyWeights;

function hasTensor(source: Source, key: string): boolean {
  return isLazyWeights(source) ? source.has(key) : Object.prototype.hasOwnProperty.call(source, key) && source[key] !== undefined;
}

function build(source: Source, config: LlamaConfig, opts: LlamaFromTensorsOptions, ownStore: boolean): Llama {
  const fn = 'llamaFromTensors';
  checkConfig(config, fn);
  if (!source || typeof source !== 'object') throw new Error(`${fn}: tensors must be a record of tensors or a LazyWeights store`);
  const prefix = opts.prefix ?? '';
  const blockElements = opts.lazyBlockElements ?? DEFAULT_LAZY_BLOCK_ELEMENTS;
  if (!Number.isInteger(blockElements) || blockElements < 1) throw new Error(`${fn}: lazyBlockElements must be a positive integer, got ${blockElements}`);
  const gemvMaxRows = opts.lazyGemvMaxRows ?? DEFAULT_LAZY_GEMV_MAX_ROWS;
  if (!Number.isInteger(gemvMaxRows) || gemvMaxRows < 0) throw new Error(`${fn}: lazyGemvMaxRows must be a non-negative integer, got ${gemvMaxRows}`);
  const quantize = checkQuantizeOption(fn, opts.quantize);
  const names = llamaNames(config, prefix);
  const { tied, used } = checkTensors(source, config, names, prefix);
  let store = isLazyWeights(source) ? source : undefined;

  // Quantisation: into a store of the model's own (a copy of the given one's entries, or the
  // record's values read back), the linear weights replaced by their packed form.
  if (quantize) {
    if (!store || !ownStore) {
      store = copyToStore(source, used, fn);
      ownStore = true;
    }
    for (const key of quantizeTargets(names, !tied)) quantizeEntry(store, key, quantize, fn);
  }

  // Residency. Record: own views of every tensor. Store: 1-D tensors decoded now, matrices by name.
  const record = store ? undefined : (source as Record<string, Tensor>);
  const how: LazyMatMul = { blockElements, gemvMaxRows };
  const made: Tensor[] = [];
  try {
    const resident1d = (key: string): Tensor1D => {
      const t = store ? (store.materialize(key) as Tensor1D) : own<Tensor1D>(record![key]!);
      made.push(t);
      return t;
    };
    const projection = (key: string, bias?: string): Projection => {
      const shape = (store ? store.info(key)!.shape : record![key]!.shape) as [number, number];
      let weight: Tensor2D | undefined;
      if (!store) made.push((weight = own<Tensor2D>(record![key]!)));
      const b = bias ? resident1d(bias) : undefined;
      return store ? new LazyProjection(store, key, shape, b, how) : new DenseProjection(weight!, b);
    };
    let table: Tensor2D | undefined;
    if (record) made.push((table = own<Tensor2D>(record[names.embed]!)));
    const layers = names.layers.map((l) => {
      const layer: Partial<Record<string, Tensor1D | Projection>> = {};
      for (const key of LAYER_KEYS) {
        const n = l[key];
        layer[key] = typeof n === 'string' ? resident1d(n) : projection(n.weight, n.bias);
      }
      return layer as LayerWeights;
    });
    const weights: LlamaWeights = {
      embed: { name: names.embed, ...(table ? { table } : {}) },
      layers,
      norm: resident1d(names.norm),
      lmHead: projection(tied ? names.embed : names.lmHead),
      tied,
    };
    if (store) {
      weights.store = store;
      const resident = opts.webgpuResident ?? true;
      if (typeof resident !== 'boolean') throw new Error(`${fn}: webgpuResident must be a boolean, got ${JSON.stringify(resident)}`);
      if (resident && getBackend() === 'webgpu') uploadResident(weights, store, ownStore, made);
    }
    return new LlamaModel({ ...config, eosTokenIds: [...config.eosTokenIds], ropeScaling: { ...config.ropeScaling } }, weights, made, ownStore);
  } catch (e) {
    dispose(made);
    throw e;
  }
}

/**
 * Checks every tensor `names` lists against its shape (and dtype), in module order; missing,
 * mis-shaped and unknown tensors under `model.layers.` are named in one error. Returns whether
 * lm_head is tied, and the names used.
 */
function checkTensors(source: Source, config: LlamaConfig, names: LlamaNames, prefix: string): { tied: boolean; used: Set<string> } {
  const store = isLazyWeights(source) ? source : undefined;
  const record = store ? undefined : (source as Record<string, Tensor>);
  const { vocabSize: V, hiddenSize: d } = config;
  const has = (key: string) => hasTensor(source, key);
  const missing: string[] = [];
  const problems: string[] = [];
  const used = new Set<string>();
  const check = (key: string, shape: readonly number[]): void => {
    used.add(key);
    if (!has(key)) {
      missing.push(key);
      return;
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
    }
  };

  check(names.embed, [V, d]);
  check(names.norm, [d]);
  for (const l of names.layers) {
    for (const key of LAYER_KEYS) {
      const n = l[key];
      if (typeof n === 'string') check(n, [d]);
      else {
        check(n.weight, n.shape);
        if (n.bias) check(n.bias, [n.shape[0]]);
      }
    }
  }
  const tied = config.tieWordEmbeddings || !has(names.lmHead);
  if (!tied) check(names.lmHead, [V, d]);
  else used.add(names.lmHead);
  // Unknown names under model.layers. (an extra layer, a misspelt projection) are errors;
  // transformers' old non-persistent rotary buffer is accepted.
  const all = store ? store.names() : Object.keys(record!);
  const unexpected = all.filter((k) => k.startsWith(`${prefix}model.layers.`) && !used.has(k) && !k.endsWith('.rotary_emb.inv_freq'));
  throwIfMismatch(`llamaFromTensors: tensors (prefix '${prefix}') do not match the config (${describeConfig(config)})`, { missing, unexpected, problems });
  return { tied, used };
}

/** A store of the model's own holding the `used` tensors: a store's entries (no copy), or a record's values read back. */
function copyToStore(source: Source, used: Set<string>, fn: string): LazyWeights {
  const store = isLazyWeights(source) ? source : undefined;
  const record = store ? undefined : (source as Record<string, Tensor>);
  const has = (key: string) => hasTensor(source, key);
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
      throw new Error(`${fn}: quantize: cannot read ${key} back from the ${getBackend()} backend (${errorMessage(e)}); pass a LazyWeights store or use loadLlama(dir, { quantize })`);
    }
    copy.set(key, { dtype: 'F32', shape: [...t.shape], bytes: new Uint8Array(values.buffer) });
  }
  return copy;
}

/** Packs `name` in `store` (LazyWeights.quantize), its errors prefixed with `fn` and the format. */
function quantizeEntry(store: LazyWeights, name: string, format: QuantFormat, fn: string): void {
  try {
    store.quantize(name, format);
  } catch (e) {
    throw new Error(`${fn}: quantize ${format}: ${errorMessage(e)}`);
  }
}

/** A new tensor sharing `t`'s data (its own reference: freed when both are disposed). */
function own<T extends Tensor>(t: Tensor): T {
  return reshape(t, [...t.shape]) as T;
}
