/**
 * Weight types of the Dual-perspective Enhancement Module (official `SpatialEmbed`) and the
 * shape checks every op runs before doing any work.
 */
import { showJson as show } from '../util/format.js';
import type { Tensor } from '@tensorflow/tfjs-core';
import type { LayerNorm } from '../ops/layerNorm.js';
import type { Linear } from '../ops/linear.js';

export type { Linear } from '../ops/linear.js';
export type { LayerNorm } from '../ops/layerNorm.js';

/**
 * The one multi-head attention module both enhancement directions share (official
 * `attention.linears.{0,1,2,3}` = query, key, value, output, and `attention.ln`).
 */
export interface DemAttentionWeights {
  query: Linear;
  key: Linear;
  value: Linear;
  output: Linear;
  norm: LayerNorm;
  /** Number of heads; the channel count must be a multiple (official: 8). */
  heads: number;
}

/**
 * The fusion MLPs. Each branch is one Linear, or two with exact (erf) GELU between (official
 * `ffn_crop` on the local map, `ffn_stride` on the global map: `d → d/16 → d/2`). With `norm`
 * (official `ln_fuse`) the output is `LayerNorm(concat + local + global)`; without it (paper) the concat.
 */
export interface FuseWeights {
  local: Linear[];
  global: Linear[];
  norm?: LayerNorm;
}

/** All weights of the official `SpatialEmbed`. */
export interface SpatialEmbedWeights {
  attention: DemAttentionWeights;
  fuse: FuseWeights;
}


function checkShape(t: Tensor | undefined, expected: readonly number[], name: string, fn: string): void {
  if (!t) throw new Error(`${fn}: weight ${name} is missing`);
  if (t.isDisposed) throw new Error(`${fn}: weight ${name} is a disposed tensor`);
  if (t.dtype !== 'float32') throw new Error(`${fn}: weight ${name} must be float32, got ${t.dtype}`);
  if (t.shape.length !== expected.length || t.shape.some((s, i) => s !== expected[i])) {
    throw new Error(`${fn}: weight ${name} must have shape ${show(expected)}, got ${show(t.shape)}`);
  }
}

/** Checks a Linear's input width; returns its output width. */
export function checkLinear(layer: Linear | undefined, inDim: number, name: string, fn: string, outDim?: number): number {
  if (!layer || !layer.weight) throw new Error(`${fn}: weight ${name} is missing`);
  const out = outDim ?? layer.weight.shape[0];
  checkShape(layer.weight, [out, inDim], `${name}.weight`, fn);
  if (layer.bias) checkShape(layer.bias, [out], `${name}.bias`, fn);
  return out;
}

export function checkLayerNorm(ln: LayerNorm | undefined, dim: number, name: string, fn: string): void {
  if (!ln) throw new Error(`${fn}: weight ${name} is missing`);
  checkShape(ln.weight, [dim], `${name}.weight`, fn);
  checkShape(ln.bias, [dim], `${name}.bias`, fn);
  if (ln.eps !== undefined && !(ln.eps > 0)) throw new Error(`${fn}: ${name}.eps must be positive, got ${ln.eps}`);
}

export function checkAttention(w: DemAttentionWeights | undefined, d: number, fn: string): void {
  if (!w) throw new Error(`${fn}: attention weights are missing`);
  if (!Number.isInteger(w.heads) || w.heads <= 0 || d % w.heads !== 0) {
    throw new Error(`${fn}: heads must be a positive integer dividing the channel count ${d}, got ${w.heads}`);
  }
  for (const name of ['query', 'key', 'value', 'output'] as const) checkLinear(w[name], d, `attention.${name}`, fn, d);
  checkLayerNorm(w.norm, d, 'attention.norm', fn);
}

/** Checks a fusion branch (1 or more Linears chained); returns its output width. */
export function checkBranch(layers: Linear[] | undefined, d: number, name: string, fn: string): number {
  if (!Array.isArray(layers) || layers.length === 0) throw new Error(`${fn}: fuse.${name} must be a non-empty array of Linear layers`);
  let width = d;
  layers.forEach((layer, i) => (width = checkLinear(layer, width, `fuse.${name}[${i}]`, fn)));
  return width;
}

export function checkFuse(w: FuseWeights | undefined, d: number, fn: string): number {
  if (!w) throw new Error(`${fn}: fuse weights are missing`);
  const out = checkBranch(w.local, d, 'local', fn) + checkBranch(w.global, d, 'global', fn);
  if (w.norm) {
    if (out !== d) {
      throw new Error(`${fn}: with fuse.norm the branch outputs must add up to the channel count ${d} (residual), got ${out}`);
    }
    checkLayerNorm(w.norm, d, 'fuse.norm', fn);
  }
  return out;
}
