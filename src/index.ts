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
