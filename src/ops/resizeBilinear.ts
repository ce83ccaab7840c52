import { image, matMul, reshape, tensor2d, transpose, type Tensor4D } from '@tensorflow/tfjs-core';
import { withGradient } from './withGradient.js';

/**
 * `[outSize, inSize]` matrix of PyTorch's `align_corners=False` linear interpolation weights
 * (source `max((dst + 0.5)·in/out − 0.5, 0)`, neighbours clamped at the edge).
 */
export function bilinearWeights(inSize: number, outSize: number): Float32Array {
  const m = new Float32Array(outSize * inSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const src = Math.max((o + 0.5) * scale - 0.5, 0);
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const i1 = Math.min(i0 + 1, inSize - 1);
    const frac = src - i0;
    m[o * inSize + i0]! += 1 - frac;
    m[o * inSize + i1]! += frac;
  }
  return m;
}

/**
 * Bilinear resize with half-pixel centres, as PyTorch's `F.interpolate(mode='bilinear',
 * align_corners=False)` (no antialiasing). The forward pass is tfjs's native
 * `resizeBilinear(x, size, false, true)`; the gradient is ours, `Ryᵀ · dy · Rx`, because
 * tfjs 4.22's ResizeBilinearGrad kernels ignore `halfPixelCenters` (found by this project's
 * PyTorch gradient fixtures: wrong weight gradients, right sums).
 */
export function resizeBilinear(x: Tensor4D, [oh, ow]: readonly [number, number]): Tensor4D {
  const [B, H, W, C] = x.shape;
  return withGradient<Tensor4D>(
    x,
    (v) => image.resizeBilinear(v as Tensor4D, [oh, ow], false, true),
    (dy) => {
      const ryT = transpose(tensor2d(bilinearWeights(H, oh), [oh, H])); // [H, oh]
      const rx = tensor2d(bilinearWeights(W, ow), [ow, W]); // [ow, W]
      const rows = matMul(ryT, reshape(transpose(dy, [1, 0, 2, 3]), [oh, B * ow * C])); // [H, B*ow*C]
      const perRow = transpose(reshape(rows, [H * B, ow, C]), [0, 2, 1]); // [H*B, C, ow]
      const cols = matMul(reshape(perRow, [H * B * C, ow]), rx); // [H*B*C, W]
      return transpose(reshape(cols, [H, B, C, W]), [1, 0, 3, 2]); // [B, H, W, C]
    },
  );
}
