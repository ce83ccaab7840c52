import { add, getBackend, matMul, reshape, transpose, type Tensor, type Tensor1D, type Tensor2D } from '@tensorflow/tfjs-core';

/** A fully connected layer in PyTorch's layout: `y = x · weightᵀ + bias`. */
export interface Linear {
  /** `[out, in]`, as PyTorch stores it, so official checkpoints load without a transpose. */
  weight: Tensor2D;
  /** `[out]`. */
  bias?: Tensor1D;
}

/**
 * From how many rows of `x` it pays to transpose the weight once and run a plain matMul
 * instead of `matMul(x, w, false, true)` (bench/NOTES.md): wasm's transposeB path runs at
 * 2.3 GFLOP/s against 31 for the plain one; tfjs-node's at 169 against 195.
 */
const PRETRANSPOSE_MIN_ROWS: Record<string, number> = { wasm: 16, tensorflow: 1024 };

/** Applies `layer` to the last axis of `x` (`[..., in]` → `[..., out]`) as one 2-D matMul. */
export function linear<T extends Tensor>(x: T, layer: Linear): T {
  const inDim = x.shape[x.rank - 1]!;
  const outDim = layer.weight.shape[0];
  const flat = reshape(x, [-1, inDim]) as Tensor2D; // [rows, in]
  const minRows = PRETRANSPOSE_MIN_ROWS[getBackend()] ?? Infinity;
  let y: Tensor = flat.shape[0] >= minRows ? matMul(flat, transpose(layer.weight)) : matMul(flat, layer.weight, false, true); // [rows, out]
  if (layer.bias) y = add(y, layer.bias);
  return reshape(y, [...x.shape.slice(0, -1), outDim]) as T;
}
