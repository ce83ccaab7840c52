/**
 * The packed-weight GEMV for tfjs-backend-webgpu (issue 13), fp32 arithmetic, for up to 8 rows of
 * x (a decode step):
 *
 *   y = act(x · dequant(W)ᵀ + bias) [⊙ mulIn] [+ residual]      x [M, K] f32, W [N, K] packed, y [M, N]
 *
 * Memory-bound: every weight word is read once. A workgroup of T threads owns R = 4 consecutive
 * output rows; thread t reads load units t, t + T, … of each row (a unit is U = 4, 2 or 1
 * consecutive words: vec4/vec2/scalar loads, consecutive threads on consecutive units, so a warp
 * reads 512 contiguous bytes per row), loads the x values of a unit once for all M rows of x and
 * uses them for the R weight rows. Each thread holds R·M partial dot products; they are summed over
 * the workgroup ({@link PackedReduction}) with `subgroupAdd` and one slot per subgroup in workgroup
 * memory (./subgroups.ts: no assumption on the subgroup size or layout) when the device has
 * `subgroups` (and our device factory made it, src/backends/webgpuDevice.ts), else by a tree in
 * workgroup memory. The epilogue runs on the R·M sums. Formats: ./packedFormats.ts.
 *
 * Registered as {@link PACKED_GEMV_KERNEL} for 'webgpu' on first use; no gradient
 * (`src/ops/packedLinear.ts` is the op).
 */
import type { Tensor2D } from '@tensorflow/tfjs-core';
import { LINEAR_ACTIVATION_WGSL, type LinearActivation } from './matMulFused.js';
import { bf16Pair, epiKey, inputNames, packedInputs, q4Nibbles, Q4_HI, Q4_LO, q8Word, weightsPerWord, type EpilogueFlags, type PackedEpilogue, type PackedOperands, type PackedWeightFormat } from './packedFormats.js';
import { ceilDiv, defineWebGPUKernel, grid2D, type ProgramUniform, type WebGPULimits, type WebGPUProgramLike } from './program.js';
import { requiredSubgroupSize, subgroupDirectivesWGSL, subgroupSlotsBytes, subgroupSlotsWGSL } from './subgroups.js';

export const PACKED_GEMV_KERNEL = 'InfLlavaPackedGemv';

/** How the GEMV sums its threads' partial dot products. */
export type PackedReduction = 'subgroup' | 'workgroup';

/** Largest M the GEMV takes (x rows; its register arrays are sized by M). */
export const PACKED_GEMV_MAX_ROWS = 8;
/** Output rows per GEMV workgroup. */
const GEMV_ROWS = 4;

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
  /** Subgroup reduction: the subgroup size the shader requires (0: the implementation's; tests set `subgroupKernelConfig.size`). */
  subgroupSize: number;
  /** Workgroups (⌈N / R⌉), dispatched as X × Y within the per-dimension limit. */
  workgroups: number;
  grid: [number, number];
  /** Workgroup memory of the shader, bytes. */
  sharedBytes: number;
}

/** Words per load unit: 4 (vec4) unless the x values it needs for M rows would pass 16 vec4 of registers, and dividing the row. */
function unitWords(format: PackedWeightFormat, M: number, KW: number): 1 | 2 | 4 {
  const vec4PerWord = weightsPerWord(format) / 4; // x vec4 per word: 0.5, 1, 2
  for (const u of [4, 2, 1] as const) if (KW % u === 0 && (u === 1 || M * u * vec4PerWord <= 16)) return u;
  return 1;
}

/** Partial sums the subgroup reduction keeps per slot: one slot per subgroup, and WebGPU subgroups have ≥ 4 invocations. */
const subgroupSlots = (T: number) => T / 4;

/** The GEMV plan for `[M, K] · dequant([N, K])ᵀ`, or why it cannot run it; throws for a `subgroupKernelConfig.size` the device cannot honour. */
export function packedGemvPlan(format: PackedWeightFormat, M: number, N: number, K: number, G: number, reduction: PackedReduction, limits: WebGPULimits): PackedGemvPlan | string {
  if (M < 1 || M > PACKED_GEMV_MAX_ROWS) return `the GEMV takes 1 to ${PACKED_GEMV_MAX_ROWS} rows of x, got ${M}`;
  const KW = K / weightsPerWord(format);
  const U = unitWords(format, M, KW);
  const KU = KW / U;
  const T = KU >= 256 ? 128 : KU >= 128 ? 64 : 32;
  const maxThreads = limits.maxComputeInvocationsPerWorkgroup ?? 256;
  if (T > maxThreads) return `the GEMV needs ${T} invocations per workgroup, the device allows ${maxThreads}`;
  const R = GEMV_ROWS;
  const RM = R * M;
  const sharedBytes = reduction === 'subgroup' ? 4 * subgroupSlots(T) * RM + subgroupSlotsBytes(T) : 4 * T * RM;
  if (sharedBytes > limits.maxComputeWorkgroupStorageSize) return `the GEMV needs ${sharedBytes} bytes of workgroup memory, the device has ${limits.maxComputeWorkgroupStorageSize}`;
  const workgroups = ceilDiv(N, R);
  const maxDim = limits.maxComputeWorkgroupsPerDimension;
  const [gx, gy] = grid2D(workgroups, maxDim);
  if (gy > maxDim) return `${workgroups} workgroups exceed ${maxDim}² per dispatch`;
  const words = N * KW;
  const largest = Math.max(words, M * K, M * N);
  if (largest * 4 > limits.maxStorageBufferBindingSize || largest >= 2 ** 31) return `a tensor of ${largest} elements exceeds the storage binding limit`;
  const subgroupSize = reduction === 'subgroup' ? requiredSubgroupSize('packedLinear', T) : 0;
  return { kind: 'gemv', format, M, N, K, G, U, R, T, reduction, subgroupSize, workgroups, grid: [gx, gy], sharedBytes };
}

/** Everything that selects a GEMV pipeline. */
export interface PackedGemvParams extends EpilogueFlags {
  format: PackedWeightFormat;
  M: number;
  U: 1 | 2 | 4;
  R: number;
  T: number;
  G: number;
  reduction: PackedReduction;
  /** Subgroup reduction: the required subgroup size (0 or absent: the implementation's). */
  subgroupSize?: number;
  activation: LinearActivation;
}

/** The epilogue for output `v` of x row `m`, weight row `n` (y index m·N + n). */
function epilogueWGSL(p: EpilogueFlags): string {
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
  const subgroups = reduction === 'subgroup';
  const reduce = subgroups
    ? `// Subgroup sums, one slot per subgroup (./subgroups.ts), summed in slot order.
  ${accs.map((a, i) => `{ let v = subgroupAdd(${a}); if (sgLead) { red[i32(sgRank) * RM + ${i}] = v; } }`).join('\n  ')}
  workgroupBarrier();
  if (tid < RM) {
    var total = 0.0;
    for (var j = 0; j < i32(groups); j++) { total += red[j * RM + tid]; }
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
${subgroups ? subgroupDirectivesWGSL(p.subgroupSize ?? 0) : ''}
// ---- packed GEMV: ${format}${G ? ` G ${G}` : ''}, ${M} x row(s), ${R} weight rows × ${T} threads per workgroup, ${U}-word loads, ${reduction} reduction, act ${p.activation}${p.bias ? ', bias' : ''}${p.multiply ? ', ⊙ mulIn' : ''}${p.residual ? ', + residual' : ''}
const M : i32 = ${M};
const R : i32 = ${R};
const T : i32 = ${T};
const RM : i32 = ${RM};

var<workgroup> red : array<f32, ${subgroups ? subgroupSlots(T) * RM : T * RM}>;
${subgroups ? subgroupSlotsWGSL(T) : ''}
fn act(v : f32) -> f32 {
  ${LINEAR_ACTIVATION_WGSL[p.activation]}
}

${'fn main()'} {
  ${subgroups ? 'let groups = subgroupSlots();' : ''}
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
    this.shaderKey = `infLlavaPackedGemv_${p.format}_${p.G}_${p.M}_${p.U}_${p.R}_${p.T}_${p.reduction}${p.subgroupSize || ''}_${epiKey(p)}`;
  }

  getUserCode(): string {
    return packedGemvWGSL(this.params);
  }
}

/** The kernel's attributes (flat, as tfjs attrs are). */
interface KernelAttrs extends Required<PackedGemvParams> {
  N: number;
  K: number;
  gridX: number;
  gridY: number;
}

const runKernel = defineWebGPUKernel<KernelAttrs>(PACKED_GEMV_KERNEL, (inputs, backend, a) => {
  const params: PackedGemvParams = { format: a.format, M: a.M, U: a.U, R: a.R, T: a.T, G: a.G, reduction: a.reduction, subgroupSize: a.subgroupSize, activation: a.activation, bias: a.bias, multiply: a.multiply, residual: a.residual };
  const program = new PackedGemvProgram(params, a.N, [a.gridX, a.gridY]);
  const KW = a.K / weightsPerWord(a.format);
  const uniforms: ProgramUniform = [
    { type: 'int32', data: [a.N] },
    { type: 'int32', data: [a.K] },
    { type: 'int32', data: [a.K / 4] },
    { type: 'int32', data: [KW / a.U] },
    { type: 'int32', data: [a.G ? a.K / a.G : 0] },
  ];
  return backend.runWebGPUProgram(program, program.variableNames.map((n) => inputs[n]!), 'float32', uniforms);
});

/** The GEMV of `plan` on the active webgpu backend: x [M, K] float32 → one new tensor [M, N]. Inputs assumed validated. */
export function packedGemv(x: Tensor2D, w: PackedOperands, e: PackedEpilogue, plan: PackedGemvPlan): Tensor2D {
  const attrs: KernelAttrs = {
    format: plan.format, M: plan.M, N: plan.N, K: plan.K, G: plan.G, U: plan.U, R: plan.R, T: plan.T,
    reduction: plan.reduction, subgroupSize: plan.subgroupSize,
    activation: e.activation, bias: !!e.bias, multiply: !!e.multiply, residual: !!e.residual,
    gridX: plan.grid[0], gridY: plan.grid[1],
  };
  return runKernel(packedInputs(x, w, e, 'xIn', 'wIn'), attrs) as Tensor2D;
}
