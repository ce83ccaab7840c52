import { add, matMul, reshape, type Tensor, type Tensor1D, type Tensor2D } from '@tensorflow/tfjs-core';

/** A fully connected layer in PyTorch's layout: `y = x · weightᵀ + bias`. */
export interface Linear {
  /** `[out, in]`, as PyTorch stores it, so official checkpoints load without a transpose. */
  weight: Tensor2D;
  /** `[out]`. */
  bias?: Tensor1D;
}

/** Applies `layer` to the last axis of `x` (`[..., in]` → `[..., out]`) as one 2-D matMul. */
export function linear<T extends Tensor>(x: T, layer: Linear): T {
  const inDim = x.shape[x.rank - 1]!;
  const outDim = layer.weight.shape[0];
  const flat = reshape(x, [-1, inDim]) as Tensor2D; // [tokens, in]
  let y: Tensor = matMul(flat, layer.weight, false, true); // [tokens, out]
  if (layer.bias) y = add(y, layer.bias);
  return reshape(y, [...x.shape.slice(0, -1), outDim]) as T;
}
