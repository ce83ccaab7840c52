/** The list of GPU cases (one table row per variant), at size or --quick's tiny sizes. */
import { CLIP_VIT_L_14_336 } from '../../src/index.js';
import { attentionCase, matMulCase } from './attention.js';
import type { GpuCase } from './case.js';
import { CLIP_BATCH_SIZES, clipCase, TINY_CLIP } from './clip.js';
import { demCase } from './dem.js';
import { PACKED_FORMATS, packedCase } from './packed.js';

/** Every case, in the order they run; `kernels`: the attention kernels each attention case runs (attentionKernels). */
export function gpuCases(quick: boolean, kernels: Array<string | undefined>): GpuCase[] {
  const att = (label: string, B: number, H: number, Hkv: number, Tq: number, Tk: number, dk: number, causal: boolean) => attentionCase(label, B, H, Hkv, Tq, Tk, dk, causal, kernels);
  const packed = (label: string, format: (typeof PACKED_FORMATS)[number], m: number, k: number, n: number) => packedCase(label, format, m, k, n, quick);
  return quick
    ? [
        matMulCase(64, 64, 64),
        matMulCase(128, 128, 128),
        att('DEM window', 1, 2, 2, 16, 16, 8, false),
        att('CLIP', 2, 2, 2, 17, 17, 8, false),
        att('LLaMA-3-8B prefill', 1, 4, 2, 32, 32, 8, true),
        att('LLaMA-3-8B decode', 1, 4, 2, 1, 64, 8, true),
        demCase('tiny', 3, 4, 64, 4),
        clipCase('tiny', TINY_CLIP, 2, -2, [1, 2]),
        ...PACKED_FORMATS.map((f) => packed('decode', f, 1, 256, 384)),
        ...PACKED_FORMATS.map((f) => packed('prefill', f, 40, 256, 384)),
      ]
    : [
        matMulCase(1024, 1024, 1024),
        matMulCase(2048, 2048, 2048),
        matMulCase(4096, 4096, 4096),
        att('DEM window', 1, 8, 8, 576, 576, 128, false),
        att('CLIP', 18, 16, 16, 577, 577, 64, false),
        att('LLaMA-3-8B prefill', 1, 32, 8, 1024, 1024, 128, true),
        att('LLaMA-3-8B decode', 1, 32, 8, 1, 4096, 128, true),
        demCase('official', 3, 24, 1024, 8),
        clipCase('ViT-L/14-336', CLIP_VIT_L_14_336, 18, -2, CLIP_BATCH_SIZES),
        // LLaMA-3-8B: decode GEMVs (gate/up, down, lm_head), the prefill GEMM of gate/up
        ...PACKED_FORMATS.flatMap((f) => [packed('LLaMA-3-8B decode gate/up', f, 1, 4096, 14336), packed('LLaMA-3-8B decode down', f, 1, 14336, 4096), packed('LLaMA-3-8B decode lm_head', f, 1, 4096, 128256)]),
        ...PACKED_FORMATS.map((f) => packed('LLaMA-3-8B prefill gate/up', f, 600, 4096, 14336)),
      ];
}
