/**
 * The linear layer over packed weights (issue 13) for tfjs-backend-webgpu, fp32 arithmetic:
 *
 *   y = act(x · dequant(W)ᵀ + bias) [⊙ mulIn] [+ residual]      x [M, K] f32, W [N, K] packed, y [M, N]
 *
 * Two kernels, by the row count M: the GEMV (./packedGemv.ts, M ≤ 8: a decode step, every weight
 * word read once) and the GEMM (./packedGemm.ts, M > 8: prefill, matMulFused's tiles with W
 * dequantised into workgroup memory); the formats they share are ./packedFormats.ts. This file is
 * their entry point: one plan type, one call. `src/ops/packedLinear.ts` is the op (validation, the
 * choice, and the composition of tfjs ops that is its reference and fallback).
 */
import type { Tensor2D } from '@tensorflow/tfjs-core';
import type { PackedEpilogue, PackedOperands } from './packedFormats.js';
import { packedGemm, type PackedGemmPlan } from './packedGemm.js';
import { packedGemv, type PackedGemvPlan } from './packedGemv.js';

export { weightsPerWord, type PackedEpilogue, type PackedOperands, type PackedWeightFormat } from './packedFormats.js';
export { PACKED_GEMM_KERNEL, packedGemmPlan, type PackedGemmPlan } from './packedGemm.js';
export { PACKED_GEMV_KERNEL, PACKED_GEMV_MAX_ROWS, packedGemvPlan, type PackedGemvPlan, type PackedReduction } from './packedGemv.js';

export type PackedMatMulPlan = PackedGemvPlan | PackedGemmPlan;

/**
 * `act(x · dequant(w)ᵀ + bias) ⊙ multiply + residual` on the active webgpu backend: x [M, K]
 * float32, returns one new tensor [M, N]. Inputs are assumed validated (src/ops/packedLinear.ts);
 * `plan` from `packedGemvPlan` or `packedGemmPlan`.
 */
export function packedMatMul(x: Tensor2D, w: PackedOperands, e: PackedEpilogue, plan: PackedMatMulPlan): Tensor2D {
  return plan.kind === 'gemv' ? packedGemv(x, w, e, plan) : packedGemm(x, w, e, plan);
}
