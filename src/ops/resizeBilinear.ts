/**
 * Bilinear resize with half-pixel centres (PyTorch's `align_corners=False`). Two implementations
 * ({@link ResizeBilinearOptions.kernel}): tfjs's native resize with our gradient (every backend,
 * differentiable, the reference), and on webgpu one kernel (src/kernels/webgpu/bilinearDown.ts),
 * used by default there while no gradient tape records.
 */
import { image, matMul, reshape, tensor2d, transpose, type Tensor4D } from '@tensorflow/tfjs-core';
import { cannotFuse, checkKernelChoice, webgpuKernelRefusal, type KernelChoice } from './kernelChoice.js';
import { bilinearDown, bilinearDownRefusal } from '../kernels/webgpu/bilinearDown.js';
import { showJson as show } from '../util/format.js';
import { checkOptionNames } from '../util/options.js';
import { withGradient } from './withGradient.js';

/** Options of {@link resizeBilinear}. */
export interface ResizeBilinearOptions {
  /**
   * - `'auto'` (default): the kernel on webgpu when no gradient tape records and the tensors fit
   *   the device's binding limits; the composition otherwise;
   * - `'fused'`: the kernel, or an error saying why it cannot run (not webgpu, under tf.grad, limits);
   * - `'composition'`: tfjs's resize (every backend, differentiable).
   */
  kernel?: 'auto' | 'fused' | 'composition';
}

const FN = 'resizeBilinear';

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

/** Checks the call up front; returns the kernel choice. */
function check(x: Tensor4D, size: readonly [number, number], opts: ResizeBilinearOptions): KernelChoice {
  if (x === null || typeof x !== 'object' || !Array.isArray((x as Tensor4D).shape)) throw new Error(`${FN}: x must be a tensor [B, H, W, C], got ${x === null ? 'null' : typeof x}`);
  if (x.isDisposed) throw new Error(`${FN}: x is a disposed tensor`);
  if (x.rank !== 4) throw new Error(`${FN}: x must be [B, H, W, C], got shape ${show(x.shape)}`);
  if (x.dtype !== 'float32') throw new Error(`${FN}: x must be float32, got ${x.dtype}`);
  if (!Array.isArray(size) || size.length !== 2 || !size.every((s) => Number.isInteger(s) && s > 0)) throw new Error(`${FN}: size must be [height, width] of positive integers, got ${show(size)}`);
  checkOptionNames(FN, opts, ['kernel']);
  const kernel = checkKernelChoice(FN, opts.kernel);
  return kernel;
}

/** Why the kernel cannot run this call, or null. */
function kernelRefusal(x: Tensor4D, size: readonly [number, number]): string | null {
  const refusal = webgpuKernelRefusal();
  if (refusal) return refusal;
  return bilinearDownRefusal(x.shape, size);
}

/**
 * Bilinear resize with half-pixel centres, as PyTorch's `F.interpolate(mode='bilinear',
 * align_corners=False)` (no antialiasing): `x` float32 `[B, H, W, C]` → `[B, size[0], size[1], C]`.
 * The composition's forward pass is tfjs's native `resizeBilinear(x, size, false, true)`; the
 * gradient is ours, `Ryᵀ · dy · Rx`, because tfjs 4.22's ResizeBilinearGrad kernels ignore
 * `halfPixelCenters` (found by this project's PyTorch gradient fixtures: wrong weight gradients,
 * right sums). On webgpu the kernel by default ({@link ResizeBilinearOptions.kernel}).
 */
export function resizeBilinear(x: Tensor4D, size: readonly [number, number], opts: ResizeBilinearOptions = {}): Tensor4D {
  const kernel = check(x, size, opts);
  if (kernel !== 'composition') {
    const why = kernelRefusal(x, size);
    if (why === null) return bilinearDown(x, size);
    if (kernel === 'fused') throw cannotFuse(FN, why);
  }
  const [oh, ow] = size;
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
