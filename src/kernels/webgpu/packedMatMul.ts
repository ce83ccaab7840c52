/**
 * The linear layer over packed weights (issue 13) for tfjs-backend-webgpu, fp32 arithmetic:
 *
 *   y = act(x · dequant(W)ᵀ + bias) [⊙ mulIn] [+ residual]      x [M, K] f32, W [N, K] packed, y [M, N]
 *
 * W is stored as the formats of `.scratch/packed-formats.md` / `src/quant/groups.ts` fix them:
 * int32 words `[N, K/2]` (bf16: two bf16 per word, low half first), `[N, K/4]` (q8: four int8,
 * symmetric, `w = q·scale`), `[N, K/8]` (q4: eight nibbles, `w = q·scale + min`), with float32
 * `scales` (and `mins`) `[N, K/G]` per group of G weights along K. Dequantising in WGSL:
 * bf16 `bitcast<f32>(half << 16)`; int8 / uint4 to float without a conversion instruction, by the
 * exponent trick `bitcast<f32>(0x4B000000 | byte) − 2²³` (the byte of an int8 is XORed with 0x80
 * first, so that it reads q + 128, and 2²³ + 128 is subtracted).
 *
 * Two kernels, by the row count M:
 * - GEMV ({@link PACKED_GEMV_KERNEL}, M ≤ 8: a decode step): memory-bound, every weight word is read
 *   once. A workgroup of T threads owns R = 4 consecutive output rows; thread t reads load units
 *   t, t + T, … of each row (a unit is U = 4, 2 or 1 consecutive words: vec4/vec2/scalar loads,
 *   consecutive threads on consecutive units, so a warp reads 512 contiguous bytes per row), loads
 *   the x values of a unit once for all M rows of x and uses them for the R weight rows. Each thread
 *   holds R·M partial dot products; they are summed over the workgroup with `subgroupAdd` and a
 *   workgroup-memory pass over the subgroups when the device has `subgroups` (and our device factory
 *   made it, src/backends/webgpuDevice.ts), else by a tree in workgroup memory ({@link PackedReduction}).
 *   The epilogue runs on the R·M sums.
 * - GEMM ({@link PACKED_GEMM_KERNEL}, M > 8: prefill): matMulFused's register-blocked tiled SGEMM
 *   (same tiles, plan, double buffering and epilogue code), with its W-tile loader replaced: the
 *   BN × BK tile of W is read packed and dequantised on its way into workgroup memory.
 *
 * Registered as tfjs kernels for 'webgpu' on first use and run through `engine().runKernel`; no
 * gradient (`src/ops/packedLinear.ts` is the op: validation, the choice, and the composition of
 * tfjs ops that is its reference and fallback).
 */
import { engine, getKernel, registerKernel, reshape, type NamedAttrMap, type Tensor, type Tensor2D, type TensorInfo } from '@tensorflow/tfjs-core';
import type { ProgramUniform, WebGPUBackendLike, WebGPUProgramLike } from './flashAttention.js';
import { LINEAR_ACTIVATION_WGSL, matMulFusedWGSL, matMulPlan, type LinearActivation, type MatMulPlan, type MatMulTiles } from './matMulFused.js';

export const PACKED_GEMV_KERNEL = 'InfLlavaPackedGemv';
export const PACKED_GEMM_KERNEL = 'InfLlavaPackedGemm';

/** The packed weight formats (the same names as `src/quant/groups.ts`). */
export type PackedWeightFormat = 'bf16' | 'q8' | 'q4';
/** How the GEMV sums its threads' partial dot products. */
export type PackedReduction = 'subgroup' | 'workgroup';

/** Largest M the GEMV takes (x rows; its register arrays are sized by M). */
export const PACKED_GEMV_MAX_ROWS = 8;
/** Output rows per GEMV workgroup. */
const GEMV_ROWS = 4;

/** Weights per int32 word. */
export const weightsPerWord = (f: PackedWeightFormat): number => (f === 'bf16' ? 2 : f === 'q8' ? 4 : 8);

const ceilDiv = (a: number, b: number) => Math.ceil(a / b);

/** One GEMV launch. */
export interface PackedGemvPlan {
  kind: 'gemv';
  format: PackedWeightFormat;
  M: number;
  N: number;
  K: number;
  /** Group size along K (0: bf16). */
  G: number;
  /** Words per load unit (vec4 / vec2 / scalar). */
  U: 1 | 2 | 4;
  /** Output rows per workgroup. */
  R: number;
  /** Threads per workgroup. */
  T: number;
  reduction: PackedReduction;
  /** Workgroups (⌈N / R⌉), dispatched as X × Y within the per-dimension limit. */
  workgroups: number;
  grid: [number, number];
  /** Workgroup memory of the shader, bytes. */
  sharedBytes: number;
}

/** One GEMM launch: matMulFused's plan plus the format. */
export interface PackedGemmPlan extends MatMulPlan {
  kind: 'gemm';
  format: PackedWeightFormat;
  G: number;
}

export type PackedMatMulPlan = PackedGemvPlan | PackedGemmPlan;

type Limits = WebGPUBackendLike['device']['limits'] & { maxComputeInvocationsPerWorkgroup?: number };

/** Words per load unit: 4 (vec4) unless the x values it needs for M rows would pass 16 vec4 of registers, and dividing the row. */
function unitWords(format: PackedWeightFormat, M: number, KW: number): 1 | 2 | 4 {
  const vec4PerWord = weightsPerWord(format) / 4; // x vec4 per word: 0.5, 1, 2
  for (const u of [4, 2, 1] as const) if (KW % u === 0 && (u === 1 || M * u * vec4PerWord <= 16)) return u;
  return 1;
}

/** The GEMV plan for `[M, K] · dequant([N, K])ᵀ`, or why it cannot run it. */
export function packedGemvPlan(format: PackedWeightFormat, M: number, N: number, K: number, G: number, reduction: PackedReduction, limits: Limits): PackedGemvPlan | string {
  if (M < 1 || M > PACKED_GEMV_MAX_ROWS) return `the GEMV takes 1 to ${PACKED_GEMV_MAX_ROWS} rows of x, got ${M}`;
  const KW = K / weightsPerWord(format);
  const U = unitWords(format, M, KW);
  const KU = KW / U;
  const T = KU >= 256 ? 128 : KU >= 128 ? 64 : 32;
  const maxThreads = limits.maxComputeInvocationsPerWorkgroup ?? 256;
  if (T > maxThreads) return `the GEMV needs ${T} invocations per workgroup, the device allows ${maxThreads}`;
  const R = GEMV_ROWS;
  const RM = R * M;
  const sharedBytes = 4 * (reduction === 'subgroup' ? (T / 4) * RM : T * RM);
  if (sharedBytes > limits.maxComputeWorkgroupStorageSize) return `the GEMV needs ${sharedBytes} bytes of workgroup memory, the device has ${limits.maxComputeWorkgroupStorageSize}`;
  const workgroups = ceilDiv(N, R);
  const maxDim = limits.maxComputeWorkgroupsPerDimension;
  const gx = Math.min(workgroups, maxDim);
  const gy = ceilDiv(workgroups, gx);
  if (gy > maxDim) return `${workgroups} workgroups exceed ${maxDim}² per dispatch`;
  const words = N * KW;
  const largest = Math.max(words, M * K, M * N);
  if (largest * 4 > limits.maxStorageBufferBindingSize || largest >= 2 ** 31) return `a tensor of ${largest} elements exceeds the storage binding limit`;
  return { kind: 'gemv', format, M, N, K, G, U, R, T, reduction, workgroups, grid: [gx, gy], sharedBytes };
}

/** The GEMM plan (matMulFused's tiles for M rows), or why it cannot run. */
export function packedGemmPlan(format: PackedWeightFormat, M: number, N: number, K: number, G: number, limits: Limits): PackedGemmPlan | string {
  const p = matMulPlan(M, N, K, limits);
  if (typeof p === 'string') return p;
  return { ...p, kind: 'gemm', format, G };
}

// ---------------------------------------------------------------------------------------------
// WGSL
// ---------------------------------------------------------------------------------------------

const MAGIC = 'vec4<u32>(0x4B000000u)';

/** WGSL: the four weights of word `w` (u32) of a q8 row, times scale `s`. */
const q8Word = (w: string, s: string) =>
  `((bitcast<vec4<f32>>((((vec4<u32>(${w}) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u)) ^ vec4<u32>(128u)) | ${MAGIC}) - vec4<f32>(8388736.0)) * ${s})`;
/** WGSL: nibbles `first`..`first`+3 of word `w` (u32) of a q4 row, times `s`, plus `mn`. */
const q4Nibbles = (w: string, shifts: string, s: string, mn: string) =>
  `((bitcast<vec4<f32>>(((vec4<u32>(${w}) >> ${shifts}) & vec4<u32>(15u)) | ${MAGIC}) - vec4<f32>(8388608.0)) * ${s} + ${mn})`;
const Q4_LO = 'vec4<u32>(0u, 4u, 8u, 12u)';
const Q4_HI = 'vec4<u32>(16u, 20u, 24u, 28u)';
/** WGSL: the four bf16 weights of words `a`, `b` (u32), in k order. */
const bf16Pair = (a: string, b: string) => `bitcast<vec4<f32>>(vec4<u32>(${a} << 16u, ${a} & 0xFFFF0000u, ${b} << 16u, ${b} & 0xFFFF0000u))`;

/** Everything that selects a GEMV pipeline. */
export interface PackedGemvParams {
  format: PackedWeightFormat;
  M: number;
  U: 1 | 2 | 4;
  R: number;
  T: number;
  G: number;
  reduction: PackedReduction;
  activation: LinearActivation;
  bias: boolean;
  multiply: boolean;
  residual: boolean;
}

/** The epilogue for output `v` of x row `m`, weight row `n` (y index m·N + n). */
function epilogueWGSL(p: { bias: boolean; multiply: boolean; residual: boolean }): string {
  return `var v = total;
      ${p.bias ? 'v = v + biasIn[n];' : ''}
      v = act(v);
      ${p.multiply ? 'v = v * mulIn[m * uniforms.N + n];' : ''}
      ${p.residual ? 'v = v + residualIn[m * uniforms.N + n];' : ''}
      result[m * uniforms.N + n] = v;`;
}

/**
 * The GEMV's WGSL for one configuration; N, K and the unit counts are uniforms. The per-unit work
 * (x loads, dequantisation, R·M dot products) is unrolled here, so that every register array is
 * indexed by constants.
 */
export function packedGemvWGSL(p: PackedGemvParams): string {
  const { format, M, U, R, T, G, reduction } = p;
  const wpw = weightsPerWord(format);
  const unitWeights = U * wpw;
  const xVec4 = unitWeights % 4 === 0;
  const CV = xVec4 ? unitWeights / 4 : 0; // x vec4 per unit (0: scalar x, bf16 with U = 1)
  const RM = R * M;
  const wpg = format === 'bf16' ? 0 : G / wpw; // words per group
  const oneScalePerUnit = format !== 'bf16' && wpg % U === 0;
  const words = U === 1 ? ['wv'] : ['wv.x', 'wv.y', 'wv.z', 'wv.w'].slice(0, U);
  const uvec = U === 1 ? 'u32' : `vec${U}<u32>`;

  // x values of the unit, for every row m: xr{m}_{c} (vec4) or xs{m}_{0,1} (scalars).
  const xLoads: string[] = [];
  for (let m = 0; m < M; m++) {
    if (xVec4) for (let c = 0; c < CV; c++) xLoads.push(`let xr${m}_${c} = xIn[${m} * uniforms.K4 + u * ${CV} + ${c}];`);
    else xLoads.push(`let xs${m}_0 = xIn[${m} * uniforms.K + u * 2];`, `let xs${m}_1 = xIn[${m} * uniforms.K + u * 2 + 1];`);
  }
  // Per weight row r: load the unit, dequantise, accumulate into acc{r·M + m}.
  const rows: string[] = [];
  for (let r = 0; r < R; r++) {
    const body: string[] = [`let n = min(n0 + ${r}, uniforms.N - 1);`, `let wv = bitcast<${uvec}>(wIn[n * uniforms.KU + u]);`];
    if (format !== 'bf16') {
      if (oneScalePerUnit) {
        body.push(`let gi = n * uniforms.NG + (u * ${U}) / ${wpg};`, 'let s = scalesIn[gi];');
        if (format === 'q4') body.push('let mn = minsIn[gi];');
      } else {
        for (let i = 0; i < U; i++) {
          body.push(`let gi${i} = n * uniforms.NG + (u * ${U} + ${i}) / ${wpg};`, `let s${i} = scalesIn[gi${i}];`);
          if (format === 'q4') body.push(`let mn${i} = minsIn[gi${i}];`);
        }
      }
    }
    const sc = (i: number) => (oneScalePerUnit ? 's' : `s${i}`);
    const mn = (i: number) => (oneScalePerUnit ? 'mn' : `mn${i}`);
    // The unit's weights as vec4s, in k order, paired with the x vec4 index they multiply.
    const wvecs: Array<[name: string, c: number]> = [];
    if (format === 'bf16') {
      if (xVec4) {
        for (let c = 0; c < CV; c++) {
          body.push(`let w${c} = ${bf16Pair(words[2 * c]!, words[2 * c + 1]!)};`);
          wvecs.push([`w${c}`, c]);
        }
      } else {
        body.push('let wlo = bitcast<f32>(wv << 16u);', 'let whi = bitcast<f32>(wv & 0xFFFF0000u);');
      }
    } else if (format === 'q8') {
      for (let i = 0; i < U; i++) {
        body.push(`let w${i} = ${q8Word(words[i]!, sc(i))};`);
        wvecs.push([`w${i}`, i]);
      }
    } else {
      for (let i = 0; i < U; i++) {
        body.push(`let w${2 * i} = ${q4Nibbles(words[i]!, Q4_LO, sc(i), mn(i))};`, `let w${2 * i + 1} = ${q4Nibbles(words[i]!, Q4_HI, sc(i), mn(i))};`);
        wvecs.push([`w${2 * i}`, 2 * i], [`w${2 * i + 1}`, 2 * i + 1]);
      }
    }
    for (let m = 0; m < M; m++) {
      const a = `acc${r * M + m}`;
      if (xVec4) body.push(`${a} = ${a} + ${wvecs.map(([w, c]) => `dot(${w}, xr${m}_${c})`).join(' + ')};`);
      else body.push(`${a} = ${a} + wlo * xs${m}_0 + whi * xs${m}_1;`);
    }
    rows.push(`{\n        ${body.join('\n        ')}\n      }`);
  }

  const accs = Array.from({ length: RM }, (_, i) => `acc${i}`);
  const reduce =
    reduction === 'subgroup'
      ? `// Subgroup sums, then one slot per subgroup in workgroup memory (subgroup s = invocations
  // s·size .. s·size + size − 1 of the 1-D workgroup, as implementations lay them out).
  let sgSize = i32(subgroupAdd(1u));
  let lane = subgroupExclusiveAdd(1u);
  let slot = tid / sgSize;
  ${accs.map((a, i) => `{ let v = subgroupAdd(${a}); if (lane == 0u) { red[slot * RM + ${i}] = v; } }`).join('\n  ')}
  workgroupBarrier();
  let groups = T / sgSize;
  if (tid < RM) {
    var total = 0.0;
    for (var j = 0; j < groups; j++) { total += red[j * RM + tid]; }
    let m = tid % M;
    let n = n0 + tid / M;
    if (n < uniforms.N) {
      ${epilogueWGSL(p)}
    }
  }`
      : `// Tree in workgroup memory: red[i·T + t] holds thread t's partial sum i.
  ${accs.map((a, i) => `red[${i} * T + tid] = ${a};`).join('\n  ')}
  workgroupBarrier();
  for (var h = T / 2; h > 0; h = h / 2) {
    for (var e = tid; e < RM * h; e += T) {
      let i = e / h;
      let t = e % h;
      red[i * T + t] = red[i * T + t] + red[i * T + t + h];
    }
    workgroupBarrier();
  }
  if (tid < RM) {
    let total = red[tid * T];
    let m = tid % M;
    let n = n0 + tid / M;
    if (n < uniforms.N) {
      ${epilogueWGSL(p)}
    }
  }`;

  return /* wgsl */ `
${reduction === 'subgroup' ? 'enable subgroups;' : ''}
// ---- packed GEMV: ${format}${G ? ` G ${G}` : ''}, ${M} x row(s), ${R} weight rows × ${T} threads per workgroup, ${U}-word loads, ${reduction} reduction, act ${p.activation}${p.bias ? ', bias' : ''}${p.multiply ? ', ⊙ mulIn' : ''}${p.residual ? ', + residual' : ''}
const M : i32 = ${M};
const R : i32 = ${R};
const T : i32 = ${T};
const RM : i32 = ${RM};

var<workgroup> red : array<f32, ${reduction === 'subgroup' ? (T / 4) * RM : T * RM}>;

fn act(v : f32) -> f32 {
  ${LINEAR_ACTIVATION_WGSL[p.activation]}
}

${'fn main()'} {
  let tid = i32(localIndex);
  let n0 = i32(workgroupId.y * numWorkgroups.x + workgroupId.x) * R;   // rows past N (the grid's tail) read row N − 1 and write nothing
  ${accs.map((a) => `var ${a} = 0.0;`).join(' ')}
  let iters = (uniforms.KU + T - 1) / T;
  for (var it = 0; it < iters; it++) {
    let u = tid + it * T;   // load unit of every row this thread reads
    if (u < uniforms.KU) {
      ${xLoads.join('\n      ')}
      ${rows.join('\n      ')}
    }
  }
  ${reduce}
}
`;
}

/** WGSL of the GEMM's `loadB`: W[r, k..k+3] dequantised (0 past N or K); `k` is a multiple of 4. */
export function packedLoadBWGSL(format: PackedWeightFormat, G: number, vec4: boolean): string {
  if (!vec4) {
    // K % 4 ≠ 0: bf16 only (quantised formats have K % 8 = 0); scalar weights, bounds-checked.
    return `fn wAt(r : i32, k : i32) -> f32 {
  let w = u32(BIn[r * uniforms.KW + k / 2]);
  return bitcast<f32>(select(w & 0xFFFF0000u, w << 16u, k % 2 == 0));
}
fn loadB(r : i32, k : i32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (r < uniforms.N) {
    for (var q = 0; q < 4; q++) {
      if (k + q < uniforms.K) { v[q] = wAt(r, k + q); }
    }
  }
  return v;
}`;
  }
  const body =
    format === 'bf16'
      ? `let i = r * uniforms.KW + k / 2;
    let a = u32(BIn[i]);
    let b = u32(BIn[i + 1]);
    return ${bf16Pair('a', 'b')};`
      : format === 'q8'
        ? `let w = u32(BIn[r * uniforms.KW + k / 4]);
    let s = scalesIn[r * uniforms.NG + k / ${G}];
    return ${q8Word('w', 's')};`
        : `let w = u32(BIn[r * uniforms.KW + k / 8]) >> (u32(k % 8) * 4u);   // nibbles k % 8 .. k % 8 + 3 of the word
    let gi = r * uniforms.NG + k / ${G};
    return ${q4Nibbles('w', Q4_LO, 'scalesIn[gi]', 'minsIn[gi]')};`;
  return `fn loadB(r : i32, k : i32) -> vec4<f32> {   // W[r, k..k+3], dequantised
  if (r < uniforms.N && k < uniforms.K) {
    ${body}
  }
  return vec4<f32>(0.0);
}`;
}

// ---------------------------------------------------------------------------------------------
// Programs and kernels
// ---------------------------------------------------------------------------------------------

/** Input names after x and the words: scales (q8, q4), mins (q4), then the epilogue's operands. */
function inputNames(format: PackedWeightFormat, e: { bias: boolean; multiply: boolean; residual: boolean }, x: string, w: string): string[] {
  const names = [x, w];
  if (format !== 'bf16') names.push('scalesIn');
  if (format === 'q4') names.push('minsIn');
  if (e.bias) names.push('biasIn');
  if (e.multiply) names.push('mulIn');
  if (e.residual) names.push('residualIn');
  return names;
}

const epiKey = (e: { activation: string; bias: boolean; multiply: boolean; residual: boolean }) => `${e.activation}_${e.bias ? 'b' : ''}${e.multiply ? 'm' : ''}${e.residual ? 'r' : ''}`;

class PackedGemvProgram implements WebGPUProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [1], y: [0] }; // main() reads workgroupId itself
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  uniforms = 'N : i32, K : i32, K4 : i32, KU : i32, NG : i32,';

  constructor(private readonly params: PackedGemvParams, N: number, grid: [number, number]) {
    const p = params;
    this.outputShape = [p.M, N];
    this.dispatch = [grid[0], grid[1], 1];
    this.workgroupSize = [p.T, 1, 1];
    this.variableNames = inputNames(p.format, p, 'xIn', 'wIn');
    const xVec4 = (p.U * weightsPerWord(p.format)) % 4 === 0;
    this.variableComponents = this.variableNames.map((_, i) => (i === 0 ? (xVec4 ? 4 : 1) : i === 1 ? p.U : 1));
    this.shaderKey = `infLlavaPackedGemv_${p.format}_${p.G}_${p.M}_${p.U}_${p.R}_${p.T}_${p.reduction}_${epiKey(p)}`;
  }

  getUserCode(): string {
    return packedGemvWGSL(this.params);
  }
}

interface GemmParams {
  format: PackedWeightFormat;
  G: number;
  tiles: MatMulTiles;
  vec4: boolean;
  activation: LinearActivation;
  bias: boolean;
  multiply: boolean;
  residual: boolean;
}

class PackedGemmProgram implements WebGPUProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [2], y: [1], z: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  uniforms = 'M : i32, N : i32, K : i32, KW : i32, NG : i32,';

  constructor(private readonly params: GemmParams, M: number, N: number, grid: [number, number]) {
    const { tiles: t, vec4 } = params;
    this.outputShape = [1, M, N];
    this.dispatch = [grid[0], grid[1], 1];
    this.workgroupSize = [t.rt * t.ct, 1, 1];
    this.variableNames = inputNames(params.format, params, 'AIn', 'BIn');
    this.variableComponents = this.variableNames.map((_, i) => (i === 0 && vec4 ? 4 : 1));
    this.shaderKey = `infLlavaPackedGemm_${params.format}_${params.G}_${t.rt}x${t.tm}_${t.ct}x${t.tn}_${t.bk}_${t.doubleBuffer ? 'db' : 'sb'}_${vec4 ? 'v4' : 's'}_${epiKey(params)}`;
  }

  getUserCode(): string {
    const p = this.params;
    return matMulFusedWGSL({ ...p, loadB: packedLoadBWGSL(p.format, p.G, p.vec4) });
  }
}

/** Attributes of both kernels (flat, as tfjs attrs are). */
interface KernelAttrs {
  format: PackedWeightFormat;
  M: number;
  N: number;
  K: number;
  G: number;
  activation: LinearActivation;
  bias: boolean;
  multiply: boolean;
  residual: boolean;
  gridX: number;
  gridY: number;
  // GEMV
  U?: 1 | 2 | 4;
  R?: number;
  T?: number;
  reduction?: PackedReduction;
  // GEMM
  rt?: number;
  ct?: number;
  tm?: number;
  tn?: number;
  bk?: number;
  doubleBuffer?: boolean;
  vec4?: boolean;
}

function inputList(ins: Record<string, TensorInfo | undefined>, names: string[]): TensorInfo[] {
  return names.map((n) => ins[n]!);
}

function ensureRegistered(): void {
  if (!getKernel(PACKED_GEMV_KERNEL, 'webgpu')) {
    registerKernel({
      kernelName: PACKED_GEMV_KERNEL,
      backendName: 'webgpu',
      kernelFunc: ({ inputs, backend, attrs }) => {
        const a = attrs as unknown as KernelAttrs;
        const params: PackedGemvParams = { format: a.format, M: a.M, U: a.U!, R: a.R!, T: a.T!, G: a.G, reduction: a.reduction!, activation: a.activation, bias: a.bias, multiply: a.multiply, residual: a.residual };
        const program = new PackedGemvProgram(params, a.N, [a.gridX, a.gridY]);
        const KW = a.K / weightsPerWord(a.format);
        const uniforms: ProgramUniform = [
          { type: 'int32', data: [a.N] },
          { type: 'int32', data: [a.K] },
          { type: 'int32', data: [a.K / 4] },
          { type: 'int32', data: [KW / a.U!] },
          { type: 'int32', data: [a.G ? a.K / a.G : 0] },
        ];
        const names = inputNames(a.format, a, 'xIn', 'wIn');
        return (backend as unknown as WebGPUBackendLike).runWebGPUProgram(program, inputList(inputs as Record<string, TensorInfo>, names), 'float32', uniforms);
      },
    });
  }
  if (!getKernel(PACKED_GEMM_KERNEL, 'webgpu')) {
    registerKernel({
      kernelName: PACKED_GEMM_KERNEL,
      backendName: 'webgpu',
      kernelFunc: ({ inputs, backend, attrs }) => {
        const a = attrs as unknown as KernelAttrs;
        const tiles: MatMulTiles = { rt: a.rt!, ct: a.ct!, tm: a.tm!, tn: a.tn!, bk: a.bk!, bm: a.rt! * a.tm!, bn: a.ct! * a.tn!, doubleBuffer: a.doubleBuffer!, sharedBytes: 0 };
        const program = new PackedGemmProgram({ format: a.format, G: a.G, tiles, vec4: a.vec4!, activation: a.activation, bias: a.bias, multiply: a.multiply, residual: a.residual }, a.M, a.N, [a.gridX, a.gridY]);
        const uniforms: ProgramUniform = [
          { type: 'int32', data: [a.M] },
          { type: 'int32', data: [a.N] },
          { type: 'int32', data: [a.K] },
          { type: 'int32', data: [a.K / weightsPerWord(a.format)] },
          { type: 'int32', data: [a.G ? a.K / a.G : 0] },
        ];
        const names = inputNames(a.format, a, 'AIn', 'BIn');
        return (backend as unknown as WebGPUBackendLike).runWebGPUProgram(program, inputList(inputs as Record<string, TensorInfo>, names), 'float32', uniforms);
      },
    });
  }
}

/** The packed operands of {@link packedMatMul}: words `[N, K/2|K/4|K/8]` int32, scales and mins `[N, K/G]` float32. */
export interface PackedOperands {
  format: PackedWeightFormat;
  data: Tensor;
  scales?: Tensor;
  mins?: Tensor;
}

/** Epilogue operands: `bias` [N], `multiply` and `residual` [M, N]. */
export interface PackedEpilogue {
  activation: LinearActivation;
  bias?: Tensor;
  multiply?: Tensor;
  residual?: Tensor;
}

/**
 * `act(x · dequant(w)ᵀ + bias) ⊙ multiply + residual` on the active webgpu backend: x [M, K]
 * float32, returns one new tensor [M, N]. Inputs are assumed validated (src/ops/packedLinear.ts);
 * `plan` from {@link packedGemvPlan} or {@link packedGemmPlan}.
 */
export function packedMatMul(x: Tensor2D, w: PackedOperands, e: PackedEpilogue, plan: PackedMatMulPlan): Tensor2D {
  ensureRegistered();
  const base = {
    format: plan.format, M: plan.M, N: plan.N, K: plan.K, G: plan.G,
    activation: e.activation, bias: !!e.bias, multiply: !!e.multiply, residual: !!e.residual,
    gridX: plan.grid[0], gridY: plan.grid[1],
  };
  const attrs: KernelAttrs =
    plan.kind === 'gemv'
      ? { ...base, U: plan.U, R: plan.R, T: plan.T, reduction: plan.reduction }
      : { ...base, rt: plan.rt, ct: plan.ct, tm: plan.tm, tn: plan.tn, bk: plan.bk, doubleBuffer: plan.doubleBuffer, vec4: plan.vec4 };
  const gemv = plan.kind === 'gemv';
  const inputs: Record<string, Tensor> = { [gemv ? 'xIn' : 'AIn']: x, [gemv ? 'wIn' : 'BIn']: w.data };
  if (w.scales) inputs.scalesIn = w.scales;
  if (w.mins) inputs.minsIn = w.mins;
  if (e.bias) inputs.biasIn = e.bias;
  if (e.multiply) inputs.mulIn = e.multiply;
  if (e.residual) inputs.residualIn = e.residual;
  const out = engine().runKernel(gemv ? PACKED_GEMV_KERNEL : PACKED_GEMM_KERNEL, inputs, attrs as unknown as NamedAttrMap) as Tensor;
  if (!gemv) {
    const y = reshape(out, [plan.M, plan.N]) as Tensor2D;
    out.dispose();
    return y;
  }
  return out as Tensor2D;
}
