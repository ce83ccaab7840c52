/**
 * The packed-weight GEMM for tfjs-backend-webgpu (issue 13), fp32 arithmetic, for more than 8 rows
 * of x (prefill): matMulFused's register-blocked tiled SGEMM (./matMulFused.ts: the same tiles,
 * plan, double buffering and epilogue code) with its W-tile loader replaced: the BN × BK tile of W
 * is read packed and dequantised on its way into workgroup memory (formats: ./packedFormats.ts).
 *
 * Registered as {@link PACKED_GEMM_KERNEL} for 'webgpu' on first use; no gradient
 * (`src/ops/packedLinear.ts` is the op).
 */
import { reshape, type Tensor2D } from '@tensorflow/tfjs-core';
import { matMulFusedWGSL, matMulPlan, type LinearActivation, type MatMulPlan, type MatMulTiles } from './matMulFused.js';
import { bf16Pair, epiKey, inputNames, packedInputs, q4Nibbles, Q4_LO, q8Word, weightsPerWord, type EpilogueFlags, type PackedEpilogue, type PackedOperands, type PackedWeightFormat } from './packedFormats.js';
import { defineWebGPUKernel, type ProgramUniform, type WebGPULimits, type WebGPUProgramLike } from './program.js';

export const PACKED_GEMM_KERNEL = 'InfLlavaPackedGemm';

/** One GEMM launch: matMulFused's plan plus the format. */
export interface PackedGemmPlan extends MatMulPlan {
  kind: 'gemm';
  format: PackedWeightFormat;
  G: number;
}

/** The GEMM plan (matMulFused's tiles for M rows), or why it cannot run. */
export function packedGemmPlan(format: PackedWeightFormat, M: number, N: number, K: number, G: number, limits: WebGPULimits): PackedGemmPlan | string {
  const p = matMulPlan(M, N, K, limits);
  if (typeof p === 'string') return p;
  return { ...p, kind: 'gemm', format, G };
}

/** WGSL of the GEMM's `loadB`: W[r, k..k+3] dequantised (0 past N or K); `k` is a multiple of 4. */
export function packedLoadBWGSL(format: PackedWeightFormat, G: number, vec4: boolean): string {
  if (!vec4) {
    // K % 4 ≠ 0: bf16 only (quantised formats have K % 8 = 0); scalar weights, bounds-checked.
    return `fn wAt(r : i32, k : i32) -> f32 {
  let w = u32(BIn[r * uniforms.KW + k / 2]);
  return bitcast<f32>(select(w & 0xFFFF0000u, w << 16u, k % 2 == 0));
}
fn loadB(r : i32, k : i32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (r < uniforms.N) {
    for (var q = 0; q < 4; q++) {
      if (k + q < uniforms.K) { v[q] = wAt(r, k + q); }
    }
  }
  return v;
}`;
  }
  const body =
    format === 'bf16'
      ? `let i = r * uniforms.KW + k / 2;
    let a = u32(BIn[i]);
    let b = u32(BIn[i + 1]);
    return ${bf16Pair('a', 'b')};`
      : format === 'q8'
        ? `let w = u32(BIn[r * uniforms.KW + k / 4]);
    let s = scalesIn[r * uniforms.NG + k / ${G}];
    return ${q8Word('w', 's')};`
        : `let w = u32(BIn[r * uniforms.KW + k / 8]) >> (u32(k % 8) * 4u);   // nibbles k % 8 .. k % 8 + 3 of the word
    let gi = r * uniforms.NG + k / ${G};
    return ${q4Nibbles('w', Q4_LO, 'scalesIn[gi]', 'minsIn[gi]')};`;
  return `fn loadB(r : i32, k : i32) -> vec4<f32> {   // W[r, k..k+3], dequantised
  if (r < uniforms.N && k < uniforms.K) {
    ${body}
  }
  return vec4<f32>(0.0);
}`;
}

interface GemmParams extends EpilogueFlags {
  format: PackedWeightFormat;
  G: number;
  tiles: MatMulTiles;
  vec4: boolean;
  activation: LinearActivation;
}

class PackedGemmProgram implements WebGPUProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [2], y: [1], z: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  uniforms = 'M : i32, N : i32, K : i32, KW : i32, NG : i32,';

  constructor(private readonly params: GemmParams, M: number, N: number, grid: [number, number]) {
    const { tiles: t, vec4 } = params;
    this.outputShape = [1, M, N];
    this.dispatch = [grid[0], grid[1], 1];
    this.workgroupSize = [t.rt * t.ct, 1, 1];
    this.variableNames = inputNames(params.format, params, 'AIn', 'BIn');
    this.variableComponents = this.variableNames.map((_, i) => (i === 0 && vec4 ? 4 : 1));
    this.shaderKey = `infLlavaPackedGemm_${params.format}_${params.G}_${t.rt}x${t.tm}_${t.ct}x${t.tn}_${t.bk}_${t.doubleBuffer ? 'db' : 'sb'}_${vec4 ? 'v4' : 's'}_${epiKey(params)}`;
  }

  getUserCode(): string {
    const p = this.params;
    return matMulFusedWGSL({ ...p, loadB: packedLoadBWGSL(p.format, p.G, p.vec4) });
  }
}

/** The kernel's attributes (flat, as tfjs attrs are). */
interface KernelAttrs extends EpilogueFlags {
  format: PackedWeightFormat;
  M: number;
  N: number;
  K: number;
  G: number;
  activation: LinearActivation;
  gridX: number;
  gridY: number;
  rt: number;
  ct: number;
  tm: number;
  tn: number;
  bk: number;
  doubleBuffer: boolean;
  vec4: boolean;
}

const runKernel = defineWebGPUKernel<KernelAttrs>(PACKED_GEMM_KERNEL, (inputs, backend, a) => {
  const tiles: MatMulTiles = { rt: a.rt, ct: a.ct, tm: a.tm, tn: a.tn, bk: a.bk, bm: a.rt * a.tm, bn: a.ct * a.tn, doubleBuffer: a.doubleBuffer, sharedBytes: 0 };
  const program = new PackedGemmProgram({ format: a.format, G: a.G, tiles, vec4: a.vec4, activation: a.activation, bias: a.bias, multiply: a.multiply, residual: a.residual }, a.M, a.N, [a.gridX, a.gridY]);
  const uniforms: ProgramUniform = [
    { type: 'int32', data: [a.M] },
    { type: 'int32', data: [a.N] },
    { type: 'int32', data: [a.K] },
    { type: 'int32', data: [a.K / weightsPerWord(a.format)] },
    { type: 'int32', data: [a.G ? a.K / a.G : 0] },
  ];
  return backend.runWebGPUProgram(program, program.variableNames.map((n) => inputs[n]!), 'float32', uniforms);
});

/** The GEMM of `plan` on the active webgpu backend: x [M, K] float32 → one new tensor [M, N]. Inputs assumed validated. */
export function packedGemm(x: Tensor2D, w: PackedOperands, e: PackedEpilogue, plan: PackedGemmPlan): Tensor2D {
  const attrs: KernelAttrs = {
    format: plan.format, M: plan.M, N: plan.N, K: plan.K, G: plan.G,
    activation: e.activation, bias: !!e.bias, multiply: !!e.multiply, residual: !!e.residual,
    gridX: plan.grid[0], gridY: plan.grid[1],
    rt: plan.rt, ct: plan.ct, tm: plan.tm, tn: plan.tn, bk: plan.bk, doubleBuffer: plan.doubleBuffer, vec4: plan.vec4,
  };
  const out = runKernel(packedInputs(x, w, e, 'AIn', 'BIn'), attrs);
  const y = reshape(out, [plan.M, plan.N]) as Tensor2D;
  out.dispose();
  return y;
}
