/**
 * The official INF-LLaVA visual path (docs/spec.md steps 1–5), top to bottom:
 * image → preprocess (`'native'`: pad, antialiased bicubic to n·S; `'upsampled'`: pad, antialiased
 * bicubic to S, then a float bicubic upsample to n·S) → DCM (n² local + n² global S×S sub-images)
 * + the S×S view → CLIP (hidden_states[-2], CLS dropped) → DEM (`spatialEmbed`) → mean with the
 * view's features → `mm_projector` → visual tokens for the language model.
 * Sizes come from the configs, so a tiny checkpoint runs through the same code.
 */
import { add, concat, mul, reshape, slice, tidy, type Tensor, type Tensor3D, type Tensor4D } from '@tensorflow/tfjs-core';
import { globalStrideCrop } from '../dcm/globalStrideCrop.js';
import { localCrop } from '../dcm/localCrop.js';
import { spatialEmbedFromStateDict } from '../dem/stateDict.js';
import { spatialEmbed } from '../dem/spatialEmbed.js';
import type { SpatialEmbedWeights } from '../dem/weights.js';
import { PREPROCESS_MODES, preprocessImage, type PreprocessMode } from '../image/preprocess.js';
import { cubicTaps, resizeBicubic, type Taps } from '../image/resizeBicubic.js';
import { loadSafetensors } from '../io/loadSafetensors.js';
import { clipVisionConfigFromJson, clipVisionFromTensors, loadClipVision, type ClipVision } from '../models/clip.js';
import { parseJsonObject, readConfigJson } from '../models/config.js';
import { toDirectory, type CheckpointSource, type ModelDirectory } from '../io/sources/index.js';
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
   * Where the S×S view equals global sub-image ((n−1)/2, (n−1)/2) exactly, its CLIP features are
   * reused instead of a 19th encoder pass (default true; false runs the view through CLIP, as the
   * official code does). Exact, and so reused, when every view pixel and the centre tile's pixel
   * are both one input pixel with weight 1, read off the resize weights: for odd n with an n·S
   * input (`'native'`: the view is a bicubic shrink by n, sampling pixel n·i + (n−1)/2) and with an
   * S input (`'upsampled'`: the upsample by n lands exactly on input pixel i at n·i + (n−1)/2 —
   * for n = 3 PyTorch's float32 source coordinate rounds to exactly i — and the view is the input).
   * Other sizes and even n always run the 19th pass.
   */
  reuseCenterTile?: boolean;
  /** CLIP batch size per chunk (bounds activation memory). */
  batchSize?: number;
}

/** Options of {@link InfLlavaVision.encode}: {@link EncodeOptions} and the preprocessing path. */
export interface EncodeImageOptions extends EncodeOptions {
  /**
   * `'native'` (default): the CLIP processor scaled ×n, Pillow bicubic straight to n·S (what the
   * model was trained on). `'upsampled'`: what the released inference scripts do: the tower's own
   * S-pixel processor, then a float bicubic upsample (no antialiasing) of the normalised S×S
   * tensor to n·S. See {@link PreprocessMode} and docs/paper-vs-code.md.
   */
  preprocess?: PreprocessMode;
}

export interface InfLlavaVision {
  config: InfLlavaVisionConfig;
  clip: ClipVision;
  dem: SpatialEmbedWeights;
  projector: Projector;
  /**
   * The official `encode_images`: `[1, H, W, 3]` normalised pixels → `[1, (S/patch)², hidden]`
   * visual tokens. The crops are taken from the pixels resized bicubically to n·S (no-op for an
   * n·S input, `'native'`; an upsample for an S input, `'upsampled'`), the view is the pixels
   * resized to S (the input itself for an S input).
   */
  encodePixels(pixels: Tensor4D, opts?: EncodeOptions): Tensor3D;
  /**
   * `[H, W, 3]` RGB 0..255 → the normalised pixels `encodePixels` takes: `[1, n·S, n·S, 3]` for
   * `'native'` (default), `[1, S, S, 3]` for `'upsampled'` (padded, Pillow bicubic, normalised).
   */
  preprocess(image: Tensor3D, mode?: PreprocessMode): Tensor4D;
  /** `[H, W, 3]` RGB 0..255 → visual tokens (`preprocess` + `encodePixels`). */
  encode(image: Tensor3D, opts?: EncodeImageOptions): Promise<Tensor3D>;
  dispose(): void;
}


/**
 * Loads the vision half of an INF-LLaVA checkpoint (LLaVA format: `config.json` + single or
 * sharded safetensors) from a local path (Node), a base URL or the `File`s of a folder (see
 * {@link CheckpointSource}). Reads only `model.spatial_embed.*`, `model.mm_projector.*` and,
 * when present, the embedded vision tower — never the language model's tensors. The CLIP tower
 * comes from `visionDir` (a `CLIPVisionModel`/`CLIPModel` folder such as
 * `openai/clip-vit-large-patch14-336`) or from the checkpoint itself.
 */
export async function loadInfLlavaVision(
  checkpoint: CheckpointSource,
  opts: { visionDir?: CheckpointSource; grid?: number; heads?: number } = {},
): Promise<InfLlavaVision> {
  const fn = 'loadInfLlavaVision';
  const checkpointDir = await toDirectory(checkpoint, fn);
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
      throw new Error(`${fn}: ${checkpointDir.name} has no vision tower tensors (${TOWER_PREFIX}*); pass opts.visionDir, a CLIPVisionModel directory such as openai/clip-vit-large-patch14-336`);
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
async function readTowerConfig(dir: ModelDirectory, cfg: Record<string, unknown>, tensors: Record<string, Tensor>) {
  const tower = typeof cfg.mm_vision_tower === 'string' && cfg.mm_vision_tower !== '' ? `../${cfg.mm_vision_tower}/config.json` : '';
  // A sibling folder of that name (a local directory, or next to the base URL); absent or unreadable: the shapes.
  const bytes = tower ? await dir.readFile(tower).catch(() => undefined) : undefined;
  if (bytes) return clipVisionConfigFromJson(parseJsonObject(bytes, dir.pathOf(tower), 'loadInfLlavaVision'));
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

/** The one input index output `o` reads (a single tap of weight 1), or −1. */
function sampledIndex(taps: Taps, o: number): number {
  let found = -1;
  for (let j = 0; j < taps.k; j++) {
    const w = taps.weight[j * taps.outSize + o]!;
    if (w === 0) continue;
    if (found >= 0 || w !== 1) return -1;
    found = taps.index[j * taps.outSize + o]!;
  }
  return found;
}

/**
 * Whether, along an axis of `size` input pixels, the view (a bicubic resize to S) and the centre
 * global tile (pixels (n−1)/2, (n−1)/2 + n, … of the bicubic resize to n·S) copy the same input
 * pixel with weight 1 everywhere: then they are equal on every backend (1·x plus zeros is exact).
 */
function centreTileIsView(size: number, n: number, S: number): boolean {
  if (n % 2 === 0) return false;
  const big = cubicTaps(size, n * S); // the identity's taps when size = n·S
  const view = cubicTaps(size, S); // the identity's taps when size = S
  const c = (n - 1) / 2;
  for (let o = 0; o < S; o++) {
    const v = sampledIndex(view, o);
    if (v < 0 || sampledIndex(big, n * o + c) !== v) return false;
  }
  return true;
}

/** `opts.preprocess` (or a bare mode), checked. */
function checkMode(mode: unknown, fn: string, what: string): PreprocessMode {
  const m = mode ?? 'native';
  if (!(PREPROCESS_MODES as readonly unknown[]).includes(m)) {
    throw new Error(`${fn}: ${what} must be ${PREPROCESS_MODES.map((v) => `'${v}'`).join(' or ')}, got ${typeof m === 'string' ? JSON.stringify(m) : String(m)}`);
  }
  return m as PreprocessMode;
}

function makeVision(config: InfLlavaVisionConfig, clip: ClipVision, dem: SpatialEmbedWeights, projector: Projector, release: () => void): InfLlavaVision {
  const { grid: n, imageSize: S, patchSize } = config;
  const g = S / patchSize; // patches per side
  const exactBySize = new Map<number, boolean>();
  const exact = (size: number): boolean => {
    if (!exactBySize.has(size)) exactBySize.set(size, centreTileIsView(size, n, S));
    return exactBySize.get(size)!;
  };
  const preprocess = (image: Tensor3D, mode?: PreprocessMode): Tensor4D => {
    const m = checkMode(mode, 'preprocess', 'mode');
    return preprocessImage(image, { size: m === 'native' ? n * S : S });
  };
  const encodePixels = (pixels: Tensor4D, opts: EncodeOptions = {}): Tensor3D => {
    const fn = 'encodePixels';
    if (pixels.rank !== 4 || pixels.shape[0] !== 1 || pixels.shape[3] !== 3) {
      throw new Error(`${fn}: pixels must be [1, ${n * S}, ${n * S}, 3] normalised NHWC, got ${JSON.stringify(pixels.shape)}`);
    }
    const [, H, W] = pixels.shape;
    const reuse = (opts.reuseCenterTile ?? true) && exact(H) && exact(W);
    return tidy(() => {
      // encode_images: F.interpolate(images, (n·S, n·S), bicubic) — a no-op at that size ('native'),
      // the upsample of 'upsampled' — then the crops; the view is F.interpolate(images, (S, S)).
      const big = H === n * S && W === n * S ? pixels : resizeBicubic(pixels, [n * S, n * S]);
      const local = localCrop(big, n); // [n², S, S, 3]
      const global = globalStrideCrop(big, n); // [n², S, S, 3]
      const images = [local, global];
      if (!reuse) images.push(H === S && W === S ? pixels : resizeBicubic(pixels, [S, S])); // [1, S, S, 3]
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
    preprocess,
    async encode(image: Tensor3D, opts: EncodeImageOptions = {}): Promise<Tensor3D> {
      if (opts == null || typeof opts !== 'object') throw new Error(`encode: opts must be an object, got ${String(opts)}`);
      const mode = checkMode(opts.preprocess, 'encode', 'opts.preprocess');
      const pixels = preprocess(image, mode);
      try {
        return encodePixels(pixels, opts);
      } finally {
        pixels.dispose();
      }
    },
    dispose: release,
  };
}
