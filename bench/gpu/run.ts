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
  packedLinear,
  packedLinearPlan,
  spatialEmbed,
  spatialEmbedToStateDict,
  type AttentionLayout,
  type AttentionOptions,
  type ClipVisionConfig,
  type PackedLinear,
  type PackedLinearOptions,
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

interface TorchReport {
  machine?: Record<string, unknown>;
  rows: Map<string, { median_ms: number | null; pipelined_ms: number | null; readback_ms: number | null; error?: string }>;
  missing?: string;
}

function pythonPath(): string {
  return value('python') ?? (existsSync('.venv/bin/python') ? '.venv/bin/python' : 'python3');
}

function runTorch(cases: GpuCase[]): TorchReport {
  if (flag('no-torch')) return { rows: new Map(), missing: '--no-torch' };
  const python = pythonPath();
  const dir = mkdtempSync(join(tmpdir(), 'inf-llava-bench-gpu-'));
  const script = join(dir, 'torch_gpu.py');
  const text = typeof __TORCH_GPU_PY__ === 'string' ? __TORCH_GPU_PY__ : readFileSync(new URL('./torch_gpu.py', import.meta.url), 'utf8');
  writeFileSync(script, text);
  const spec = join(dir, 'spec.json');
  writeFileSync(spec, JSON.stringify({ reps, warmup: quick ? 1 : 2, cases: cases.map((c) => ({ name: c.name, kind: c.kind, params: c.params, pipeline: c.pipeline })) }));
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
  let parsed: { unavailable?: string; machine?: Record<string, unknown>; rows?: Array<{ name: string; median_ms: number | null; pipelined_ms: number | null; readback_ms: number | null; error?: string }> };
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
log(`${CASES.length} cases, ${reps} reps${quick ? ' (--quick)' : ''}`);

const date = new Date().toISOString().slice(0, 10);
const outDir = value('out') ?? (flag('save') ? 'bench/results' : process.env.OUT ? join(process.env.OUT, 'bench/results') : mkdtempSync(join(tmpdir(), 'inf-llava-bench-gpu-results-')));
mkdirSync(outDir, { recursive: true });
const base = join(outDir, `${date}-gpu-${name}${quick ? '-quick' : ''}`);

const torch = runTorch(CASES);
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
    markdownTable(rows),
    '',
  ].join('\n');
  writeFileSync(`${base}.md`, md);
  writeFileSync(`${base}.json`, JSON.stringify({ machine, rows }, null, 2));
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
console.log(`\n${markdownTable(rows)}\n`);
const bad = rows.filter((r) => /MISMATCH|NOT FINITE/.test(r.check ?? '') || /failed/.test(r.note ?? ''));
if (bad.length) console.log(`ATTENTION: ${bad.length} row(s) failed or disagree with their case's first variant: ${bad.map((r) => `${r.name} [${r.variant}]`).join('; ')}`);
if (torch.missing) console.log(`torch: unavailable (${torch.missing})`);
console.log(`Wrote ${base}.md and ${base}.json (${elapsedS().toFixed(0)} s)`);
process.exit(0);
