import { add, gather, matMul, mul, reshape, stridedSlice, tensor1d, tensor3d, tensor4d, tidy, type Tensor4D } from '@tensorflow/tfjs-core';
import { withGradient } from '../ops/withGradient.js';

const f = Math.fround;

/**
 * One axis of a separable resize as a sparse `[out, in]` matrix: output `o` is
 * `Σ_k weight[k·out + o] · input[index[k·out + o]]`, summed in `k` order (PyTorch's order).
 * Unused slots carry weight 0 and a valid index.
 */
export interface Taps {
  readonly inSize: number;
  readonly outSize: number;
  /** Taps per output. */
  readonly k: number;
  /** `[k, out]`, k-major. */
  readonly index: Int32Array;
  /** `[k, out]`, k-major; float32 values. */
  readonly weight: Float32Array;
}

/** `a·b + c` with one rounding to float32 (a fused multiply-add; `a·b` is exact in a double). */
const fma = (a: number, b: number, c: number): number => f(a * b + c);

// PyTorch's cubic convolution polynomials (aten/src/ATen/native/UpSample.h) in float32:
//   cubic1(x) = ((A + 2)·x − (A + 3))·x·x + 1        for |x| <= 1
//   cubic2(x) = ((A·x − 5A)·x + 8A)·x − 4A           for 1 < |x| < 2
// PyTorch's x86-64 CPU kernels are compiled with FMA contraction, and the compiler fused different
// multiply-adds in the two call sites. The patterns below reproduce the weights of torch 2.13's
// float32 kernels bit for bit (test/fixtures/image/resize_weights.safetensors, read off one-hot inputs):
// unfused arithmetic differs by up to 4e-5 in a weight (one float32 ulp of the source coordinate).

/** `get_cubic_upsample_coefficients` (antialias=False, A = −0.75). */
function cubic1Plain(x: number, a: number): number {
  const t = fma(f(a + 2), x, -f(a + 3));
  return f(f(f(t * x) * x) + 1);
}
function cubic2Plain(x: number, a: number): number {
  const t = fma(fma(a, x, -f(5 * a)), x, f(8 * a));
  return f(f(t * x) - f(4 * a));
}
/** `HelperInterpCubic::aa_filter` (antialias=True, A = −0.5). */
function cubic1Aa(x: number, a: number): number {
  return fma(f(fma(f(a + 2), x, -f(a + 3)) * x), x, 1);
}
function cubic2Aa(x: number, a: number): number {
  return fma(fma(fma(a, x, -f(5 * a)), x, f(8 * a)), x, -f(4 * a));
}

/**
 * `F.interpolate(mode='bicubic', align_corners=False)` along one axis, as PyTorch's CPU float
 * kernel computes its indices and weights (HelperInterpCubic::compute_indices_weights): source
 * `(o + 0.5)·in/out − 0.5`, not clamped at 0; `a = −0.75`; the four taps clamped to `[0, in−1]`
 * (so edge outputs may read one pixel several times, as PyTorch does).
 */
export function cubicTaps(inSize: number, outSize: number): Taps {
  const a = -0.75;
  const scale = f(inSize / outSize);
  const index = new Int32Array(4 * outSize);
  const weight = new Float32Array(4 * outSize);
  for (let o = 0; o < outSize; o++) {
    const real = fma(scale, f(o + 0.5), -0.5);
    const i0 = Math.min(Math.floor(real), inSize - 1);
    const t = Math.min(Math.max(f(real - i0), 0), 1);
    const x2 = f(1 - t);
    const coeffs = [cubic2Plain(f(t + 1), a), cubic1Plain(t, a), cubic1Plain(x2, a), cubic2Plain(f(x2 + 1), a)];
    for (let k = 0; k < 4; k++) {
      index[k * outSize + o] = Math.max(Math.min(i0 + k - 1, inSize - 1), 0);
      weight[k * outSize + o] = coeffs[k]!;
    }
  }
  return { inSize, outSize, k: 4, index, weight };
}

/**
 * `F.interpolate(mode='bicubic', antialias=True, align_corners=False)` along one axis, as
 * PyTorch's CPU float kernel computes it (HelperInterpBase::_compute_indices_min_size_weights_aa,
 * the scheme of Pillow's ImagingResample): `a = −0.5`, support `2·max(in/out, 1)` around centre
 * `(o + 0.5)·in/out`, the kernel stretched by `in/out` when shrinking, weights normalised per
 * output. Rounding follows the C++ (float32 where it stores float32, double where it promotes).
 */
export function cubicAntialiasTaps(inSize: number, outSize: number): Taps {
  const a = -0.5;
  const filter = (x: number): number => {
    const ax = Math.abs(x);
    return ax < 1 ? cubic1Aa(ax, a) : ax < 2 ? cubic2Aa(ax, a) : 0;
  };
  const scale = f(inSize / outSize);
  const support = scale >= 1 ? f(2 * scale) : 2;
  const maxTaps = Math.ceil(support) * 2 + 1;
  const invscale = scale >= 1 ? f(1 / scale) : 1;
  const mins = new Int32Array(outSize);
  const sizes = new Int32Array(outSize);
  const ws: Float32Array[] = [];
  let k = 1;
  for (let o = 0; o < outSize; o++) {
    const center = f(scale * (o + 0.5));
    const xmin = Math.max(Math.trunc(f(center - support) + 0.5), 0);
    let xsize = Math.min(Math.trunc(f(center + support) + 0.5), inSize) - xmin;
    xsize = Math.min(Math.max(xsize, 0), maxTaps);
    const w = new Float32Array(xsize);
    let total = 0;
    for (let j = 0; j < xsize; j++) {
      w[j] = filter(f((f(j + xmin - center) + 0.5) * invscale));
      total = f(total + w[j]!);
    }
    if (total !== 0) for (let j = 0; j < xsize; j++) w[j] = f(w[j]! / total);
    mins[o] = xmin;
    sizes[o] = xsize;
    ws.push(w);
    k = Math.max(k, xsize);
  }
  const index = new Int32Array(k * outSize);
  const weight = new Float32Array(k * outSize);
  for (let o = 0; o < outSize; o++) {
    for (let j = 0; j < k; j++) {
      index[j * outSize + o] = j < sizes[o]! ? mins[o]! + j : Math.min(mins[o]!, inSize - 1);
      weight[j * outSize + o] = j < sizes[o]! ? ws[o]![j]! : 0;
    }
  }
  return { inSize, outSize, k, index, weight };
}

/** The adjoint map `[in, out]` of `taps` (its transpose), as taps again. */
export function transposeTaps(taps: Taps): Taps {
  const { inSize, outSize, k } = taps;
  const lists: Array<Array<[number, number]>> = Array.from({ length: inSize }, () => []);
  for (let j = 0; j < k; j++) {
    for (let o = 0; o < outSize; o++) {
      const w = taps.weight[j * outSize + o]!;
      if (w !== 0) lists[taps.index[j * outSize + o]!]!.push([o, w]);
    }
  }
  const kt = lists.reduce((m, l) => Math.max(m, l.length), 1);
  const index = new Int32Array(kt * inSize);
  const weight = new Float32Array(kt * inSize);
  for (let i = 0; i < inSize; i++) {
    const l = lists[i]!;
    for (let j = 0; j < kt; j++) {
      index[j * inSize + i] = j < l.length ? l[j]![0] : 0;
      weight[j * inSize + i] = j < l.length ? l[j]![1] : 0;
    }
  }
  return { inSize: outSize, outSize: inSize, k: kt, index, weight };
}

/**
 * When every output copies exactly one input with weight 1 and the inputs form an arithmetic
 * progression (`start + step·o`), the pass is a strided slice: e.g. shrinking by an odd integer
 * factor without antialiasing (1008 → 336 samples `3o + 1`: the cubic kernel is 0 at ±1, ±2), or
 * any size to itself.
 */
export function strideOf(taps: Taps): { start: number; step: number } | null {
  const { outSize, k } = taps;
  const src = new Int32Array(outSize);
  for (let o = 0; o < outSize; o++) {
    let found = -1;
    for (let j = 0; j < k; j++) {
      const w = taps.weight[j * outSize + o]!;
      if (w === 0) continue;
      if (w !== 1 || found >= 0) return null;
      found = taps.index[j * outSize + o]!;
    }
    if (found < 0) return null;
    src[o] = found;
  }
  const start = src[0]!;
  const step = outSize > 1 ? src[1]! - start : 1;
  if (step < 1) return null;
  for (let o = 0; o < outSize; o++) if (src[o] !== start + step * o) return null;
  return { start, step };
}

/** Dense `[out, in]` matrix of `taps` (duplicates summed in tap order, in float32). */
export function denseTaps(taps: Taps, weight: Float32Array = taps.weight): Float32Array {
  const { inSize, outSize, k } = taps;
  const m = new Float32Array(outSize * inSize);
  for (let j = 0; j < k; j++) {
    for (let o = 0; o < outSize; o++) m[o * inSize + taps.index[j * outSize + o]!]! += weight[j * outSize + o]!;
  }
  return m;
}

/**
 * How one pass is computed: `gather` (per tap, gather the input rows/columns and accumulate
 * `w · x` in PyTorch's tap order) or `matmul` (the dense `[out, in]` weight matrix).
 */
export type PassMethod = 'gather' | 'matmul';

/**
 * Input length per tap up to which the dense matMul beats gathering. Measured on cpu, wasm and
 * tensorflow: photos (3 channels; 1000 → 1008, 570 → 1008, 1008 → 336, 336 → 1008, with or
 * without antialiasing) gather 1.1–7× faster; feature maps (1024 channels, 24 ↔ 72) multiply
 * 3–9× faster.
 */
const MATMUL_MAX_IN_PER_TAP = 24;

/** The faster method for a pass (see MATMUL_MAX_IN_PER_TAP). */
export function choosePassMethod(taps: Taps): PassMethod {
  return taps.inSize <= MATMUL_MAX_IN_PER_TAP * taps.k ? 'matmul' : 'gather';
}

/**
 * `Σ_k weights[i][k] · x[..., index[k], ...]` along `axis` (1: height, 2: width) of an NHWC
 * tensor, for each weight set `i` (they share the gathers). Returns one tensor per weight set.
 */
export function applyTapsMulti(x: Tensor4D, axis: 1 | 2, taps: Taps, weights: readonly Float32Array[], method: PassMethod): Tensor4D[] {
  const [B, H, W, C] = x.shape;
  const { inSize, outSize, k } = taps;
  if (method === 'matmul') {
    return weights.map((wt) => {
      const m = denseTaps(taps, wt);
      if (axis === 1) {
        // [out, H] · [H, W·C] per batch (batch dims of 1 broadcast).
        const y = matMul(tensor3d(m, [1, outSize, inSize]), reshape(x, [B, H, W * C]));
        return reshape(y, [B, outSize, W, C]);
      }
      // [out, W] · [W, C] per (batch, row).
      const y = matMul(tensor3d(m, [1, outSize, inSize]), reshape(x, [B * H, W, C]));
      return reshape(y, [B, H, outSize, C]);
    });
  }
  const wShape: [number, number, number, number] = axis === 1 ? [1, outSize, 1, 1] : [1, 1, outSize, 1];
  const acc: Array<Tensor4D | undefined> = weights.map(() => undefined);
  for (let j = 0; j < k; j++) {
    const idx = tensor1d(taps.index.subarray(j * outSize, (j + 1) * outSize), 'int32');
    const g = gather(x, idx, axis);
    weights.forEach((wt, i) => {
      const term = mul(g, tensor4d(wt.subarray(j * outSize, (j + 1) * outSize), wShape)) as Tensor4D;
      acc[i] = acc[i] ? (add(acc[i]!, term) as Tensor4D) : term;
    });
  }
  return acc as Tensor4D[];
}

/** Applies `taps` along `axis` (1: height, 2: width) of an NHWC tensor; strided slice where it can. */
export function applyTaps(x: Tensor4D, axis: 1 | 2, taps: Taps, method: PassMethod | 'auto' = 'auto', useStride = true): Tensor4D {
  const [B, H, W, C] = x.shape;
  const { outSize } = taps;
  const stride = useStride ? strideOf(taps) : null;
  if (stride) {
    if (stride.step === 1 && stride.start === 0 && outSize === taps.inSize) return x.clone();
    const begin = [0, 0, 0, 0];
    const end = [B, H, W, C];
    const strides = [1, 1, 1, 1];
    begin[axis] = stride.start;
    end[axis] = stride.start + stride.step * (outSize - 1) + 1;
    strides[axis] = stride.step;
    return stridedSlice(x, begin, end, strides) as Tensor4D;
  }
  return applyTapsMulti(x, axis, taps, [taps.weight], method === 'auto' ? choosePassMethod(taps) : method)[0]!;
}

/** Options of {@link resizeBicubic}. */
export interface ResizeBicubicOptions {
  /**
   * `false` (default): PyTorch's `F.interpolate(mode='bicubic', align_corners=False)`, cubic
   * convolution with `a = −0.75` over 4 taps. `true`: `antialias=True`, Pillow's filter
   * (`a = −0.5`) stretched over `in/out` pixels when shrinking.
   */
  antialias?: boolean;
}

/** @internal test hooks: force a pass method or disable the strided-slice fast path. */
export interface ResizeBicubicInternals {
  method?: PassMethod | 'auto';
  useStride?: boolean;
}

function validate(x: Tensor4D, size: readonly [number, number], opts: ResizeBicubicOptions | undefined): void {
  const fn = 'resizeBicubic';
  if (x == null || typeof (x as { rank?: unknown }).rank !== 'number') throw new Error(`${fn}: x must be a tf.Tensor4D, got ${String(x)}`);
  if (x.rank !== 4) throw new Error(`${fn}: x must be rank 4 [batch, height, width, channels], got rank ${x.rank} (shape ${JSON.stringify(x.shape)})`);
  if (x.dtype !== 'float32') throw new Error(`${fn}: x must be float32, got ${x.dtype} (cast it first)`);
  if (x.shape[1] === 0 || x.shape[2] === 0) throw new Error(`${fn}: x must have a non-zero height and width, got shape ${JSON.stringify(x.shape)}`);
  if (!Array.isArray(size) || size.length !== 2 || !size.every((s) => Number.isSafeInteger(s) && s > 0)) {
    throw new Error(`${fn}: size must be [height, width], two positive integers, got ${JSON.stringify(size)}`);
  }
  if (opts != null && opts.antialias !== undefined && typeof opts.antialias !== 'boolean') {
    throw new Error(`${fn}: opts.antialias must be a boolean, got ${JSON.stringify(opts.antialias)}`);
  }
}

/**
 * Bicubic resize of an NHWC float32 tensor, equal to PyTorch's
 * `F.interpolate(x, size, mode='bicubic', align_corners=False)` (or, with `antialias: true`,
 * `F.interpolate(..., antialias=True)`, Pillow's bicubic resampling on float data).
 *
 * Separable, as PyTorch computes it: the width pass first, then the height pass. The weights are
 * PyTorch's bit for bit (its float32 index/weight arithmetic, FMA contractions included); each
 * pass accumulates gathered input rows/columns in PyTorch's tap order, or, for short axes where it
 * measured faster (input length <= 24 × taps, e.g. feature maps), multiplies by the dense
 * `[out, in]` matrix. Measured against torch 2.13: max|err|/max|ref| <= 3e-7 on cpu, wasm,
 * tensorflow and webgpu. A pass where each output copies one input pixel (an odd integer shrink
 * factor without antialiasing, e.g. 1008 → 336 samples pixel 3i + 1; or an unchanged size) is a
 * strided slice, bit-identical to the general path.
 * Differentiable with tfjs-core alone: the gradient is the transposed resize (its own taps).
 *
 * @param x `[B, H, W, C]` float32.
 * @param size `[outHeight, outWidth]`, positive integers.
 * @returns `[B, outHeight, outWidth, C]` float32.
 */
export function resizeBicubic(x: Tensor4D, size: readonly [number, number], opts?: ResizeBicubicOptions): Tensor4D {
  return resizeBicubicWith(x, size, opts, {});
}

/** @internal {@link resizeBicubic} with test hooks. */
export function resizeBicubicWith(x: Tensor4D, size: readonly [number, number], opts: ResizeBicubicOptions | undefined, internals: ResizeBicubicInternals): Tensor4D {
  validate(x, size, opts);
  const [, H, W] = x.shape;
  const [oh, ow] = size;
  const make = opts?.antialias ? cubicAntialiasTaps : cubicTaps;
  const tw = make(W, ow);
  const th = make(H, oh);
  const method = internals.method ?? 'auto';
  const useStride = internals.useStride ?? true;
  return withGradient<Tensor4D>(
    x,
    (v) => tidy(() => applyTaps(applyTaps(v as Tensor4D, 2, tw, method, useStride), 1, th, method, useStride)),
    (dy) =>
      tidy(() => {
        const g = applyTaps(dy as Tensor4D, 1, transposeTaps(th), method, useStride);
        return applyTaps(g, 2, transposeTaps(tw), method, useStride);
      }),
  );
}
