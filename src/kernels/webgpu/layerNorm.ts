/**
 * LayerNorm and RMSNorm with the residual adds fused, for tfjs-backend-webgpu (WGSL, fp32), over
 * the last axis of a `[rows, d]` view:
 *
 *   s = x [+ r1] [+ r2]                                    (added in that order)
 *   layer: y = ((s − mean(s)) · rsqrt(var(s) + eps)) · γ + β      biased variance (PyTorch)
 *   rms:   y = (s · rsqrt(mean(s²) + eps)) · w                    (LLaMA's RMSNorm, fp32)
 *
 * One workgroup per row (up to 65,535 × 65,535 rows): WG = clamp(nextPow2(units), 32, 256)
 * threads, `units` = d/4 vec4 when d % 4 = 0 (every operand then bound as `array<vec4<f32>>`),
 * else d scalars; thread t holds units t, t + WG, … (V = ⌈units / WG⌉ ≤ 16 of them) in registers,
 * so x and the residuals are read once and y written once. LayerNorm is two-pass over those
 * registers (mean, then Σ(s − mean)²: no cancellation), RMSNorm one pass (Σ s²). A residual may
 * have fewer rows than x (it broadcasts over x's leading axes: `[N, d]` against `[B, N, d]`); it is
 * read at row `row % rows(r)`. A small d leaves threads idle (d = 8: 2 busy lanes of 32) — a
 * workgroup per row keeps the reduction simple, and LayerNorms that small are not hot anywhere.
 *
 * Two reductions of a per-thread partial to a workgroup total ({@link normKernelConfig}):
 * - subgroups (device feature `subgroups`, WGSL `enable subgroups;`): `subgroupAdd`, one partial
 *   per subgroup into workgroup memory at its slot (./subgroups.ts: no assumption on the subgroup
 *   size or layout), one barrier, every thread sums the partials in slot order (deterministic).
 * - workgroup memory only: a tree over WG slots, log2(WG) barriers.
 * The subgroup path is taken when the device has the feature and was made by
 * src/backends/webgpuDevice.ts (tfjs 4.22 neither requests the feature nor lets a program put a
 * directive first; that device hoists it).
 *
 * Registered lazily as {@link LAYER_NORM_KERNEL} and {@link RMS_NORM_KERNEL} for 'webgpu'; no
 * gradient (src/ops/layerNorm.ts and rmsNorm.ts use them only while no gradient tape records).
 */
import type { Tensor, Tensor2D } from '@tensorflow/tfjs-core';
import { defineWebGPUKernel, grid2D, webgpuLimits, webgpuSubgroupKernels, type ProgramUniform, type WebGPUKernelFunc, type WebGPULimits, type WebGPUProgramLike } from './program.js';
import { requiredSubgroupSize, subgroupDirectivesWGSL, subgroupSlotsWGSL } from './subgroups.js';

export const LAYER_NORM_KERNEL = 'InfLlavaLayerNorm';
export const RMS_NORM_KERNEL = 'InfLlavaRMSNorm';

export type NormKind = 'layer' | 'rms';

/** Settings of the norm kernels (tests force each path). */
export const normKernelConfig: {
  /**
   * The reduction: `'auto'` (default) subgroups where the device has them (see the file comment),
   * `'on'` subgroups or an error saying why not, `'off'` workgroup memory only.
   */
  subgroups: 'auto' | 'on' | 'off';
  /** Caps the workgroups per grid dimension below the device's limit (tests: a 2-D grid without 65,536 rows). */
  maxWorkgroupsPerDimension?: number;
} = { subgroups: 'auto' };

/** Most units (vec4 or scalars) a thread keeps in registers. */
export const NORM_MAX_UNITS_PER_THREAD = 16;
const MAX_WG = 256;
const MIN_WG = 32;

/** The launch plan of one call. */
export interface NormPlan {
  rows: number;
  d: number;
  /** Operands bound as vec4 (d % 4 = 0). */
  vec4: boolean;
  /** Units per row: d / 4 (vec4) or d. */
  units: number;
  /** Threads per workgroup (one workgroup per row). */
  wg: number;
  /** Units per thread, ⌈units / wg⌉. */
  perThread: number;
  /** Reduction with subgroup operations. */
  subgroups: boolean;
  /** The subgroup size the shader requires (0 or absent: the implementation's; tests set `subgroupKernelConfig.size`). */
  subgroupSize?: number;
  /** Workgroups: gridX × gridY ≥ rows. */
  grid: [number, number];
}

/**
 * The plan for `rows` rows of width `d` (the largest operand has `rows · d` elements) on a device
 * with these limits, or why the kernel cannot take it. `subgroups`: whether the reduction may use
 * subgroup operations (decided by the caller from {@link normKernelConfig} and the device).
 */
export function normPlan(rows: number, d: number, limits: WebGPULimits, subgroups: boolean): NormPlan | string {
  const vec4 = d % 4 === 0;
  const units = vec4 ? d / 4 : d;
  const maxWg = Math.min(MAX_WG, limits.maxComputeInvocationsPerWorkgroup ?? MAX_WG);
  let wg = MIN_WG;
  while (wg < units && wg < maxWg) wg *= 2;
  const perThread = Math.ceil(units / wg);
  if (perThread > NORM_MAX_UNITS_PER_THREAD) return `rows of ${d} elements exceed ${NORM_MAX_UNITS_PER_THREAD} ${vec4 ? 'vec4' : 'floats'} per thread × ${wg} threads`;
  const maxDim = Math.min(limits.maxComputeWorkgroupsPerDimension, normKernelConfig.maxWorkgroupsPerDimension ?? Infinity);
  const [gridX, gridY] = grid2D(rows, maxDim);
  if (gridY > maxDim) return `${rows} rows exceed ${maxDim}² workgroups`;
  if (rows * d * 4 > limits.maxStorageBufferBindingSize || rows * d >= 2 ** 31) return `a tensor of ${rows * d} elements exceeds the storage binding limit`;
  return { rows, d, vec4, units, wg, perThread, subgroups, grid: [gridX, gridY] };
}

interface ProgramParams {
  kind: NormKind;
  vec4: boolean;
  wg: number;
  perThread: number;
  subgroups: boolean;
  /** Required subgroup size (0: the implementation's). */
  subgroupSize: number;
  /** Residuals: 0, 1 or 2. */
  residuals: number;
}

/** The WGSL of one configuration; rows, d and the residuals' row counts are uniforms. */
export function normWGSL(p: ProgramParams): string {
  const { kind, vec4, wg, perThread, subgroups, residuals } = p;
  const T = vec4 ? 'vec4<f32>' : 'f32';
  const hsum = (e: string) => (vec4 ? `dot(${e}, vec4<f32>(1.0))` : e);
  const res = [1, 2]
    .filter((i) => i <= residuals)
    .map((i) => `v = v + res${i}[(row % uniforms.r${i}Rows) * du + c];`)
    .join('\n        ');
  const reduction = subgroups
    ? /* wgsl */ `${subgroupSlotsWGSL(wg)}
fn workgroupSum(v : f32, subgroupCount : u32) -> f32 {
  let t = subgroupAdd(v);
  if (sgLead) { red[sgRank] = t; }
  workgroupBarrier();
  var s = 0.0;
  for (var k = 0u; k < subgroupCount; k++) { s += red[k]; }
  workgroupBarrier();   // red is written again by the next sum
  return s;
}`
    : /* wgsl */ `
// Tree over the workgroup's slots.
fn workgroupSum(v : f32, unused : u32) -> f32 {
  red[localIndex] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (localIndex < s) { red[localIndex] = red[localIndex] + red[localIndex + s]; }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();   // red is written again by the next sum
  return t;
}`;
  const loop = (body: string) => `for (var k = 0u; k < V; k++) {
    let c = i32(localIndex + k * WG);
    if (live && c < du) {
      ${body}
    }
  }`;
  const finish =
    kind === 'layer'
      ? `let mean = workgroupSum(part, subgroupCount) / n;
  var part2 = 0.0;
  ${loop(`let e = s[k] - ${T}(mean);
      part2 += ${hsum('e * e')};`)}
  let rstd = inverseSqrt(workgroupSum(part2, subgroupCount) / n + uniforms.eps);
  ${loop(`result[base + c] = ((s[k] - ${T}(mean)) * ${T}(rstd)) * gammaIn[c] + betaIn[c];`)}`
      : `let rstd = inverseSqrt(workgroupSum(part, subgroupCount) / n + uniforms.eps);
  ${loop(`result[base + c] = (s[k] * ${T}(rstd)) * gammaIn[c];`)}`;
  return /* wgsl */ `
// ---- ${kind === 'layer' ? 'LayerNorm' : 'RMSNorm'}${residuals ? ` of x + ${residuals} residual${residuals > 1 ? 's' : ''}` : ''}: ${wg} threads per row, ${perThread} ${vec4 ? 'vec4' : 'scalar'} per thread, ${subgroups ? 'subgroup' : 'workgroup-tree'} reduction
${subgroups ? subgroupDirectivesWGSL(p.subgroupSize) : ''}
const WG : u32 = ${wg}u;
const V : u32 = ${perThread}u;
var<workgroup> red : array<f32, ${wg}>;
${reduction}

${'fn main()'} {
  let subgroupCount = ${subgroups ? 'subgroupSlots()' : '0u'};
  let row = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
  let live = row < uniforms.rows;   // barriers below are reached by every invocation
  let du = uniforms.du;
  let base = row * du;
  let n = f32(uniforms.d);
  var s : array<${T}, ${perThread}>;
  var part = 0.0;
  for (var k = 0u; k < V; k++) {
    let c = i32(localIndex + k * WG);
    var v = ${T}(0.0);
    if (live && c < du) {
      v = xIn[base + c];
      ${res}
      part += ${kind === 'layer' ? hsum('v') : hsum('v * v')};
    }
    s[k] = v;
  }
  ${finish}
}
`;
}

class NormProgram implements WebGPUProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [1], y: [0] }; // main() computes its own row
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  outputComponent: number;
  uniforms = 'rows : i32, du : i32, d : i32, r1Rows : i32, r2Rows : i32, eps : f32,';

  constructor(private readonly params: ProgramParams, rows: number, d: number, grid: [number, number]) {
    const { kind, vec4, wg, perThread, subgroups, subgroupSize, residuals } = params;
    this.outputShape = [rows, d];
    this.dispatch = [grid[0], grid[1], 1];
    this.workgroupSize = [wg, 1, 1];
    this.variableNames = ['xIn'];
    for (let i = 1; i <= residuals; i++) this.variableNames.push(`res${i}`);
    this.variableNames.push('gammaIn');
    if (kind === 'layer') this.variableNames.push('betaIn');
    this.variableComponents = this.variableNames.map(() => (vec4 ? 4 : 1));
    this.outputComponent = vec4 ? 4 : 1;
    this.shaderKey = `infLlavaNorm_${kind}_${wg}x${perThread}_${vec4 ? 'v4' : 's'}_${subgroups ? `sg${subgroupSize || ''}` : 'wg'}_r${residuals}`;
  }

  getUserCode(): string {
    return normWGSL(this.params);
  }
}

interface KernelAttrs {
  kind: NormKind;
  rows: number;
  d: number;
  eps: number;
  vec4: boolean;
  wg: number;
  perThread: number;
  subgroups: boolean;
  subgroupSize: number;
  residuals: number;
  r1Rows: number;
  r2Rows: number;
  gridX: number;
  gridY: number;
}

const normKernelFunc: WebGPUKernelFunc<KernelAttrs> = (inputs, backend, a) => {
  const program = new NormProgram(
    { kind: a.kind, vec4: a.vec4, wg: a.wg, perThread: a.perThread, subgroups: a.subgroups, subgroupSize: a.subgroupSize, residuals: a.residuals },
    a.rows, a.d, [a.gridX, a.gridY],
  );
  const list = program.variableNames.map((name) => inputs[name]!);
  const uniforms: ProgramUniform = [
    { type: 'int32', data: [a.rows] },
    { type: 'int32', data: [a.vec4 ? a.d / 4 : a.d] },
    { type: 'int32', data: [a.d] },
    { type: 'int32', data: [a.r1Rows] },
    { type: 'int32', data: [a.r2Rows] },
    { type: 'float32', data: [a.eps] },
  ];
  return backend.runWebGPUProgram(program, list, 'float32', uniforms);
};
const runKernel = { layer: defineWebGPUKernel(LAYER_NORM_KERNEL, normKernelFunc), rms: defineWebGPUKernel(RMS_NORM_KERNEL, normKernelFunc) };

/**
 * Whether the norm kernels reduce with subgroups on the active webgpu backend, per
 * {@link normKernelConfig}; throws when it says `'on'` and the device cannot.
 */
export function normSubgroups(fn: string): boolean {
  const mode = normKernelConfig.subgroups;
  if (mode === 'off') return false;
  const usable = webgpuSubgroupKernels();
  if (mode === 'on' && !usable) {
    throw new Error(`${fn}: normKernelConfig.subgroups is 'on' but the webgpu device cannot run subgroup operations (no 'subgroups' feature, or a device not made by registerWebGPUBackend)`);
  }
  return usable;
}

/**
 * The plan for `rows` rows of width `d` on the active webgpu backend, per {@link normKernelConfig}
 * and `subgroupKernelConfig` (./subgroups.ts), or why the kernel cannot take it; throws, naming
 * `fn`, for a setting the device cannot honour.
 */
export function normKernelPlan(fn: string, rows: number, d: number): NormPlan | string {
  const plan = normPlan(rows, d, webgpuLimits(), normSubgroups(fn));
  if (typeof plan === 'string' || !plan.subgroups) return plan;
  return { ...plan, subgroupSize: requiredSubgroupSize(fn, plan.wg) };
}

/** Operands of {@link normFused}: x [rows, d], residuals [r·, d] with rows % r· = 0, γ (and β) [d]. */
export interface NormOperands {
  x: Tensor2D;
  residual?: Tensor2D;
  residual2?: Tensor2D;
  gamma: Tensor;
  beta?: Tensor;
  eps: number;
}

/**
 * The norm of `o.x + o.residual + o.residual2` on the active webgpu backend; returns one new tensor
 * `[rows, d]`. Inputs are assumed validated (src/ops/layerNorm.ts, rmsNorm.ts).
 */
export function normFused(kind: NormKind, o: NormOperands, plan: NormPlan): Tensor2D {
  const res = [o.residual, o.residual2].filter((r): r is Tensor2D => !!r);
  const attrs: KernelAttrs = {
    kind, rows: plan.rows, d: plan.d, eps: o.eps,
    vec4: plan.vec4, wg: plan.wg, perThread: plan.perThread, subgroups: plan.subgroups,
    subgroupSize: plan.subgroupSize ?? 0,
    residuals: res.length, r1Rows: res[0]?.shape[0] ?? 1, r2Rows: res[1]?.shape[0] ?? 1,
    gridX: plan.grid[0], gridY: plan.grid[1],
  };
  const inputs: Record<string, Tensor> = { xIn: o.x, gammaIn: o.gamma };
  res.forEach((r, i) => (inputs[`res${i + 1}`] = r));
  if (kind === 'layer') inputs.betaIn = o.beta!;
  return runKernel[kind](inputs, attrs) as Tensor2D;
}
