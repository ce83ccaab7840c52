/**
 * Official `SpatialEmbed` state-dict names ↔ {@link SpatialEmbedWeights}.
 *
 * `attention.linears.{0,1,2,3}` = query, key, value, output; `attention.ln`; `ffn_crop.{0,2}`
 * (local branch, GELU between) and `ffn_stride.{0,2}` (global branch); `ln_fuse`. The paper's
 * variant is `ffn_crop.0` / `ffn_stride.0` alone, without `ln_fuse`.
 */
import type { Tensor, Tensor1D, Tensor2D } from '@tensorflow/tfjs-core';
import { throwIfMismatch } from '../io/nameCheck.js';
import type { LayerNorm } from '../ops/layerNorm.js';
import type { Linear } from '../ops/linear.js';
import type { SpatialEmbedWeights } from './weights.js';

const PREFIXES = ['model.spatial_embed.', 'spatial_embed.', ''];
const ATTENTION = ['query', 'key', 'value', 'output'] as const;
const BRANCHES = [['local', 'ffn_crop'], ['global', 'ffn_stride']] as const;

/** Options of {@link spatialEmbedFromStateDict}. */
export interface FromStateDictOptions {
  /** Name prefix, e.g. `'model.spatial_embed.'`; default: detected from `model.spatial_embed.`, `spatial_embed.`, or none. */
  prefix?: string;
  /** Attention heads (not stored in checkpoints; default 8, official). */
  heads?: number;
}

/**
 * Builds DEM weights from tensors under official names, asserting every shape. The returned
 * object references the given tensors (no copies). Tensors outside the prefix are ignored;
 * missing, unexpected (under the prefix) and mis-shaped tensors are all named in one error.
 */
export function spatialEmbedFromStateDict(tensors: Record<string, Tensor>, opts: FromStateDictOptions = {}): SpatialEmbedWeights {
  const fn = 'spatialEmbedFromStateDict';
  const heads = opts.heads ?? 8;
  const prefix = opts.prefix ?? PREFIXES.find((p) => `${p}attention.linears.0.weight` in tensors);
  if (prefix === undefined) {
    throw new Error(`${fn}: no 'attention.linears.0.weight' under any of the prefixes ${PREFIXES.map((p) => `'${p}'`).join(', ')}; pass opts.prefix`);
  }
  const missing: string[] = [];
  const problems: string[] = [];
  const used = new Set<string>();
  const get = (name: string, shape: (t: Tensor) => number[]): Tensor | undefined => {
    const key = prefix + name;
    const t = Object.prototype.hasOwnProperty.call(tensors, key) ? tensors[key] : undefined;
    if (!t) {
      missing.push(key);
      return undefined;
    }
    used.add(key);
    const want = shape(t);
    if (t.dtype !== 'float32') problems.push(`${key} must be float32, got ${t.dtype}`);
    if (t.shape.length !== want.length || t.shape.some((s, i) => s !== want[i])) {
      problems.push(`${key} must have shape ${JSON.stringify(want)}, got ${JSON.stringify(t.shape)}`);
    }
    return t;
  };
  const first = tensors[`${prefix}attention.linears.0.weight`]!;
  const d = first.shape[1] ?? 0;
  const lin = (name: string, inDim: number, outDim?: number): Linear => {
    const weight = get(`${name}.weight`, (t) => [outDim ?? t.shape[0] ?? 0, inDim]) as Tensor2D;
    const out = outDim ?? weight?.shape[0] ?? 0;
    return { weight, bias: get(`${name}.bias`, () => [out]) as Tensor1D };
  };
  const norm = (name: string): LayerNorm => ({
    weight: get(`${name}.weight`, () => [d]) as Tensor1D,
    bias: get(`${name}.bias`, () => [d]) as Tensor1D,
    eps: 1e-5,
  });
  const branch = (name: string): Linear[] => {
    const layers: Linear[] = [];
    let width = d;
    // Sequential indices 0, 2, 4, … (a GELU sits at each odd index).
    for (let i = 0; i === 0 || `${prefix}${name}.${i}.weight` in tensors; i += 2) {
      const layer = lin(`${name}.${i}`, width);
      layers.push(layer);
      width = layer.weight?.shape[0] ?? width;
    }
    return layers;
  };

  const [q, k, v, o] = [0, 1, 2, 3].map((i) => lin(`attention.linears.${i}`, d, d)) as [Linear, Linear, Linear, Linear];
  const attention = { query: q, key: k, value: v, output: o, norm: norm('attention.ln'), heads };
  const local = branch('ffn_crop');
  const global = branch('ffn_stride');
  const hasNorm = `${prefix}ln_fuse.weight` in tensors || `${prefix}ln_fuse.bias` in tensors;
  const fuse = hasNorm ? { local, global, norm: norm('ln_fuse') } : { local, global };

  const unexpected = Object.keys(tensors).filter((key) => key.startsWith(prefix) && !used.has(key) && !missing.includes(key));
  if (!Number.isInteger(heads) || heads <= 0 || d % heads !== 0) problems.push(`heads ${heads} must be a positive integer dividing the channel count ${d}`);
  throwIfMismatch(`${fn}: state dict (prefix '${prefix}') does not match SpatialEmbed`, { missing, unexpected, problems });
  return { attention, fuse };
}

/** The official state dict of `w` (same tensors, no copies); default prefix `'model.spatial_embed.'`. */
export function spatialEmbedToStateDict(w: SpatialEmbedWeights, prefix = 'model.spatial_embed.'): Record<string, Tensor> {
  const out: Record<string, Tensor> = Object.create(null);
  const putLinear = (name: string, l: Linear) => {
    out[`${prefix}${name}.weight`] = l.weight;
    if (l.bias) out[`${prefix}${name}.bias`] = l.bias;
  };
  const putNorm = (name: string, n: LayerNorm) => {
    out[`${prefix}${name}.weight`] = n.weight;
    out[`${prefix}${name}.bias`] = n.bias;
  };
  ATTENTION.forEach((role, i) => putLinear(`attention.linears.${i}`, w.attention[role]));
  putNorm('attention.ln', w.attention.norm);
  for (const [role, name] of BRANCHES) w.fuse[role].forEach((l, i) => putLinear(`${name}.${2 * i}`, l));
  if (w.fuse.norm) putNorm('ln_fuse', w.fuse.norm);
  return out;
}
