/**
 * GPU benchmark: the library on `webgpu` (Dawn) next to PyTorch (CUDA, fp32) on the same card,
 * in one run. Built into one file, bench/gpu/run.mjs (bench/gpu/build.mjs), that imports the
 * library as the package `inf-llava` so it runs inside the GPU machine's bundle (bench/README.md).
 *
 *   npm run bench:gpu -- [--quick] [--reps N] [--only a,b] [--kernels a,b] [--backend webgpu]
 *                        [--no-torch] [--torch-device cuda|cpu] [--python P] [--torch-timeout S]
 *                        [--max-minutes M] [--save | --out DIR] [--name SLUG]
 *
 * Cases: tfjs's matMul at 1024³/2048³/4096³; the `attention` op at the DEM window, CLIP's 18 × 16
 * heads, a LLaMA-3-8B prefill and decode step (every `opts.kernel` the op accepts, found at run
 * time); the official DEM (`spatialEmbed`) and CLIP ViT-L/14-336 on 18 crops to layer −2 (random
 * weights); the packed-weight linear layer (`packedLinear`, bf16 / q8 / q4) at LLaMA-3-8B shapes:
 * decode GEMVs (GB/s of weight bytes read) and the prefill GEMM (random packed weights made on the
 * device). Each variant: median of N calls with the result read back, and N calls queued back to
 * back with only the last read back (per call: "pipelined"); GFLOP/s from FLOPs counted from the
 * shapes. PyTorch (bench/gpu/torch_gpu.py, embedded in the bundle) times the same cases.
 * Last, the `llama8b` group (--only llama8b): a synthetic LLaMA-3-8B (bf16, q4, q8), random packed
 * weights made in JS (no file) and uploaded by llamaFromTensors, prefill 600 and greedy decode
 * timed; PyTorch's own bf16 LLaMA (and transformers' if importable) beside it. --quick: a tiny model.
 *
 * Writes <date>-gpu-<adapter>[-quick].json and .md into: --out DIR; else bench/results with
 * --save; else $OUT/bench/results when $OUT is set (the GPU machine); else a temporary folder.
 */
import * as tf from '@tensorflow/tfjs-core';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  attention,
  attentionPlan,
  clipVisionFromTensors,
  CLIP_VIT_L_14_336,
  initClipVisionTensors,
  initSpatialEmbed,
  LazyWeights,
  llamaConfigFromJson,
  llamaFromTensors,
  llamaTensorNames,
  packedLinear,
  packedLinearPlan,
  spatialEmbed,
  spatialEmbedToStateDict,
  type AttentionLayout,
  type AttentionOptions,
  type ClipVisionConfig,
  type KVCache,
  type Llama,
  type LlamaConfig,
  type PackedLinear,
  type PackedLinearOptions,
  type PackedWeight,
  type PackedWeightFormat,
} from '../../src/index.js';
import { useBackend, type BackendName } from '../../src/backends/node.js';

/** The PyTorch script's text, put in by bench/gpu/build.mjs; undefined when run from source. */
declare const __TORCH_GPU_PY__: string | undefined;

// ---------------------------------------------------------------------------------------------
// Variants: one line each.
// ---------------------------------------------------------------------------------------------

/** matMul implementations timed at every matMul size (a fused or faster matMul: one more line). */
const MATMUL_VARIANTS: Array<[label: string, mm: (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor]> = [
  ['tf.matMul', (a, b) => tf.matMul(a, b)],
];
/** Options on top of each attention case's own; crossed with every kernel the op accepts. */
const ATTENTION_VARIANTS: Array<[label: string, opts: AttentionOptions]> = [['auto', {}]];
/** Kernels asked of the op when it has `opts.kernel` (detected at run time; --kernels overrides). */
const KERNEL_CANDIDATES = ['composition', 'fused'];
/** spatialEmbed layouts (on webgpu 'auto' is 'batched' for the DEM's 576² windows). */
const DEM_LAYOUTS: AttentionLayout[] = ['auto', 'batched', 'per-window'];
/** CLIP: images per forward pass (4 is the library's default). */
const CLIP_BATCH_SIZES = [4, 18];

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const value = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const KNOWN = new Set(['quick', 'reps', 'only', 'kernels', 'backend', 'no-torch', 'torch-device', 'python', 'torch-timeout', 'max-minutes', 'save', 'out', 'name', 'help']);
const WITH_VALUE = new Set(['reps', 'only', 'kernels', 'backend', 'torch-device', 'python', 'torch-timeout', 'max-minutes', 'out', 'name']);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]!;
  if (!a.startsWith('--') || !KNOWN.has(a.slice(2))) {
    console.error(`bench:gpu: unknown argument ${JSON.stringify(a)}; see the header of bench/gpu/run.ts (--help)`);
    process.exit(2);
  }
  if (WITH_VALUE.has(a.slice(2))) i++;
}
if (flag('help')) {
  console.log('npm run bench:gpu -- [--quick] [--reps N] [--only a,b] [--kernels a,b] [--backend webgpu] [--no-torch] ' +
    '[--torch-device cuda|cpu] [--python P] [--torch-timeout S] [--max-minutes M] [--save | --out DIR] [--name SLUG]');
  process.exit(0);
}
const quick = flag('quick');
const reps = Number(value('reps') ?? (quick ? 1 : 5));
const only = value('only')?.split(',').map((s) => s.trim()).filter(Boolean);
const backendName = (value('backend') ?? 'webgpu') as BackendName;
const torchDevice = value('torch-device') ?? 'cuda';
const torchTimeoutS = Number(value('torch-timeout') ?? 240);
const maxMinutes = Number(value('max-minutes') ?? (quick ? 30 : 5));
const log = (s: string) => process.stderr.write(`${s}\n`);
const started = performance.now();
const elapsedS = () => (performance.now() - started) / 1000;

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

interface Variant {
  label: string;
  run: () => tf.Tensor;
}
interface Prepared {
  variants: Variant[];
  dispose: () => void;
}
type Kind = 'matmul' | 'attention' | 'dem' | 'clip' | 'packed';
interface GpuCase {
  /** Join key with the PyTorch rows. */
  name: string;
  kind: Kind;
  /** What bench/gpu/torch_gpu.py needs to build the same case. */
  params: Record<string, number | string | boolean>;
  shape: string;
  flops: number;
  /** Bytes that bound the case (packed GEMV: the weight's words, scales and mins), for GB/s. */
  bytes?: number;
  /** Time N calls queued back to back too (not for CLIP: one call is many passes already). */
  pipeline: boolean;
  warmup: number;
  prepare: () => Prepared;
}

const randn = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, 'float32', seed);

function matMulCase(m: number, k: number, n: number): GpuCase {
  return {
    name: `matMul ${m}x${k}x${n}`,
    kind: 'matmul',
    params: { m, k, n },
    shape: `[${m}, ${k}] × [${k}, ${n}]`,
    flops: 2 * m * k * n,
    pipeline: true,
    warmup: 2,
    prepare: () => {
      const a = randn([m, k], 1) as tf.Tensor2D;
      const b = randn([k, n], 2) as tf.Tensor2D;
      return { variants: MATMUL_VARIANTS.map(([label, mm]) => ({ label, run: () => mm(a, b) })), dispose: () => tf.dispose([a, b]) };
    },
  };
}

/** The `kernel` values the attention op accepts (none: it has no such option yet). */
function attentionKernels(): Array<string | undefined> {
  const forced = value('kernels')?.split(',').map((s) => s.trim()).filter(Boolean);
  if (forced) return forced;
  const s = [1, 1, 4, 8];
  const ok = KERNEL_CANDIDATES.filter((kernel) => {
    try {
      attentionPlan(s, s, s, { kernel } as AttentionOptions);
      return true;
    } catch {
      return false;
    }
  });
  return ok.length ? ok : [undefined];
}
/** Set once the backend runs (the op may accept a kernel on one backend only). */
let KERNELS: Array<string | undefined> = [undefined];

/** " (attention: fused)" when the op reports which implementation it picks for these shapes (after the fused kernel landed). */
function attentionKernelFor(q: number[], opts: AttentionOptions = {}): string {
  try {
    const p = attentionPlan(q, q, q, opts) as { kernel?: string };
    return p.kernel ? ` (attention: ${p.kernel})` : '';
  } catch {
    return '';
  }
}

/** FLOPs of q·kᵀ and p·v (dk = dv), halved for a causal square (as bench/cases.ts). */
const attnFlops = (B: number, H: number, Tq: number, Tk: number, dk: number, causal: boolean) => (4 * B * H * Tq * Tk * dk) / (causal && Tq === Tk ? 2 : 1);

function attentionCase(label: string, B: number, H: number, Hkv: number, Tq: number, Tk: number, dk: number, causal: boolean): GpuCase {
  const q = [B, H, Tq, dk];
  const kv = [B, Hkv, Tk, dk];
  return {
    name: `attention ${label} ${B}x${H}:${Hkv}x${Tq}x${Tk}x${dk}${causal ? ' causal' : ''}`,
    kind: 'attention',
    params: { B, H, Hkv, Tq, Tk, dk, causal },
    shape: `q [${q}], k/v [${kv}]`,
    flops: attnFlops(B, H, Tq, Tk, dk, causal),
    pipeline: true,
    warmup: 2,
    prepare: () => {
      const [qt, kt, vt] = [q, kv, kv].map((s, i) => randn(s, i + 1) as tf.Tensor4D) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
      const variants = KERNELS.flatMap((kernel) =>
        ATTENTION_VARIANTS.map(([l, o]) => {
          const opts = { ...o, ...(causal ? { causal } : {}), ...(kernel ? { kernel } : {}) } as AttentionOptions;
          return { label: kernel ? `${l}, kernel ${kernel}` : l, run: () => attention(qt, kt, vt, opts) };
        }),
      );
      return { variants, dispose: () => tf.dispose([qt, kt, vt]) };
    },
  };
}

/** The official DEM forward: enhancement (both directions) + fusion MLPs, as bench/cases.ts counts it. */
function demCase(label: string, n: number, h: number, d: number, heads: number): GpuCase {
  const H = n * h;
  const tokens = H * H;
  const t = h * h;
  const T = n * n;
  const enhance = 2 * (4 * 2 * tokens * d * d + 2 * 2 * T * t * t * d);
  const hidden = d / 16;
  const fuse = 2 * 2 * tokens * (d * hidden + hidden * (d / 2));
  return {
    name: `spatialEmbed ${label} ${2 * T}x${h}x${h}x${d} n${n} h${heads}`,
    kind: 'dem',
    params: { n, h, d, heads },
    shape: `2 × [${T}, ${h}, ${h}, ${d}] → [1, ${h}, ${h}, ${d}]`,
    flops: enhance + fuse,
    pipeline: true,
    warmup: 2,
    prepare: () => {
      const w = initSpatialEmbed(d, { heads, seed: 0 });
      const lt = randn([T, h, h, d], 3) as tf.Tensor4D;
      const gt = randn([T, h, h, d], 4) as tf.Tensor4D;
      return {
        variants: DEM_LAYOUTS.map((layout) => ({ label: `layout ${layout}${attentionKernelFor([T, heads, t, d / heads], { layout })}`, run: () => spatialEmbed(lt, gt, w, { grid: n, layout }) })),
        dispose: () => tf.dispose([lt, gt, ...Object.values(spatialEmbedToStateDict(w))]),
      };
    },
  };
}

/** CLIP vision tower to hidden_states[layer] on `images` crops, random weights (bench/clip-real-size.ts). */
function clipCase(label: string, c: ClipVisionConfig, images: number, layer: number, batchSizes: number[]): GpuCase {
  const g = c.imageSize / c.patchSize;
  const N = g * g;
  const T = N + 1;
  const d = c.hiddenSize;
  const used = layer >= 0 ? layer : c.numHiddenLayers + 1 + layer;
  const perImage = 2 * N * c.patchSize ** 2 * c.numChannels * d + used * (2 * T * (4 * d * d + 2 * d * c.intermediateSize) + 2 * 2 * T * T * d);
  return {
    name: `CLIP ${label} ${images}x${c.imageSize}x${c.imageSize} to layer ${layer}`,
    kind: 'clip',
    params: { ...c, images, layer },
    shape: `[${images}, ${c.imageSize}, ${c.imageSize}, ${c.numChannels}] → [${images}, ${N}, ${d}]`,
    flops: perImage * images,
    pipeline: false,
    warmup: 1,
    prepare: () => {
      const tensors = initClipVisionTensors(c, { seed: 0 });
      const model = clipVisionFromTensors(tensors, c);
      tf.dispose(Object.values(tensors));
      const pixels = randn([images, c.imageSize, c.imageSize, c.numChannels], 7) as tf.Tensor4D;
      return {
        variants: batchSizes.map((batchSize) => ({ label: `batchSize ${batchSize}${attentionKernelFor([Math.min(batchSize, images), c.numAttentionHeads, T, d / c.numAttentionHeads])}`, run: () => model.features(pixels, { layer, batchSize }) })),
        dispose: () => (pixels.dispose(), model.dispose()),
      };
    },
  };
}

/** Packed linear variants: options on top of `kernel: 'fused'`; the GEMV's two reductions where the device has subgroups. */
const PACKED_GEMV_VARIANTS: Array<[label: string, opts: PackedLinearOptions]> = [
  ['fused, subgroup reduction', { reduction: 'subgroup' }],
  ['fused, workgroup reduction', { reduction: 'workgroup' }],
];

/** Bytes per weight of each format at G = 64 (words, plus 4-byte scales and mins per 64 weights). */
const packedBytes = (format: PackedWeightFormat, N: number, K: number) => N * K * (format === 'bf16' ? 2 : format === 'q8' ? 1 + 4 / 64 : 0.5 + 8 / 64);

/**
 * Pseudo-random values in [0, 1) of shape [R, C], made on the device: a sine hash of a row and a
 * column value (host-side [R, 1] and [1, C], broadcast on the GPU). tf.randomUniform would fill
 * the whole tensor on the host (over 1 GB for lm_head).
 */
function deviceNoise(R: number, C: number, seed: number): tf.Tensor2D {
  const fract = (v: number) => v - Math.floor(v);
  return tf.tidy(() => {
    const r = tf.tensor2d(Float32Array.from({ length: R }, (_, i) => fract(Math.sin((i + 1) * 12.9898 + seed) * 43758.5453) * 1000), [R, 1]);
    const c = tf.tensor2d(Float32Array.from({ length: C }, (_, j) => fract(Math.sin((j + 1) * 78.233 + seed) * 43758.5453)), [1, C]);
    const h = tf.mul(tf.sin(tf.add(r, c)), 43758.5453);
    return tf.sub(h, tf.floor(h)) as tf.Tensor2D;
  });
}

/**
 * A random packed weight [N, K] made on the device (no host copy): q8/q4 words are any int32;
 * bf16 words are two bf16 of magnitude in [1/8, 1) with random signs (built in f32 and cast, so
 * the low bits of the low half are rounded: still finite, normal values). Scales ~ 1/64, mins ~ −1/8.
 */
function randomPacked(format: PackedWeightFormat, N: number, K: number, seed: number): PackedLinear {
  const [data, scales, mins] = tf.tidy(() => {
    const KW = K / (format === 'bf16' ? 2 : format === 'q8' ? 4 : 8);
    const h = deviceNoise(N, KW, seed);
    let data: tf.Tensor2D;
    if (format === 'bf16') {
      const frac = (t: tf.Tensor) => tf.sub(t, tf.floor(t));
      const half = (u: tf.Tensor, signU: tf.Tensor) => {
        const mag = tf.add(tf.floor(tf.mul(u, 384)), 0x3e00); // bf16 exponents of [1/8, 1)
        return tf.where(tf.less(signU, 0.5), tf.add(mag, 0x8000), mag);
      };
      const hi = half(h, frac(tf.mul(h, 13.7)));
      const lo = half(frac(tf.add(tf.mul(h, 7.31), 0.5)), frac(tf.mul(h, 29.3)));
      // word = hi·2¹⁶ + lo as int32: a high half ≥ 0x8000 makes it negative
      const hiSigned = tf.where(tf.greaterEqual(hi, 0x8000), tf.sub(hi, 0x10000), hi);
      data = tf.cast(tf.add(tf.mul(hiSigned, 65536), lo), 'int32') as tf.Tensor2D;
    } else {
      data = tf.cast(tf.sub(tf.mul(h, 4294967040), 2147483520), 'int32') as tf.Tensor2D;
    }
    const scales = format !== 'bf16' ? (tf.add(tf.mul(deviceNoise(N, K / 64, seed + 1), 1 / 64), 0.5 / 64) as tf.Tensor2D) : undefined;
    const mins = format === 'q4' ? (tf.sub(tf.mul(deviceNoise(N, K / 64, seed + 2), 0.05), 0.15) as tf.Tensor2D) : undefined;
    return [data, scales, mins].filter((t): t is tf.Tensor2D => !!t);
  });
  return { format, data: data!, ...(scales ? { scales } : {}), ...(mins ? { mins } : {}) };
}

function packedCase(label: string, format: PackedWeightFormat, m: number, k: number, n: number): GpuCase {
  return {
    name: `packed ${label} ${format} ${m}x${k}->${n}`,
    kind: 'packed',
    params: { format, m, k, n },
    shape: `x [${m}, ${k}] · ${format} W [${n}, ${k}]ᵀ`,
    flops: 2 * m * k * n,
    bytes: packedBytes(format, n, k),
    pipeline: true,
    warmup: 2,
    prepare: () => {
      const layer = randomPacked(format, n, k, 11);
      const x = randn([m, k], 12) as tf.Tensor2D;
      const gemv = packedLinearPlan(x, layer)?.kind === 'gemv';
      const variants: Variant[] = [];
      for (const [l, o] of gemv ? PACKED_GEMV_VARIANTS : [['fused', {}] as [string, PackedLinearOptions]]) {
        try {
          packedLinearPlan(x, layer, { ...o, kernel: 'fused' }); // throws when it cannot run (subgroups absent)
          variants.push({ label: l, run: () => packedLinear(x, layer, { ...o, kernel: 'fused' }) });
        } catch (e) {
          log(`  (${l}: not here: ${(e as Error).message})`);
        }
      }
      if (quick) variants.push({ label: 'composition (dequantise + matMul)', run: () => packedLinear(x, layer, { kernel: 'composition' }) });
      return { variants, dispose: () => tf.dispose([x, layer.data, ...(layer.scales ? [layer.scales] : []), ...(layer.mins ? [layer.mins] : [])]) };
    },
  };
}

const PACKED_FORMATS: PackedWeightFormat[] = ['bf16', 'q8', 'q4'];

const TINY_CLIP: ClipVisionConfig = { ...CLIP_VIT_L_14_336, hiddenSize: 64, intermediateSize: 128, numHiddenLayers: 3, numAttentionHeads: 4, imageSize: 28, patchSize: 14 };

const ALL_CASES: GpuCase[] = quick
  ? [
      matMulCase(64, 64, 64),
      matMulCase(128, 128, 128),
      attentionCase('DEM window', 1, 2, 2, 16, 16, 8, false),
      attentionCase('CLIP', 2, 2, 2, 17, 17, 8, false),
      attentionCase('LLaMA-3-8B prefill', 1, 4, 2, 32, 32, 8, true),
      attentionCase('LLaMA-3-8B decode', 1, 4, 2, 1, 64, 8, true),
      demCase('tiny', 3, 4, 64, 4),
      clipCase('tiny', TINY_CLIP, 2, -2, [1, 2]),
      ...PACKED_FORMATS.map((f) => packedCase('decode', f, 1, 256, 384)),
      ...PACKED_FORMATS.map((f) => packedCase('prefill', f, 40, 256, 384)),
    ]
  : [
      matMulCase(1024, 1024, 1024),
      matMulCase(2048, 2048, 2048),
      matMulCase(4096, 4096, 4096),
      attentionCase('DEM window', 1, 8, 8, 576, 576, 128, false),
      attentionCase('CLIP', 18, 16, 16, 577, 577, 64, false),
      attentionCase('LLaMA-3-8B prefill', 1, 32, 8, 1024, 1024, 128, true),
      attentionCase('LLaMA-3-8B decode', 1, 32, 8, 1, 4096, 128, true),
      demCase('official', 3, 24, 1024, 8),
      clipCase('ViT-L/14-336', CLIP_VIT_L_14_336, 18, -2, CLIP_BATCH_SIZES),
      // LLaMA-3-8B: decode GEMVs (gate/up, down, lm_head), the prefill GEMM of gate/up
      ...PACKED_FORMATS.flatMap((f) => [packedCase('LLaMA-3-8B decode gate/up', f, 1, 4096, 14336), packedCase('LLaMA-3-8B decode down', f, 1, 14336, 4096), packedCase('LLaMA-3-8B decode lm_head', f, 1, 4096, 128256)]),
      ...PACKED_FORMATS.map((f) => packedCase('LLaMA-3-8B prefill gate/up', f, 600, 4096, 14336)),
    ];
const CASES = ALL_CASES.filter((c) => !only || only.some((o) => c.name.includes(o)));

// ---------------------------------------------------------------------------------------------
// LLaMA-3-8B, synthetic (the `llama8b` group): the whole model on the device, random packed weights
// ---------------------------------------------------------------------------------------------

/** Meta-Llama-3-8B's config.json (the fields llamaConfigFromJson reads). */
const LLAMA3_8B_JSON = {
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
const LLAMA_TINY_JSON = { ...LLAMA3_8B_JSON, bos_token_id: 1, eos_token_id: 2, hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 1024 };
/** Formats in the order they run: the two with issue-13 targets first (a time-out loses q8 first). */
const LLAMA_FORMATS: PackedWeightFormat[] = ['bf16', 'q4', 'q8'];

interface LlamaCase {
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

const llamaConfig = llamaConfigFromJson(quick ? LLAMA_TINY_JSON : LLAMA3_8B_JSON);
const LLAMA_LABEL = quick ? 'tiny' : 'LLaMA-3-8B';
const LLAMA_PREFILL = quick ? 64 : 600;
const LLAMA_DECODE = quick ? 8 : 32;
const llamaCaseName = (format: PackedWeightFormat) => `llama8b ${LLAMA_LABEL} ${format} synthetic, prefill ${LLAMA_PREFILL} + decode ${LLAMA_DECODE}`;
/** The PyTorch side: one bf16 case (its own model, and transformers' if importable). */
const LLAMA_TORCH_NAME = `llama8b ${LLAMA_LABEL} bf16 torch, prefill ${LLAMA_PREFILL} + decode ${LLAMA_DECODE}`;
const ALL_LLAMA_CASES: LlamaCase[] = LLAMA_FORMATS.map((format) => ({
  name: llamaCaseName(format),
  format,
  config: llamaConfig,
  prefill: LLAMA_PREFILL,
  decode: LLAMA_DECODE,
  decodeWarmup: 2,
  capacity: LLAMA_PREFILL + 64,
}));
const LLAMA_CASES = ALL_LLAMA_CASES.filter((c) => !only || only.some((o) => c.name.includes(o)));

/** Linear weights of the decoder layers, and of lm_head (read per decode step; the embedding is gathered). */
function llamaParams(c: LlamaConfig): { layers: number; lmHead: number } {
  const d = c.hiddenSize;
  const qd = c.numAttentionHeads * c.headDim;
  const kvd = c.numKeyValueHeads * c.headDim;
  const perLayer = qd * d + 2 * kvd * d + d * qd + 3 * c.intermediateSize * d;
  return { layers: c.numHiddenLayers * perLayer, lmHead: c.vocabSize * d };
}
/**
 * FLOPs of a prefill of T tokens with logitsToKeep 1, counted from the shapes: 2·T per layer
 * weight, the causal attention (q·kᵀ and p·v over the lower triangle, as attnFlops), one row of
 * lm_head. LLaMA-3-8B, T 600: 8.37 + 0.09 + 0.001 ≈ 8.47 TFLOP (2·8.03 G·600 = 9.6 would count the
 * embedding and all 600 rows of lm_head, which a prefill with logitsToKeep 1 does not compute).
 */
function llamaPrefillFlops(c: LlamaConfig, T: number): number {
  const p = llamaParams(c);
  return 2 * T * p.layers + c.numHiddenLayers * attnFlops(1, c.numAttentionHeads, T, T, c.headDim, true) + 2 * p.lmHead;
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
function pools(): LlamaPools {
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
function syntheticLlamaStore(c: LlamaConfig, format: PackedWeightFormat, seed: number): LazyWeights {
  const p = pools();
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
function llamaPrompt(n: number, c: LlamaConfig): number[] {
  const out = [c.bosTokenId !== undefined && c.bosTokenId < c.vocabSize ? c.bosTokenId : 0];
  let s = 12345;
  while (out.length < n) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    out.push(s % c.vocabSize);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------------

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Timing {
  median_ms: number;
  dispatch_ms: number;
  pipelined_ms: number | null;
  times_ms: number[];
  reps: number;
}

/** A variant whose warm-up call takes longer than this gets one timed call and no pipelined run. */
const SLOW_CALL_MS = 15_000;

async function timeVariant(run: () => tf.Tensor, warmup: number, pipeline: boolean): Promise<Timing> {
  let last = 0;
  for (let i = 0; i < warmup && last < SLOW_CALL_MS; i++) {
    const t0 = performance.now();
    const y = run();
    await y.data();
    y.dispose();
    last = performance.now() - t0;
  }
  const slow = last >= SLOW_CALL_MS;
  const n = slow ? 1 : reps;
  if (slow) log(`  (a call took ${(last / 1000).toFixed(0)} s: one timed call, no pipelined run)`);
  pipeline &&= !slow;
  const total: number[] = [];
  const dispatch: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const y = run();
    const t1 = performance.now();
    await y.data();
    total.push(performance.now() - t0);
    dispatch.push(t1 - t0);
    y.dispose();
  }
  let pipelined: number | null = null;
  if (pipeline) {
    const t0 = performance.now();
    let y: tf.Tensor | undefined;
    for (let i = 0; i < reps; i++) {
      y?.dispose(); // queued work keeps its buffers; the next call may reuse them after it
      y = run();
    }
    await y!.data();
    pipelined = (performance.now() - t0) / reps;
    y!.dispose();
  }
  return { median_ms: median(total), dispatch_ms: median(dispatch), pipelined_ms: pipelined, times_ms: total.map((t) => Math.round(t * 1000) / 1000), reps: n };
}

/** Variants of one case disagreeing by more than this (relative to the largest output) are flagged MISMATCH. */
const MISMATCH = 1e-3;

/** max |a − b| / max |ref| (on the device; one scalar read back), and whether `a` is finite. */
async function compare(a: tf.Tensor, ref: tf.Tensor): Promise<{ rel: number; finite: boolean }> {
  const [diff, scale, bad] = tf.tidy(() => [tf.max(tf.abs(tf.sub(a, ref))), tf.max(tf.abs(ref)), tf.sum(tf.cast(tf.logicalNot(tf.isFinite(a)), 'float32'))]);
  const [d, s, b] = await Promise.all([diff!.data(), scale!.data(), bad!.data()]);
  tf.dispose([diff!, scale!, bad!]);
  return { rel: d[0]! / Math.max(s[0]!, 1e-30), finite: b[0] === 0 };
}

// ---------------------------------------------------------------------------------------------
// Rows, PyTorch, report
// ---------------------------------------------------------------------------------------------

interface Row {
  name: string;
  variant: string;
  kind: Kind;
  shape: string;
  flops: number;
  reps: number;
  median_ms: number | null;
  dispatch_ms: number | null;
  pipelined_ms: number | null;
  times_ms?: number[];
  gflops: number | null;
  /** Bytes of the case's weights / time (packed cases), on the pipelined time when there is one. */
  gbps: number | null;
  /** Against the case's first variant that ran: max |a − b| / max |first|, and finiteness. */
  check: string | null;
  torch_ms: number | null;
  torch_pipelined_ms: number | null;
  torch_readback_ms: number | null;
  torch_gflops: number | null;
  /** Ours (pipelined when timed, else read back) / torch (pipelined when timed, else synchronized). */
  ratio_to_torch: number | null;
  note?: string;
}

interface TorchRow {
  median_ms: number | null;
  pipelined_ms: number | null;
  readback_ms: number | null;
  error?: string;
}
interface TorchReport {
  machine?: Record<string, unknown>;
  rows: Map<string, TorchRow>;
  missing?: string;
}
interface TorchSpecCase {
  name: string;
  kind: Kind | 'llama';
  params: Record<string, number | string | boolean>;
  pipeline: boolean;
}

function pythonPath(): string {
  return value('python') ?? (existsSync('.venv/bin/python') ? '.venv/bin/python' : 'python3');
}

function runTorch(cases: TorchSpecCase[]): TorchReport {
  if (flag('no-torch')) return { rows: new Map(), missing: '--no-torch' };
  const python = pythonPath();
  const dir = mkdtempSync(join(tmpdir(), 'inf-llava-bench-gpu-'));
  const script = join(dir, 'torch_gpu.py');
  const text = typeof __TORCH_GPU_PY__ === 'string' ? __TORCH_GPU_PY__ : readFileSync(new URL('./torch_gpu.py', import.meta.url), 'utf8');
  writeFileSync(script, text);
  const spec = join(dir, 'spec.json');
  writeFileSync(spec, JSON.stringify({ reps, warmup: quick ? 1 : 2, cases }));
  log(`== torch: ${python} torch_gpu.py --device ${torchDevice}`);
  const r = spawnSync(python, [script, '--spec', spec, '--device', torchDevice, '--reps', String(reps)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: torchTimeoutS * 1000,
    maxBuffer: 64 << 20,
    encoding: 'utf8',
  });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    return { rows: new Map(), missing: code === 'ENOENT' ? `${python} not found` : code === 'ETIMEDOUT' ? `timed out after ${torchTimeoutS} s` : r.error.message.split('\n')[0] };
  }
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  let parsed: { unavailable?: string; machine?: Record<string, unknown>; rows?: Array<TorchRow & { name: string }> };
  try {
    parsed = JSON.parse(last);
  } catch {
    return { rows: new Map(), missing: `${python} exited with ${r.status ?? r.signal} and no report${last ? ` (last line: ${last.slice(0, 200)})` : ''}` };
  }
  if (parsed.unavailable) return { rows: new Map(), missing: parsed.unavailable };
  return { machine: parsed.machine, rows: new Map((parsed.rows ?? []).map((row) => [row.name, row])) };
}

const fmt = (v: number | null | undefined, digits = 2) => (v == null ? '—' : v.toFixed(digits));
const fmtRate = (v: number | null | undefined) => (v == null ? '—' : v >= 100 ? v.toFixed(0) : v.toFixed(2));

function markdownTable(rows: Row[]): string {
  const head = '| case | variant | GFLOP | ms, read back | ms, pipelined | GFLOP/s | GB/s | torch ms | torch ms, pipelined | torch GFLOP/s | ours / torch | check |';
  const sep = '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|';
  const lines = rows.map((r) =>
    [
      r.name,
      r.variant,
      fmt(r.flops / 1e9, r.flops >= 1e9 ? 1 : 4),
      fmt(r.median_ms),
      fmt(r.pipelined_ms),
      fmtRate(r.gflops),
      fmtRate(r.gbps),
      fmt(r.torch_ms),
      fmt(r.torch_pipelined_ms),
      fmtRate(r.torch_gflops),
      r.ratio_to_torch == null ? '—' : `${r.ratio_to_torch.toFixed(2)}×`,
      [r.check, r.note].filter(Boolean).join('; ') || '—',
    ].join(' | '),
  );
  return [head, sep, ...lines.map((l) => `| ${l} |`)].join('\n');
}

interface Adapter {
  info: Record<string, unknown>;
  features: string[];
  deviceFeatures: string[];
  limits: Record<string, number>;
}

async function adapterInfo(): Promise<Adapter | null> {
  const gpu = (globalThis as { navigator?: { gpu?: { requestAdapter: (o: unknown) => Promise<unknown> } } }).navigator?.gpu;
  if (!gpu) return null;
  const a = (await gpu.requestAdapter({ powerPreference: 'high-performance' })) as {
    info?: Record<string, unknown>;
    features: Iterable<string>;
    limits: Record<string, number>;
  } | null;
  if (!a) return null;
  const info: Record<string, unknown> = {};
  for (const k of ['vendor', 'architecture', 'device', 'description', 'subgroupMinSize', 'subgroupMaxSize', 'isFallbackAdapter']) info[k] = a.info?.[k];
  const limits: Record<string, number> = {};
  for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupsPerDimension']) limits[k] = a.limits[k]!;
  const dev = (tf.backend() as { device?: { features?: Iterable<string> } }).device;
  return { info, features: [...a.features].sort(), deviceFeatures: dev?.features ? [...dev.features].sort() : [], limits };
}

const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');

function packageVersion(name: string): string | undefined {
  try {
    return (createRequire(join(process.cwd(), 'x.js'))(`${name}/package.json`) as { version: string }).version;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// LLaMA-3-8B synthetic: build, prefill, decode
// ---------------------------------------------------------------------------------------------

interface LlamaRow {
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

/** Destroys the webgpu buffer manager's free (pooled) buffers, so one format's leftovers do not count against the next. */
function releasePooledGpuBuffers(): void {
  const bm = (tf.backend() as unknown as { bufferManager?: { freeBuffers?: Map<string, Array<{ size: number; destroy: () => void }>>; numBytesAllocated: number; numFreeBuffers: number } }).bufferManager;
  if (!bm?.freeBuffers) return;
  for (const list of bm.freeBuffers.values()) {
    for (const b of list) {
      b.destroy();
      bm.numBytesAllocated -= b.size;
    }
    list.length = 0;
  }
  bm.numFreeBuffers = 0;
}

const gpuAllocatedBytes = () => (tf.memory() as { numBytesAllocatedInGPU?: number }).numBytesAllocatedInGPU ?? null;

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

async function runLlamaCase(c: LlamaCase): Promise<LlamaRow> {
  const row = emptyLlamaRow(c);

  releasePooledGpuBuffers();
  const bytesBefore = tf.memory().numBytes;
  let t0 = performance.now();
  const store = syntheticLlamaStore(c.config, c.format, 0x1000 + LLAMA_FORMATS.indexOf(c.format));
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
    const n = out.ms > SLOW_CALL_MS ? 1 : Math.min(reps, 3);
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
function torchLlamaRows(): LlamaRow[] {
  const t = torch.rows.get(LLAMA_TORCH_NAME) as (TorchRow & { variants?: Array<Record<string, unknown>> }) | undefined;
  if (!t) return [];
  // PyTorch's model is its own bf16 one, whichever format the rows beside it use.
  const base = (label: string): LlamaRow =>
    emptyLlamaRow({ name: LLAMA_TORCH_NAME, format: 'bf16', config: llamaConfig, prefill: LLAMA_PREFILL, decode: LLAMA_DECODE }, label, 'bf16 (torch)');
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

/** Bytes as GB (MB below 0.1 GB: the --quick model). */
const gb = (v: number | null | undefined) => (v == null ? '—' : v >= 1e8 ? `${(v / 1e9).toFixed(2)} GB` : `${(v / 1e6).toFixed(2)} MB`);
const sig = (v: number | null | undefined) => (v == null ? '—' : v.toPrecision(3));

function llamaTable(rows: LlamaRow[]): string {
  const T = LLAMA_PREFILL;
  const head = `| model | format | weights on GPU | GPU allocated | make s | load s | prefill ${T} ms | prefill TFLOP/s | decode ms/token | tok/s | weight GB/s | check |`;
  const sep = '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|';
  const lines = rows.map((r) =>
    [
      r.model,
      r.format,
      gb(r.gpu_weight_bytes),
      gb(r.gpu_peak_bytes),
      fmt(r.gen_s, 1),
      fmt(r.load_s, 1),
      fmt(r.prefill_ms, 1),
      sig(r.prefill_tflops),
      fmt(r.decode_ms_per_token, 2),
      fmt(r.decode_tok_s, 1),
      sig(r.decode_gbps),
      [r.logits_finite == null ? null : r.logits_finite ? 'logits finite' : 'logits NOT FINITE', r.ids == null ? null : `${r.ids} ids (${r.distinct_ids} distinct)`, r.note].filter(Boolean).join('; ') || '—',
    ].join(' | '),
  );
  return [head, sep, ...lines.map((l) => `| ${l} |`)].join('\n');
}

/** Issue 13's H200 targets against the rows (ours; PyTorch beside). */
function llamaTargets(rows: LlamaRow[]): string[] {
  const ours = (f: PackedWeightFormat) => rows.find((r) => r.format === f && r.model.startsWith('inf-llava'));
  const tr = rows.filter((r) => r.format === 'bf16 (torch)' && r.decode_tok_s != null);
  const short = (r: LlamaRow) => (r.model.includes('transformers') ? 'PyTorch HF' : 'PyTorch own');
  const torchSays = (what: (r: LlamaRow) => string | null) => {
    const said = tr.map((r) => [r, what(r)] as const).filter(([, w]) => w != null);
    return said.length ? ` (${said.map(([r, w]) => `${short(r)}: ${w}`).join('; ')})` : '';
  };
  const verdict = (v: number | null | undefined, ok: (v: number) => boolean, unit: string, digits = 1) => (v == null ? 'not measured' : `${v.toFixed(digits)} ${unit}: ${ok(v) ? 'met' : 'missed'}`);
  const memory = (v: number | null | undefined, limitGB: number) => (v == null ? 'not measured' : `${gb(v)} allocated: ${v / 1e9 <= limitGB ? 'met' : 'missed'}`);
  const b = ours('bf16');
  const q4 = ours('q4');
  return [
    `Issue 13's targets (H200)${quick ? ' — --quick: a tiny model on this adapter, the verdicts mean nothing' : ''}:`,
    '',
    `- decode bf16 ≥ 100 tok/s: ${verdict(b?.decode_tok_s, (v) => v >= 100, 'tok/s')}${torchSays((r) => `${fmt(r.decode_tok_s, 1)} tok/s`)}`,
    `- decode q4 ≥ 200 tok/s: ${verdict(q4?.decode_tok_s, (v) => v >= 200, 'tok/s')}`,
    `- prefill ${LLAMA_PREFILL} tokens ≤ 60 ms bf16: ${verdict(b?.prefill_ms, (v) => v <= 60, 'ms')}${torchSays((r) => `${fmt(r.prefill_ms, 1)} ms`)}`,
    `- GPU memory ≤ 17 GB bf16: ${memory(b?.gpu_peak_bytes, 17)} (weights ${gb(b?.gpu_weight_bytes)})${torchSays((r) => (r.gpu_peak_bytes == null ? null : `${gb(r.gpu_peak_bytes)} peak`))}`,
    `- GPU memory ≤ 6 GB q4: ${memory(q4?.gpu_peak_bytes, 6)} (weights ${gb(q4?.gpu_weight_bytes)})`,
  ];
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

try {
  await useBackend(backendName);
} catch (e) {
  console.error(`bench:gpu: ${(e as Error).message}`);
  process.exit(1);
}
KERNELS = attentionKernels();
const adapter = backendName === 'webgpu' ? await adapterInfo() : null;
const card = adapter
  ? slug(String(adapter.info.device || `${adapter.info.vendor}-${adapter.info.architecture}`))
  : slug(`${backendName}-${cpus()[0]?.model ?? 'cpu'}`);
const name = value('name') ?? card;
if (adapter) {
  log(`adapter: ${JSON.stringify(adapter.info)}`);
  log(`  features: ${adapter.features.join(', ')}`);
  log(`  device features (tfjs): ${adapter.deviceFeatures.join(', ')}`);
  log(`  limits: ${JSON.stringify(adapter.limits)}`);
}
log(`attention kernels: ${KERNELS.map((k) => k ?? '(no opts.kernel: the op\'s one path)').join(', ')}`);
log(`${CASES.length} cases${LLAMA_CASES.length ? ` + ${LLAMA_CASES.length} llama8b (${LLAMA_CASES.map((c) => c.format).join(', ')})` : ''}, ${reps} reps${quick ? ' (--quick)' : ''}`);

const date = new Date().toISOString().slice(0, 10);
const outDir = value('out') ?? (flag('save') ? 'bench/results' : process.env.OUT ? join(process.env.OUT, 'bench/results') : mkdtempSync(join(tmpdir(), 'inf-llava-bench-gpu-results-')));
mkdirSync(outDir, { recursive: true });
const base = join(outDir, `${date}-gpu-${name}${quick ? '-quick' : ''}`);

const llamaTorchSpec: TorchSpecCase[] = LLAMA_CASES.length
  ? [
      {
        name: LLAMA_TORCH_NAME,
        kind: 'llama',
        params: {
          vocab: llamaConfig.vocabSize,
          hidden: llamaConfig.hiddenSize,
          intermediate: llamaConfig.intermediateSize,
          layers: llamaConfig.numHiddenLayers,
          heads: llamaConfig.numAttentionHeads,
          kvHeads: llamaConfig.numKeyValueHeads,
          headDim: llamaConfig.headDim,
          ropeTheta: llamaConfig.ropeTheta,
          eps: llamaConfig.rmsNormEps,
          maxPositions: llamaConfig.maxPositionEmbeddings,
          bos: llamaPrompt(1, llamaConfig)[0]!,
          prefill: LLAMA_PREFILL,
          prefillReps: Math.min(reps, 3),
          decode: LLAMA_DECODE,
          decodeWarmup: 2,
          capacity: LLAMA_PREFILL + 64,
        },
        pipeline: false,
      },
    ]
  : [];
const torch = runTorch([...CASES.map((c) => ({ name: c.name, kind: c.kind, params: c.params, pipeline: c.pipeline })), ...llamaTorchSpec]);
log(torch.missing ? `torch: unavailable (${torch.missing})` : `torch: ${JSON.stringify(torch.machine)}`);

const machine = {
  date,
  backend: backendName,
  adapter,
  node: process.version,
  tfjs: tf.version_core,
  webgpu_npm: packageVersion('webgpu'),
  inf_llava: packageVersion('inf-llava'),
  cpu: cpus()[0]?.model,
  cores: cpus().length,
  attention_kernels: KERNELS.map((k) => k ?? null),
  torch: torch.machine ?? { unavailable: torch.missing },
  reps,
  quick,
};
const rows: Row[] = [];
const llamaRows: LlamaRow[] = [];

function save(): void {
  const torchLine = torch.missing
    ? `torch: unavailable (${torch.missing})`
    : `PyTorch ${String(torch.machine?.torch)} on ${String(torch.machine?.card)} (${String(torch.machine?.device)}), fp32 with TF32 off, SDPA for attention`;
  const md = [
    `# GPU benchmark ${date}: ${name}${quick ? ' (--quick: tiny sizes, not a measurement)' : ''}`,
    '',
    adapter
      ? `- Adapter (Dawn, \`webgpu\` npm ${machine.webgpu_npm ?? '?'}): ${['vendor', 'architecture', 'device', 'description'].map((k) => `${k} \`${String(adapter.info[k])}\``).join(', ')}; subgroups ${String(adapter.info.subgroupMinSize)}–${String(adapter.info.subgroupMaxSize)}`
      : `- Backend: ${backendName} on ${machine.cores}× ${machine.cpu}`,
    ...(adapter
      ? [
          `- Adapter features: ${adapter.features.join(', ')}`,
          `- Device features tfjs asked for: ${adapter.deviceFeatures.join(', ') || '—'}`,
          `- Limits: ${Object.entries(adapter.limits).map(([k, v]) => `${k} ${v}`).join(', ')}`,
        ]
      : []),
    `- tfjs-core ${machine.tfjs}, Node ${machine.node}, inf-llava ${machine.inf_llava ?? '(source)'}; attention kernels: ${KERNELS.map((k) => k ?? 'the op has no `kernel` option').join(', ')}`,
    `- ${torchLine}`,
    `- Method: per variant, 2 warm-up calls (CLIP: 1), then the median of ${reps} call(s) with the result read back (\`await data()\`); "pipelined": ${reps} call(s) queued back to back, only the last read back, time per call. GFLOP/s from FLOPs counted from the shapes, on the pipelined time when there is one; GB/s (packed cases) from the weight's bytes (words, scales, mins) the same way. PyTorch (packed cases: a bf16 \`F.linear\` for every format, PyTorch's own decode path): the same, each call ended by \`torch.cuda.synchronize()\` ("torch ms"; with \`.cpu()\` in the JSON as readback_ms). ours / torch: pipelined against pipelined where both exist, else ours read back against torch synchronized. check: max |a − b| / max |a| against the case's first variant, and whether the output is finite.`,
    '',
    ...(rows.length ? [markdownTable(rows), ''] : []),
    ...(LLAMA_CASES.length ? [llamaSection(), ''] : []),
  ].join('\n');
  writeFileSync(`${base}.md`, md);
  writeFileSync(`${base}.json`, JSON.stringify({ machine, rows, llama8b: [...llamaRows, ...torchLlamaRows()] }, null, 2));
}

const casesStarted = performance.now();
for (const c of CASES) {
  if ((performance.now() - casesStarted) / 60_000 > maxMinutes) {
    log(`  ${c.name}: skipped (past --max-minutes ${maxMinutes})`);
    rows.push(emptyRow(c, '—', `skipped: past --max-minutes ${maxMinutes}`));
    save();
    continue;
  }
  const tensorsBefore = tf.memory().numTensors;
  let p: Prepared | undefined;
  const t0 = performance.now();
  try {
    p = c.prepare();
  } catch (e) {
    rows.push(emptyRow(c, '—', `prepare failed: ${firstLine(e)}`));
    log(`  ${c.name}: prepare failed: ${firstLine(e)}`);
    save();
    continue;
  }
  log(`== ${c.name} (inputs ready in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  let reference: { out: tf.Tensor; label: string } | undefined;
  for (const v of p.variants) {
    const row = emptyRow(c, v.label);
    try {
      const t = await timeVariant(v.run, c.warmup, c.pipeline);
      Object.assign(row, t);
      const ms = t.pipelined_ms ?? t.median_ms;
      row.gflops = c.flops / (ms * 1e6);
      if (c.bytes) row.gbps = c.bytes / (ms * 1e6);
      row.ratio_to_torch = ratioToTorch(row);
      const out = v.run();
      if (!reference) {
        reference = { out, label: v.label };
        const { finite } = await compare(out, out);
        row.check = finite ? 'finite' : 'NOT FINITE';
      } else {
        const { rel, finite } = await compare(out, reference.out);
        row.check = `${rel > MISMATCH ? 'MISMATCH ' : ''}${rel.toExponential(1)} vs ${reference.label}${finite ? '' : ', NOT FINITE'}`;
        out.dispose();
      }
      log(`  ${v.label}: ${t.median_ms.toFixed(2)} ms read back${t.pipelined_ms == null ? '' : `, ${t.pipelined_ms.toFixed(2)} ms pipelined`} → ${fmtRate(row.gflops)} GFLOP/s; ${row.check}`);
    } catch (e) {
      row.note = `failed: ${firstLine(e)}`;
      log(`  ${v.label}: FAILED ${firstLine(e)}`);
    }
    rows.push(row);
    save();
  }
  reference?.out.dispose();
  p.dispose();
  const leaked = tf.memory().numTensors - tensorsBefore;
  if (leaked !== 0) {
    log(`  NOTE: ${leaked} tensors left after the case`);
    rows[rows.length - 1]!.note = [rows[rows.length - 1]!.note, `${leaked} tensors left after the case`].filter(Boolean).join('; ');
  }
}

// The llama8b group last: the longest (~1 min at size on the H200), and a time-out or a lost
// device there leaves every row above written.
for (const c of LLAMA_CASES) {
  if ((performance.now() - casesStarted) / 60_000 > maxMinutes) {
    log(`  ${c.name}: skipped (past --max-minutes ${maxMinutes})`);
    llamaRows.push({ ...emptyLlamaRow(c), note: `skipped: past --max-minutes ${maxMinutes}` });
    save();
    continue;
  }
  log(`== ${c.name} (${describeLlama(c.config)})`);
  const tensorsBefore = tf.memory().numTensors;
  const row = await runLlamaCase(c);
  const leaked = tf.memory().numTensors - tensorsBefore;
  if (leaked !== 0) {
    log(`  NOTE: ${leaked} tensors left after the case`);
    row.note = [row.note, `${leaked} tensors left after the case`].filter(Boolean).join('; ');
  }
  llamaRows.push(row);
  save();
}

function describeLlama(c: LlamaConfig): string {
  return `${c.numHiddenLayers} layers, d ${c.hiddenSize}, MLP ${c.intermediateSize}, ${c.numAttentionHeads}:${c.numKeyValueHeads} heads of ${c.headDim}, V ${c.vocabSize}, rope θ ${c.ropeTheta}`;
}

/** A row with the case's counts (FLOPs, weight bytes per token) and no measurement yet. */
function emptyLlamaRow(c: Pick<LlamaCase, 'name' | 'format' | 'config' | 'prefill' | 'decode'>, model = `inf-llava ${backendName}`, formatLabel: LlamaRow['format'] = c.format): LlamaRow {
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

function llamaSection(): string {
  const c = llamaConfig;
  return [
    `## ${LLAMA_LABEL} synthetic, the whole model on the device (\`llama8b\`)`,
    '',
    `${describeLlama(c)}; random weights made in JS without a file (slices of seeded pools: bf16 uniform ±0.02, q8 random int8 with scales ≈ 0.02/127, q4 random nibbles with scales ≈ 0.04/15 and mins ≈ −0.02; norms ones; the embedding bf16 in every format) into a \`LazyWeights\` store, then \`llamaFromTensors\` uploads the matrices as packed int32 tensors. ` +
      `Prefill: ${LLAMA_PREFILL} tokens, \`logitsToKeep\` 1, logits read back; the median of ${Math.min(reps, 3)} after one warm-up (TFLOP/s on ${(llamaPrefillFlops(c, LLAMA_PREFILL) / 1e12).toFixed(3)} TFLOP counted from the shapes: 2·T per layer weight, causal attention, one lm_head row). ` +
      `Decode: ${LLAMA_DECODE} greedy steps after 2 untimed ones, KV cache preallocated for ${LLAMA_PREFILL + 64} positions, argmax on the device and one id read back per step; weight GB/s = the bytes of the decoder matrices and lm_head (scales and mins included) per token / time. ` +
      `Weights on GPU: \`tf.memory().numBytes\` added by the build (PyTorch: \`memory_allocated\` after building, its KV cache included); GPU allocated: the webgpu buffer manager's bytes after the decode (weights, KV cache, pooled activations; PyTorch: \`max_memory_allocated\`). ` +
      `PyTorch: bf16 on the same card — its own LLaMA (fused qkv and gate/up, RMSNorm in fp32, RoPE, SDPA with GQA, a static preallocated KV cache), and transformers' \`LlamaForCausalLM\` (random init, sdpa, its default DynamicCache) where importable; the same prompt, prefill and greedy loop with one \`.item()\` per step.`,
    '',
    llamaTable([...llamaRows, ...torchLlamaRows()]),
    '',
    ...llamaTargets([...llamaRows, ...torchLlamaRows()]),
  ].join('\n');
}

function emptyRow(c: GpuCase, variant: string, note?: string): Row {
  const t = torch.rows.get(c.name);
  const torchBest = t ? (t.pipelined_ms ?? t.median_ms) : null;
  return {
    name: c.name,
    variant,
    kind: c.kind,
    shape: c.shape,
    flops: c.flops,
    reps,
    median_ms: null,
    dispatch_ms: null,
    pipelined_ms: null,
    gflops: null,
    gbps: null,
    check: null,
    torch_ms: t?.median_ms ?? null,
    torch_pipelined_ms: t?.pipelined_ms ?? null,
    torch_readback_ms: t?.readback_ms ?? null,
    torch_gflops: torchBest ? c.flops / (torchBest * 1e6) : null,
    ratio_to_torch: null,
    ...(note ? { note } : t?.error ? { note: `torch failed: ${t.error}` } : {}),
  };
}

/** Ours / torch: pipelined against pipelined where both exist, else ours read back against torch synchronized. */
function ratioToTorch(r: Row): number | null {
  if (r.median_ms == null) return null;
  if (r.pipelined_ms != null && r.torch_pipelined_ms != null) return r.pipelined_ms / r.torch_pipelined_ms;
  return r.torch_ms ? r.median_ms / r.torch_ms : null;
}

function firstLine(e: unknown): string {
  return ((e as Error)?.message ?? String(e)).split('\n')[0]!.slice(0, 300);
}

save();
if (rows.length) console.log(`\n${markdownTable(rows)}\n`);
if (LLAMA_CASES.length) console.log(`\n${llamaTable([...llamaRows, ...torchLlamaRows()])}\n\n${llamaTargets([...llamaRows, ...torchLlamaRows()]).join('\n')}\n`);
const bad = rows.filter((r) => /MISMATCH|NOT FINITE/.test(r.check ?? '') || /failed/.test(r.note ?? ''));
const badLlama = [...llamaRows, ...torchLlamaRows()].filter((r) => r.logits_finite === false || /failed/.test(r.note ?? ''));
if (bad.length) console.log(`ATTENTION: ${bad.length} row(s) failed or disagree with their case's first variant: ${bad.map((r) => `${r.name} [${r.variant}]`).join('; ')}`);
if (badLlama.length) console.log(`ATTENTION: llama8b row(s) failed or not finite: ${badLlama.map((r) => `${r.model} ${r.format}`).join('; ')}`);
if (torch.missing) console.log(`torch: unavailable (${torch.missing})`);
console.log(`Wrote ${base}.md and ${base}.json (${elapsedS().toFixed(0)} s)`);
process.exit(0);
