/** The matMul and attention cases, and which attention kernels the op offers on this backend. */
import * as tf from '@tensorflow/tfjs-core';
import { attention, attentionPlan, type AttentionOptions } from '../../src/index.js';
import { attentionOpFlops } from '../cases.js';
import { randn, type GpuCase } from './case.js';

/** matMul implementations timed at every matMul size (a fused or faster matMul: one more line). */
const MATMUL_VARIANTS: Array<[label: string, mm: (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor]> = [
  ['tf.matMul', (a, b) => tf.matMul(a, b)],
];
/** Options on top of each attention case's own; crossed with every kernel the op accepts. */
const ATTENTION_VARIANTS: Array<[label: string, opts: AttentionOptions]> = [['auto', {}]];
/** Kernels asked of the op when it has `opts.kernel` (detected at run time; --kernels overrides). */
const KERNEL_CANDIDATES = ['composition', 'fused'];

export function matMulCase(m: number, k: number, n: number): GpuCase {
  return {
    name: `matMul ${m}x${k}x${n}`,
    kind: 'matmul',
    params: { m, k, n },
    shape: `[${m}, ${k}] × [${k}, ${n}]`,
    flops: 2 * m * k * n,
    pipeline: true,
    warmup: 2,
    prepare: () => {
      const a = randn([m, k], 1) as tf.Tensor2D;
      const b = randn([k, n], 2) as tf.Tensor2D;
      return { variants: MATMUL_VARIANTS.map(([label, mm]) => ({ label, run: () => mm(a, b) })), dispose: () => tf.dispose([a, b]) };
    },
  };
}

/** The `kernel` values the attention op accepts once the backend runs (none: it has no such option yet); `forced`: --kernels. */
export function attentionKernels(forced: string[] | undefined): Array<string | undefined> {
  if (forced) return forced;
  const s = [1, 1, 4, 8];
  const ok = KERNEL_CANDIDATES.filter((kernel) => {
    try {
      attentionPlan(s, s, s, { kernel } as AttentionOptions);
      return true;
    } catch {
      return false;
    }
  });
  return ok.length ? ok : [undefined];
}

/** " (attention: fused)" when the op reports which implementation it picks for these shapes (after the fused kernel landed). */
export function attentionKernelFor(q: number[], opts: AttentionOptions = {}): string {
  try {
    const p = attentionPlan(q, q, q, opts) as { kernel?: string };
    return p.kernel ? ` (attention: ${p.kernel})` : '';
  } catch {
    return '';
  }
}

/** The attention op at one shape; one variant per kernel in `kernels` × ATTENTION_VARIANTS. FLOPs as bench/cases.ts counts them. */
export function attentionCase(label: string, B: number, H: number, Hkv: number, Tq: number, Tk: number, dk: number, causal: boolean, kernels: Array<string | undefined>): GpuCase {
  const q = [B, H, Tq, dk];
  const kv = [B, Hkv, Tk, dk];
  return {
    name: `attention ${label} ${B}x${H}:${Hkv}x${Tq}x${Tk}x${dk}${causal ? ' causal' : ''}`,
    kind: 'attention',
    params: { B, H, Hkv, Tq, Tk, dk, causal },
    shape: `q [${q}], k/v [${kv}]`,
    flops: attentionOpFlops(B, H, Tq, Tk, dk, causal),
    pipeline: true,
    warmup: 2,
    prepare: () => {
      const [qt, kt, vt] = [q, kv, kv].map((s, i) => randn(s, i + 1) as tf.Tensor4D) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
      const variants = kernels.flatMap((kernel) =>
        ATTENTION_VARIANTS.map(([l, o]) => {
          const opts = { ...o, ...(causal ? { causal } : {}), ...(kernel ? { kernel } : {}) } as AttentionOptions;
          return { label: kernel ? `${l}, kernel ${kernel}` : l, run: () => attention(qt, kt, vt, opts) };
        }),
      );
      return { variants, dispose: () => tf.dispose([qt, kt, vt]) };
    },
  };
}
