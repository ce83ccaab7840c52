/**
 * LayerNorm over the last axis, with up to two residuals added first:
 * `LayerNorm(x [+ residual] [+ residual2])`.
 *
 * Two implementations ({@link NormOptions.kernel}): a composition of tfjs ops (every backend,
 * differentiable, the reference), and on webgpu one WGSL kernel that reads x and the residuals
 * once and writes y once (src/kernels/webgpu/layerNorm.ts), used by default there while no
 * gradient tape is recording. The RMSNorm op (./rmsNorm.ts) shares the options and checks.
 */
import { add, moments, mul, reshape, rsqrt, sub, type Tensor, type Tensor1D, type Tensor2D } from '@tensorflow/tfjs-core';
import { cannotFuse, checkKernelChoice, webgpuKernelRefusal } from './kernelChoice.js';
import { normFused, normKernelPlan, type NormKind, type NormPlan } from '../kernels/webgpu/layerNorm.js';

/** PyTorch `nn.LayerNorm` parameters over the last axis. */
export interface LayerNorm {
  weight: Tensor1D;
  bias: Tensor1D;
  /** Default 1e-5, as PyTorch. */
  eps?: number;
}

/** Options of {@link layerNorm} and `rmsNorm`: residuals added before the norm, and which implementation runs. */
export interface NormOptions {
  /**
   * Added to x first (float32, x's shape, or the shape of x's trailing axes: it then broadcasts over
   * the leading ones, e.g. `[N, d]` against `[B, N, d]`).
   */
  residual?: Tensor;
  /** Added after `residual` (same rules): the norm is of `(x + residual) + residual2`. */
  residual2?: Tensor;
  /**
   * - `'auto'` (default): the fused kernel on webgpu when no gradient tape records and the row
   *   fits (d ≤ 16,384 when d % 4 = 0, else ≤ 4,096); the composition otherwise;
   * - `'fused'`: the fused kernel, or an error saying why it cannot run (not webgpu, under tf.grad);
   * - `'composition'`: tfjs ops (every backend, differentiable).
   */
  kernel?: 'auto' | 'fused' | 'composition';
}

const shapeOf = (t: Tensor) => `[${t.shape.join(', ')}]`;

/** Throws, naming the argument, unless `t` is a float32 tensor. */
function checkFloat32(fn: string, name: string, t: Tensor | undefined): asserts t is Tensor {
  if (!t || !Array.isArray((t as Tensor).shape)) throw new Error(`${fn}: ${name} must be a tensor, got ${t === undefined ? 'undefined' : typeof t}`);
  if (t.dtype !== 'float32') throw new Error(`${fn}: ${name} must be float32, got ${t.dtype}`);
}

/**
 * Checks a norm call up front (nothing is computed before): x float32 with a last axis, each
 * parameter float32 `[d]`, eps a finite number ≥ 0, residuals float32 of x's shape or of its
 * trailing axes, opts.kernel known. Returns d.
 */
function checkNorm(fn: string, x: Tensor, params: Array<[string, Tensor]>, eps: number, epsName: string, opts: NormOptions): number {
  checkFloat32(fn, 'x', x);
  if (x.rank < 1) throw new Error(`${fn}: x must have at least one axis (the normalised one), got a scalar`);
  const d = x.shape[x.rank - 1]!;
  if (d < 1) throw new Error(`${fn}: x's last axis (the normalised one) is empty: ${shapeOf(x)}`);
  for (const [name, p] of params) {
    checkFloat32(fn, name, p);
    if (p.rank !== 1 || p.shape[0] !== d) throw new Error(`${fn}: ${name} must be [${d}] (x's last axis), got ${shapeOf(p)}`);
  }
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) throw new Error(`${fn}: ${epsName} must be a finite number ≥ 0, got ${eps}`);
  checkKernelChoice(fn, opts.kernel);
  for (const name of ['residual', 'residual2'] as const) {
    const r = opts[name];
    if (r === undefined) continue;
    checkFloat32(fn, `opts.${name}`, r);
    if (!residualRows(r, x)) throw new Error(`${fn}: opts.${name} must have x's shape ${shapeOf(x)} or that of its trailing axes (e.g. [${x.shape.slice(-2).join(', ')}]), got ${shapeOf(r)}`);
  }
  return d;
}

/** Rows of `r` as a `[rows, d]` view when its shape (less leading 1s) is a suffix of x's; else 0. */
function residualRows(r: Tensor, x: Tensor): number {
  let shape = r.shape;
  while (shape.length > 1 && shape[0] === 1) shape = shape.slice(1);
  if (shape.length > x.rank) return 0;
  const tail = x.shape.slice(x.rank - shape.length);
  if (shape.some((s, i) => s !== tail[i])) return 0;
  return r.size / x.shape[x.rank - 1]!;
}

/** The fused kernel's plan, or why it cannot run this call. */
function fusedPlan(fn: string, rows: number, d: number): NormPlan | string {
  const refusal = webgpuKernelRefusal();
  if (refusal) return refusal;
  if (rows === 0) return 'x has no rows';
  return normKernelPlan(fn, rows, d);
}

/**
 * A norm call of `kind`: checks, then the fused kernel where opts.kernel and the backend allow,
 * else `composition(x [+ residual] [+ residual2])` (the adds in that order). Internal to the
 * norm ops.
 */
export function runNorm<T extends Tensor>(
  fn: string,
  kind: NormKind,
  x: T,
  params: Array<[string, Tensor]>,
  eps: number,
  epsName: string,
  opts: NormOptions,
  composition: (s: Tensor) => Tensor,
): T {
  const d = checkNorm(fn, x, params, eps, epsName, opts);
  const kernel = opts.kernel ?? 'auto';
  if (kernel !== 'composition') {
    const rows = x.size / d;
    const plan = fusedPlan(fn, rows, d);
    if (typeof plan !== 'string') {
      const flat = reshape(x, [rows, d]) as Tensor2D;
      const r1 = opts.residual && (reshape(opts.residual, [-1, d]) as Tensor2D);
      const r2 = opts.residual2 && (reshape(opts.residual2, [-1, d]) as Tensor2D);
      const y = normFused(kind, { x: flat, residual: r1, residual2: r2, gamma: params[0]![1], beta: params[1]?.[1], eps }, plan);
      for (const t of [flat, r1, r2]) t?.dispose();
      const shaped = reshape(y, x.shape) as T;
      y.dispose();
      return shaped;
    }
    if (kernel === 'fused') throw cannotFuse(fn, plan);
  }
  // The reference: tfjs ops; intermediates are left to the caller's tidy, as they always were.
  let s: Tensor = x;
  if (opts.residual) s = add(s, opts.residual);
  if (opts.residual2) s = add(s, opts.residual2);
  return composition(s) as T;
}

/**
 * `(s - mean) / sqrt(var + eps) * weight + bias` over the last axis of `s = x [+ residual]
 * [+ residual2]` (biased variance, as PyTorch). See {@link NormOptions}.
 */
export function layerNorm<T extends Tensor>(x: T, ln: LayerNorm, opts: NormOptions = {}): T {
  const eps = ln.eps ?? 1e-5;
  return runNorm('layerNorm', 'layer', x, [['ln.weight', ln.weight], ['ln.bias', ln.bias]], eps, 'ln.eps', opts, (s) => {
    const { mean, variance } = moments(s, -1, true);
    const normed = mul(sub(s, mean), rsqrt(add(variance, eps)));
    return add(mul(normed, ln.weight), ln.bias);
  });
}
