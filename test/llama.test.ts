// LLaMA (LlamaForCausalLM) parity with Hugging Face transformers, on every backend: golden
// fixtures from scripts/golden/generate_llama_fixtures.py (test/fixtures/llama/).
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSafetensors } from '../src/io/loadSafetensors.js';
import { llamaConfigFromJson, llamaFromTensors, llamaRopeInvFreq, loadLlama, type KVCache, type Llama, type LlamaConfig } from '../src/models/llama/index.js';
import { LazyWeights } from '../src/io/lazyWeights.js';
import { loadSafetensorsRaw } from '../src/io/safetensorsRaw.js';
import { setBf16Simd } from '../src/kernels/wasm/gemv.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { describeEachBackend, expectThrowsClean, type BackendName } from './backends.js';
import { expectClose as expectCloseValues, expectCloseScaled } from './oracle.js';

const DIR = 'test/fixtures/llama';
const TINY = `${DIR}/tiny-llama`;
const BF16 = `${DIR}/tiny-llama-bf16`;
const VARIANT = `${DIR}/tiny-llama-variant`;
const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;

// The expectations as plain arrays (no tensors, so nothing to leak or to move between backends).
const expected = LazyWeights.fromSafetensors(new Uint8Array(readFileSync(`${DIR}/expected.safetensors`)));
function ref(name: string): { data: Float32Array; shape: number[] } {
  const e = expected.get(name);
  if (!e || e.dtype !== 'F32') throw new Error(`fixture ${name} missing or not F32`);
  return { data: new Float32Array(e.bytes.slice().buffer), shape: [...e.shape] };
}
function ids(name: string): number[][] {
  const e = expected.get(name)!;
  const v = new Int32Array(e.bytes.slice().buffer);
  const [B, T] = e.shape as [number, number];
  return Array.from({ length: B }, (_, b) => Array.from(v.subarray(b * T, (b + 1) * T)));
}

const worst = new Map<string, number>();
type Bound = { rtol: number; atol: number };
/**
 * Logits against transformers, element by element: |a − ref| ≤ atol·max|ref| + rtol·|ref|.
 * Measured worst atol at rtol 1e-6, in units of max|ref|, over the four backends: 8.3e-7
 * (tensorflow); max|err|/max|ref| at most 9.4e-7.
 */
const TOL: Bound = { rtol: 1e-6, atol: 4e-6 };
const EXACT: Bound = { rtol: 0, atol: 0 };
/** Asserts `actual` within `tol` of the reference, element by element; records max|err|/max|ref| per backend. */
async function expectClose(actual: tf.Tensor, refName: string | { data: Float32Array; shape: number[] }, tol: Bound, what: string, backend: string): Promise<number> {
  const r = typeof refName === 'string' ? ref(refName) : refName;
  expect(actual.shape, `${what}: shape`).toEqual(r.shape);
  const a = await actual.data();
  expect(a.length, `${what}: length`).toBe(r.data.length);
  let maxErr = 0;
  let maxRef = 0;
  for (let i = 0; i < r.data.length; i++) {
    const err = Math.abs(a[i]! - r.data[i]!);
    if (!(err <= Number.MAX_VALUE)) throw new Error(`${what}: element ${i} is ${a[i]} (expected ${r.data[i]})`);
    maxErr = Math.max(maxErr, err);
    maxRef = Math.max(maxRef, Math.abs(r.data[i]!));
  }
  const rel = maxErr / maxRef;
  worst.set(backend, Math.max(worst.get(backend) ?? 0, rel));
  if (process.env.LLAMA_PARITY_LOG) console.log(`parity ${backend} ${what}: ${rel.toExponential(2)}`);
  expectCloseScaled(a, r.data, tol.rtol, tol.atol, `${what} (max|err|/max|ref| = ${rel.toExponential(2)})`);
  return rel;
}

/** Prefill `ids[:, :prefill]` (or `embeds`), then decode the rest one token at a time; logits concatenated on T. */
function incremental(model: Llama, first: { inputIds?: number[][]; inputsEmbeds?: tf.Tensor3D }, rest: number[][]): tf.Tensor3D {
  let { logits, cache } = model.forward(first);
  const parts = [logits];
  for (let j = 0; j < rest[0]!.length; j++) {
    ({ logits, cache } = model.forward({ inputIds: rest.map((row) => [row[j]!]), cache }));
    parts.push(logits);
  }
  cache.dispose();
  const out = tf.concat(parts, 1);
  tf.dispose(parts);
  return out;
}

const split = (rows: number[][], at: number) => [rows.map((r) => r.slice(0, at)), rows.map((r) => r.slice(at))] as const;

// ---------------------------------------------------------------------------------------
// Config and rotary frequencies (no backend involved)

const TINY_CONFIG: LlamaConfig = {
  vocabSize: 300,
  hiddenSize: 64,
  intermediateSize: 128,
  numHiddenLayers: 2,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 16,
  rmsNormEps: 1e-5,
  ropeTheta: 500000,
  ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 },
  maxPositionEmbeddings: 512,
  tieWordEmbeddings: false,
  attentionBias: false,
  mlpBias: false,
  bosTokenId: 1,
  eosTokenIds: [2, 3],
};

/** Meta-Llama-3.1-8B-Instruct's config.json as on the Hub (transformers 4.x: rope at the top level). */
const LLAMA31_8B_HUB = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  hidden_act: 'silu',
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.43.0.dev0',
  use_cache: true,
  vocab_size: 128256,
};

describe('llamaConfigFromJson', () => {
  it('reads a transformers 5 config.json (rope under rope_parameters)', () => {
    expect(llamaConfigFromJson(readJson(`${TINY}/config.json`))).toEqual(TINY_CONFIG);
    expect(llamaConfigFromJson(readJson(`${BF16}/config.json`))).toEqual(TINY_CONFIG);
  });

  it('reads rope_theta / rope_scaling at the top level (transformers 4.x) identically', () => {
    const v5 = readJson(`${TINY}/config.json`);
    const { rope_parameters: rp, ...rest } = v5 as { rope_parameters: Record<string, unknown> };
    const { rope_theta, ...scaling } = rp;
    expect(llamaConfigFromJson({ ...rest, rope_theta, rope_scaling: scaling })).toEqual(TINY_CONFIG);
    // rope_scaling with the 4.x key "type" instead of "rope_type"
    const { rope_type, ...noType } = scaling;
    expect(llamaConfigFromJson({ ...rest, rope_theta, rope_scaling: { ...noType, type: rope_type } })).toEqual(TINY_CONFIG);
  });

  it("reads Meta-Llama-3.1-8B-Instruct's and Meta-Llama-3-8B-Instruct's Hub configs", () => {
    const c = llamaConfigFromJson(LLAMA31_8B_HUB);
    expect(c).toMatchObject({ vocabSize: 128256, hiddenSize: 4096, intermediateSize: 14336, numHiddenLayers: 32, numAttentionHeads: 32, numKeyValueHeads: 8, headDim: 128 });
    expect(c.ropeTheta).toBe(500000);
    expect(c.ropeScaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    expect(c.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(c.bosTokenId).toBe(128000);
    // LLaMA-3 (INF-LLaVA's LM): no scaling, a single eos id, rope_scaling null.
    const l3 = llamaConfigFromJson({ ...LLAMA31_8B_HUB, rope_scaling: null, max_position_embeddings: 8192, eos_token_id: 128009 });
    expect(l3.ropeScaling).toEqual({ type: 'default' });
    expect(l3.ropeTheta).toBe(500000);
    expect(l3.eosTokenIds).toEqual([128009]);
  });

  it('rope_parameters wins over top-level keys; llama3 original_max_position_embeddings defaults to max_position_embeddings', () => {
    const c = llamaConfigFromJson({ ...LLAMA31_8B_HUB, rope_theta: 10000, rope_parameters: { rope_type: 'llama3', rope_theta: 500000, factor: 8, low_freq_factor: 1, high_freq_factor: 4 } });
    expect(c.ropeTheta).toBe(500000);
    expect(c.ropeScaling).toMatchObject({ originalMaxPositionEmbeddings: 8192 });
    const d = llamaConfigFromJson({ ...LLAMA31_8B_HUB, rope_scaling: null, rope_parameters: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 } });
    expect(d.ropeTheta).toBe(500000); // from the top level
    expect(d.ropeScaling).toMatchObject({ originalMaxPositionEmbeddings: 131072 });
  });

  it('reads a nested text_config (Hugging Face LLaVA), defaults, head_dim and biases', () => {
    expect(llamaConfigFromJson({ model_type: 'llava', text_config: LLAMA31_8B_HUB, vision_config: {} }).hiddenSize).toBe(4096);
    const dflt = llamaConfigFromJson({});
    expect(dflt).toMatchObject({ vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numKeyValueHeads: 32, headDim: 128, rmsNormEps: 1e-6, ropeTheta: 10000, ropeScaling: { type: 'default' }, eosTokenIds: [] }); // ids are never invented
    const v = llamaConfigFromJson(readJson(`${VARIANT}/config.json`));
    expect(v).toMatchObject({ headDim: 32, numKeyValueHeads: 1, attentionBias: true, mlpBias: true, tieWordEmbeddings: true, ropeTheta: 10000, ropeScaling: { type: 'default' } });
  });

  it('refuses unsupported rope types, activations and shapes with errors that name them', () => {
    expect(() => llamaConfigFromJson({ rope_scaling: { type: 'dynamic', factor: 2 } })).toThrow(/rope type "dynamic" is not supported/);
    expect(() => llamaConfigFromJson({ rope_parameters: { rope_type: 'yarn', factor: 2 } })).toThrow(/rope_parameters: rope type "yarn"/);
    expect(() => llamaConfigFromJson({ rope_parameters: { rope_type: 'llama3', factor: 8 } })).toThrow(/needs "low_freq_factor"/);
    expect(() => llamaConfigFromJson({ hidden_act: 'gelu' })).toThrow(/hidden_act "gelu"/);
    expect(() => llamaConfigFromJson({ num_attention_heads: 32, num_key_value_heads: 5 })).toThrow(/must divide numAttentionHeads/);
    expect(() => llamaConfigFromJson({ rms_norm_eps: 'x' })).toThrow(/"rms_norm_eps" must be a finite number/);
    expect(() => llamaConfigFromJson({ tie_word_embeddings: 1 })).toThrow(/"tie_word_embeddings" must be a boolean/);
  });
});

describe('llamaRopeInvFreq matches transformers', () => {
  const cases: Array<[string, LlamaConfig]> = [
    ['inv_freq', TINY_CONFIG],
    ['variant.inv_freq', llamaConfigFromJson(readJson(`${VARIANT}/config.json`))],
    ['rope.llama31_8b.inv_freq', llamaConfigFromJson(LLAMA31_8B_HUB)],
  ];
  for (const [name, config] of cases) {
    it(`${name}: llama3 / default frequencies within 1 float32 ulp`, () => {
      const ours = llamaRopeInvFreq(config);
      const hf = ref(name).data;
      expect(ours.length).toBe(hf.length);
      for (let i = 0; i < hf.length; i++) {
        const ulp = Math.abs(Math.fround(hf[i]! * (1 + 2 ** -23)) - hf[i]!);
        expect(Math.abs(ours[i]! - hf[i]!), `${name}[${i}]: ${ours[i]} vs ${hf[i]}`).toBeLessThanOrEqual(ulp);
      }
    });
  }
  it('the LLaMA-3.1 scaling changes low and medium frequencies only', () => {
    const c = llamaConfigFromJson(LLAMA31_8B_HUB);
    const plain = llamaRopeInvFreq({ ...c, ropeScaling: { type: 'default' } });
    const scaled = llamaRopeInvFreq(c);
    expect(scaled[0]).toBe(plain[0]); // wavelength 2π: untouched
    expect(scaled[63]! / plain[63]!).toBeCloseTo(1 / 8, 6); // longest wavelengths: divided by 8
    expectCloseValues(scaled, ref('rope.llama31_8b.inv_freq').data, 2 ** -23, 0, 'LLaMA-3.1 inv_freq'); // measured: bit-exact
  });
});

// ---------------------------------------------------------------------------------------
// Parity on every backend

await describeEachBackend('LLaMA parity with transformers', (backend: BackendName) => {
  const tol = TOL;
  let f32: Llama;
  let bf16: Llama;
  let variant: Llama;
  const ids1 = ids('ids');
  const ids2 = ids('ids_batch2');

  beforeAll(async () => {
    f32 = await loadLlama(TINY);
    bf16 = await loadLlama(BF16, { lazyBlockElements: 1000 }); // 'auto' → lazy; matrices in blocks of 15 (64 wide) or 7 (128 wide) rows
    variant = await loadLlama(VARIANT);
  });
  afterAll(() => {
    f32?.dispose();
    bf16?.dispose();
    variant?.dispose();
  });

  it(`full logits, batch 1 and 2 (element-wise, |err| <= ${tol.atol}·max|ref| + ${tol.rtol}·|ref|)`, async () => {
    const a = f32.forward({ inputIds: ids1 });
    await expectClose(a.logits, 'logits', tol, 'logits', backend);
    const b = f32.forward({ inputIds: ids2 });
    await expectClose(b.logits, 'logits_batch2', tol, 'logits_batch2', backend);
    expect(a.cache.length).toBe(12);
    expect(a.cache.keys[0]!.shape).toEqual([1, 2, 12, 16]);
    tf.dispose([a.logits, b.logits]);
    a.cache.dispose();
    b.cache.dispose();
  });

  it('prefill 8 + 4 cached decode steps = transformers with a DynamicCache = our full forward', async () => {
    const [pre, rest] = split(ids1, 8);
    const inc = incremental(f32, { inputIds: pre }, rest);
    await expectClose(inc, 'logits_incremental', tol, 'logits_incremental', backend);
    await expectClose(inc, 'logits', tol, 'incremental vs full', backend);
    inc.dispose();
    const [pre2, rest2] = split(ids2, 8);
    const inc2 = incremental(f32, { inputIds: pre2 }, rest2);
    await expectClose(inc2, 'logits_batch2_incremental', tol, 'logits_batch2_incremental', backend);
    inc2.dispose();
  });

  it('prefill from inputsEmbeds [1, 5, 64], then 3 decoded tokens (positions continue from the cache)', async () => {
    const e = ref('embeds');
    const embeds = tf.tensor3d(e.data, e.shape as [number, number, number]);
    const out = incremental(f32, { inputsEmbeds: embeds }, ids('embeds_decode_ids'));
    await expectClose(out, 'logits_embeds', tol, 'logits_embeds', backend);
    expect(embeds.isDisposed, 'inputsEmbeds stays the caller’s').toBe(false);
    tf.dispose([out, embeds]);
  });

  it('embed(ids) feeds forward({inputsEmbeds}) identically; ids as a Tensor2D; logitsToKeep', async () => {
    const idT = tf.tensor2d(ids1, [1, 12], 'int32');
    const e1 = f32.embed(ids1);
    const e2 = f32.embed(idT);
    const viaEmbeds = f32.forward({ inputsEmbeds: e1 });
    const viaTensor = f32.forward({ inputIds: idT });
    await expectClose(viaEmbeds.logits, 'logits', tol, 'logits via embed()', backend);
    await expectClose(viaTensor.logits, 'logits', tol, 'logits via Tensor2D ids', backend);
    await expectClose(e2, { data: await e1.data() as Float32Array, shape: [1, 12, 64] }, EXACT, 'embed(Tensor2D)', backend);
    const last = f32.forward({ inputIds: ids1, logitsToKeep: 1 });
    expect(last.logits.shape).toEqual([1, 1, 300]);
    const r = ref('logits');
    await expectClose(last.logits, { data: r.data.slice(11 * 300), shape: [1, 1, 300] }, tol, 'logitsToKeep 1', backend);
    tf.dispose([idT, e1, e2, viaEmbeds.logits, viaTensor.logits, last.logits]);
    for (const c of [viaEmbeds.cache, viaTensor.cache, last.cache]) c.dispose();
  });

  it('bf16 checkpoint, lazy (auto): logits and cached decoding (bf16 gemv for ≤ 8 rows) match transformers on the upcast weights', async () => {
    // A lazy model holds only its 1-D weights as tensors: 2 norms per layer + the final norm;
    // on webgpu also every projection and lm_head, packed and resident (int32 words).
    const before = tf.memory().numTensors;
    const probe = await loadLlama(BF16);
    expect(tf.memory().numTensors - before).toBe(2 * 2 + 1 + (backend === 'webgpu' ? 2 * 7 + 1 : 0));
    probe.dispose();
    const full = bf16.forward({ inputIds: ids1 });
    await expectClose(full.logits, 'bf16.logits', tol, 'bf16.logits', backend);
    full.cache.dispose();
    full.logits.dispose();
    const [pre, rest] = split(ids1, 8);
    const inc = incremental(bf16, { inputIds: pre }, rest);
    await expectClose(inc, 'bf16.logits_incremental', tol, 'bf16.logits_incremental', backend);
    inc.dispose();
    // Lazy embedding from a Tensor2D of ids (read back synchronously, webgpu included).
    const idT = tf.tensor2d(ids1, [1, 12], 'int32');
    const a = bf16.embed(idT);
    const b = bf16.embed(ids1);
    await expectClose(a, { data: (await b.data()) as Float32Array, shape: [1, 12, 64] }, EXACT, 'lazy embed(Tensor2D)', backend);
    tf.dispose([idT, a, b]);
  });

  it('residency does not change results: lazy f32, eager bf16, a store from bytes in memory', async () => {
    const lazyF32 = await loadLlama(TINY, { lazy: true, lazyBlockElements: 7 * 64 });
    const eagerBf16 = await loadLlama(BF16, { lazy: false });
    const noGemv = await loadLlama(BF16, { lazyGemvMaxRows: 0 }); // decode steps decode + matMul too
    const store = LazyWeights.fromSafetensors(new Uint8Array(readFileSync(`${BF16}/model.safetensors`)));
    const fromStore = llamaFromTensors(store, llamaConfigFromJson(readJson(`${BF16}/config.json`)));
    for (const [m, name] of [[lazyF32, 'logits'], [eagerBf16, 'bf16.logits'], [fromStore, 'bf16.logits'], [noGemv, 'bf16.logits']] as const) {
      const out = m.forward({ inputIds: ids1 });
      await expectClose(out.logits, name, tol, `${name} (residency)`, backend);
      out.logits.dispose();
      out.cache.dispose();
    }
    for (const [m, name] of [[noGemv, 'bf16.logits_incremental'], [fromStore, 'bf16.logits_incremental'], [lazyF32, 'logits_incremental']] as const) {
      const [pre, rest] = split(ids1, 8);
      const inc = incremental(m, { inputIds: pre }, rest);
      await expectClose(inc, name, tol, `${name} (residency, incremental)`, backend);
      inc.dispose();
    }
    for (const m of [lazyF32, eagerBf16, fromStore, noGemv]) m.dispose();
    expect(store.names().length, 'a caller’s store is not cleared by the model').toBe(21);
  });

  it('variant: explicit head_dim 32, one kv head, q/k/v/o and MLP biases, default rope, tied lm_head (not saved)', async () => {
    const out = variant.forward({ inputIds: ids1 });
    await expectClose(out.logits, 'variant.logits', tol, 'variant.logits', backend);
    tf.dispose(out.logits);
    out.cache.dispose();
    const [pre, rest] = split(ids1, 8);
    const inc = incremental(variant, { inputIds: pre }, rest);
    await expectClose(inc, 'variant.logits_incremental', tol, 'variant.logits_incremental', backend);
    inc.dispose();
    const lazy = await loadLlama(VARIANT, { lazy: true, lazyBlockElements: 100 * 64 });
    const l = lazy.forward({ inputIds: ids1 });
    await expectClose(l.logits, 'variant.logits', tol, 'variant.logits (lazy, tied)', backend);
    tf.dispose(l.logits);
    l.cache.dispose();
    lazy.dispose();
  });

  it('tie_word_embeddings ignores a saved lm_head; a missing lm_head ties', async () => {
    const { tensors } = await loadSafetensors(`${TINY}/model.safetensors`);
    const config = llamaConfigFromJson(readJson(`${TINY}/config.json`));
    const withEmbedHead = { ...tensors, 'lm_head.weight': tensors['model.embed_tokens.weight']! };
    const { 'lm_head.weight': _, ...noHead } = tensors;
    const models = [
      llamaFromTensors(withEmbedHead, config),
      llamaFromTensors(tensors, { ...config, tieWordEmbeddings: true }),
      llamaFromTensors(noHead, config),
    ];
    const outs = models.map((m) => m.forward({ inputIds: ids1 }));
    const want = { data: (await outs[0]!.logits.data()) as Float32Array, shape: [1, 12, 300] };
    await expectClose(outs[1]!.logits, want, EXACT, 'tied by config', backend);
    await expectClose(outs[2]!.logits, want, EXACT, 'tied by absence', backend);
    for (const o of outs) {
      o.logits.dispose();
      o.cache.dispose();
    }
    for (const m of models) m.dispose();
    tf.dispose(Object.values(tensors));
  });

  it('forward consumes its cache: old tensors freed, reuse refused, clone() keeps one; nothing leaks', async () => {
    const before = tf.memory().numTensors;
    const a = f32.forward({ inputIds: [ids1[0]!.slice(0, 6)] });
    const keep = a.cache.clone();
    const b = f32.forward({ inputIds: [[ids1[0]![6]!]], cache: a.cache });
    expect(a.cache.keys.every((t) => t.isDisposed)).toBe(true);
    expect(b.cache.length).toBe(7);
    expectThrowsClean(() => f32.forward({ inputIds: [[1]], cache: a.cache }), /cache has been disposed/);
    const c = f32.forward({ inputIds: [[ids1[0]![6]!]], cache: keep }); // the kept prefix, again
    await expectClose(c.logits, { data: (await b.logits.data()) as Float32Array, shape: [1, 1, 300] }, EXACT, 'from a cloned cache', backend);
    expectThrowsClean(() => f32.forward({ inputIds: [[1, 2]], cache: { ...c.cache, length: 3, capacity: 3 } as KVCache }), /cache tensors must be \[B, 2, 3, 16\]/);
    expectThrowsClean(() => f32.forward({ inputIds: [[1], [2]], cache: c.cache }), /batch 2 does not match the cache's batch 1/);
    tf.dispose([a.logits, b.logits, c.logits]);
    b.cache.dispose();
    c.cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('bad inputs are refused with clean errors', () => {
    expectThrowsClean(() => f32.forward({ inputIds: [[1, 300]] }), /token id 300 at \[0, 1\] is outside \[0, 300\)/);
    expectThrowsClean(() => f32.forward({ inputIds: [[1, 2], [3]] }), /rectangular/);
    expectThrowsClean(() => f32.forward({}), /exactly one of inputIds and inputsEmbeds/);
    const e = tf.zeros([1, 2, 32]) as tf.Tensor3D;
    expectThrowsClean(() => f32.forward({ inputsEmbeds: e }), /inputsEmbeds must be \[B, T, 64\]/);
    e.dispose();
    expectThrowsClean(() => bf16.embed([[-1]]), /token id -1/);
  });

  it('missing, mis-shaped and unexpected tensors: errors name the keys, nothing leaks', async () => {
    const config = llamaConfigFromJson(readJson(`${TINY}/config.json`));
    const { tensors } = await loadSafetensors(`${TINY}/model.safetensors`);
    const { 'model.layers.1.mlp.up_proj.weight': up, ...noUp } = tensors;
    expectThrowsClean(() => llamaFromTensors(noUp, config), /missing: model\.layers\.1\.mlp\.up_proj\.weight/);
    expectThrowsClean(() => llamaFromTensors(tensors, { ...config, intermediateSize: 96 }), /model\.layers\.0\.mlp\.gate_proj\.weight must have shape \[96,64\], got \[128,64\]/);
    expectThrowsClean(() => llamaFromTensors({ ...tensors, 'model.layers.2.mlp.up_proj.weight': up! }, config), /unexpected: model\.layers\.2\.mlp\.up_proj\.weight/);
    expectThrowsClean(() => llamaFromTensors(tensors, config, { prefix: 'language_model.' }), /missing: language_model\.model\.embed_tokens\.weight/);
    expectThrowsClean(() => llamaFromTensors(tensors, { ...config, attentionBias: true }), /missing: model\.layers\.0\.self_attn\.q_proj\.bias/);
    const { weights } = await loadSafetensorsRaw(BF16, { filter: (n) => n !== 'model.norm.weight' });
    expectThrowsClean(() => llamaFromTensors(weights, config), /missing: model\.norm\.weight/);
    await expect(loadLlama(TINY, { prefix: 'x.' })).rejects.toThrow(/loadLlama: .*missing tensors: x\.model\.embed_tokens\.weight/);
    tf.dispose(Object.values(tensors));
  });

  it('bf16 decoding (WebAssembly SIMD and the JS loop) is bit-exact: whole tensors, row blocks, gathers, odd lengths and offsets', async () => {
    const bits = async (t: tf.Tensor) => {
      const v = new Uint32Array(((await t.data()) as Float32Array).slice().buffer);
      t.dispose();
      return v;
    };
    const bytes = new Uint8Array(readFileSync(`${BF16}/model.safetensors`));
    const store = LazyWeights.fromSafetensors(bytes);
    const { tensors } = readSafetensors(bytes);
    // 2·29 bytes at an odd offset (no aligned view possible), every bit pattern class included.
    const raw = new Uint8Array(2 * 29 + 1);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * 2654435761) >>> 24;
    raw.set([0x80, 0x7f, 0xc0, 0x7f, 0x80, 0xff, 0x00, 0x80], 1); // +inf, NaN, -inf, -0
    const odd = new LazyWeights([['x', { dtype: 'BF16', shape: [29], bytes: raw.subarray(1) }]]);
    const oddRef = Uint32Array.from({ length: 29 }, (_, i) => ((raw[1 + 2 * i]! | (raw[2 + 2 * i]! << 8)) << 16) >>> 0);
    try {
      for (const simd of [true, false]) {
        expect(setBf16Simd(simd), 'WebAssembly SIMD in use (Node ≥ 16 has it)').toBe(simd);
        for (const name of store.names()) {
          expect(await bits(store.materialize(name)), `${name} (simd ${simd})`).toEqual(await bits(tensors[name]!.clone()));
        }
        const head = await bits(tensors['lm_head.weight']!.clone());
        expect(await bits(store.rows('lm_head.weight', 13, 29))).toEqual(head.slice(13 * 64, 42 * 64));
        expect(await bits(store.gatherRows('lm_head.weight', [299, 0, 7]))).toEqual(Uint32Array.from([...head.slice(299 * 64, 300 * 64), ...head.slice(0, 64), ...head.slice(7 * 64, 8 * 64)]));
        expect(await bits(odd.materialize('x')), `odd offset (simd ${simd})`).toEqual(oddRef);
      }
    } finally {
      setBf16Simd(true);
      tf.dispose(Object.values(tensors));
    }
  });

  it('bf16 gemv (LazyWeights.matMulTransposed): several rows of x, several weight blocks, against float64 sums', () => {
    const rows = 131_080; // × 8 columns: more than one 2^20-value block
    const cols = 8;
    const raw = new Uint16Array(rows * cols);
    for (let i = 0; i < raw.length; i++) {
      const r = Math.imul(i + 1, 2654435761) >>> 16;
      raw[i] = (r & 0x807f) | ((119 + ((r >> 7) & 3)) << 7);
    }
    const store = new LazyWeights([
      ['w', { dtype: 'BF16', shape: [rows, cols], bytes: new Uint8Array(raw.buffer) }],
      ['odd', { dtype: 'BF16', shape: [2, 6], bytes: new Uint8Array(24) }],
    ]);
    const x = Float32Array.from({ length: 3 * cols }, (_, i) => Math.sin(i + 1));
    const y = store.matMulTransposed('w', x, 3)!;
    expect(y.length).toBe(3 * rows);
    const w = new Float32Array(new Uint32Array(Array.from(raw, (v) => (v << 16) >>> 0)).buffer);
    let err = 0;
    let max = 0;
    for (let i = 0; i < 3; i++) {
      for (let r = 0; r < rows; r++) {
        let sum = 0;
        for (let c = 0; c < cols; c++) sum += w[r * cols + c]! * x[i * cols + c]!;
        err = Math.max(err, Math.abs(sum - y[i * rows + r]!));
        max = Math.max(max, Math.abs(sum));
      }
    }
    expect(err / max).toBeLessThan(1e-6);
    expect(store.matMulTransposed('odd', new Float32Array(6), 1), 'columns not a multiple of 8: not applicable').toBeUndefined();
    expect(() => store.matMulTransposed('w', x, 2)).toThrow(/x must hold m × 8 values/);
  });

  // A report, not a test (it could not fail).
  afterAll(() => {
    for (const [b, e] of worst) if (b === backend) console.log(`llama: worst max|err|/max|ref| on ${b}: ${e.toExponential(2)}`);
  });
});
