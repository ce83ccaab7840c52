/**
 * The LLaMA's tensors: one table of a decoder layer's tensors under their Hugging Face names
 * (loading, checks, quantisation and residency all read it), and the weights as the forward pass
 * holds them.
 *
 *   model.embed_tokens.weight                        [V, d]
 *   model.layers.i.input_layernorm.weight            [d]
 *   model.layers.i.self_attn.{q,k,v,o}_proj.weight   [H·hd, d], [kvH·hd, d], [kvH·hd, d], [d, H·hd]  (+ .bias if attention_bias)
 *   model.layers.i.post_attention_layernorm.weight   [d]
 *   model.layers.i.mlp.{gate,up,down}_proj.weight    [I, d], [I, d], [d, I]                        (+ .bias if mlp_bias)
 *   model.norm.weight                                [d]
 *   lm_head.weight                                   [V, d]  (absent, or ignored, when tied)
 */
import type { Tensor, Tensor1D, Tensor2D } from '@tensorflow/tfjs-core';
import type { LazyWeights } from '../../io/lazyWeights.js';
import { checkConfig, type LlamaConfig } from './config.js';
import { DenseProjection, LazyProjection, PackedProjection, type Projection } from './projection.js';

/** A decoder layer's tensors in module order (transformers' `LlamaDecoderLayer`); projections `[out, in]`. */
const LAYER_TENSORS = [
  { key: 'inputNorm', module: 'input_layernorm' },
  { key: 'q', module: 'self_attn.q_proj', block: 'attn', shape: (c: LlamaConfig) => [c.numAttentionHeads * c.headDim, c.hiddenSize] },
  { key: 'k', module: 'self_attn.k_proj', block: 'attn', shape: (c: LlamaConfig) => [c.numKeyValueHeads * c.headDim, c.hiddenSize] },
  { key: 'v', module: 'self_attn.v_proj', block: 'attn', shape: (c: LlamaConfig) => [c.numKeyValueHeads * c.headDim, c.hiddenSize] },
  { key: 'o', module: 'self_attn.o_proj', block: 'attn', shape: (c: LlamaConfig) => [c.hiddenSize, c.numAttentionHeads * c.headDim] },
  { key: 'postNorm', module: 'post_attention_layernorm' },
  { key: 'gate', module: 'mlp.gate_proj', block: 'mlp', shape: (c: LlamaConfig) => [c.intermediateSize, c.hiddenSize] },
  { key: 'up', module: 'mlp.up_proj', block: 'mlp', shape: (c: LlamaConfig) => [c.intermediateSize, c.hiddenSize] },
  { key: 'down', module: 'mlp.down_proj', block: 'mlp', shape: (c: LlamaConfig) => [c.hiddenSize, c.intermediateSize] },
] as const;

type LayerTensor = (typeof LAYER_TENSORS)[number];
type ProjectionTensor = Extract<LayerTensor, { block: string }>;
const isProjection = (e: LayerTensor): e is ProjectionTensor => 'block' in e;

/** A decoder layer's linear projections: `'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down'`. */
export type LayerProjection = ProjectionTensor['key'];
/** A decoder layer's norms: `'inputNorm' | 'postNorm'`. */
export type LayerNorm = Exclude<LayerTensor, ProjectionTensor>['key'];

/** A decoder layer's tensor keys in module order. */
export const LAYER_KEYS: readonly (LayerNorm | LayerProjection)[] = LAYER_TENSORS.map((e) => e.key);
export const LAYER_NORMS: readonly LayerNorm[] = LAYER_TENSORS.filter((e) => !isProjection(e)).map((e) => e.key as LayerNorm);
export const LAYER_PROJECTIONS: readonly LayerProjection[] = LAYER_TENSORS.filter(isProjection).map((e) => e.key);

/** A projection's tensors: `.weight` `[out, in]`, and `.bias` `[out]` where the config has biases. */
export interface ProjectionNames {
  weight: string;
  bias?: string;
  shape: [number, number];
}

/** One decoder layer's tensor names: a norm's weight, or a projection's. */
export type LayerNames = Record<LayerNorm, string> & Record<LayerProjection, ProjectionNames>;

/** Every tensor name a config uses, under a prefix. */
export interface LlamaNames {
  embed: string;
  norm: string;
  /** Used unless tied. */
  lmHead: string;
  layers: LayerNames[];
}

/** The names of `config`'s tensors under `prefix` (config checked by the caller). */
export function llamaNames(config: LlamaConfig, prefix = ''): LlamaNames {
  const layers = Array.from({ length: config.numHiddenLayers }, (_, i) => {
    const at = `${prefix}model.layers.${i}.`;
    const names: Record<string, string | ProjectionNames> = {};
    for (const e of LAYER_TENSORS) {
      if (!isProjection(e)) {
        names[e.key] = `${at}${e.module}.weight`;
        continue;
      }
      const bias = e.block === 'attn' ? config.attentionBias : config.mlpBias;
      names[e.key] = { weight: `${at}${e.module}.weight`, ...(bias ? { bias: `${at}${e.module}.bias` } : {}), shape: e.shape(config) as [number, number] };
    }
    return names as LayerNames;
  });
  return { embed: `${prefix}model.embed_tokens.weight`, norm: `${prefix}model.norm.weight`, lmHead: `${prefix}lm_head.weight`, layers };
}

/** The matrices `quantize` packs: every decoder projection's weight, and lm_head's when it is its own. */
export function quantizeTargets(names: LlamaNames, withLmHead: boolean): string[] {
  const targets = names.layers.flatMap((l) => LAYER_PROJECTIONS.map((key) => l[key].weight));
  if (withLmHead) targets.push(names.lmHead);
  return targets;
}

/** The tensor names a config needs (required) and may use (lm_head, unless tied). */
export function llamaTensorNames(config: LlamaConfig, prefix = ''): { required: string[]; lmHead: string } {
  checkConfig(config, 'llamaTensorNames');
  const n = llamaNames(config, prefix);
  const names = [n.embed, n.norm];
  for (const l of n.layers) {
    for (const key of LAYER_NORMS) names.push(l[key]);
    for (const key of LAYER_PROJECTIONS) {
      names.push(l[key].weight);
      if (l[key].bias) names.push(l[key].bias!);
    }
  }
  return { required: names, lmHead: n.lmHead };
}

// ---------------------------------------------------------------------------------------
// The weights as the forward pass holds them

/** One decoder layer: norms `[d]` (float32, resident) and the seven projections. */
export type LayerWeights = Record<LayerNorm, Tensor1D> & Record<LayerProjection, Projection>;

export interface LlamaWeights {
  /** The store of every non-resident weight (lazy residency), else undefined. */
  store?: LazyWeights;
  /** embed_tokens `[V, d]`: a resident table, or rows gathered from the store by name. */
  embed: { name: string; table?: Tensor2D };
  layers: LayerWeights[];
  norm: Tensor1D; // [d]
  lmHead: Projection; // [V, d]
  /** lm_head is embed_tokens' matrix. */
  tied: boolean;
}

/**
 * webgpu: every projection's matrix from the store becomes resident tensors (packed int32 for
 * bf16/q8/q4, float32 otherwise), collected in `made`; an owned store forgets their bytes
 * (the embedding's stay: lookups read rows from the store; a tied lm_head gets its own copy).
 */
export function uploadResident(w: LlamaWeights, store: LazyWeights, ownStore: boolean, made: Tensor[]): void {
  const upload = (p: Projection): Projection => {
    if (!(p instanceof LazyProjection)) return p;
    const info = store.info(p.name)!;
    const pk = info.dtype === 'F32' || info.dtype === 'F16' ? undefined : store.packed(p.name);
    let resident: Projection;
    if (!pk) {
      const weight = store.materialize(p.name) as Tensor2D;
      made.push(weight);
      resident = new DenseProjection(weight, p.bias);
    } else resident = PackedProjection.upload(pk, p.bias, made);
    if (ownStore && p.name !== w.embed.name) store.delete(p.name);
    return resident;
  };
  for (const l of w.layers) for (const key of LAYER_PROJECTIONS) l[key] = upload(l[key]);
  w.lmHead = upload(w.lmHead);
}
