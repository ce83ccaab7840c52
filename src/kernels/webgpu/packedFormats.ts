/**
 * What the packed GEMV (./packedGemv.ts) and GEMM (./packedGemm.ts) share: the weight formats
 * (`src/quant/groups.ts`, `.scratch/packed-formats.md`), their dequantisation in WGSL, the operands
 * and the epilogue.
 *
 * W is int32 words `[N, K/2]` (bf16: two bf16 per word, low half first), `[N, K/4]` (q8: four
 * int8, symmetric, `w = q·scale`), `[N, K/8]` (q4: eight nibbles, `w = q·scale + min`), with
 * float32 `scales` (and `mins`) `[N, K/G]` per group of G weights along K. In WGSL: bf16 is
 * `bitcast<f32>(half << 16)`; int8 / uint4 become floats without a conversion instruction, by the
 * exponent trick `bitcast<f32>(0x4B000000 | byte) − 2²³` (the byte of an int8 is XORed with 0x80
 * first, so that it reads q + 128, and 2²³ + 128 is subtracted).
 */
import type { Tensor } from '@tensorflow/tfjs-core';
import type { LinearActivation } from './matMulFused.js';

/** The packed weight formats (the same names as `src/quant/groups.ts`). */
export type PackedWeightFormat = 'bf16' | 'q8' | 'q4';

/** Weights per int32 word. */
export const weightsPerWord = (f: PackedWeightFormat): number => (f === 'bf16' ? 2 : f === 'q8' ? 4 : 8);

/** The packed operands of a packed matMul: words `[N, K/2|K/4|K/8]` int32, scales and mins `[N, K/G]` float32. */
export interface PackedOperands {
  format: PackedWeightFormat;
  data: Tensor;
  scales?: Tensor;
  mins?: Tensor;
}

/** Epilogue operands: `bias` [N], `multiply` and `residual` [M, N]. */
export interface PackedEpilogue {
  activation: LinearActivation;
  bias?: Tensor;
  multiply?: Tensor;
  residual?: Tensor;
}

/** Which epilogue operands a launch has. */
export interface EpilogueFlags {
  bias: boolean;
  multiply: boolean;
  residual: boolean;
}

const MAGIC = 'vec4<u32>(0x4B000000u)';

/** WGSL: the four weights of word `w` (u32) of a q8 row, times scale `s`. */
export const q8Word = (w: string, s: string): string =>
  `((bitcast<vec4<f32>>((((vec4<u32>(${w}) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u)) ^ vec4<u32>(128u)) | ${MAGIC}) - vec4<f32>(8388736.0)) * ${s})`;
/** WGSL: nibbles `first`..`first`+3 of word `w` (u32) of a q4 row, times `s`, plus `mn`. */
export const q4Nibbles = (w: string, shifts: string, s: string, mn: string): string =>
  `((bitcast<vec4<f32>>(((vec4<u32>(${w}) >> ${shifts}) & vec4<u32>(15u)) | ${MAGIC}) - vec4<f32>(8388608.0)) * ${s} + ${mn})`;
export const Q4_LO = 'vec4<u32>(0u, 4u, 8u, 12u)';
export const Q4_HI = 'vec4<u32>(16u, 20u, 24u, 28u)';
/** WGSL: the four bf16 weights of words `a`, `b` (u32), in k order. */
export const bf16Pair = (a: string, b: string): string => `bitcast<vec4<f32>>(vec4<u32>(${a} << 16u, ${a} & 0xFFFF0000u, ${b} << 16u, ${b} & 0xFFFF0000u))`;

/** Input names after x and the words: scales (q8, q4), mins (q4), then the epilogue's operands. */
export function inputNames(format: PackedWeightFormat, e: EpilogueFlags, x: string, w: string): string[] {
  const names = [x, w];
  if (format !== 'bf16') names.push('scalesIn');
  if (format === 'q4') names.push('minsIn');
  if (e.bias) names.push('biasIn');
  if (e.multiply) names.push('mulIn');
  if (e.residual) names.push('residualIn');
  return names;
}

/** The kernel's inputs by name: x and the words under `x` and `w`, the rest as {@link inputNames} calls them. */
export function packedInputs(x: Tensor, w: PackedOperands, e: PackedEpilogue, xName: string, wName: string): Record<string, Tensor> {
  const inputs: Record<string, Tensor> = { [xName]: x, [wName]: w.data };
  if (w.scales) inputs.scalesIn = w.scales;
  if (w.mins) inputs.minsIn = w.mins;
  if (e.bias) inputs.biasIn = e.bias;
  if (e.multiply) inputs.mulIn = e.multiply;
  if (e.residual) inputs.residualIn = e.residual;
  return inputs;
}

/** The shader-key part of an epilogue. */
export const epiKey = (e: EpilogueFlags & { activation: string }): string => `${e.activation}_${e.bias ? 'b' : ''}${e.multiply ? 'm' : ''}${e.residual ? 'r' : ''}`;
