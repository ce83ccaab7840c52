/**
 * A linear projection, `epilogue(x · Wᵀ + b)`, whichever way its weight W `[out, in]` is held:
 * one interface, one implementation per residency, so the forward pass never asks where W lives.
 *
 *   DenseProjection   a float32 tfjs tensor                                  → ops/linear
 *   LazyProjection    a LazyWeights store on the CPU (bf16/f16/f32 bytes,    → ops/cpuPackedLinear for a few rows,
 *                     q8/q4 codes), decoded when used                          else decoded whole or in row blocks → ops/linear
 *   PackedProjection  packed int32 tensors resident on webgpu (bf16, q8, q4) → ops/packedLinear
 */
import { backend, concat, slice, tensor2d, tidy, type DataId, type Tensor, type Tensor1D, type Tensor2D } from '@tensorflow/tfjs-core';
import type { LazyWeights } from '../../io/lazyWeights.js';
import { tensorLabel } from '../../io/safetensors.js';
import { cpuPackedLinear, onCpuBackend } from '../../ops/cpuPackedLinear.js';
import { linear, type LinearOptions } from '../../ops/linear.js';
import { packedLinear, type PackedLinear } from '../../ops/packedLinear.js';
import type { PackedWeight, QuantFormat } from '../../quant/groups.js';

/** What a projection applies after `x · Wᵀ + b`: linear's epilogue. */
export type Epilogue = Pick<LinearOptions, 'activation' | 'multiply' | 'residual'>;

/** A weight's bytes as held: values or code words, and the float32 scales and mins of quantised ones. */
export interface MatrixBytes {
  data: number;
  scales: number;
  format?: QuantFormat;
}

export interface Projection {
  /** `[out]`, float32, resident. */
  readonly bias?: Tensor1D;
  /** `epilogue(x · Wᵀ + b)` over the last axis: `[..., in] → [..., out]`, one new tensor. */
  apply<T extends Tensor>(x: T, epilogue?: Epilogue): T;
  /** W's bytes as held (the bias is not counted). */
  bytes(): MatrixBytes;
}

/** W a float32 tensor `[out, in]`. */
export class DenseProjection implements Projection {
  constructor(
    readonly weight: Tensor2D,
    readonly bias?: Tensor1D,
  ) {}

  apply<T extends Tensor>(x: T, epilogue: Epilogue = {}): T {
    return tidy(() => linear(x, { weight: this.weight, bias: this.bias }, epilogue));
  }

  bytes(): MatrixBytes {
    return { data: 4 * this.weight.size, scales: 0 };
  }
}

/** How a {@link LazyProjection} multiplies (`llamaFromTensors`' lazyBlockElements and lazyGemvMaxRows). */
export interface LazyMatMul {
  /** Elements of W decoded at a time: a block of rows, disposed after its matMul. */
  blockElements: number;
  /** Rows of x up to which the CPU GEMV runs on the stored form instead. */
  gemvMaxRows: number;
}

/** W in a {@link LazyWeights} store by name (read at each call: the store's entry as it is then). */
export class LazyProjection implements Projection {
  constructor(
    readonly store: LazyWeights,
    readonly name: string,
    /** `[out, in]`. */
    readonly shape: readonly [number, number],
    readonly bias: Tensor1D | undefined,
    private readonly how: LazyMatMul,
  ) {}

  apply<T extends Tensor>(x: T, epilogue: Epilogue = {}): T {
    const { store, name, bias } = this;
    const [rows, cols] = this.shape;
    // Decode steps: the GEMV on the bf16 bytes or q8/q4 codes, where one applies.
    if (x.size / cols <= this.how.gemvMaxRows && onCpuBackend()) {
      const y = cpuPackedLinear(x, store.gemvWeight(name), { ...epilogue, bias, what: tensorLabel(name) });
      if (y) return y;
    }
    const block = Math.max(1, Math.floor(this.how.blockElements / cols));
    if (block >= rows) return tidy(() => linear(x, { weight: store.materialize(name) as Tensor2D, bias }, epilogue));
    // Blocks of rows, each decoded, multiplied with the epilogue applied to its columns, and
    // disposed before the next: W is never whole in float32.
    return tidy(() => {
      const columns = (t: Tensor | undefined, start: number, n: number) => t && slice(t, [...t.shape.map(() => 0).slice(0, -1), start], [...t.shape.slice(0, -1), n]);
      const parts: Tensor[] = [];
      for (let start = 0; start < rows; start += block) {
        const n = Math.min(block, rows - start);
        parts.push(
          tidy(() =>
            linear(x, { weight: store.rows(name, start, n), bias: columns(bias, start, n) as Tensor1D | undefined }, {
              activation: epilogue.activation,
              multiply: columns(epilogue.multiply, start, n),
              residual: columns(epilogue.residual, start, n),
            }),
          ),
        ); // [..., n]
      }
      return concat(parts, -1) as T; // [..., out]
    });
  }

  bytes(): MatrixBytes {
    return storedBytes(this.store, this.name);
  }
}

/** W packed in int32 tensors (+ float32 scales, mins), dequantised inside the webgpu kernel. */
export class PackedProjection implements Projection {
  constructor(readonly packed: PackedLinear) {}

  get bias(): Tensor1D | undefined {
    return this.packed.bias;
  }

  apply<T extends Tensor>(x: T, epilogue: Epilogue = {}): T {
    return tidy(() => packedLinear(x, this.packed, epilogue));
  }

  bytes(): MatrixBytes {
    const p = this.packed;
    const scales = 4 * ((p.scales?.size ?? 0) + (p.mins?.size ?? 0));
    return { data: 4 * p.data.size, scales, ...(p.format === 'bf16' ? {} : { format: p.format }) };
  }

  /** Uploads `pk` to the GPU as tensors, collected in `made` (the JS copies released matrix by matrix). */
  static upload(pk: PackedWeight, bias: Tensor1D | undefined, made: Tensor[]): PackedProjection {
    const words = pk.data.length / pk.rows; // [out, in/2|in/4|in/8]
    const t = (data: Int32Array | Float32Array, cols: number, dtype: 'int32' | 'float32') => {
      const out = tensor2d(data.slice(), [pk.rows, cols], dtype); // a copy: the store's views may be wasm memory
      made.push(out);
      // Upload now, so the JS copy is released matrix by matrix (tfjs uploads on first use otherwise).
      (backend() as unknown as { uploadToGPU?: (id: DataId) => void }).uploadToGPU?.(out.dataId);
      return out;
    };
    const groups = pk.groupSize ? pk.cols / pk.groupSize : 0;
    return new PackedProjection({
      format: pk.format,
      data: t(pk.data, words, 'int32'),
      ...(pk.scales ? { scales: t(pk.scales, groups, 'float32') } : {}),
      ...(pk.mins ? { mins: t(pk.mins, groups, 'float32') } : {}),
      ...(bias ? { bias } : {}),
    });
  }
}

/** The bytes a store holds for matrix `name`: checkpoint bytes, or code words + scales and mins. */
export function storedBytes(store: LazyWeights, name: string): MatrixBytes {
  const info = store.info(name)!;
  if (info.dtype !== 'q8' && info.dtype !== 'q4') return { data: info.byteLength, scales: 0 };
  const pk = store.packed(name)!;
  return { data: pk.data.byteLength, scales: info.byteLength - pk.data.byteLength, format: info.dtype };
}
