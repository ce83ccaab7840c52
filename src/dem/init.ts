import { ones, randomUniform, zeros, type Tensor1D, type Tensor2D } from '@tensorflow/tfjs-core';
import type { LayerNorm } from '../ops/layerNorm.js';
import type { Linear } from '../ops/linear.js';
import type { SpatialEmbedWeights } from './weights.js';

/** Options of {@link initSpatialEmbed}. */
export interface InitOptions {
  /** Attention heads (default 8, official). */
  heads?: number;
  /** Hidden width of the official fusion MLPs (default `channels / 16`). */
  hidden?: number;
  /** `'official'` (default): `d → hidden → d/2` MLPs + `ln_fuse`; `'paper'`: one `d → d/2` Linear per branch, no norm. */
  variant?: 'official' | 'paper';
  /** Seed for reproducible weights (default: random). */
  seed?: number;
}

/**
 * Fresh DEM weights with PyTorch's default initialisation (`nn.Linear`: weight and bias
 * uniform in ±1/√fan_in, which is what kaiming-uniform with a = √5 gives; `nn.LayerNorm`:
 * ones and zeros), so training from scratch in JS behaves like upstream. The caller owns the
 * tensors (wrap them in `tf.variable` to train).
 */
export function initSpatialEmbed(channels: number, opts: InitOptions = {}): SpatialEmbedWeights {
  const fn = 'initSpatialEmbed';
  const heads = opts.heads ?? 8;
  const variant = opts.variant ?? 'official';
  const hidden = opts.hidden ?? Math.floor(channels / 16);
  if (!Number.isInteger(channels) || channels <= 0 || channels % 2 !== 0) throw new Error(`${fn}: channels must be a positive even integer, got ${channels}`);
  if (!Number.isInteger(heads) || heads <= 0 || channels % heads !== 0) throw new Error(`${fn}: heads must be a positive integer dividing channels ${channels}, got ${heads}`);
  if (variant !== 'official' && variant !== 'paper') throw new Error(`${fn}: variant must be 'official' or 'paper', got ${JSON.stringify(variant)}`);
  if (variant === 'official' && (!Number.isInteger(hidden) || hidden <= 0)) throw new Error(`${fn}: hidden must be a positive integer, got ${hidden}`);

  let seed = opts.seed;
  const nextSeed = () => (seed === undefined ? undefined : seed++);
  const lin = (inDim: number, outDim: number): Linear => {
    const bound = 1 / Math.sqrt(inDim);
    return {
      weight: randomUniform([outDim, inDim], -bound, bound, 'float32', nextSeed()) as Tensor2D,
      bias: randomUniform([outDim], -bound, bound, 'float32', nextSeed()) as Tensor1D,
    };
  };
  const norm = (dim: number): LayerNorm => ({ weight: ones([dim]) as Tensor1D, bias: zeros([dim]) as Tensor1D, eps: 1e-5 });
  const d = channels;
  const branch = () => (variant === 'official' ? [lin(d, hidden), lin(hidden, d / 2)] : [lin(d, d / 2)]);
  return {
    attention: { query: lin(d, d), key: lin(d, d), value: lin(d, d), output: lin(d, d), norm: norm(d), heads },
    fuse: variant === 'official' ? { local: branch(), global: branch(), norm: norm(d) } : { local: branch(), global: branch() },
  };
}
