import { customGrad, type Tensor } from '@tensorflow/tfjs-core';

/**
 * `forward(x)` whose gradient is `backward(dy)`. Our primitives are linear maps whose adjoint
 * is cheap and exact (a rearrangement's is its inverse), so they need no registered gradient
 * kernels: `tf.grad` works with tfjs-core alone.
 */
export function withGradient<T extends Tensor>(x: Tensor, forward: (x: Tensor) => Tensor, backward: (dy: Tensor) => Tensor): T {
  const f = (v: Tensor) => ({ value: forward(v), gradFunc: (dy: Tensor) => backward(dy) });
  return customGrad(f as unknown as Parameters<typeof customGrad>[0])(x) as T;
}
