/**
 * The `llama8b` group: a synthetic LLaMA-3-8B (bf16, q4, q8; --quick: a tiny one) built on the
 * device by llamaFromTensors from random weights, a timed prefill and greedy decode; PyTorch's
 * own bf16 LLaMA (and transformers' if importable) beside it.
 */
import * as tf from '@tensorflow/tfjs-core';
import { llamaConfigFromJson, llamaFromTensors, llamaTensorNames, type KVCache, type Llama, type LlamaConfig, type PackedWeightFormat } from '../../src/index.js';
import { median } from '../measure.js';
import { gb, sig } from '../report.js';
import { gpuAllocatedBytes, releasePooledGpuBuffers } from './device.js';
import { LLAMA3_8B_JSON, LLAMA_TINY_JSON, llamaParams, llamaPrefillFlops, llamaPrompt, syntheticLlamaStore } from './llama-weights.js';
import { firstLine, log, selected, type GpuOptions } from './options.js';
import { packedBytes } from './packed.js';
import { SLOW_CALL_MS } from './timing.js';
import type { TorchReport, TorchRow, TorchSpecCase } from './torch.js';

/** Formats in the order they run: the two with issue-13 targets first (a time-out loses q8 first). */
const LLAMA_FORMATS: PackedWeightFormat[] = ['bf16', 'q4', 'q8'];

export interface LlamaCase {
  /** Join key with the PyTorch row (all formats share the one bf16 PyTorch case). */
  name: string;
  format: PackedWeightFormat;
  config: LlamaConfig;
  /** Prompt tokens of the timed prefill (logitsToKeep 1). */
  prefill: number;
  /** Greedy decode steps timed after the prefill (and `decodeWarmup` untimed ones before them). */
  decode: number;
  decodeWarmup: number;
  /** The KV cache is preallocated for this many positions (prefill + 64). */
  capacity: number;
}

/** The group's model and sizes, at size or --quick, and its cases that --only keeps. */
export interface LlamaSetup {
  config: LlamaConfig;
  label: string;
  prefill: number;
  decode: number;
  /** The PyTorch side: one bf16 case (its own model, and transformers' if importable). */
  torchName: string;
  cases: LlamaCase[];
  /** The `model` of our rows: `inf-llava <backend>`. */
  model: string;
  quick: boolean;
  reps: number;
}

export function llamaSetup(o: GpuOptions): LlamaSetup {
  const config = llamaConfigFromJson(o.quick ? LLAMA_TINY_JSON : LLAMA3_8B_JSON);
  const label = o.quick ? 'tiny' : 'LLaMA-3-8B';
  const prefill = o.quick ? 64 : 600;
  const decode = o.quick ? 8 : 32;
  const all: LlamaCase[] = LLAMA_FORMATS.map((format) => ({
    name: `llama8b ${label} ${format} synthetic, prefill ${prefill} + decode ${decode}`,
    format,
    config,
    prefill,
    decode,
    decodeWarmup: 2,
    capacity: prefill + 64,
  }));
  return {
    config,
    label,
    prefill,
    decode,
    torchName: `llama8b ${label} bf16 torch, prefill ${prefill} + decode ${decode}`,
    cases: selected(all, o.only),
    model: `inf-llava ${o.backend}`,
    quick: o.quick,
    reps: o.reps,
  };
}

/** What torch_gpu.py needs for its LLaMA (none when --only left no llama8b case). */
export function llamaTorchSpec(s: LlamaSetup): TorchSpecCase[] {
  const c = s.config;
  if (!s.cases.length) return [];
  return [
    {
      name: s.torchName,
      kind: 'llama',
      params: {
        vocab: c.vocabSize,
        hidden: c.hiddenSize,
        intermediate: c.intermediateSize,
        layers: c.numHiddenLayers,
        heads: c.numAttentionHeads,
        kvHeads: c.numKeyValueHeads,
        headDim: c.headDim,
        ropeTheta: c.ropeTheta,
        eps: c.rmsNormEps,
        maxPositions: c.maxPositionEmbeddings,
        bos: llamaPrompt(1, c)[0]!,
        prefill: s.prefill,
        prefillReps: Math.min(s.reps, 3),
        decode: s.decode,
        decodeWarmup: 2,
        capacity: s.prefill + 64,
      },
      pipeline: false,
    },
  ];
}

export interface LlamaRow {
  name: string;
  /** 'inf-llava webgpu' or the PyTorch variant's label. */
  model: string;
  format: PackedWeightFormat | 'bf16 (torch)';
  layers: number;
  /** Bytes of the weights resident on the device: tf.memory().numBytes added by the build (PyTorch: memory_allocated after building, KV cache included). */
  gpu_weight_bytes: number | null;
  /** Device memory held after the decode: the webgpu buffer manager's allocated bytes (weights, KV cache, pooled activations), PyTorch max_memory_allocated. */
  gpu_peak_bytes: number | null;
  /** Random weights made in JS (pools sliced into the store). */
  gen_s: number | null;
  /** llamaFromTensors (the upload of every matrix) / PyTorch's model construction on the device. */
  load_s: number | null;
  /** First prefill (shader compilation, the uploads' tail). */
  first_prefill_ms: number | null;
  prefill_tokens: number;
  prefill_ms: number | null;
  prefill_times_ms?: number[];
  prefill_flops: number;
  prefill_tflops: number | null;
  decode_steps: number;
  decode_ms_per_token: number | null;
  decode_tok_s: number | null;
  /** Weight bytes read per decode token (decoder layers' matrices + lm_head, scales and mins included; not the gathered embedding row). */
  decode_weight_bytes: number;
  decode_gbps: number | null;
  logits_finite: boolean | null;
  /** Greedy ids generated (the first from the prefill), how many distinct, the first few. */
  ids: number | null;
  distinct_ids: number | null;
  first_ids?: number[];
  note?: string;
}

/** A row with the case's counts (FLOPs, weight bytes per token) and no measurement yet. */
export function emptyLlamaRow(c: Pick<LlamaCase, 'name' | 'format' | 'config' | 'prefill' | 'decode'>, model: string, formatLabel: LlamaRow['format'] = c.format): LlamaRow {
  const p = llamaParams(c.config);
  return {
    name: c.name,
    model,
    format: formatLabel,
    layers: c.config.numHiddenLayers,
    gpu_weight_bytes: null,
    gpu_peak_bytes: null,
    gen_s: null,
    load_s: null,
    first_prefill_ms: null,
    prefill_tokens: c.prefill,
    prefill_ms: null,
    prefill_flops: llamaPrefillFlops(c.config, c.prefill),
    prefill_tflops: null,
    decode_steps: c.decode,
    decode_ms_per_token: null,
    decode_tok_s: null,
    decode_weight_bytes: packedBytes(c.format, p.layers + p.lmHead, 1),
    decode_gbps: null,
    logits_finite: null,
    ids: null,
    distinct_ids: null,
  };
}

/** The greedy next id: argmax on the device, one int read back (what a generation loop does). */
async function nextId(logits: tf.Tensor): Promise<number> {
  const id = tf.tidy(() => tf.argMax(tf.reshape(logits, [-1])));
  const v = (await id.data())[0]!;
  id.dispose();
  return v;
}

async function allFinite(t: tf.Tensor): Promise<boolean> {
  const ok = tf.tidy(() => tf.all(tf.isFinite(t)));
  const v = (await ok.data())[0] === 1;
  ok.dispose();
  return v;
}

/** One format: make the weights, build, prefill (warm-up + median), greedy decode. A failure is the row's note. */
export async function runLlamaCase(c: LlamaCase, s: LlamaSetup): Promise<LlamaRow> {
  const row = emptyLlamaRow(c, s.model);

  releasePooledGpuBuffers();
  const bytesBefore = tf.memory().numBytes;
  let t0 = performance.now();
  const store = syntheticLlamaStore(c.config, c.format, 0x1000 + LLAMA_FORMATS.indexOf(c.format), s.quick);
  row.gen_s = (performance.now() - t0) / 1000;
  log(`  weights made in JS: ${gb(store.byteLength)} in ${row.gen_s.toFixed(1)} s`);
  let llm: Llama | undefined;
  let cache: KVCache | undefined;
  const live: tf.Tensor[] = [];
  try {
    t0 = performance.now();
    llm = llamaFromTensors(store, c.config);
    row.load_s = (performance.now() - t0) / 1000;
    // On webgpu llamaFromTensors uploads every matrix but leaves a caller's store as it is (it
    // only drops the bytes of a store it owns, loadLlama's) and keeps reading the embedding's rows
    // from it: drop the rest here, so the JS copy of the weights can be collected. Elsewhere the
    // model reads its matrices from the store at every step: keep them.
    if (tf.getBackend() === 'webgpu') {
      const embedName = llamaTensorNames(c.config).required[0]!;
      for (const n of store.names()) if (n !== embedName) store.delete(n);
    }
    row.gpu_weight_bytes = tf.memory().numBytes - bytesBefore;
    const wb = llm.weightBytes();
    row.decode_weight_bytes = wb.linear + wb.scales;
    log(`  llamaFromTensors: ${row.load_s.toFixed(1)} s; ${gb(row.gpu_weight_bytes)} of tensors (tf.memory().numBytes); ${gb(row.decode_weight_bytes)} of weights read per decode step`);

    const prompt = [llamaPrompt(c.prefill, c.config)];
    const prefill = async () => {
      const t = performance.now();
      const out = llm!.forward({ inputIds: prompt, logitsToKeep: 1, cacheCapacity: c.capacity });
      await out.logits.data();
      return { ...out, ms: performance.now() - t };
    };
    // Warm-up (compiles the GEMM / attention / norm shaders; the uploads' tail), then the median.
    let out = await prefill();
    row.first_prefill_ms = out.ms;
    row.logits_finite = await allFinite(out.logits);
    tf.dispose(out.logits);
    out.cache.dispose();
    const n = out.ms > SLOW_CALL_MS ? 1 : Math.min(s.reps, 3);
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      out = await prefill();
      times.push(out.ms);
      if (i < n - 1) {
        out.logits.dispose();
        out.cache.dispose();
      }
    }
    row.prefill_ms = median(times);
    row.prefill_times_ms = times.map((t) => Math.round(t * 100) / 100);
    row.prefill_tflops = row.prefill_flops / (row.prefill_ms * 1e9);
    log(`  prefill ${c.prefill}: ${row.prefill_ms.toFixed(1)} ms (first ${row.first_prefill_ms.toFixed(0)} ms) → ${sig(row.prefill_tflops)} TFLOP/s; logits ${row.logits_finite ? 'finite' : 'NOT FINITE'}`);

    // Greedy decode from the last prefill: argmax on the device, one id read back per step.
    cache = out.cache;
    live.push(out.logits);
    const ids = [await nextId(out.logits)];
    const step = () => {
      const r = llm!.forward({ inputIds: [[ids[ids.length - 1]!]], cache, logitsToKeep: 1 });
      cache = r.cache;
      return r.logits;
    };
    for (let i = 0; i < c.decodeWarmup; i++) {
      const logits = step();
      ids.push(await nextId(logits));
      logits.dispose();
    }
    const stepMs: number[] = [];
    let last: tf.Tensor | undefined;
    t0 = performance.now();
    for (let i = 0; i < c.decode; i++) {
      const ts = performance.now();
      last?.dispose();
      last = step();
      ids.push(await nextId(last));
      stepMs.push(performance.now() - ts);
    }
    const decodeMs = performance.now() - t0;
    if (last) live.push(last);
    row.decode_ms_per_token = decodeMs / c.decode;
    row.decode_tok_s = 1000 / row.decode_ms_per_token;
    row.decode_gbps = row.decode_weight_bytes / (row.decode_ms_per_token * 1e6);
    row.logits_finite = row.logits_finite && (last ? await allFinite(last) : true);
    row.ids = ids.length;
    row.distinct_ids = new Set(ids).size;
    row.first_ids = ids.slice(0, 8);
    row.gpu_peak_bytes = gpuAllocatedBytes();
    log(
      `  decode ${c.decode} steps (after ${c.decodeWarmup} untimed): ${row.decode_ms_per_token.toFixed(2)} ms/token (median step ${median(stepMs).toFixed(2)}) → ` +
        `${row.decode_tok_s.toFixed(1)} tok/s, ${sig(row.decode_gbps)} GB/s of weights; ${row.ids} ids (${row.distinct_ids} distinct): ${row.first_ids.join(' ')}…; ` +
        `logits ${row.logits_finite ? 'finite' : 'NOT FINITE'}; GPU allocated ${gb(row.gpu_peak_bytes)}`,
    );
  } catch (e) {
    row.note = `failed: ${firstLine(e)}`;
    log(`  FAILED ${firstLine(e)}`);
  } finally {
    tf.dispose(live);
    cache?.dispose();
    llm?.dispose(); // the model's tensors; the store stays ours:
    store.dispose();
    releasePooledGpuBuffers();
  }
  return row;
}

/** PyTorch's rows for the LLaMA case (its own bf16 model; transformers' when importable). */
export function torchLlamaRows(s: LlamaSetup, torch: TorchReport): LlamaRow[] {
  const t = torch.rows.get(s.torchName) as (TorchRow & { variants?: Array<Record<string, unknown>> }) | undefined;
  if (!t) return [];
  // PyTorch's model is its own bf16 one, whichever format the rows beside it use.
  const base = (label: string): LlamaRow => emptyLlamaRow({ name: s.torchName, format: 'bf16', config: s.config, prefill: s.prefill, decode: s.decode }, label, 'bf16 (torch)');
  if (!t.variants) return [{ ...base('PyTorch'), note: t.error ? `torch failed: ${t.error}` : 'torch: no variants' }];
  return t.variants.map((v) => {
    const r = base(`PyTorch ${String(v.label)}`);
    const num = (k: string) => (typeof v[k] === 'number' ? (v[k] as number) : null);
    r.gpu_weight_bytes = num('weight_bytes');
    r.gpu_peak_bytes = num('peak_bytes');
    r.load_s = num('load_s');
    r.first_prefill_ms = num('first_prefill_ms');
    r.prefill_ms = num('prefill_ms');
    if (Array.isArray(v.prefill_times_ms)) r.prefill_times_ms = v.prefill_times_ms as number[];
    r.prefill_tflops = r.prefill_ms ? r.prefill_flops / (r.prefill_ms * 1e9) : null;
    r.decode_ms_per_token = num('decode_ms_per_token');
    r.decode_tok_s = r.decode_ms_per_token ? 1000 / r.decode_ms_per_token : null;
    r.decode_gbps = r.decode_ms_per_token ? r.decode_weight_bytes / (r.decode_ms_per_token * 1e6) : null;
    r.logits_finite = typeof v.finite === 'boolean' ? v.finite : null;
    r.ids = num('ids');
    r.distinct_ids = num('distinct_ids');
    if (Array.isArray(v.first_ids)) r.first_ids = v.first_ids as number[];
    if (typeof v.error === 'string') r.note = `torch failed: ${v.error}`;
    return r;
  });
}
