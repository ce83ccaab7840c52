import { avgPool as tfAvgPool, cast, fill, mul, reshape, tidy, type Tensor4D, type TensorLike } from '@tensorflow/tfjs-core';
import { withGradient } from './withGradient.js';
import { parseFactor, toTensor4D } from '../grid.js';

/**
 * Mean over non-overlapping `fh × fw` windows: the paper's token reduction (72×72 → 24×24
 * with factor 3). The released checkpoint instead resizes bilinearly (see docs/spec.md).
 *
 * @param x `[B, H, W, C]`, float32 or int32 (the mean is float32).
 * @param factor `f` or `[fh, fw]`; must divide `H` and `W`.
 * @returns `[B, H/fh, W/fw, C]`, float32.
 */
export function avgPool(x: Tensor4D | TensorLike, factor: number | readonly [number, number]): Tensor4D {
  const fn = 'avgPool';
  const [fh, fw] = parseFactor(factor, fn);
  return tidy(() => {
    const t = toTensor4D(x, fn, 'x');
    const [B, H, W, C] = t.shape;
    if (H % fh !== 0 || W % fw !== 0) {
      throw new Error(
        `${fn}: factor [${fh}, ${fw}] does not divide x of shape ${JSON.stringify(t.shape)} ` +
          `(height ${H} % ${fh} = ${H % fh}, width ${W} % ${fw} = ${W % fw})`,
      );
    }
    const f32 = t.dtype === 'float32' ? t : cast(t, 'float32');
    if (fh === 1 && fw === 1) return f32.clone();
    // Each input's gradient is dy / window size.
    return withGradient<Tensor4D>(
      f32,
      (v) => tfAvgPool(v as Tensor4D, [fh, fw], [fh, fw], 'valid'),
      (dy) => {
        // A broadcasting multiply, not broadcastTo: webgpu's Tile reads back to the CPU at rank >= 5.
        const spread = mul(reshape(dy, [B * (H / fh), 1, W / fw, 1, C]), fill([1, fh, 1, fw, 1], 1 / (fh * fw)));
        return reshape(spread, [B, H, W, C]);
      },
    );
  });
}
