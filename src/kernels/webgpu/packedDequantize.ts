/**
 * Dequantises a packed weight (`src/quant/groups.ts`'s formats) into a float32 `[N, K]` tensor on
 * the webgpu backend: one thread per weight, written plainly (integer shifts and masks, `f32()`
 * conversions, the formats' float32 expressions) — the webgpu half of the packed linear layer's
 * composition (`src/ops/packedLinear.ts`), which it needs because neither tfjs route works there:
 * tfjs's webgpu ops compute int32 tensors in f32 (a 24-bit mantissa, so the bits of a 32-bit word
 * are lost) and its synchronous read-back needs an OffscreenCanvas, which Node has not. Deliberately
 * not the fused kernels' code (no exponent trick, no vector loads), so that the composition checks them.
 *
 * Registered as {@link PACKED_DEQUANTIZE_KERNEL} for 'webgpu' on first use.
 */
import type { Tensor, Tensor2D } from '@tensorflow/tfjs-core';
import type { PackedWeightFormat } from './packedFormats.js';
import { defineWebGPUKernel, type ProgramUniform, type WebGPUProgramLike } from './program.js';

export const PACKED_DEQUANTIZE_KERNEL = 'InfLlavaPackedDequantize';

const THREADS = 256;

/** The WGSL for one format (N, K, words per row, groups per row are uniforms). */
export function packedDequantizeWGSL(format: PackedWeightFormat): string {
  const body =
    format === 'bf16'
      ? `let w = u32(wordsIn[n * uniforms.KW + k / 2]);
  let half = (w >> (16u * u32(k % 2))) & 0xFFFFu;
  setOutputAtIndex(index, bitcast<f32>(half << 16u));`
      : format === 'q8'
        ? `let w = wordsIn[n * uniforms.KW + k / 4];
  let q = (w << (24u - 8u * u32(k % 4))) >> 24u;   // byte k % 4, sign-extended (i32 shifts)
  let g = n * uniforms.NG + k / uniforms.G;
  setOutputAtIndex(index, f32(q) * scalesIn[g]);`
        : `let w = u32(wordsIn[n * uniforms.KW + k / 8]);
  let q = (w >> (4u * u32(k % 8))) & 15u;
  let g = n * uniforms.NG + k / uniforms.G;
  let p = f32(q) * scalesIn[g];
  setOutputAtIndex(index, p + minsIn[g]);`;
  return /* wgsl */ `
// ---- packed weight → float32, ${format}
${'fn main(index : i32)'} {
  if (index >= uniforms.size) { return; }
  let n = index / uniforms.K;
  let k = index % uniforms.K;
  ${body}
}
`;
}

class PackedDequantizeProgram implements WebGPUProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0, 1] }; // flat: main(index)
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  variableNames: string[];
  uniforms = 'K : i32, KW : i32, NG : i32, G : i32,';
  size = true;

  constructor(
    private readonly format: PackedWeightFormat,
    N: number,
    K: number,
  ) {
    this.outputShape = [N, K];
    this.dispatch = [Math.ceil((N * K) / THREADS), 1, 1];
    this.variableNames = format === 'bf16' ? ['wordsIn'] : format === 'q8' ? ['wordsIn', 'scalesIn'] : ['wordsIn', 'scalesIn', 'minsIn'];
    this.shaderKey = `infLlavaPackedDequantize_${format}`;
  }

  getUserCode(): string {
    return packedDequantizeWGSL(this.format);
  }
}

interface Attrs {
  format: PackedWeightFormat;
  N: number;
  K: number;
}

const runKernel = defineWebGPUKernel<Attrs>(PACKED_DEQUANTIZE_KERNEL, (ins, backend, { format, N, K }) => {
  const program = new PackedDequantizeProgram(format, N, K);
  const KW = ins.wordsIn!.shape[1]!;
  const NG = ins.scalesIn ? ins.scalesIn.shape[1]! : 1;
  const uniforms: ProgramUniform = [
    { type: 'int32', data: [K] },
    { type: 'int32', data: [KW] },
    { type: 'int32', data: [NG] },
    { type: 'int32', data: [K / NG] },
  ];
  return backend.runWebGPUProgram(program, program.variableNames.map((n) => ins[n]!), 'float32', uniforms);
});

/** The float32 `[N, K]` weight of packed words `[N, K/wpw]` (and scales, mins `[N, K/G]`) on the active webgpu backend. Inputs assumed validated. */
export function packedDequantize(format: PackedWeightFormat, data: Tensor, scales: Tensor | undefined, mins: Tensor | undefined, K: number): Tensor2D {
  const inputs: Record<string, Tensor> = { wordsIn: data };
  if (scales) inputs.scalesIn = scales;
  if (mins) inputs.minsIn = mins;
  return runKernel(inputs, { format, N: data.shape[0]!, K }) as Tensor2D;
}
