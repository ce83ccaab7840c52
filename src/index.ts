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
export type { AttentionLayout } from './dem/attention.js';
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
  type ApplyChatTemplateOptions,
  type StopIdsConfig,
} from './pipeline/prompt.js';
export { sampleNext, seededRng, argmax, type SampleOptions } from './pipeline/sampling.js';
