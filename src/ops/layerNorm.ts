import { add, mul, moments, rsqrt, sub, type Tensor, type Tensor1D } from '@tensorflow/tfjs-core';

/** PyTorch `nn.LayerNorm` parameters over the last axis. */
export interface LayerNorm {
  weight: Tensor1D;
  bias: Tensor1D;
  /** Default 1e-5, as PyTorch. */
  eps?: number;
}

/** `(x - mean) / sqrt(var + eps) * weight + bias` over the last axis (biased variance, as PyTorch). */
export function layerNorm<T extends Tensor>(x: T, ln: LayerNorm): T {
  const { mean, variance } = moments(x, -1, true);
  const normed = mul(sub(x, mean), rsqrt(add(variance, ln.eps ?? 1e-5)));
  return add(mul(normed, ln.weight), ln.bias) as T;
}
