/**
 * LLaVA's `mm_projector`: `linear` (one `Linear(mm_hidden, hidden)`, names `weight`/`bias`) or
 * `mlp{N}x_gelu` (`Linear, GELU, Linear, …`: names `0`, `2`, `4`, …), as LLaVA's builder makes it.
 */
import type { Tensor } from '@tensorflow/tfjs-core';
import { linear, type Linear } from '../ops/linear.js';

export interface Projector {
  type: string;
  layers: Linear[];
}

/** Builds the projector from checkpoint tensors (e.g. prefix `model.mm_projector.`), asserting shapes. */
export function projectorFromTensors(tensors: Record<string, Tensor>, type: string, inDim: number, outDim: number, prefix = 'model.mm_projector.'): Projector {
  const fn = 'projectorFromTensors';
  const mlp = /^mlp(\d+)x_gelu$/.exec(type);
  if (type !== 'linear' && !mlp) throw new Error(`${fn}: unsupported mm_projector_type ${JSON.stringify(type)} (expected 'linear' or 'mlp<N>x_gelu')`);
  const names = type === 'linear' ? [''] : Array.from({ length: Number(mlp![1]) }, (_, i) => `${2 * i}.`);
  const layers = names.map((n, i): Linear => {
    const want = { weight: [outDim, i === 0 ? inDim : outDim], bias: [outDim] };
    const get = (k: 'weight' | 'bias') => {
      const t = tensors[`${prefix}${n}${k}`];
      if (!t) throw new Error(`${fn}: missing ${prefix}${n}${k} for mm_projector_type '${type}'`);
      if (t.shape.join() !== want[k].join()) throw new Error(`${fn}: ${prefix}${n}${k} must have shape ${JSON.stringify(want[k])}, got ${JSON.stringify(t.shape)}`);
      return t;
    };
    return { weight: get('weight') as Linear['weight'], bias: get('bias') as Linear['bias'] };
  });
  return { type, layers };
}

/** `[..., mm_hidden]` → `[..., hidden]`: Linear, then (GELU, Linear)…. */
export function project<T extends Tensor>(x: T, p: Projector): T {
  // GELU after every layer but the last, as linear's epilogue (one kernel on webgpu).
  return p.layers.reduce((h, layer, i) => linear(h, layer, i < p.layers.length - 1 ? { activation: 'gelu' } : {}), x);
}
