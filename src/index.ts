/**
 * inf-llava: INF-LLaVA's high-resolution perception for TensorFlow.js.
 * @packageDocumentation
 */
export type { Grid, FitOptions, Perspective } from './grid.js';
export { localCrop } from './dcm/localCrop.js';
export { globalStrideCrop } from './dcm/globalStrideCrop.js';
export { recombine2D } from './dcm/recombine2D.js';
export { avgPool } from './ops/avgPool.js';
export type { Linear } from './ops/linear.js';
export type { LayerNorm } from './ops/layerNorm.js';
export type { DemAttentionWeights, FuseWeights, SpatialEmbedWeights } from './dem/weights.js';
export { dualPerspectiveEnhance, type EnhanceOptions } from './dem/dualPerspectiveEnhance.js';
export { demAttentionMap, dualPerspectiveAttentionMaps, type AttentionMapOptions, type DualAttentionMapOptions } from './dem/attentionMap.js';
export { attention, attentionPlan, ATTENTION_LAYOUTS, type AttentionLayout, type AttentionOptions, type AttentionPlan } from './ops/attention.js';
export { guardWasmHeap } from './backends/wasmGuard.js';
export { registerWebGPUBackend, webgpuHasSubgroups, type WebGPUBackendClass } from './backends/webgpuDevice.js';
export type { FlashAttentionPlan } from './kernels/webgpu/flashAttention.js';
export { packedLinear, packedLinearPlan, dequantizePacked, type PackedLinear, type PackedLinearOptions } from './ops/packedLinear.js';
export type { PackedWeightFormat, PackedReduction, PackedMatMulPlan, PackedGemvPlan, PackedGemmPlan } from './kernels/webgpu/packedMatMul.js';
export type { LinearActivation, MatMulPlan, MatMulTiles } from './kernels/webgpu/matMulFused.js';
export { kvCacheWrite, type KvCacheWriteOptions, type KvUpdateLayout } from './ops/kvCache.js';
export { linearConcatFuse, type FuseOptions } from './dem/linearConcatFuse.js';
export { spatialEmbed, type SpatialEmbedOptions } from './dem/spatialEmbed.js';
export { spatialEmbedFromStateDict, spatialEmbedToStateDict, type FromStateDictOptions } from './dem/stateDict.js';
export { initSpatialEmbed, type InitOptions } from './dem/init.js';
export {
  readSafetensors,
  saveSafetensors,
  parseSafetensorsHeader,
  decodeTensor,
  SAFETENSORS_MAX_HEADER_BYTES,
  type SafetensorsContents,
  type SafetensorsEntry,
  type SafetensorsHeader,
  type SafetensorsDtype,
} from './io/safetensors.js';
export { loadSafetensors, type LoadSafetensorsOptions } from './io/loadSafetensors.js';
export {
  openByteSource,
  openModelDirectory,
  type ByteSource,
  type CheckpointSource,
  type ModelDirectory,
  type ModelFiles,
  type SafetensorsSource,
  type UrlSourceOptions,
} from './io/sources/index.js';
export {
  loadTokenizer,
  tokenizerFromJson,
  type Tokenizer,
  type TokenizeOptions,
  type DetokenizeOptions,
  type TokenizerFromJsonOptions,
} from './pipeline/tokenizer.js';
export {
  officialPromptText,
  promptIds,
  tokenizerImageToken,
  applyChatTemplate,
  stopIds,
  IMAGE_TOKEN,
  IMAGE_TOKEN_INDEX,
  LLAMA3_SYSTEM_MESSAGE,
  LLAMA3_STOP_TOKENS,
  type ChatMessage,
  type PromptIdsOptions,
  type PromptOptions,
  type QuestionMarkup,
  type ApplyChatTemplateOptions,
  type StopIdsConfig,
} from './pipeline/prompt.js';
export { sampleNext, seededRng, argmax, type SampleOptions } from './pipeline/sampling.js';
export { resizeBicubic, type ResizeBicubicOptions } from './image/resizeBicubic.js';
export { preprocessImage, CLIP_MEAN, CLIP_STD, LLAVA_PAD_RGB, type PreprocessOptions, type PreprocessMode } from './image/preprocess.js';
export { decodeImage, type DecodeImageOptions, type ImageDecoder } from './image/decode.js';
export {
  loadClipVision,
  clipVisionFromTensors,
  clipVisionConfigFromJson,
  detectClipVisionPrefix,
  initClipVisionTensors,
  CLIP_VIT_L_14_336,
  type ClipVision,
  type ClipVisionConfig,
  type ClipFeaturesOptions,
  type ClipVisionLoadOptions,
  type LoadClipVisionOptions,
} from './models/clip.js';
export {
  loadLlama,
  llamaFromTensors,
  llamaConfigFromJson,
  type Llama,
  type LlamaConfig,
  type LlamaForwardInput,
  type KVCache,
  type LoadLlamaOptions,
  type LlamaFromTensorsOptions,
  type LlamaRopeScaling,
} from './models/llama/index.js';
export { projectorFromTensors, project, type Projector } from './models/projector.js';
export { loadInfLlavaVision, type InfLlavaVision, type InfLlavaVisionConfig, type EncodeOptions, type EncodeImageOptions } from './pipeline/vision.js';
export { loadInfLlava, type InfLlava, type GenerateOptions, type GenerateResult, type StopReason } from './pipeline/infLlava.js';
export { llamaRopeInvFreq, llamaTensorNames } from './models/llama/index.js';
export { LazyWeights, isLazyWeights, type LazyTensor } from './io/lazyWeights.js';
export { loadSafetensorsRaw, listSafetensorsEntries, type LoadSafetensorsRawOptions, type CheckpointEntry } from './io/safetensorsRaw.js';
export { setBf16Simd } from './kernels/wasm/gemv.js';
// Packed and quantised weights (docs/quantization.md).
export {
  packBf16,
  quantizeQ8,
  quantizeQ4,
  dequantizeRows,
  quantGroupSize,
  type PackedWeight,
  type PackedFormat,
  type QuantFormat,
  type PackOptions,
} from './quant/index.js';
export type { LlamaWeightBytes } from './models/llama/index.js';
export type { LoadInfLlavaOptions } from './pipeline/infLlava.js';
export type { LazyEntryInfo, LazyWeightsBytes } from './io/lazyWeights.js';
