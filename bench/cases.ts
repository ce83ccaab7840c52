/**
 * The benchmark cases: each primitive at the sizes that matter, with bytes and FLOPs counted
 * from the shapes (docs/spec.md, "Cost at the official size").
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  attention,
  avgPool,
  dualPerspectiveEnhance,
  globalStrideCrop,
  initSpatialEmbed,
  localCrop,
  recombine2D,
  spatialEmbed,
  spatialEmbedToStateDict,
  type AttentionLayout,
  type AttentionOptions,
} from '../src/index.js';

export type Ceiling = 'copy' | 'matmul';

export interface Prepared {
  /** One call of the primitive (inside the timing loop). */
  run: () => tf.Tensor;
  dispose: () => void;
}

export interface Case {
  name: string;
  group: 'dcm' | 'dem' | 'attention';
  shape: string;
  /** Bytes moved: each input read once, each output written once (float32). */
  bytes: number;
  flops: number;
  ceiling: Ceiling;
  /** Name of the PyTorch row it is compared with (bench/torch/bench_torch.py). */
  torchName: string;
  prepare: () => Prepared;
}

const F32 = 4;
const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

function rearrangement(name: string, shape: [number, number, number, number], op: (x: tf.Tensor4D) => tf.Tensor, input?: (x: tf.Tensor4D) => tf.Tensor4D): Case {
  return {
    name,
    group: 'dcm',
    shape: JSON.stringify(shape),
    bytes: 2 * size(shape) * F32,
    flops: 0,
    ceiling: 'copy',
    torchName: name,
    prepare: () => {
      const raw = tf.randomUniform(shape) as tf.Tensor4D;
      const x = input ? input(raw) : raw;
      if (x !== raw) raw.dispose();
      return { run: () => op(x), dispose: () => x.dispose() };
    },
  };
}

/** FLOPs of one direction of the DEM attention on `[B, H, W, d]` with `T` windows. */
export function attentionFlops(B: number, H: number, W: number, d: number, T: number): number {
  const tokens = B * H * W;
  const t = tokens / (B * T);
  const projections = 4 * 2 * tokens * d * d; // q, k, v, o
  const scores = 2 * 2 * B * T * t * t * d; // QKᵀ and PV over all heads
  return projections + scores;
}

/** FLOPs of the DEM's two fusion MLPs (d → d/16 → d/2, both directions) on an H × H map. */
export function fusionFlops(H: number, d: number): number {
  const hidden = d / 16;
  return 2 * 2 * H * H * (d * hidden + hidden * (d / 2));
}

/**
 * FLOPs of the attention op alone: q·kᵀ and p·v, 2·Tq·Tk·(dk + dv) per head (dk = dv), halved
 * for a causal square (the blocked path skips the blocks above the diagonal; one-shot computes and masks them).
 */
export function attentionOpFlops(B: number, H: number, Tq: number, Tk: number, dk: number, causal: boolean | undefined): number {
  return (4 * B * H * Tq * Tk * dk) / (causal && Tq === Tk ? 2 : 1);
}

function demCases(label: string, n: number, h: number, d: number, heads: number, layout: Exclude<AttentionLayout, 'auto'>): Case[] {
  const H = n * h;
  const map: [number, number, number, number] = [1, H, H, d];
  const tiles: [number, number, number, number] = [n * n, h, h, d];
  const enhanceFlops = 2 * attentionFlops(1, H, H, d, n * n);
  const fuseFlops = fusionFlops(H, d);
  const make = () => {
    const w = initSpatialEmbed(d, { heads, seed: 0 });
    return { w, dispose: () => tf.dispose(Object.values(spatialEmbedToStateDict(w))) };
  };
  return [
    {
      name: `dualPerspectiveEnhance ${label} ${H}x${H}x${d} n${n} h${heads} [${layout}]`,
      group: 'dem',
      shape: `2×${JSON.stringify(map)}`,
      bytes: 4 * size(map) * F32,
      flops: enhanceFlops,
      ceiling: 'matmul',
      torchName: `dualPerspectiveEnhance ${label} ${H}x${H}x${d} n${n} h${heads} [${layout}]`,
      prepare: () => {
        const { w, dispose } = make();
        const L = tf.randomNormal(map) as tf.Tensor4D;
        const G = tf.randomNormal(map) as tf.Tensor4D;
        return {
          run: () => {
            const out = dualPerspectiveEnhance(L, G, w.attention, { grid: n, layout });
            out.local.dispose();
            return out.global; // both computed; one read back is enough to wait for the work
          },
          dispose: () => (tf.dispose([L, G]), dispose()),
        };
      },
    },
    {
      name: `spatialEmbed ${label} ${2 * n * n}x${h}x${h}x${d} n${n} h${heads} [${layout}]`,
      group: 'dem',
      shape: `2×${JSON.stringify(tiles)}`,
      bytes: (2 * size(tiles) + h * h * d) * F32,
      flops: enhanceFlops + fuseFlops,
      ceiling: 'matmul',
      torchName: `spatialEmbed ${label} ${2 * n * n}x${h}x${h}x${d} n${n} h${heads} [${layout}]`,
      prepare: () => {
        const { w, dispose } = make();
        const lt = tf.randomNormal(tiles) as tf.Tensor4D;
        const gt = tf.randomNormal(tiles) as tf.Tensor4D;
        return { run: () => spatialEmbed(lt, gt, w, { grid: n, layout }), dispose: () => (tf.dispose([lt, gt]), dispose()) };
      },
    },
  ];
}

/**
 * The attention op alone (src/ops/attention.ts) at the shapes its callers use. FLOPs:
 * attentionOpFlops. Bytes: q, k, v read, out written.
 */
function attentionCase(label: string, B: number, H: number, Hkv: number, Tq: number, Tk: number, dk: number, opts: AttentionOptions, variant: string): Case {
  const q: [number, number, number, number] = [B, H, Tq, dk];
  const kv: [number, number, number, number] = [B, Hkv, Tk, dk];
  const name = `attention ${label} ${B}x${H}:${Hkv}x${Tq}x${Tk}x${dk}${opts.causal ? ' causal' : ''} [${variant}]`;
  return {
    name,
    group: 'attention',
    shape: `q ${JSON.stringify(q)}, k/v ${JSON.stringify(kv)}`,
    bytes: (2 * size(q) + 2 * size(kv)) * F32,
    flops: attentionOpFlops(B, H, Tq, Tk, dk, opts.causal),
    ceiling: 'matmul',
    torchName: `attention ${label} ${B}x${H}:${Hkv}x${Tq}x${Tk}x${dk}${opts.causal ? ' causal' : ''}`,
    prepare: () => {
      const [qt, kt, vt] = [q, kv, kv].map((s, i) => tf.randomNormal(s, 0, 1, 'float32', i + 1) as tf.Tensor4D) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
      return { run: () => attention(qt, kt, vt, opts), dispose: () => tf.dispose([qt, kt, vt]) };
    },
  };
}

const attentionCases: Case[] = [
  // The memory-bound case of issue 9: one-shot (a [8, 1024, 1024] score tensor) against blocks.
  attentionCase('square', 1, 8, 8, 1024, 1024, 64, { method: 'one-shot' }, 'one-shot'),
  attentionCase('square', 1, 8, 8, 1024, 1024, 64, {}, 'auto: blocked'),
  // One DEM window (what the official DEM runs 18 × 2 times): auto is one-shot.
  attentionCase('DEM window', 1, 8, 8, 576, 576, 128, {}, 'auto'),
  // LLaMA-3-8B's heads: a 1,024-token causal prefill, and one decode step over a 4,096-token cache.
  attentionCase('LLaMA-3-8B prefill', 1, 32, 8, 1024, 1024, 128, { causal: true }, 'auto'),
  attentionCase('LLaMA-3-8B prefill', 1, 32, 8, 1024, 1024, 128, { causal: true, method: 'one-shot' }, 'one-shot'),
  attentionCase('LLaMA-3-8B decode', 1, 32, 8, 1, 4096, 128, { causal: true }, 'auto'),
];

const image: [number, number, number, number] = [1, 1008, 1008, 3];
const features: [number, number, number, number] = [1, 72, 72, 1024];
const tilesOf = (s: [number, number, number, number]): [number, number, number, number] => [9, s[1] / 3, s[2] / 3, s[3]];

export const CASES: Case[] = [
  rearrangement('localCrop image 1008x1008x3', image, (x) => localCrop(x, 3)),
  rearrangement('globalStrideCrop image 1008x1008x3', image, (x) => globalStrideCrop(x, 3)),
  rearrangement('localCrop features 72x72x1024', features, (x) => localCrop(x, 3)),
  rearrangement('globalStrideCrop features 72x72x1024', features, (x) => globalStrideCrop(x, 3)),
  rearrangement('recombine2D local image 1008x1008x3', tilesOf(image), (t) => recombine2D(t, 3, 'local')),
  rearrangement('recombine2D global image 1008x1008x3', tilesOf(image), (t) => recombine2D(t, 3, 'global')),
  rearrangement('recombine2D local features 72x72x1024', tilesOf(features), (t) => recombine2D(t, 3, 'local')),
  rearrangement('recombine2D global features 72x72x1024', tilesOf(features), (t) => recombine2D(t, 3, 'global')),
  { ...rearrangement('avgPool features 72x72x1024 /3', features, (x) => avgPool(x, 3)), bytes: (size(features) + size(features) / 9) * F32, flops: size(features) },
  ...(['batched', 'per-window', 'per-head'] as const).flatMap((layout) => [...demCases('official', 3, 24, 1024, 8, layout), ...demCases('small', 3, 12, 256, 8, layout)]),
  ...attentionCases,
];
