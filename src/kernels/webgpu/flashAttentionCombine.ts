/**
 * Split-K combine for the fused attention ({@link ./flashAttention.ts}): the main kernel leaves,
 * for each kv head group g, key chunk s and stacked query row r, the unnormalised partial
 * `(acc[0..dv), m, l)` of that chunk in `partial [B·Hkv, splits, rows, dv + 2]`. One thread per
 * output element merges them with the online-softmax rule
 *
 *   M = max_s m_s,   out = Σ_s e^(m_s − M)·acc_s / Σ_s e^(m_s − M)·l_s
 *
 * (a chunk that saw no key of its row has m = −1e30, l = 0, acc = 0 and weighs e^(−1e30−M) = 0;
 * every row sees key 0, so M is finite). Output `[B, H, Tq, dv]`, which is `[B·Hkv, rows, dv]`
 * in memory. Registered as {@link FLASH_ATTENTION_COMBINE_KERNEL} for 'webgpu' on first use.
 */
import type { Tensor, Tensor4D } from '@tensorflow/tfjs-core';
import { ceilDiv, defineWebGPUKernel, type ProgramUniform, type WebGPUProgramLike } from './program.js';

export const FLASH_ATTENTION_COMBINE_KERNEL = 'InfLlavaFlashAttentionCombine';

const THREADS = 64;

/** The WGSL of the combine for head width `dv` (splits and rows are uniforms). */
export function flashAttentionCombineWGSL(dv: number): string {
  return /* wgsl */ `
// ---- fused attention, split-K combine
const DV : i32 = ${dv};
const W : i32 = ${dv + 2};      // partial row: acc[0..DV), m, l

${'fn main(index : i32)'} {
  if (index >= uniforms.size) { return; }
  let col = index % DV;
  let gr = index / DV;              // g · rows + r
  let rows = uniforms.rows;
  let g = gr / rows;
  let r = gr % rows;
  let n = uniforms.splits;
  var M = -1.0e30;
  for (var s = 0; s < n; s++) { M = max(M, partial[((g * n + s) * rows + r) * W + DV]); }
  var num = 0.0;
  var den = 0.0;
  for (var s = 0; s < n; s++) {
    let base = ((g * n + s) * rows + r) * W;
    let w = exp(partial[base + DV] - M);
    num += w * partial[base + col];
    den += w * partial[base + DV + 1];
  }
  setOutputAtIndex(index, num / den);
}
`;
}

class FlashAttentionCombineProgram implements WebGPUProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0, 1, 2, 3] }; // flat: main(index)
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  variableNames = ['partial'];
  uniforms = 'rows : i32, splits : i32,';
  size = true;

  constructor(
    private readonly dv: number,
    outputShape: number[],
  ) {
    this.outputShape = outputShape;
    this.dispatch = [ceilDiv(outputShape.reduce((a, b) => a * b, 1), THREADS), 1, 1];
    this.shaderKey = `infLlavaFlashAttentionCombine_${dv}`;
  }

  getUserCode(): string {
    return flashAttentionCombineWGSL(this.dv);
  }
}

const runKernel = defineWebGPUKernel<{ outShape: number[] }>(FLASH_ATTENTION_COMBINE_KERNEL, ({ partial }, backend, { outShape }) => {
  const [, splits, rows, w] = partial!.shape as [number, number, number, number];
  const program = new FlashAttentionCombineProgram(w - 2, outShape);
  const uniforms: ProgramUniform = [
    { type: 'int32', data: [rows] },
    { type: 'int32', data: [splits] },
  ];
  return backend.runWebGPUProgram(program, [partial!], 'float32', uniforms);
});

/** Merges the split-K partials `[B·Hkv, splits, rows, dv + 2]` into the attention output `outShape` = `[B, H, Tq, dv]`. */
export function runFlashAttentionCombine(partial: Tensor, outShape: [number, number, number, number]): Tensor4D {
  return runKernel({ partial }, { outShape }) as Tensor4D;
}
