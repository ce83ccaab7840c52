/**
 * The fully connected layer over packed weights (issue 13): `y = act(x · dequant(W)ᵀ + bias)
 * [⊙ multiply] [+ residual]`, W `[N = out, K = in]` in one of the packed formats of
 * `src/quant/groups.ts` held as tfjs tensors (int32 words, float32 scales and mins), so that on
 * webgpu the weights stay resident on the GPU and are dequantised inside the kernel.
 *
 * Two implementations ({@link PackedLinearOptions.kernel}):
 * - on webgpu, one WGSL kernel (src/kernels/webgpu/packedMatMul.ts): a GEMV for up to 8 rows of x
 *   (decode: each weight word read once), the tiled GEMM of matMulFused with W dequantised into
 *   workgroup memory for more rows (prefill); the epilogue fused;
 * - the composition, every backend, the reference and fallback: W is dequantised to a float32
 *   `[N, K]` tensor ({@link dequantizePacked}), then `linear`'s composition of tfjs ops runs. The
 *   dequantisation cannot be tfjs ops: tfjs has no bitcast or bitwise ops, and its webgpu backend
 *   computes int32 tensors in f32 (24-bit mantissa: the low bits of a 32-bit word are lost). So on
 *   the CPU backends the words are read back (`dataSync`) and decoded in JS with the formats' exact
 *   float32 expressions; on webgpu (whose synchronous read-back needs an OffscreenCanvas, absent in
 *   Node) by a plain one-thread-per-weight WGSL kernel (src/kernels/webgpu/packedDequantize.ts,
 *   written independently of the fused kernels' decoding). Materialising the whole float32 weight on
 *   every call makes it slow: it is the reference (tests) and what runs under `tf.grad` or off
 *   webgpu. (The CPU backends' fast path for weights held in JS memory is ./cpuPackedLinear.ts: the wasm GEMV.)
 */
import { getBackend, reshape, tensor2d, tidy, type Tensor, type Tensor1D, type Tensor2D } from '@tensorflow/tfjs-core';
import { cannotFuse, checkKernelChoice, webgpuKernelRefusal, type KernelChoice } from './kernelChoice.js';
import { checkOptionNames } from '../util/options.js';
import { webgpuSubgroupKernels } from '../backends/webgpuDevice.js';
import { webgpuLimits } from '../kernels/webgpu/program.js';
import { packedDequantize } from '../kernels/webgpu/packedDequantize.js';
import { LINEAR_ACTIVATIONS, type LinearActivation } from '../kernels/webgpu/matMulFused.js';
import {
  packedGemmPlan,
  packedGemvPlan,
  packedMatMul,
  PACKED_GEMV_MAX_ROWS,
  weightsPerWord,
  type PackedMatMulPlan,
  type PackedReduction,
  type PackedWeightFormat,
} from '../kernels/webgpu/packedMatMul.js';
import { linear } from './linear.js';

export type { PackedMatMulPlan, PackedReduction, PackedWeightFormat } from '../kernels/webgpu/packedMatMul.js';

/** A linear layer with a packed weight, as tensors (`src/quant/groups.ts` has the formats). */
export interface PackedLinear {
  format: PackedWeightFormat;
  /** int32 `[N, K/2]` (bf16), `[N, K/4]` (q8), `[N, K/8]` (q4). */
  data: Tensor2D;
  /** float32 `[N, K/G]` (q8, q4), G ∈ {8, 16, 32, 64}. */
  scales?: Tensor2D;
  /** float32 `[N, K/G]` (q4). */
  mins?: Tensor2D;
  /** float32 `[N]`. */
  bias?: Tensor1D;
}

/** Options of {@link packedLinear}. */
export interface PackedLinearOptions {
  /** As `linear`'s: `'none'` (default), `'gelu'` (exact, erf), `'quick-gelu'`, `'silu'`. */
  activation?: LinearActivation;
  /** Multiplies the activated output elementwise, shape `[..., N]` (SwiGLU). */
  multiply?: Tensor;
  /** Added last, shape `[..., N]`. */
  residual?: Tensor;
  /**
   * - `'auto'` (default): the fused kernel on webgpu when no gradient tape records, else the composition;
   * - `'fused'`: the fused kernel, or an error saying why it cannot run;
   * - `'composition'`: CPU dequantisation + tfjs ops (every backend, differentiable in x).
   */
  kernel?: 'auto' | 'fused' | 'composition';
  /** Fused kernel: `'gemv'` (≤ 8 rows), `'gemm'`, or `'auto'` (default: GEMV for ≤ 8 rows of x). */
  variant?: 'auto' | 'gemv' | 'gemm';
  /**
   * Fused GEMV: how partial sums are reduced: `'subgroup'` (subgroupAdd; needs the device's
   * `subgroups` feature, requested by our webgpu device factory), `'workgroup'` (a tree in
   * workgroup memory), `'auto'` (default: subgroup where available).
   */
  reduction?: 'auto' | PackedReduction;
}

const FN = 'packedLinear';
const FORMATS = ['bf16', 'q8', 'q4'] as const;
const VARIANTS = ['auto', 'gemv', 'gemm'] as const;
const REDUCTIONS = ['auto', 'subgroup', 'workgroup'] as const;
const GROUP_SIZES = [8, 16, 32, 64];
const OPTION_KEYS = ['activation', 'multiply', 'residual', 'kernel', 'variant', 'reduction'] as const;

const shapeOf = (t: Tensor) => `[${t.shape.join(', ')}]`;

function tensorArg(t: unknown, name: string, form: string, dtype: 'int32' | 'float32', rank: number): Tensor {
  if (t === null || typeof t !== 'object' || !Array.isArray((t as Tensor).shape)) throw new Error(`${FN}: ${name} must be a ${dtype} tensor ${form}, got ${t === null ? 'null' : typeof t}`);
  const x = t as Tensor;
  if (x.isDisposed) throw new Error(`${FN}: ${name} is a disposed tensor`);
  if (x.rank !== rank) throw new Error(`${FN}: ${name} must be ${form}, got shape ${shapeOf(x)}`);
  if (x.dtype !== dtype) throw new Error(`${FN}: ${name} must be ${dtype}, got ${x.dtype}`);
  return x;
}

/** The sizes of a validated call. */
export interface PackedLinearShape {
  format: PackedWeightFormat;
  /** Rows of x (the product of its leading dims). */
  M: number;
  N: number;
  K: number;
  /** Group size (0: bf16). */
  G: number;
}

/**
 * Checks `layer` against K (x's last axis) and returns the sizes; every error names the argument.
 * (Exported for callers that hold a packed layer and want its shape checked once at load.)
 */
export function checkPackedLinear(layer: PackedLinear, K: number, fn = FN): { N: number; G: number } {
  if (layer === null || typeof layer !== 'object') throw new Error(`${fn}: layer must be an object { format, data, scales?, mins?, bias? }`);
  const format = layer.format;
  if (!(FORMATS as readonly string[]).includes(format)) throw new Error(`${fn}: layer.format must be one of ${FORMATS.join(', ')}, got ${JSON.stringify(format)}`);
  const wpw = weightsPerWord(format);
  const data = tensorArg(layer.data, 'layer.data', `[N, K/${wpw}] (${format}: ${wpw} weights per int32 word)`, 'int32', 2);
  const [N, KW] = data.shape as [number, number];
  if (KW * wpw !== K) throw new Error(`${fn}: x's last axis is K = ${K} but layer.data is ${shapeOf(data)}: ${format} holds ${wpw} weights per word, so K = ${KW * wpw}`);
  if (format !== 'bf16' && K % 8 !== 0) throw new Error(`${fn}: ${format} needs K to be a multiple of 8, got K = ${K}`);
  let G = 0;
  for (const key of ['scales', 'mins'] as const) {
    const want = key === 'scales' ? format !== 'bf16' : format === 'q4';
    const t = layer[key];
    if (!want) {
      if (t !== undefined) throw new Error(`${fn}: ${format} takes no layer.${key}`);
      continue;
    }
    if (t === undefined) throw new Error(`${fn}: ${format} needs layer.${key}, a float32 tensor [N, K/G]`);
    const s = tensorArg(t, `layer.${key}`, '[N, K/G]', 'float32', 2);
    const [sn, groups] = s.shape as [number, number];
    const g = K / groups;
    if (sn !== N || !GROUP_SIZES.includes(g)) {
      throw new Error(`${fn}: layer.${key} must be [N, K/G] = [${N}, K/G] with G one of ${GROUP_SIZES.join(', ')} (K = ${K}), got ${shapeOf(s)}`);
    }
    if (G && g !== G) throw new Error(`${fn}: layer.scales and layer.mins must have the same shape, got ${shapeOf(layer.scales!)} and ${shapeOf(s)}`);
    G = g;
  }
  if (layer.bias !== undefined) {
    const b = tensorArg(layer.bias, 'layer.bias', `[N] = [${N}]`, 'float32', 1);
    if (b.shape[0] !== N) throw new Error(`${fn}: layer.bias must be [N] = [${N}], got ${shapeOf(b)}`);
  }
  return { N, G };
}

interface Checked extends PackedLinearShape {
  activation: LinearActivation;
  kernel: KernelChoice;
  variant: (typeof VARIANTS)[number];
  reduction: (typeof REDUCTIONS)[number];
  outShape: number[];
}

function check(x: Tensor, layer: PackedLinear, opts: PackedLinearOptions): Checked {
  if (opts === null || typeof opts !== 'object') throw new Error(`${FN}: opts must be an object, got ${JSON.stringify(opts)}`);
  checkOptionNames(FN, opts, OPTION_KEYS);
  if (x === null || typeof x !== 'object' || !Array.isArray((x as Tensor).shape)) throw new Error(`${FN}: x must be a float32 tensor [..., K], got ${x === null ? 'null' : typeof x}`);
  if (x.isDisposed) throw new Error(`${FN}: x is a disposed tensor`);
  if (x.rank < 1) throw new Error(`${FN}: x must be [..., K], got a scalar`);
  if (x.dtype !== 'float32') throw new Error(`${FN}: x must be float32, got ${x.dtype}`);
  const K = x.shape[x.rank - 1]!;
  const { N, G } = checkPackedLinear(layer, K);
  const activation = opts.activation ?? 'none';
  if (!(LINEAR_ACTIVATIONS as readonly string[]).includes(activation)) throw new Error(`${FN}: opts.activation must be one of ${LINEAR_ACTIVATIONS.join(', ')}, got ${JSON.stringify(activation)}`);
  const kernel = checkKernelChoice(FN, opts.kernel);
  const variant = opts.variant ?? 'auto';
  if (!(VARIANTS as readonly string[]).includes(variant)) throw new Error(`${FN}: opts.variant must be one of ${VARIANTS.join(', ')}, got ${JSON.stringify(variant)}`);
  const reduction = opts.reduction ?? 'auto';
  if (!(REDUCTIONS as readonly string[]).includes(reduction)) throw new Error(`${FN}: opts.reduction must be one of ${REDUCTIONS.join(', ')}, got ${JSON.stringify(reduction)}`);
  const outShape = [...x.shape.slice(0, -1), N];
  for (const name of ['multiply', 'residual'] as const) {
    const t = opts[name];
    if (t === undefined) continue;
    tensorArg(t, `opts.${name}`, `[${outShape.join(', ')}]`, 'float32', outShape.length);
    if (t.shape.some((s, i) => s !== outShape[i])) throw new Error(`${FN}: opts.${name} must have the output's shape [${outShape.join(', ')}], got ${shapeOf(t)}`);
  }
  return { format: layer.format, M: x.size / K, N, K, G, activation, kernel, variant, reduction, outShape };
}

/** The fused kernel's plan for this call, or why it cannot run it. */
function fusedPlan(c: Checked): PackedMatMulPlan | string {
  const refusal = webgpuKernelRefusal();
  if (refusal) return refusal;
  if (c.M === 0) return 'x has no rows';
  const variant = c.variant === 'auto' ? (c.M <= PACKED_GEMV_MAX_ROWS ? 'gemv' : 'gemm') : c.variant;
  if (variant === 'gemm') return packedGemmPlan(c.format, c.M, c.N, c.K, c.G, webgpuLimits());
  const subgroups = webgpuSubgroupKernels();
  if (c.reduction === 'subgroup' && !subgroups) return "opts.reduction 'subgroup' needs a webgpu device with the 'subgroups' feature, made by registerWebGPUBackend (src/backends/webgpuDevice.ts)";
  const reduction: PackedReduction = c.reduction === 'auto' ? (subgroups ? 'subgroup' : 'workgroup') : c.reduction;
  return packedGemvPlan(c.format, c.M, c.N, c.K, c.G, reduction, webgpuLimits());
}

function fusedChoice(c: Checked): PackedMatMulPlan | null {
  if (c.kernel === 'composition') return null;
  const p = fusedPlan(c);
  if (typeof p !== 'string') return p;
  if (c.kernel === 'fused') throw cannotFuse(FN, p);
  return null;
}

/**
 * What {@link packedLinear} will run for x of shape `xShape` on the active backend: the fused
 * plan (GEMV or GEMM, its tiles and reduction), or null for the composition. Validates as the op does.
 */
export function packedLinearPlan(x: Tensor, layer: PackedLinear, opts: PackedLinearOptions = {}): PackedMatMulPlan | null {
  return fusedChoice(check(x, layer, opts));
}

/**
 * `act(x · dequant(W)ᵀ + bias) [⊙ multiply] [+ residual]`: x `[..., K]` float32 → `[..., N]`.
 * One new tensor; nothing else is left behind.
 */
export function packedLinear<T extends Tensor>(x: T, layer: PackedLinear, opts: PackedLinearOptions = {}): T {
  const c = check(x, layer, opts);
  const plan = fusedChoice(c);
  if (!plan) return composition(x, layer, c, opts);
  const { M, N, K } = c;
  const flat = reshape(x, [M, K]) as Tensor2D;
  const mulFlat = opts.multiply && reshape(opts.multiply, [M, N]);
  const resFlat = opts.residual && reshape(opts.residual, [M, N]);
  const y = packedMatMul(flat, layer, { activation: c.activation, bias: layer.bias, multiply: mulFlat, residual: resFlat }, plan);
  for (const t of [flat, mulFlat, resFlat]) t?.dispose();
  const shaped = reshape(y, c.outShape) as T;
  y.dispose();
  return shaped;
}

/** The reference: dequantise on the CPU, then linear's composition (one new tensor). */
function composition<T extends Tensor>(x: T, layer: PackedLinear, c: Checked, opts: PackedLinearOptions): T {
  return tidy(() => {
    const weight = dequantizePacked(layer);
    return linear(x, { weight, bias: layer.bias }, { activation: c.activation, multiply: opts.multiply, residual: opts.residual, kernel: 'composition' });
  });
}

/**
 * The float32 weight `[N, K]` of a packed layer, with the formats' exact float32 expressions
 * (bf16: the bits shifted up; q8: `fround(q·scale)`; q4: `fround(fround(q·scale) + min)`): on
 * webgpu by a WGSL kernel, elsewhere decoded in JS from a synchronous read-back (`dataSync`).
 */
export function dequantizePacked(layer: Pick<PackedLinear, 'format' | 'data' | 'scales' | 'mins'>): Tensor2D {
  const [N, KW] = layer.data.shape as [number, number];
  const K = KW * weightsPerWord(layer.format);
  if (getBackend() === 'webgpu') return packedDequantize(layer.format, layer.data, layer.scales, layer.mins, K);
  const words = layer.data.dataSync() as Int32Array;
  const values = dequantizeWords(layer.format, words, N, K, layer.scales?.dataSync() as Float32Array | undefined, layer.mins?.dataSync() as Float32Array | undefined);
  return tensor2d(values, [N, K]);
}

/** {@link dequantizePacked} on arrays: words `[N, K/wpw]`, scales and mins `[N, K/G]` → float32 `[N, K]`. */
export function dequantizeWords(format: PackedWeightFormat, words: Int32Array, N: number, K: number, scales?: Float32Array, mins?: Float32Array): Float32Array {
  const out = new Float32Array(N * K);
  if (format === 'bf16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < words.length; i++) {
      const w = words[i]! >>> 0;
      bits[2 * i] = (w & 0xffff) << 16;
      bits[2 * i + 1] = w & 0xffff0000;
    }
    return out;
  }
  const groups = scales!.length / N;
  const G = K / groups;
  const f = Math.fround;
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const gi = n * groups + Math.floor(k / G);
      const w = words[(n * K + k) >> (format === 'q8' ? 2 : 3)]!;
      if (format === 'q8') {
        const q = (w << (24 - 8 * (k & 3))) >> 24; // byte k % 4, sign-extended
        out[n * K + k] = f(q * scales![gi]!);
      } else {
        const q = (w >>> (4 * (k & 7))) & 15;
        out[n * K + k] = f(f(q * scales![gi]!) + mins![gi]!);
      }
    }
  }
  return out;
}
