/**
 * inf-llava: INF-LLaVA's high-resolution perception for TensorFlow.js.
 * @packageDocumentation
 */
export type { Grid, FitOptions, Perspective } from './grid.js';
export { localCrop } from './dcm/localCrop.js';
export { globalStrideCrop } from './dcm/globalStrideCrop.js';
export { recombine2D } from './dcm/recombine2D.js';
export { avgPool } from './ops/avgPool.js';
