/**
 * A synthetic LLaMA (the `llama8b` group): Meta-Llama-3-8B's config (or a tiny one for --quick),
 * its tensor shapes and FLOPs, and random weights made in JS (no file) into a LazyWeights store.
 */
import { LazyWeights, llamaTensorNames, type LlamaConfig, type PackedWeight, type PackedWeightFormat } from '../../src/index.js';
import { attentionOpFlops } from '../cases.js';

/** Meta-Llama-3-8B's config.json (the fields llamaConfigFromJson reads). */
export const LLAMA3_8B_JSON = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  bos_token_id: 128000,
  eos_token_id: 128001,
  hidden_act: 'silu',
  hidden_size: 4096,
  intermediate_size: 14336,
  max_position_embeddings: 8192,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  vocab_size: 128256,
};
/** --quick: the same architecture, tiny (runs on SwiftShader in seconds). */
export const LLAMA_TINY_JSON = { ...LLAMA3_8B_JSON, bos_token_id: 1, eos_token_id: 2, hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 1024 };

/** Linear weights of the decoder layers, and of lm_head (read per decode step; the embedding is gathered). */
export function llamaParams(c: LlamaConfig): { layers: number; lmHead: number } {
  const d = c.hiddenSize;
  const qd = c.numAttentionHeads * c.headDim;
  const kvd = c.numKeyValueHeads * c.headDim;
  const perLayer = qd * d + 2 * kvd * d + d * qd + 3 * c.intermediateSize * d;
  return { layers: c.numHiddenLayers * perLayer, lmHead: c.vocabSize * d };
}

/**
 * FLOPs of a prefill of T tokens with logitsToKeep 1, counted from the shapes: 2·T per layer
 * weight, the causal attention (q·kᵀ and p·v over the lower triangle, as attentionOpFlops), one row of
 * lm_head. LLaMA-3-8B, T 600: 8.37 + 0.09 + 0.001 ≈ 8.47 TFLOP (2·8.03 G·600 = 9.6 would count the
 * embedding and all 600 rows of lm_head, which a prefill with logitsToKeep 1 does not compute).
 */
export function llamaPrefillFlops(c: LlamaConfig, T: number): number {
  const p = llamaParams(c);
  return 2 * T * p.layers + c.numHiddenLayers * attentionOpFlops(1, c.numAttentionHeads, T, T, c.headDim, true) + 2 * p.lmHead;
}

/** The tensor's shape, from its Hugging Face name. */
function llamaShape(name: string, c: LlamaConfig): [number, number] | [number] {
  const d = c.hiddenSize;
  if (name.endsWith('embed_tokens.weight') || name === 'lm_head.weight') return [c.vocabSize, d];
  if (name.endsWith('norm.weight')) return [d];
  const qd = c.numAttentionHeads * c.headDim;
  const kvd = c.numKeyValueHeads * c.headDim;
  const I = c.intermediateSize;
  const m = /(q|k|v|o|gate|up|down)_proj\.weight$/.exec(name);
  const shapes: Record<string, [number, number]> = { q: [qd, d], k: [kvd, d], v: [kvd, d], o: [d, qd], gate: [I, d], up: [I, d], down: [d, I] };
  if (!m || !shapes[m[1]!]) throw new Error(`llama8b: no shape for ${name}`);
  return shapes[m[1]!]!;
}

/** xorshift32: a seeded stream of uint32. */
function xorshift32(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
}

/**
 * Random pools, made once (~0.5 s): every matrix is filled with slices of them copied at random
 * offsets (memcpy speed: ~16 GB of bf16 in seconds, where a per-value generator would take minutes).
 * - bf16: words of two bf16 values uniform in ±0.02 (rounded from f32), std ≈ 0.0115;
 * - int: any uint32, i.e. four int8 (q8) or eight nibbles (q4);
 * - q8 scales ≈ 0.02/127 (× 0.75–1.25): w = q·s, std ≈ 0.0116;
 * - q4 scales ≈ 0.04/15 (× 0.75–1.25) and mins = −7.5·scale (≈ −0.02): w = q·s + min, centred, std ≈ 0.012.
 */
interface LlamaPools {
  bf16: Int32Array;
  int: Int32Array;
  q8Scales: Float32Array;
  q4Scales: Float32Array;
  q4Mins: Float32Array;
}
let llamaPools: LlamaPools | undefined;
/** The pools (small ones for --quick), made on the first call. */
function pools(quick: boolean): LlamaPools {
  if (llamaPools) return llamaPools;
  const words = quick ? 1 << 16 : 1 << 23; // 32 MiB each at size
  const groups = quick ? 1 << 12 : 1 << 20;
  const rng = xorshift32(0x5eed);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const bf16Bits = () => {
    f[0] = ((rng() / 4294967296) * 2 - 1) * 0.02;
    return ((u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) >>> 16) & 0xffff; // round to nearest even
  };
  const bf16 = new Int32Array(words);
  for (let i = 0; i < words; i++) bf16[i] = bf16Bits() | (bf16Bits() << 16);
  const int = new Int32Array(words);
  for (let i = 0; i < words; i++) int[i] = rng() | 0;
  const q8Scales = new Float32Array(groups);
  const q4Scales = new Float32Array(groups);
  const q4Mins = new Float32Array(groups);
  for (let i = 0; i < groups; i++) {
    q8Scales[i] = (0.02 / 127) * (0.75 + (rng() / 4294967296) * 0.5);
    q4Scales[i] = (0.04 / 15) * (0.75 + (rng() / 4294967296) * 0.5);
    q4Mins[i] = -7.5 * q4Scales[i]!;
  }
  return (llamaPools = { bf16, int, q8Scales, q4Scales, q4Mins });
}

/** Fills `dst` with slices of `pool` (at most half the pool each) at offsets from `rng`; `paired` gets the same slices of `pairedPool`. */
function fillFromPool<T extends Int32Array | Float32Array>(dst: T, pool: T, rng: () => number, paired?: [Float32Array, Float32Array]): void {
  const chunk = Math.max(1, Math.min(dst.length, pool.length >>> 1));
  for (let pos = 0; pos < dst.length; pos += chunk) {
    const n = Math.min(chunk, dst.length - pos);
    const off = rng() % (pool.length - n + 1);
    dst.set(pool.subarray(off, off + n), pos);
    if (paired) paired[0].set(paired[1].subarray(off, off + n), pos);
  }
}

/** The embedding (bf16 in every format, as the library keeps it) and the norms (ones), shared by the three stores. */
let llamaShared: { embed: Uint8Array; ones: Uint8Array } | undefined;

/**
 * A LazyWeights store of a synthetic LLaMA in `format`: bf16 matrices as BF16 checkpoint bytes,
 * q8 / q4 as packed entries (setPacked: G = 64 groups along K), all filled from the pools; the
 * embedding bf16, norms ones (F32). No file, no float32 copy.
 */
export function syntheticLlamaStore(c: LlamaConfig, format: PackedWeightFormat, seed: number, quick: boolean): LazyWeights {
  const p = pools(quick);
  const rng = xorshift32(seed);
  const { required, lmHead } = llamaTensorNames(c);
  const store = new LazyWeights();
  const bf16Bytes = (rows: number, cols: number) => {
    const words = new Int32Array((rows * cols) / 2);
    fillFromPool(words, p.bf16, rng);
    return new Uint8Array(words.buffer);
  };
  llamaShared ??= {
    embed: bf16Bytes(c.vocabSize, c.hiddenSize),
    ones: new Uint8Array(Float32Array.from({ length: c.hiddenSize }, () => 1).buffer),
  };
  for (const name of [...required, lmHead]) {
    const shape = llamaShape(name, c);
    if (shape.length === 1) {
      store.set(name, { dtype: 'F32', shape, bytes: llamaShared.ones });
      continue;
    }
    const [rows, cols] = shape;
    if (name.endsWith('embed_tokens.weight')) store.set(name, { dtype: 'BF16', shape, bytes: llamaShared.embed });
    else if (format === 'bf16') store.set(name, { dtype: 'BF16', shape, bytes: bf16Bytes(rows, cols) });
    else {
      const G = 64;
      if (cols % G !== 0) throw new Error(`llama8b: ${name} has K = ${cols}, not a multiple of ${G}`);
      const data = new Int32Array((rows * cols) / (format === 'q8' ? 4 : 8));
      fillFromPool(data, p.int, rng);
      const scales = new Float32Array((rows * cols) / G);
      let mins: Float32Array | undefined;
      if (format === 'q8') fillFromPool(scales, p.q8Scales, rng);
      else {
        mins = new Float32Array(scales.length);
        fillFromPool(scales, p.q4Scales, rng, [mins, p.q4Mins]);
      }
      const w: PackedWeight = { format, rows, cols, groupSize: G, data, scales, ...(mins ? { mins } : {}) };
      store.setPacked(name, w);
    }
  }
  return store;
}

/** The prompt: BOS, then seeded pseudo-random ids (the LCG of bench/llama-8b-synthetic.ts; torch_gpu.py makes the same). */
export function llamaPrompt(n: number, c: LlamaConfig): number[] {
  const out = [c.bosTokenId !== undefined && c.bosTokenId < c.vocabSize ? c.bosTokenId : 0];
  let s = 12345;
  while (out.length < n) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    out.push(s % c.vocabSize);
  }
  return out;
}

export function describeLlama(c: LlamaConfig): string {
  return `${c.numHiddenLayers} layers, d ${c.hiddenSize}, MLP ${c.intermediateSize}, ${c.numAttentionHeads}:${c.numKeyValueHeads} heads of ${c.headDim}, V ${c.vocabSize}, rope θ ${c.ropeTheta}`;
}
