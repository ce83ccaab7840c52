/**
 * CLIP's vision transformer, as Hugging Face's `CLIPVisionModel` computes it, with its weight
 * names: the image encoder of LLaVA and INF-LLaVA (ViT-L/14-336: 24 layers of width 1024,
 * 16 heads, 336×336 images in 14×14 patches → 576 patch tokens + 1 CLS token).
 *
 *   pixels [B, S, S, 3] (normalised, NHWC)
 *   → patches [B·N, p·p·3] → patch embedding (a matMul) → prepend CLS → + positions → pre_layrnorm
 *   = hidden_states[0]                                                    [B, N+1, d]
 *   → encoder layer i (pre-norm: x + attn(ln1(x)); x + mlp(ln2(x)))      = hidden_states[i]
 *
 * LLaVA takes hidden_states[-2] (the second-to-last layer) and drops the CLS token; the last
 * layer and `post_layernorm` are never needed for that, so `features()` stops early.
 *
 * Weights (prefix `vision_model.` in a CLIPModel or a transformers 4.x CLIPVisionModel, none in
 * a transformers 5 CLIPVisionModel, `model.vision_tower.vision_tower.vision_model.` in LLaVA):
 *   embeddings.patch_embedding.weight      [d, 3, p, p]  (a conv with stride p, no bias)
 *   embeddings.class_embedding             [d]
 *   embeddings.position_embedding.weight   [N+1, d]
 *   pre_layrnorm.{weight,bias}             [d]           (sic: "layrnorm")
 *   encoder.layers.i.layer_norm1.*, self_attn.{q,k,v,out}_proj.*, layer_norm2.*, mlp.fc1.*, mlp.fc2.*
 *   post_layernorm.*                       (accepted, unused)
 */
import {
  broadcastTo,
  concat,
  dispose,
  mul,
  randomNormal,
  reshape,
  slice,
  tidy,
  transpose,
  type Tensor,
  type Tensor1D,
  type Tensor2D,
  type Tensor3D,
  type Tensor4D,
} from '@tensorflow/tfjs-core';
import { rearrange } from '../dcm/rearrange.js';
import { attentionTransposedKeys } from '../ops/attention.js';
import { loadSafetensors } from '../io/loadSafetensors.js';
import { toDirectory, type CheckpointSource } from '../io/sources/index.js';
import { layerNorm, type LayerNorm } from '../ops/layerNorm.js';
import { linear, type Linear } from '../ops/linear.js';
import { throwIfMismatch } from '../io/nameCheck.js';
import { ConfigReader, isJsonObject, listCheckpointTensorNames, readConfigJson } from './config.js';

// ---------------------------------------------------------------------------------------
// Config

/** The vision tower's shape and activation (Hugging Face `CLIPVisionConfig`, camel-cased). */
export interface ClipVisionConfig {
  /** Width `d` (ViT-L: 1024). */
  hiddenSize: number;
  /** MLP width (ViT-L: 4096). */
  intermediateSize: number;
  /** Encoder layers (ViT-L: 24). */
  numHiddenLayers: number;
  /** Attention heads (ViT-L: 16); must divide `hiddenSize`. */
  numAttentionHeads: number;
  /** Input side `S` in pixels (ViT-L/14-336: 336). */
  imageSize: number;
  /** Patch side `p` (14); must divide `imageSize`. */
  patchSize: number;
  /** Input channels (3). */
  numChannels: number;
  /** LayerNorm epsilon (1e-5). */
  layerNormEps: number;
  /** `'quick_gelu'` (`x·sigmoid(1.702x)`, OpenAI CLIP) or `'gelu'` (exact, erf). */
  hiddenAct: 'quick_gelu' | 'gelu';
}

/** OpenAI's ViT-L/14 at 336×336 (`openai/clip-vit-large-patch14-336`), LLaVA-1.5's and INF-LLaVA's tower. */
export const CLIP_VIT_L_14_336: Readonly<ClipVisionConfig> = Object.freeze({
  hiddenSize: 1024,
  intermediateSize: 4096,
  numHiddenLayers: 24,
  numAttentionHeads: 16,
  imageSize: 336,
  patchSize: 14,
  numChannels: 3,
  layerNormEps: 1e-5,
  hiddenAct: 'quick_gelu',
});

const ACTIVATIONS = ['quick_gelu', 'gelu'] as const;

/**
 * Reads a vision config from a parsed Hugging Face `config.json`: a `CLIPVisionModel` config
 * (fields at the top level) or any config with a `vision_config` object (`CLIPModel`, HF LLaVA).
 * Missing fields take `CLIPVisionConfig`'s defaults (ViT-B/32: 768 wide, 12 layers, 224 px,
 * patch 32, quick_gelu), as transformers does. A config that names its tower instead of
 * describing it (original LLaVA / INF-LLaVA: `mm_vision_tower`) is refused.
 */
export function clipVisionConfigFromJson(json: object): ClipVisionConfig {
  const fn = 'clipVisionConfigFromJson';
  if (!isJsonObject(json)) throw new Error(`${fn}: expected a parsed config.json object, got ${JSON.stringify(json)}`);
  const top = new ConfigReader(json, fn);
  const nested = top.object('vision_config');
  if (!nested) {
    const type = top.has('model_type') ? top.string('model_type', '') : undefined;
    if (top.has('mm_vision_tower')) {
      throw new Error(
        `${fn}: this config names its vision tower (mm_vision_tower ${JSON.stringify(json['mm_vision_tower'])}) instead of describing it; ` +
          `pass that tower's config (e.g. CLIP_VIT_L_14_336 for openai/clip-vit-large-patch14-336)`,
      );
    }
    if (type !== undefined && type !== 'clip_vision_model' && type !== 'clip') {
      throw new Error(`${fn}: model_type ${JSON.stringify(type)} is not a CLIP vision config and has no "vision_config"`);
    }
  }
  const r = nested ? new ConfigReader(nested, `${fn}: vision_config`) : top;
  const hiddenAct = r.string('hidden_act', 'quick_gelu');
  if (!(ACTIVATIONS as readonly string[]).includes(hiddenAct)) {
    throw new Error(`${fn}: hidden_act ${JSON.stringify(hiddenAct)} is not supported (supported: ${ACTIVATIONS.join(', ')})`);
  }
  const config: ClipVisionConfig = {
    hiddenSize: r.int('hidden_size', 768),
    intermediateSize: r.int('intermediate_size', 3072),
    numHiddenLayers: r.int('num_hidden_layers', 12),
    numAttentionHeads: r.int('num_attention_heads', 12),
    imageSize: r.squareInt('image_size', 224),
    patchSize: r.squareInt('patch_size', 32),
    numChannels: r.int('num_channels', 3),
    layerNormEps: r.positive('layer_norm_eps', 1e-5),
    hiddenAct: hiddenAct as ClipVisionConfig['hiddenAct'],
  };
  checkConfig(config, fn);
  return config;
}

function checkConfig(c: ClipVisionConfig, fn: string): void {
  const ints = ['hiddenSize', 'intermediateSize', 'numHiddenLayers', 'numAttentionHeads', 'imageSize', 'patchSize', 'numChannels'] as const;
  for (const k of ints) {
    if (!Number.isInteger(c[k]) || c[k] < 1) throw new Error(`${fn}: config.${k} must be a positive integer, got ${JSON.stringify(c[k])}`);
  }
  if (c.hiddenSize % c.numAttentionHeads !== 0) {
    throw new Error(`${fn}: numAttentionHeads ${c.numAttentionHeads} must divide hiddenSize ${c.hiddenSize}`);
  }
  if (c.imageSize % c.patchSize !== 0) throw new Error(`${fn}: patchSize ${c.patchSize} must divide imageSize ${c.imageSize}`);
  if (!(c.layerNormEps > 0)) throw new Error(`${fn}: config.layerNormEps must be > 0, got ${c.layerNormEps}`);
  if (!(ACTIVATIONS as readonly string[]).includes(c.hiddenAct)) {
    throw new Error(`${fn}: config.hiddenAct ${JSON.stringify(c.hiddenAct)} is not supported (supported: ${ACTIVATIONS.join(', ')})`);
  }
}

// ---------------------------------------------------------------------------------------
// Weights

interface EncoderLayer {
  norm1: LayerNorm;
  query: Linear; // [d, d]
  key: Linear;
  value: Linear;
  output: Linear;
  norm2: LayerNorm;
  fc1: Linear; // [I, d]
  fc2: Linear; // [d, I]
}

interface ClipVisionWeights {
  /** The patch conv as a linear: `[d, p·p·C]`, inputs in (row, column, channel) order. */
  patch: Linear;
  classEmbedding: Tensor1D; // [d]
  positionEmbedding: Tensor2D; // [N+1, d]
  preNorm: LayerNorm;
  layers: EncoderLayer[];
}

/** The tensor that marks a CLIP vision tower, and from whose name its prefix is read. */
const MARKER = 'embeddings.patch_embedding.weight';

/**
 * The prefix of the vision tower's tensors among `names`: what precedes
 * `embeddings.patch_embedding.weight` (`''`, `'vision_model.'`, LLaVA's
 * `'model.vision_tower.vision_tower.vision_model.'`, …). Throws when there is none or several.
 */
export function detectClipVisionPrefix(names: Iterable<string>): string {
  const found: string[] = [];
  for (const name of names) {
    if (!name.endsWith(MARKER)) continue;
    const prefix = name.slice(0, name.length - MARKER.length);
    if (prefix === '' || prefix.endsWith('.')) found.push(prefix);
  }
  if (found.length === 1) return found[0]!;
  if (found.length === 0) throw new Error(`detectClipVisionPrefix: no tensor named '…${MARKER}': not a CLIP vision checkpoint?`);
  throw new Error(`detectClipVisionPrefix: several vision towers (${found.map((p) => `'${p}'`).join(', ')}); pass opts.prefix`);
}

/** Options of {@link clipVisionFromTensors} and {@link loadClipVision}. */
export interface ClipVisionLoadOptions {
  /** Name prefix of the vision tower's tensors; default: detected ({@link detectClipVisionPrefix}). */
  prefix?: string;
}

/**
 * Builds the vision tower from tensors under Hugging Face names, asserting every name and
 * shape against `config`: missing, unexpected (under the prefix) and mis-shaped tensors are
 * all named in one error. Tensors outside the prefix are ignored.
 *
 * The model holds its own references to the tensors it uses (views that share their data: no
 * copy), plus the patch weight permuted once into the matMul's order; `dispose()` releases
 * them. The given tensors stay the caller's to dispose (their memory is freed when both the
 * caller and the model have let go).
 */
export function clipVisionFromTensors(tensors: Record<string, Tensor>, config: ClipVisionConfig, opts: ClipVisionLoadOptions = {}): ClipVision {
  const fn = 'clipVisionFromTensors';
  checkConfig(config, fn);
  const prefix = opts.prefix ?? detectClipVisionPrefix(Object.keys(tensors));
  const { hiddenSize: d, intermediateSize: I, patchSize: p, numChannels: C } = config;
  const N = (config.imageSize / p) ** 2;

  const missing: string[] = [];
  const problems: string[] = [];
  const used = new Set<string>();
  const get = <T extends Tensor>(name: string, shape: number[]): T => {
    const key = prefix + name;
    const t = Object.prototype.hasOwnProperty.call(tensors, key) ? tensors[key] : undefined;
    used.add(key);
    if (!t) missing.push(key);
    else if (t.dtype !== 'float32') problems.push(`${key} must be float32, got ${t.dtype}`);
    else if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
      problems.push(`${key} must have shape ${JSON.stringify(shape)}, got ${JSON.stringify(t.shape)}`);
    }
    return t as T;
  };
  const lin = (name: string, inDim: number, outDim: number): Linear => ({
    weight: get<Tensor2D>(`${name}.weight`, [outDim, inDim]),
    bias: get<Tensor1D>(`${name}.bias`, [outDim]),
  });
  const norm = (name: string): LayerNorm => ({
    weight: get<Tensor1D>(`${name}.weight`, [d]),
    bias: get<Tensor1D>(`${name}.bias`, [d]),
    eps: config.layerNormEps,
  });

  const conv = get<Tensor4D>(MARKER, [d, C, p, p]);
  const classEmbedding = get<Tensor1D>('embeddings.class_embedding', [d]);
  const positionEmbedding = get<Tensor2D>('embeddings.position_embedding.weight', [N + 1, d]);
  const preNorm = norm('pre_layrnorm');
  const layers: EncoderLayer[] = [];
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const at = `encoder.layers.${i}`;
    layers.push({
      norm1: norm(`${at}.layer_norm1`),
      query: lin(`${at}.self_attn.q_proj`, d, d),
      key: lin(`${at}.self_attn.k_proj`, d, d),
      value: lin(`${at}.self_attn.v_proj`, d, d),
      output: lin(`${at}.self_attn.out_proj`, d, d),
      norm2: norm(`${at}.layer_norm2`),
      fc1: lin(`${at}.mlp.fc1`, d, I),
      fc2: lin(`${at}.mlp.fc2`, I, d),
    });
  }
  // Accepted but unused: the final norm (not part of hidden_states) and the position-id buffer
  // older transformers saved.
  for (const name of ['post_layernorm.weight', 'post_layernorm.bias', 'embeddings.position_ids']) used.add(prefix + name);
  const unexpected = Object.keys(tensors).filter((k) => k.startsWith(prefix) && !used.has(k));
  throwIfMismatch(`${fn}: tensors (prefix '${prefix}') do not match the config (${describeConfig(config)})`, { missing, unexpected, problems });

  // Own references: views of the caller's tensors, and the conv weight permuted once
  // [d, C, p, p] → [d, p, p, C] → [d, p·p·C], so the patch embedding is one matMul over
  // patches flattened in (row, column, channel) order, as NHWC pixels lie.
  const own = <T extends Tensor>(t: T): T => reshape(t, t.shape) as T;
  const ownLinear = (l: Linear): Linear => ({ weight: own(l.weight), bias: own(l.bias!) });
  const ownNorm = (n: LayerNorm): LayerNorm => ({ weight: own(n.weight), bias: own(n.bias), eps: n.eps });
  const weights: ClipVisionWeights = {
    patch: { weight: tidy(() => reshape(transpose(conv, [0, 2, 3, 1]), [d, p * p * C])) as Tensor2D },
    classEmbedding: own(classEmbedding),
    positionEmbedding: own(positionEmbedding),
    preNorm: ownNorm(preNorm),
    layers: layers.map((l) => ({
      norm1: ownNorm(l.norm1),
      query: ownLinear(l.query),
      key: ownLinear(l.key),
      value: ownLinear(l.value),
      output: ownLinear(l.output),
      norm2: ownNorm(l.norm2),
      fc1: ownLinear(l.fc1),
      fc2: ownLinear(l.fc2),
    })),
  };
  return new ClipVisionModel({ ...config }, weights);
}

function describeConfig(c: ClipVisionConfig): string {
  return `d ${c.hiddenSize}, mlp ${c.intermediateSize}, ${c.numHiddenLayers} layers, ${c.numAttentionHeads} heads, image ${c.imageSize}, patch ${c.patchSize}, ${c.numChannels} channels`;
}

/** Options of {@link loadClipVision}. */
export interface LoadClipVisionOptions extends ClipVisionLoadOptions {
  /**
   * The tower's config, for checkpoints whose `config.json` does not describe it (original
   * LLaVA / INF-LLaVA configs name it in `mm_vision_tower`). Default: read from `dir/config.json`.
   */
  config?: ClipVisionConfig;
}

/**
 * Loads a CLIP vision tower from a Hugging Face checkpoint folder — a local path (Node), a base
 * URL or the `File`s of a picked folder (see {@link CheckpointSource}): the config from
 * `config.json` (a `CLIPVisionModel` or a full `CLIPModel`, see {@link clipVisionConfigFromJson}),
 * the prefix detected from the tensor names in the safetensors header or index, and only the
 * tensors under it read (single file or sharded; over HTTP only their byte ranges; bf16/f16
 * converted to float32 by the reader).
 */
export async function loadClipVision(source: CheckpointSource, opts: LoadClipVisionOptions = {}): Promise<ClipVision> {
  const dir = await toDirectory(source, 'loadClipVision');
  const config = opts.config ?? clipVisionConfigFromJson(await readConfigJson(dir));
  const prefix = opts.prefix ?? detectClipVisionPrefix(await listCheckpointTensorNames(dir));
  const { tensors } = await loadSafetensors(dir, { prefix });
  try {
    return clipVisionFromTensors(tensors, config, { prefix });
  } finally {
    dispose(Object.values(tensors)); // the model holds its own views
  }
}

/**
 * Random weights under Hugging Face names (prefix default `'vision_model.'`), for smoke tests
 * and benchmarks at real shapes without a checkpoint: linear and conv weights
 * N(0, 1/fan_in), biases and embeddings N(0, 0.02), LayerNorms identity. The caller owns them.
 */
export function initClipVisionTensors(config: ClipVisionConfig, opts: { prefix?: string; seed?: number } = {}): Record<string, Tensor> {
  checkConfig(config, 'initClipVisionTensors');
  const prefix = opts.prefix ?? 'vision_model.';
  const { hiddenSize: d, intermediateSize: I, patchSize: p, numChannels: C } = config;
  const N = (config.imageSize / p) ** 2;
  let seed = opts.seed;
  const nextSeed = () => (seed === undefined ? undefined : seed++);
  const out: Record<string, Tensor> = Object.create(null);
  const put = (name: string, shape: number[], std: number, mean = 0) => {
    out[prefix + name] = randomNormal(shape, mean, std, 'float32', nextSeed());
  };
  const lin = (name: string, inDim: number, outDim: number) => {
    put(`${name}.weight`, [outDim, inDim], 1 / Math.sqrt(inDim));
    put(`${name}.bias`, [outDim], 0.02);
  };
  const norm = (name: string) => {
    put(`${name}.weight`, [d], 0, 1);
    put(`${name}.bias`, [d], 0);
  };
  put(MARKER, [d, C, p, p], 1 / Math.sqrt(C * p * p));
  put('embeddings.class_embedding', [d], 0.02);
  put('embeddings.position_embedding.weight', [N + 1, d], 0.02);
  norm('pre_layrnorm');
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const at = `encoder.layers.${i}`;
    norm(`${at}.layer_norm1`);
    for (const proj of ['q', 'k', 'v', 'out']) lin(`${at}.self_attn.${proj}_proj`, d, d);
    norm(`${at}.layer_norm2`);
    lin(`${at}.mlp.fc1`, d, I);
    lin(`${at}.mlp.fc2`, I, d);
  }
  norm('post_layernorm');
  return out;
}

// ---------------------------------------------------------------------------------------
// Forward

/** Options of {@link ClipVision.features}. */
export interface ClipFeaturesOptions {
  /**
   * Which hidden state, indexed as transformers' `hidden_states`: 0 is the pre_layrnorm'd
   * embeddings, `i` the output of encoder layer `i`; negative counts from the end (-1: the last
   * layer, -2: the second-to-last, LLaVA's `mm_vision_select_layer`). Default -2.
   */
  layer?: number;
  /** Drop token 0 (CLS), as LLaVA does (default true). */
  dropCls?: boolean;
  /** Images per forward pass; bounds activation memory (default 4). */
  batchSize?: number;
  /** Called after each chunk of `batchSize` images with (images done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** A loaded CLIP vision tower. */
export interface ClipVision {
  readonly config: ClipVisionConfig;
  /**
   * Hidden states of `pixels` (`[B, S, S, C]`, normalised, NHWC) at `opts.layer`:
   * `[B, N, d]` with the CLS token dropped (default), `[B, N+1, d]` with it.
   */
  features(pixels: Tensor4D, opts?: ClipFeaturesOptions): Tensor3D;
  /** Frees the model's weights. */
  dispose(): void;
}

const DEFAULT_BATCH = 4;

/**
 * [B, S, S, C] pixels → hidden_states[0], [B, N+1, d].
 *
 * The stride-p conv is a rearrangement into patches plus one matMul (bench/clip-real-size.ts
 * --patch, 4 images of 336²): as fast as conv2d on tensorflow (21 vs 21 ms) and wasm (96 vs
 * 102 ms), faster on cpu (3.2 vs 3.9 s), ~0.2 % of the encoder's FLOPs either way; and it
 * runs on the same well-measured rearrange and matMul paths as the rest of the library.
 */
function embed(w: ClipVisionWeights, c: ClipVisionConfig, pixels: Tensor4D): Tensor3D {
  const [B, S, , C] = pixels.shape;
  const p = c.patchSize;
  const g = S / p; // patches per side
  const N = g * g;
  const d = c.hiddenSize;
  // [B, g·p, g·p, C] = [B, g, p, g, p, C] → [B, g, g, p, p, C] = [B·N, p·p·C]: patch (i, j) = token i·g + j.
  const patches = rearrange(pixels, [B, g, p, g, p, C], [0, 1, 3, 2, 4, 5], [B * N, p * p * C]);
  const tokens = reshape(linear(patches, w.patch), [B, N, d]); // [B, N, d]
  const cls = broadcastTo(reshape(w.classEmbedding, [1, 1, d]), [B, 1, d]); // [B, 1, d]
  // pre_layrnorm(concat + positions): the add is the norm's residual (broadcast over B), one kernel on webgpu.
  return layerNorm(concat([cls, tokens], 1), w.preNorm, { residual: w.positionEmbedding }) as Tensor3D; // [B, N+1, d]
}

/** x + out_proj(attention(layer_norm1(x))): [B, T, d] → [B, T, d]. */
function attentionBlock(x: Tensor3D, l: EncoderLayer, c: ClipVisionConfig): Tensor3D {
  const [B, T, d] = x.shape;
  const heads = c.numAttentionHeads;
  const dk = d / heads;
  const h = layerNorm(x, l.norm1); // [B, T, d]
  // Channel = head·dk + k. The dk^-0.5 scale is folded into q (T·d multiplies, not T·T).
  const q = transpose(reshape(mul(linear(h, l.query), 1 / Math.sqrt(dk)), [B, T, heads, dk]), [0, 2, 1, 3]); // [B, heads, T, dk]
  const kT = transpose(reshape(linear(h, l.key), [B, T, heads, dk]), [0, 2, 3, 1]); // [B, heads, dk, T]
  const v = transpose(reshape(linear(h, l.value), [B, T, heads, dk]), [0, 2, 1, 3]); // [B, heads, T, dk]
  const attended = attentionTransposedKeys(q as Tensor4D, kT as Tensor4D, v as Tensor4D, { scale: 1 }); // [B, heads, T, dk]: one-shot per image, or blocked (src/ops/attention.ts)
  const merged = reshape(transpose(attended, [0, 2, 1, 3]), [B, T, d]); // [B, T, d]
  return linear(merged, l.output, { residual: x }) as Tensor3D; // x + out_proj(·), fused on webgpu
}

/** x + fc2(act(fc1(layer_norm2(x)))): [B, T, d] → [B, T, d]. */
function mlpBlock(x: Tensor3D, l: EncoderLayer, c: ClipVisionConfig): Tensor3D {
  // Activation and residual as linear's epilogues: one kernel each on webgpu, the same ops elsewhere.
  const activation = c.hiddenAct === 'gelu' ? 'gelu' : 'quick-gelu';
  return linear(linear(layerNorm(x, l.norm2), l.fc1, { activation }), l.fc2, { residual: x }) as Tensor3D; // [B, T, I] inside
}

class ClipVisionModel implements ClipVision {
  private w: ClipVisionWeights | null;

  constructor(
    readonly config: ClipVisionConfig,
    weights: ClipVisionWeights,
  ) {
    this.w = weights;
  }

  features(pixels: Tensor4D, opts: ClipFeaturesOptions = {}): Tensor3D {
    const fn = 'ClipVision.features';
    const w = this.w;
    if (!w) throw new Error(`${fn}: the model has been disposed`);
    const c = this.config;
    const L = c.numHiddenLayers;
    const S = c.imageSize;
    if (pixels?.rank !== 4 || pixels.shape[1] !== S || pixels.shape[2] !== S || pixels.shape[3] !== c.numChannels) {
      throw new Error(`${fn}: pixels must be [B, ${S}, ${S}, ${c.numChannels}] (NHWC), got ${JSON.stringify(pixels?.shape)}`);
    }
    if (pixels.dtype !== 'float32') throw new Error(`${fn}: pixels must be float32, got ${pixels.dtype}`);
    const layer = opts.layer ?? -2;
    if (!Number.isInteger(layer) || layer < -(L + 1) || layer > L) {
      throw new Error(`${fn}: layer must be an integer in [${-(L + 1)}, ${L}] (hidden_states of a ${L}-layer model), got ${layer}`);
    }
    const upTo = layer < 0 ? L + 1 + layer : layer; // encoder layers to run
    const dropCls = opts.dropCls ?? true;
    const batchSize = opts.batchSize ?? DEFAULT_BATCH;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`${fn}: batchSize must be a positive integer, got ${batchSize}`);

    const B = pixels.shape[0];
    const chunks: Tensor3D[] = [];
    let x: Tensor3D | undefined;
    try {
      for (let start = 0; start < B; start += batchSize) {
        const n = Math.min(batchSize, B - start);
        x = tidy(() => embed(w, c, n === B ? pixels : slice(pixels, [start, 0, 0, 0], [n, -1, -1, -1]))); // [n, N+1, d]
        for (let i = 0; i < upTo; i++) {
          const layerWeights = w.layers[i]!;
          x = replace(x, (t) => attentionBlock(t, layerWeights, c));
          x = replace(x, (t) => mlpBlock(t, layerWeights, c));
        }
        if (dropCls) x = replace(x, (t) => slice(t, [0, 1, 0], [-1, -1, -1])); // [n, N, d]
        chunks.push(x);
        x = undefined;
        opts.onProgress?.(start + n, B);
      }
      if (chunks.length === 1) return chunks[0]!;
      return tidy(() => concat(chunks, 0));
    } catch (e) {
      x?.dispose();
      dispose(chunks);
      chunks.length = 0;
      throw e;
    } finally {
      if (chunks.length > 1) dispose(chunks);
    }
  }

  dispose(): void {
    const w = this.w;
    if (!w) return;
    this.w = null;
    const norm = (n: LayerNorm) => [n.weight, n.bias];
    const lin = (l: Linear) => [l.weight, ...(l.bias ? [l.bias] : [])];
    dispose([
      ...lin(w.patch),
      w.classEmbedding,
      w.positionEmbedding,
      ...norm(w.preNorm),
      ...w.layers.flatMap((l) => [
        ...norm(l.norm1),
        ...lin(l.query),
        ...lin(l.key),
        ...lin(l.value),
        ...lin(l.output),
        ...norm(l.norm2),
        ...lin(l.fc1),
        ...lin(l.fc2),
      ]),
    ]);
  }
}

/** `f(x)` inside a tidy, then `x` disposed: one step of a forward pass that keeps only its output. */
function replace<T extends Tensor>(x: T, f: (x: T) => T): T {
  const y = tidy(() => f(x));
  x.dispose();
  return y;
}
