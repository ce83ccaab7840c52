/**
 * RMSNorm over the last axis (LLaMA's, computed in float32), with up to two residuals added
 * first: `y = s · rsqrt(mean(s²) + eps) · weight`, `s = x [+ residual] [+ residual2]`.
 *
 * The composition of tfjs ops everywhere (the reference, differentiable), one WGSL kernel on
 * webgpu while no gradient tape records (src/kernels/webgpu/layerNorm.ts); options and checks
 * are LayerNorm's ({@link NormOptions}).
 */
import { add, mean, mul, rsqrt, square, type Tensor, type Tensor1D } from '@tensorflow/tfjs-core';
import { runNorm, type NormOptions } from './layerNorm.js';

export type { NormOptions } from './layerNorm.js';

/** `s · rsqrt(mean(s²) + eps) · weight` over the last axis, `s = x [+ opts.residual] [+ opts.residual2]`; weight `[d]`. */
export function rmsNorm<T extends Tensor>(x: T, weight: Tensor1D, eps: number, opts: NormOptions = {}): T {
  return runNorm('rmsNorm', 'rms', x, [['weight', weight]], eps, 'eps', opts, (s) => mul(mul(s, rsqrt(add(mean(square(s), -1, true), eps))), weight));
}
