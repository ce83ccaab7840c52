import { add, erf, mul, type Tensor } from '@tensorflow/tfjs-core';

/** Exact GELU, `0.5·x·(1 + erf(x/√2))`: PyTorch's `nn.GELU()` default (not the tanh form). */
export function gelu<T extends Tensor>(x: T): T {
  return mul(mul(x, 0.5), add(erf(mul(x, Math.SQRT1_2)), 1)) as T;
}
