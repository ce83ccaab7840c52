/**
 * The fully connected layer on the CPU backends over a weight held in JS memory in its stored
 * form: `y = act(x · Wᵀ + bias) [⊙ multiply] [+ residual]`, with `x · Wᵀ` computed by the
 * WebAssembly SIMD GEMV of src/kernels/wasm/gemv.ts on the q8 / q4 codes (or bf16 words) of a
 * `PackedWeight`, or on a bf16 matrix's checkpoint bytes: each weight read once, no float32
 * copy of W made. For a few rows of x (decode steps) this runs at memory speed, where decoding
 * W, copying it into the backend and multiplying would not.
 *
 * packedLinear's CPU companion (its weights are tfjs tensors, resident on webgpu), and the one
 * place the CPU backends reach the wasm GEMV. Not differentiable; not for webgpu (x is read back
 * synchronously, which needs an OffscreenCanvas there).
 */
import { add, getBackend, tensor, tidy, type Tensor, type Tensor1D } from '@tensorflow/tfjs-core';
import { gemvBf16Bytes, packedGemv } from '../kernels/wasm/gemv.js';
import type { PackedWeight } from '../quant/groups.js';
import { linearEpilogue, type LinearOptions } from './linear.js';

/**
 * Backends whose tensors live in CPU memory, where reading x back for the GEMV is a copy of a
 * few KB. Not webgpu: a synchronous read of GPU data needs OffscreenCanvas (absent in Node), and
 * there the weights go to the GPU anyway.
 */
export const CPU_BACKENDS: ReadonlySet<string> = new Set(['cpu', 'wasm', 'tensorflow']);

/** Whether the active backend is one of {@link CPU_BACKENDS}. */
export function onCpuBackend(): boolean {
  return CPU_BACKENDS.has(getBackend());
}

/** A matrix's checkpoint bytes `[out, in]` (a `LazyTensor`): only `'BF16'` has a GEMV. */
export interface CheckpointMatrix {
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

/** W `[out, in]` as the GEMV reads it in place. */
export type CpuLinearWeight = PackedWeight | CheckpointMatrix;

const isPacked = (w: CpuLinearWeight): w is PackedWeight => 'format' in w;

/**
 * `x · Wᵀ` on arrays: x holds `m` rows of `in` float32, the result `m` rows of `out`. Packed
 * weights: the SIMD GEMV (a JS GEMV where SIMD is missing). bf16 bytes: the bf16 SIMD GEMV
 * (`in` a multiple of 8). Undefined where no GEMV applies (other dtypes, bf16 bytes without
 * SIMD): then decode W and matMul instead.
 */
export function cpuPackedMatMul(w: CpuLinearWeight, x: Float32Array, m: number, what?: string): Float32Array | undefined {
  if (isPacked(w)) return packedGemv(w, x, m);
  if (w.dtype !== 'BF16' || w.shape.length !== 2) return undefined;
  return gemvBf16Bytes(w.bytes, w.shape[0]!, w.shape[1]!, x, m, what);
}

/** Options of {@link cpuPackedLinear}: a bias and linear's epilogue. */
export interface CpuPackedLinearOptions extends Pick<LinearOptions, 'activation' | 'multiply' | 'residual'> {
  /** `[out]`. */
  bias?: Tensor1D;
  /** The weight, as messages name it. */
  what?: string;
}

/**
 * `act(x · Wᵀ + bias) [⊙ multiply] [+ residual]`: x `[..., in]` float32 → `[..., out]`, the
 * epilogue as linear's ops in its order. Undefined (nothing read back) off the CPU backends or
 * where no GEMV applies ({@link cpuPackedMatMul}). One new tensor.
 */
export function cpuPackedLinear<T extends Tensor>(x: T, w: CpuLinearWeight, opts: CpuPackedLinearOptions = {}): T | undefined {
  if (!onCpuBackend()) return undefined;
  const [out, inDim] = isPacked(w) ? [w.rows, w.cols] : [w.shape[0]!, w.shape[1]!];
  const y = cpuPackedMatMul(w, x.dataSync() as Float32Array, x.size / inDim, opts.what); // [m, out]
  if (!y) return undefined;
  return tidy(() => {
    const product = tensor(y, [...x.shape.slice(0, -1), out], 'float32');
    return linearEpilogue(opts.bias ? add(product, opts.bias) : product, opts);
  }) as T;
}
