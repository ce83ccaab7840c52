/**
 * The fully connected layer, `y = act(x · weightᵀ + bias) [⊙ multiply] [+ residual]`.
 *
 * Two implementations ({@link LinearOptions.kernel}): a composition of tfjs ops (every backend,
 * differentiable, the reference), and on webgpu one WGSL kernel with the epilogue fused
 * (src/kernels/webgpu/matMulFused.ts: register-blocked tiles, W read in its [out, in] layout),
 * used by default there while no gradient tape is recording.
 */
import { add, erf, getBackend, matMul, mul, reshape, sigmoid, transpose, type Tensor, type Tensor1D, type Tensor2D } from '@tensorflow/tfjs-core';
import { cannotFuse, checkKernelChoice, webgpuKernelRefusal } from './kernelChoice.js';
import { webgpuLimits } from '../kernels/webgpu/program.js';
import { LINEAR_ACTIVATIONS, matMulFused, matMulPlan, type LinearActivation, type MatMulPlan } from '../kernels/webgpu/matMulFused.js';

export { LINEAR_ACTIVATIONS, type LinearActivation } from '../kernels/webgpu/matMulFused.js';

/** A fully connected layer in PyTorch's layout: `y = x · weightᵀ + bias`. */
export interface Linear {
  /** `[out, in]`, as PyTorch stores it, so official checkpoints load without a transpose. */
  weight: Tensor2D;
  /** `[out]`. */
  bias?: Tensor1D;
}

/** Options of {@link linear}: an epilogue, and which implementation runs it. */
export interface LinearOptions {
  /**
   * Applied to `x · Wᵀ + b`: `'gelu'` (exact, erf: PyTorch's `nn.GELU()`), `'quick-gelu'`
   * (x·σ(1.702x), OpenAI CLIP), `'silu'` (x·σ(x)), `'none'` (default).
   */
  activation?: LinearActivation;
  /** Multiplies the activated output elementwise, shape `[..., out]` (SwiGLU: silu(x·W_gᵀ) ⊙ (x·W_uᵀ)). */
  multiply?: Tensor;
  /** Added last, shape `[..., out]` (a residual connection). */
  residual?: Tensor;
  /**
   * - `'auto'` (default): the fused kernel on webgpu when a tile fits the device and no gradient
   *   tape records; the composition otherwise;
   * - `'fused'`: the fused kernel, or an error saying why it cannot run (not webgpu, under tf.grad);
   * - `'composition'`: tfjs ops (every backend, differentiable).
   */
  kernel?: 'auto' | 'fused' | 'composition';
}

/**
 * From how many rows of `x` it pays to transpose the weight once and run a plain matMul
 * instead of `matMul(x, w, false, true)` (bench/NOTES.md): wasm's transposeB path runs at
 * 2.3 GFLOP/s against 31 for the plain one; tfjs-node's at 169 against 195.
 */
const PRETRANSPOSE_MIN_ROWS: Record<string, number> = { wasm: 16, tensorflow: 1024 };

const FN = 'linear';

function activate(y: Tensor, activation: LinearActivation): Tensor {
  switch (activation) {
    case 'gelu':
      return mul(mul(y, 0.5), add(erf(mul(y, Math.SQRT1_2)), 1));
    case 'quick-gelu':
      return mul(y, sigmoid(mul(y, 1.702)));
    case 'silu':
      return mul(y, sigmoid(y));
    default:
      return y;
  }
}

/** The fused kernel's plan, or why it cannot run this call. */
function fusedPlan(rows: number, out: number, inDim: number): MatMulPlan | string {
  const refusal = webgpuKernelRefusal();
  if (refusal) return refusal;
  return matMulPlan(rows, out, inDim, webgpuLimits());
}

/**
 * Applies `layer` to the last axis of `x` (`[..., in]` → `[..., out]`) as one 2-D matMul, then
 * the epilogue of `opts` (none by default).
 */
export function linear<T extends Tensor>(x: T, layer: Linear, opts: LinearOptions = {}): T {
  const inDim = x.shape[x.rank - 1]!;
  const outDim = layer.weight.shape[0];
  const activation = opts.activation ?? 'none';
  if (!(LINEAR_ACTIVATIONS as readonly string[]).includes(activation)) throw new Error(`${FN}: opts.activation must be one of ${LINEAR_ACTIVATIONS.join(', ')}, got ${JSON.stringify(activation)}`);
  const kernel = checkKernelChoice(FN, opts.kernel);
  if (layer.weight.shape[1] !== inDim) throw new Error(`${FN}: x's last axis is ${inDim} but the weight is [${layer.weight.shape.join(', ')}] ([out, in])`);
  const outShape = [...x.shape.slice(0, -1), outDim];
  for (const name of ['multiply', 'residual'] as const) {
    const t = opts[name];
    if (t && (t.rank !== outShape.length || t.shape.some((s, i) => s !== outShape[i]))) throw new Error(`${FN}: opts.${name} must have the output's shape [${outShape.join(', ')}], got [${t.shape.join(', ')}]`);
  }
  const rows = x.size / inDim;
  if (kernel !== 'composition' && x.dtype === 'float32' && layer.weight.dtype === 'float32') {
    const plan = fusedPlan(rows, outDim, inDim);
    if (typeof plan !== 'string' && rows > 0) {
      const flat = reshape(x, [rows, inDim]) as Tensor2D;
      const mulFlat = opts.multiply && reshape(opts.multiply, [rows, outDim]);
      const resFlat = opts.residual && reshape(opts.residual, [rows, outDim]);
      const y = matMulFused(flat, layer.weight, { activation, bias: layer.bias, multiply: mulFlat, residual: resFlat }, plan);
      for (const t of [flat, mulFlat, resFlat]) t?.dispose();
      const shaped = reshape(y, outShape) as T;
      y.dispose();
      return shaped;
    }
    if (kernel === 'fused') throw cannotFuse(FN, typeof plan === 'string' ? plan : 'x has no rows');
  } else if (kernel === 'fused') {
    throw cannotFuse(FN, 'it takes float32 x and weight');
  }
  return composition(x, layer, activation, opts.multiply, opts.residual, inDim, outShape);
}

/**
 * The epilogue of {@link linear} on an already computed `x · Wᵀ + b` (`y`: `[..., out]`), as
 * tfjs ops in the composition's order: for callers that computed the product another way
 * (a CPU GEMV over packed weights, row blocks of a lazy weight).
 */
export function linearEpilogue<T extends Tensor>(y: T, opts: Pick<LinearOptions, 'activation' | 'multiply' | 'residual'> = {}): T {
  let out: Tensor = activate(y, opts.activation ?? 'none');
  if (opts.multiply) out = mul(out, opts.multiply);
  if (opts.residual) out = add(out, opts.residual);
  return out as T;
}

/** The reference: tfjs ops; intermediates are left to the caller's tidy, as they always were. */
function composition<T extends Tensor>(x: T, layer: Linear, activation: LinearActivation, multiply: Tensor | undefined, residual: Tensor | undefined, inDim: number, outShape: number[]): T {
  const flat = reshape(x, [-1, inDim]) as Tensor2D; // [rows, in]
  const minRows = PRETRANSPOSE_MIN_ROWS[getBackend()] ?? Infinity;
  let y: Tensor = flat.shape[0] >= minRows ? matMul(flat, transpose(layer.weight)) : matMul(flat, layer.weight, false, true); // [rows, out]
  if (layer.bias) y = add(y, layer.bias);
  y = reshape(y, outShape);
  y = activate(y, activation);
  if (multiply) y = mul(y, multiply);
  if (residual) y = add(y, residual);
  return y as T;
}
