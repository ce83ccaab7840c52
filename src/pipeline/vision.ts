/**
 * The official INF-LLaVA visual path (docs/spec.md steps 1–5), top to bottom:
 * image → preprocess (pad, antialiased bicubic to n·S) → DCM (n² local + n² global S×S
 * sub-images) + the S×S view → CLIP (hidden_states[-2], CLS dropped) → DEM (`spatialEmbed`)
 * → mean with the view's features → `mm_projector` → visual tokens for the language model.
 * Sizes come from the configs, so a tiny checkpoint runs through the same code.
 */
import { add, concat, mul, reshape, slice, tidy, type Tensor, type Tensor3D, type Tensor4D } from '@tensorflow/tfjs-core';
import { globalStrideCrop } from '../dcm/globalStrideCrop.js';
import { localCrop } from '../dcm/localCrop.js';
import { spatialEmbedFromStateDict } from '../dem/stateDict.js';
import { spatialEmbed } from '../dem/spatialEmbed.js';
import type { SpatialEmbedWeights } from '../dem/weights.js';
import { preprocessImage } from '../image/preprocess.js';
import { resizeBicubic } from '../image/resizeBicubic.js';
import { loadSafetensors } from '../io/loadSafetensors.js';
import { clipVisionConfigFromJson, clipVisionFromTensors, loadClipVision, type ClipVision } from '../models/clip.js';
import { readConfigJson } from '../models/config.js';
import { project, projectorFromTensors, type Projector } from '../models/projector.js';

const TOWER_PREFIX = 'model.vision_tower.vision_tower.';

/** What `loadInfLlavaVision` read from the checkpoint's `config.json`. */
export interface InfLlavaVisionConfig {
  /** DCM grid n (official 3). */
  grid: number;
  /** The encoder's input size S (336 for ViT-L/14-336). */
  imageSize: number;
  patchSize: number;
  /** `mm_vision_select_layer` (official −2). */
  selectLayer: number;
  /** `mm_hidden_size`: the encoder's width. */
  mmHiddenSize: number;
  /** The language model's width (`hidden_size`). */
  hiddenSize: number;
  projectorType: string;
  /** DEM attention heads (official 8; not stored in checkpoints). */
  heads: number;
}

export interface EncodeOptions {
  /** Called as CLIP finishes each chunk of sub-images. */
  onProgress?: (done: number, total: number) => void;
  /**
   * For odd n, the S×S view equals global sub-image ((n−1)/2, (n−1)/2) exactly (bicubic with an
   * exact odd factor samples one pixel with weight 1), so its CLIP features are reused instead
   * of a 19th encoder pass (default true; false runs the view through CLIP, as the official code does).
   */
  reuseCenterTile?: boolean;
  /** CLIP batch size per chunk (bounds activation memory). */
  batchSize?: number;
}

export interface InfLlavaVision {
  config: InfLlavaVisionConfig;
  clip: ClipVision;
  dem: SpatialEmbedWeights;
  projector: Projector;
  /** `[1, n·S, n·S, 3]` normalised pixels → `[1, (S/patch)², hidden]` visual tokens. */
  encodePixels(pixels: Tensor4D, opts?: EncodeOptions): Tensor3D;
  /** `[H, W, 3]` RGB 0..255 → visual tokens (preprocessImage + encodePixels). */
  encode(image: Tensor3D, opts?: EncodeOptions): Promise<Tensor3D>;
  dispose(): void;
}


/**
 * Loads the vision half of an INF-LLaVA checkpoint (LLaVA format: `config.json` + single or
 * sharded safetensors). Reads only `model.spatial_embed.*`, `model.mm_projector.*` and, when
 * present, the embedded vision tower — never the language model's tensors. The CLIP tower
 * comes from `visionDir` (a `CLIPVisionModel`/`CLIPModel` directory such as
 * `openai/clip-vit-large-patch14-336`) or from the checkpoint itself.
 */
export async function loadInfLlavaVision(checkpointDir: string, opts: { visionDir?: string; grid?: number; heads?: number } = {}): Promise<InfLlavaVision> {
  const fn = 'loadInfLlavaVision';
  const cfg = await readConfigJson(checkpointDir, fn).catch((e: Error) => {
    throw new Error(`${e.message}; pass the INF-LLaVA checkpoint directory`);
  });
  const num = (k: string, fallback?: number): number => {
    const v = cfg[k] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${fn}: config.json needs a numeric "${k}", got ${JSON.stringify(cfg[k])}`);
    return v;
  };
  const mmHiddenSize = num('mm_hidden_size');
  const hiddenSize = num('hidden_size');
  const selectLayer = num('mm_vision_select_layer', -2);
  const projectorType = typeof cfg.mm_projector_type === 'string' ? cfg.mm_projector_type : 'linear';
  const prefixes = ['model.spatial_embed.', 'model.mm_projector.', ...(opts.visionDir ? [] : [TOWER_PREFIX])];
  const { tensors } = await loadSafetensors(checkpointDir, { prefix: prefixes });
  const owned = Object.values(tensors);
  try {
    let clip: ClipVision;
    if (opts.visionDir) {
      clip = await loadClipVision(opts.visionDir);
    } else if (Object.keys(tensors).some((k) => k.startsWith(TOWER_PREFIX))) {
      clip = clipVisionFromTensors(tensors, await readTowerConfig(checkpointDir, cfg, tensors), { prefix: `${TOWER_PREFIX}vision_model.` });
    } else {
      throw new Error(`${fn}: ${checkpointDir} has no vision tower tensors (${TOWER_PREFIX}*); pass opts.visionDir, a CLIPVisionModel directory such as openai/clip-vit-large-patch14-336`);
    }
    if (clip.config.hiddenSize !== mmHiddenSize) {
      throw new Error(`${fn}: the vision tower's hidden size ${clip.config.hiddenSize} differs from mm_hidden_size ${mmHiddenSize} in config.json`);
    }
    const dem = spatialEmbedFromStateDict(tensors, { prefix: 'model.spatial_embed.', heads: opts.heads ?? 8 });
    const projector = projectorFromTensors(tensors, projectorType, mmHiddenSize, hiddenSize);
    const config: InfLlavaVisionConfig = {
      grid: opts.grid ?? 3,
      imageSize: clip.config.imageSize,
      patchSize: clip.config.patchSize,
      selectLayer,
      mmHiddenSize,
      hiddenSize,
      projectorType,
      heads: opts.heads ?? 8,
    };
    return makeVision(config, clip, dem, projector, () => {
      clip.dispose();
      for (const t of owned) if (!t.isDisposed) t.dispose();
    });
  } catch (e) {
    for (const t of owned) if (!t.isDisposed) t.dispose();
    throw e;
  }
}

/** The embedded tower's config: `mm_vision_tower`'s config.json next to the checkpoint if present, else read off the shapes. */
async function readTowerConfig(dir: string, cfg: Record<string, unknown>, tensors: Record<string, Tensor>) {
  const { existsSync } = await import('node:fs');
  const { join } = await import('node:path');
  const tower = typeof cfg.mm_vision_tower === 'string' ? join(dir, '..', cfg.mm_vision_tower) : '';
  if (tower && existsSync(join(tower, 'config.json'))) return clipVisionConfigFromJson(await readConfigJson(tower, 'loadInfLlavaVision'));
  const p = `${TOWER_PREFIX}vision_model.`;
  const patch = tensors[`${p}embeddings.patch_embedding.weight`]?.shape; // [hidden, 3, p, p]
  const pos = tensors[`${p}embeddings.position_embedding.weight`]?.shape; // [N+1, hidden]
  const fc1 = tensors[`${p}encoder.layers.0.mlp.fc1.weight`]?.shape; // [intermediate, hidden]
  if (!patch || !pos || !fc1) throw new Error('loadInfLlavaVision: the embedded vision tower lacks patch/position embeddings or layer 0; pass opts.visionDir');
  const layers = new Set(Object.keys(tensors).map((k) => /encoder\.layers\.(\d+)\./.exec(k)?.[1]).filter(Boolean)).size;
  const hidden = patch[0]!;
  return clipVisionConfigFromJson({
    hidden_size: hidden,
    intermediate_size: fc1[0],
    num_hidden_layers: layers,
    num_attention_heads: hidden >= 64 ? hidden / 64 : 4, // CLIP's convention: 64-wide heads (ViT-L: 16); not stored in weights
    image_size: Math.round(Math.sqrt(pos[0]! - 1)) * patch[2]!,
    patch_size: patch[2],
    num_channels: patch[1],
  });
}

function makeVision(config: InfLlavaVisionConfig, clip: ClipVision, dem: SpatialEmbedWeights, projector: Projector, release: () => void): InfLlavaVision {
  const { grid: n, imageSize: S, patchSize } = config;
  const g = S / patchSize; // patches per side
  const encodePixels = (pixels: Tensor4D, opts: EncodeOptions = {}): Tensor3D => {
    const fn = 'encodePixels';
    if (pixels.rank !== 4 || pixels.shape[0] !== 1 || pixels.shape[3] !== 3) {
      throw new Error(`${fn}: pixels must be [1, ${n * S}, ${n * S}, 3] normalised NHWC, got ${JSON.stringify(pixels.shape)}`);
    }
    const reuse = (opts.reuseCenterTile ?? true) && n % 2 === 1;
    return tidy(() => {
      // The official code first resizes to n·S (bicubic); a no-op at that size.
      const big = pixels.shape[1] === n * S && pixels.shape[2] === n * S ? pixels : resizeBicubic(pixels, [n * S, n * S]);
      const local = localCrop(big, n); // [n², S, S, 3]
      const global = globalStrideCrop(big, n); // [n², S, S, 3]
      const images = [local, global];
      if (!reuse) images.push(resizeBicubic(big, [S, S])); // [1, S, S, 3]
      const feats = clip.features(concat(images, 0) as Tensor4D, {
        layer: config.selectLayer,
        dropCls: true,
        batchSize: opts.batchSize,
        onProgress: opts.onProgress,
      }); // [2n² (+1), g², D]
      const D = feats.shape[2];
      const T = n * n;
      const tiles = (start: number) => reshape(slice(feats, [start, 0, 0], [T, -1, -1]), [T, g, g, D]) as Tensor4D;
      const enhanced = reshape(spatialEmbed(tiles(0), tiles(T), dem, { grid: n, outSize: [g, g] }), [1, g * g, D]); // [1, g², D]
      const viewIndex = reuse ? T + (T - 1) / 2 : 2 * T; // global tile ((n-1)/2, (n-1)/2), or the extra view
      const view = slice(feats, [viewIndex, 0, 0], [1, -1, -1]); // [1, g², D]
      const mean = mul(add(view, enhanced), 0.5); // torch.mean(stack([view, dem]), -1)
      return project(mean, projector) as Tensor3D; // [1, g², hidden]
    });
  };
  return {
    config,
    clip,
    dem,
    projector,
    encodePixels,
    async encode(image: Tensor3D, opts?: EncodeOptions): Promise<Tensor3D> {
      const pixels = preprocessImage(image, { size: n * S });
      try {
        return encodePixels(pixels, opts);
      } finally {
        pixels.dispose();
      }
    },
    dispose: release,
  };
}
