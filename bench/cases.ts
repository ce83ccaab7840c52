/**
 * The benchmark cases: each primitive at the sizes that matter, with bytes and FLOPs counted
 * from the shapes (SPEC.md, "Cost at the official size").
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  avgPool,
  dualPerspectiveEnhance,
  globalStrideCrop,
  initSpatialEmbed,
  localCrop,
  recombine2D,
  spatialEmbed,
  spatialEmbedToStateDict,
  type AttentionLayout,
} from '../src/index.js';

export type Ceiling = 'copy' | 'matmul';

export interface Prepared {
  /** One call of the primitive (inside the timing loop). */
  run: () => tf.Tensor;
  dispose: () => void;
}

export interface Case {
  name: string;
  group: 'dcm' | 'dem';
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

function demCases(label: string, n: number, h: number, d: number, heads: number, layout: Exclude<AttentionLayout, 'auto'>): Case[] {
  const H = n * h;
  const map: [number, number, number, number] = [1, H, H, d];
  const tiles: [number, number, number, number] = [n * n, h, h, d];
  const hidden = d / 16;
  const enhanceFlops = 2 * attentionFlops(1, H, H, d, n * n);
  const fuseFlops = 2 * 2 * H * H * (d * hidden + hidden * (d / 2));
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
];
