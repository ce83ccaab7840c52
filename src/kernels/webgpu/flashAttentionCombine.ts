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
import { engine, getKernel, registerKernel, type NamedAttrMap, type Tensor, type Tensor4D, type TensorInfo } from '@tensorflow/tfjs-core';
import type { ProgramUniform, WebGPUBackendLike, WebGPUProgramLike } from './flashAttention.js';

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
    this.dispatch = [Math.ceil(outputShape.reduce((a, b) => a * b, 1) / THREADS), 1, 1];
    this.shaderKey = `infLlavaFlashAttentionCombine_${dv}`;
  }

  getUserCode(): string {
    return flashAttentionCombineWGSL(this.dv);
  }
}

function ensureRegistered(): void {
  if (getKernel(FLASH_ATTENTION_COMBINE_KERNEL, 'webgpu')) return;
  registerKernel({
    kernelName: FLASH_ATTENTION_COMBINE_KERNEL,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { partial } = inputs as { partial: TensorInfo };
      const outShape = (attrs as unknown as { outShape: number[] }).outShape;
      const [, splits, rows, w] = partial.shape as [number, number, number, number];
      const program = new FlashAttentionCombineProgram(w - 2, outShape);
      const uniforms: ProgramUniform = [
        { type: 'int32', data: [rows] },
        { type: 'int32', data: [splits] },
      ];
      return (backend as unknown as WebGPUBackendLike).runWebGPUProgram(program, [partial], 'float32', uniforms);
    },
  });
}

/** Merges the split-K partials `[B·Hkv, splits, rows, dv + 2]` into the attention output `outShape` = `[B, H, Tq, dv]`. */
export function runFlashAttentionCombine(partial: Tensor, outShape: [number, number, number, number]): Tensor4D {
  ensureRegistered();
  return engine().runKernel(FLASH_ATTENTION_COMBINE_KERNEL, { partial }, { outShape } as unknown as NamedAttrMap) as Tensor4D;
}
