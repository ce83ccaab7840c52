/**
 * The DEM view: click a point of the model's input and see, as heat maps over it, where the
 * point's two queries attend — the global feature over its local (contiguous) window and the
 * local feature over its global (strided) window — from the loaded model's own DEM weights and
 * CLIP features (`dualPerspectiveAttentionMaps`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { dualPerspectiveAttentionMaps, globalStrideCrop, localCrop, recombine2D, type InfLlavaVision } from '../../src/index.js';

/** CLIP features of the n² local and n² global sub-images, recombined into the aligned maps L and G (`[1, n·g, n·g, D]`). */
export function featureMaps(vision: InfLlavaVision, rgb: tf.Tensor3D): { L: tf.Tensor4D; G: tf.Tensor4D } {
  const { grid: n, imageSize: S, patchSize, selectLayer } = vision.config;
  const g = S / patchSize;
  const T = n * n;
  return tf.tidy(() => {
    const pixels = vision.preprocess(rgb); // [1, n·S, n·S, 3], as generate() preprocesses
    const tiles = tf.concat([localCrop(pixels, n), globalStrideCrop(pixels, n)]) as tf.Tensor4D;
    const f = vision.clip.features(tiles, { layer: selectLayer, dropCls: true }); // [2T, g², D]
    const D = f.shape[2];
    const part = (start: number) => tf.reshape(tf.slice(f, [start, 0, 0], [T, -1, -1]), [T, g, g, D]) as tf.Tensor4D;
    return { L: recombine2D(part(0), n, 'local'), G: recombine2D(part(T), n, 'global') };
  });
}

/** A dark-to-bright ramp (inferno-like) for v in [0, 1]. */
function colour(v: number): [number, number, number] {
  const stops: Array<[number, number, number]> = [
    [40, 11, 84],
    [120, 28, 109],
    [200, 55, 82],
    [246, 128, 33],
    [252, 255, 164],
  ];
  const x = Math.min(Math.max(v, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const f = x - i;
  const [a, b] = [stops[i]!, stops[i + 1]!];
  return [0, 1, 2].map((c) => Math.round(a[c]! + (b[c]! - a[c]!) * f)) as [number, number, number];
}

export interface Probabilities {
  /** `[heads, H, W]` flattened. */
  data: Float32Array;
  heads: number;
  H: number;
  W: number;
}

/** One head's map, or the mean of all heads (`head` < 0). */
function headMap(p: Probabilities, head: number): Float32Array {
  const n = p.H * p.W;
  if (head >= 0) return p.data.subarray(head * n, (head + 1) * n);
  const out = new Float32Array(n);
  for (let h = 0; h < p.heads; h++) for (let i = 0; i < n; i++) out[i]! += p.data[h * n + i]! / p.heads;
  return out;
}

/**
 * Draws `photo` dimmed, the probabilities of `head` (−1: mean of heads) as a heat map over it
 * (one cell per feature position; alpha and colour by probability / max), and the query cell.
 */
export function drawHeat(canvas: HTMLCanvasElement, photo: ImageData, p: Probabilities, head: number, query: [number, number]): void {
  canvas.width = photo.width;
  canvas.height = photo.height;
  const ctx = canvas.getContext('2d')!;
  ctx.putImageData(photo, 0, 0);
  ctx.fillStyle = 'rgba(0, 0, 0, 0.55)';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const m = headMap(p, head);
  const max = m.reduce((a, b) => Math.max(a, b), 0) || 1;
  const cells = new ImageData(p.W, p.H);
  for (let i = 0; i < m.length; i++) {
    if (m[i]! <= 0) continue;
    const v = m[i]! / max;
    const [r, g, b] = colour(v);
    cells.data.set([r, g, b, Math.round(255 * (0.35 + 0.6 * v))], 4 * i);
  }
  const small = document.createElement('canvas');
  small.width = p.W;
  small.height = p.H;
  small.getContext('2d')!.putImageData(cells, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
  const [cw, ch] = [canvas.width / p.W, canvas.height / p.H];
  ctx.lineWidth = Math.max(2, canvas.width / 250);
  ctx.strokeStyle = '#3ff0ff';
  ctx.strokeRect(query[1] * cw, query[0] * ch, cw, ch);
}

/** Both directions' probabilities at map position `[row, col]` of the maps L and G. */
export async function attentionAt(vision: InfLlavaVision, maps: { L: tf.Tensor4D; G: tf.Tensor4D }, position: [number, number]): Promise<{ global: Probabilities; local: Probabilities }> {
  const out = dualPerspectiveAttentionMaps(maps.L, maps.G, vision.dem.attention, { grid: vision.config.grid, position });
  try {
    const [heads, H, W] = out.global.shape;
    const [g, l] = await Promise.all([out.global.data(), out.local.data()]);
    return { global: { data: g as Float32Array, heads, H, W }, local: { data: l as Float32Array, heads, H, W } };
  } finally {
    tf.dispose([out.global, out.local]);
  }
}
