/**
 * The linear layer's matMul for tfjs-backend-webgpu, with fused epilogues (WGSL, fp32):
 *
 *   y = act(x · Wᵀ + bias) [⊙ mulIn] [+ residual]      x [M, K], W [N, K] (PyTorch's [out, in]), y [M, N]
 *
 * W is read as it is stored (K contiguous in both operands, so no transpose is ever made).
 * A register-blocked tiled SGEMM: a workgroup of RT × CT threads owns a BM × BN block of y
 * (BM = RT·TM, BN = CT·TN); each thread accumulates TM × TN outputs (rows tr·TM + i, columns
 * tc·TN + j) in registers. Per step of BK along K, the BM × BK tile of x and the BN × BK tile of W
 * are stored k-major in workgroup memory (`sa[k][m]`, `sb[k][n]`, as vec4 along m / n), so the
 * inner product reads TM/4 + TN/4 vec4 and does TM·TN FMAs per k. Global loads are vec4 along K
 * when K % 4 = 0 (the operands are then bound as `array<vec4<f32>>`), 4 bounds-checked scalars
 * otherwise. Double-buffered: while a tile is multiplied, the next one is already loaded into
 * registers and then stored to the other buffer, one barrier per step; a single buffer (two
 * barriers) when the double one does not fit the device's workgroup memory.
 *
 * Epilogues, applied to each output while it is still in a register: `bias` (per column), an
 * activation (`gelu`: exact, erf by Abramowitz–Stegun 7.1.26 as tfjs's own erf; `quick-gelu`:
 * x·σ(1.702x); `silu`: x·σ(x)), an elementwise multiplier (SwiGLU: silu(x·W_gᵀ) ⊙ (x·W_uᵀ), the
 * second product given as `mulIn`) and a residual add, in that order.
 *
 * Registered as the tfjs kernel {@link MATMUL_FUSED_KERNEL} for 'webgpu' on first use and run
 * through `engine().runKernel`; no gradient (src/ops/linear.ts uses it only while no tape records).
 */
import { reshape, type Tensor, type Tensor2D } from '@tensorflow/tfjs-core';
import { ceilDiv, defineWebGPUKernel, type ProgramUniform, type WebGPULimits, type WebGPUProgramLike } from './program.js';

export const MATMUL_FUSED_KERNEL = 'InfLlavaMatMulFused';

/** Epilogue activations. */
export type LinearActivation = 'none' | 'gelu' | 'quick-gelu' | 'silu';
export const LINEAR_ACTIVATIONS = ['none', 'gelu', 'quick-gelu', 'silu'] as const;

/** One tile geometry: RT × CT threads, TM × TN outputs each, BK along K per step. */
export interface MatMulTiles {
  rt: number;
  ct: number;
  tm: number;
  tn: number;
  bk: number;
  /** BM = rt·tm rows and BN = ct·tn columns of y per workgroup. */
  bm: number;
  bn: number;
  doubleBuffer: boolean;
  /** Workgroup memory of the shader, bytes. */
  sharedBytes: number;
}

/** The launch plan of one call. */
export interface MatMulPlan extends MatMulTiles {
  M: number;
  N: number;
  K: number;
  /** Operands bound as vec4 (K % 4 = 0). */
  vec4: boolean;
  /** Workgroups: ⌈N / BN⌉ × ⌈M / BM⌉. */
  grid: [number, number];
}

type Geometry = [rt: number, ct: number, tm: number, tn: number, bk: number];
/** By preference, for many rows (prefill, CLIP's 577 tokens × crops): 128 × 64 blocks, 8 × 4 per thread, 256 threads. */
const LARGE: Geometry[] = [[16, 16, 8, 4, 16], [16, 16, 8, 4, 8], [16, 16, 4, 4, 8], [8, 8, 4, 4, 8]];
/** Few rows (a decode step, small batches): 32 × 64 blocks (128 threads), so that more workgroups share N. */
const MEDIUM: Geometry[] = [[8, 16, 4, 4, 16], [8, 16, 4, 4, 8], [8, 8, 4, 4, 8]];
/** One to 16 rows: 16 × 64 blocks of 64 threads. */
const SMALL: Geometry[] = [[4, 16, 4, 4, 32], [4, 16, 4, 4, 16], [4, 16, 4, 4, 8]];

/** Tiles for `M` rows within `maxShared` bytes of workgroup memory and `maxThreads` invocations. */
export function matMulTiles(M: number, maxShared: number, maxThreads = 256): MatMulTiles | string {
  const order = M <= 16 ? [...SMALL, ...MEDIUM] : M <= 48 ? [...MEDIUM, ...LARGE] : [...LARGE, ...MEDIUM];
  for (const doubleBuffer of [true, false]) {
    for (const [rt, ct, tm, tn, bk] of order) {
      if (rt * ct > maxThreads) continue;
      const bm = rt * tm;
      const bn = ct * tn;
      const sharedBytes = (doubleBuffer ? 2 : 1) * bk * (bm + bn) * 4;
      if (sharedBytes <= maxShared) return { rt, ct, tm, tn, bk, bm, bn, doubleBuffer, sharedBytes };
    }
  }
  return `no tile fits ${maxShared} bytes of workgroup memory`;
}

/** The plan for an `[M, K] · [N, K]ᵀ` product on a device with these limits, or why the kernel cannot take it. */
export function matMulPlan(M: number, N: number, K: number, limits: WebGPULimits): MatMulPlan | string {
  const tiles = matMulTiles(M, limits.maxComputeWorkgroupStorageSize, limits.maxComputeInvocationsPerWorkgroup ?? 256);
  if (typeof tiles === 'string') return tiles;
  const grid: [number, number] = [ceilDiv(N, tiles.bn), ceilDiv(M, tiles.bm)];
  const maxDim = limits.maxComputeWorkgroupsPerDimension;
  if (grid[0] > maxDim || grid[1] > maxDim) return `grid ${grid[0]} × ${grid[1]} exceeds ${maxDim} workgroups per dimension`;
  const largest = Math.max(M * K, N * K, M * N);
  if (largest * 4 > limits.maxStorageBufferBindingSize || largest >= 2 ** 31) return `a tensor of ${largest} elements exceeds the storage binding limit`;
  return { ...tiles, M, N, K, vec4: K % 4 === 0, grid };
}

/** One configuration of {@link matMulFusedWGSL}. */
export interface MatMulFusedParams {
  tiles: MatMulTiles;
  /** x (and, without `loadB`, W) bound as vec4 (K % 4 = 0). */
  vec4: boolean;
  activation: LinearActivation;
  bias: boolean;
  multiply: boolean;
  residual: boolean;
  /**
   * WGSL of `fn loadB(r : i32, k : i32) -> vec4<f32>` (W[r, k..k+3], 0 past N or K) replacing the
   * float32 one: packed weights dequantised on their way into workgroup memory (packedMatMul.ts).
   */
  loadB?: string;
}
type ProgramParams = MatMulFusedParams;

/** The body of `fn act(v : f32) -> f32` for each activation (shared with the packed kernels). */
export const LINEAR_ACTIVATION_WGSL: Record<LinearActivation, string> = {
  none: 'return v;',
  // tfjs's erf (Abramowitz–Stegun 7.1.26), so that the fused GELU matches the composition's.
  gelu: `let a = v * 0.7071067811865476;
  let t = 1.0 / (1.0 + 0.3275911 * abs(a));
  let e = sign(a) * (1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a));
  return 0.5 * v * (1.0 + e);`,
  'quick-gelu': 'return v * (1.0 / (1.0 + exp(-1.0 * (v * 1.702))));',
  silu: 'return v * (1.0 / (1.0 + exp(-1.0 * v)));',
};

/** The WGSL of one configuration; M, N, K are uniforms (one pipeline serves every row count). */
export function matMulFusedWGSL(p: ProgramParams): string {
  const { rt, ct, tm, tn, bk, bm, bn, doubleBuffer } = p.tiles;
  const nt = rt * ct;
  const la = Math.ceil((bm * bk) / 4 / nt); // vec4 of the x tile each thread loads (the last round partly, when not a whole number)
  const lb = Math.ceil((bn * bk) / 4 / nt);
  // Element e of a tile exists when e < (rows · BK / 4); a guard only where the rounds are not whole.
  const guardA = (bm * bk) % (4 * nt) !== 0 ? `if (e < ${(bm * bk) / 4}) ` : '';
  const guardB = (bn * bk) % (4 * nt) !== 0 ? `if (e < ${(bn * bk) / 4}) ` : '';
  const nbuf = doubleBuffer ? 2 : 1;
  const load = (name: string, rows: string) =>
    p.vec4
      ? `fn load${name}(r : i32, k : i32) -> vec4<f32> {   // 4 consecutive k of row r (K % 4 = 0)
  if (r < ${rows} && k < uniforms.K) { return ${name}In[(r * uniforms.K + k) / 4]; }
  return vec4<f32>(0.0);
}`
      : `fn load${name}(r : i32, k : i32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (r < ${rows}) {
    for (var q = 0; q < 4; q++) {
      if (k + q < uniforms.K) { v[q] = ${name}In[r * uniforms.K + k + q]; }
    }
  }
  return v;
}`;
  return /* wgsl */ `
// ---- fused linear: ${bm}×${bn} block, ${tm}×${tn} per thread, BK ${bk}, ${doubleBuffer ? 'double' : 'single'} buffer, ${p.vec4 ? 'vec4' : 'scalar'} loads, act ${p.activation}${p.bias ? ', bias' : ''}${p.multiply ? ', ⊙ mulIn' : ''}${p.residual ? ', + residual' : ''}
const RT : i32 = ${rt};
const CT : i32 = ${ct};
const TM : i32 = ${tm};
const TN : i32 = ${tn};
const BK : i32 = ${bk};
const BM : i32 = ${bm};
const BN : i32 = ${bn};
const BM4 : i32 = ${bm / 4};
const BN4 : i32 = ${bn / 4};
const NT : i32 = ${nt};
const K4 : i32 = ${bk / 4};   // vec4 per tile row along K

var<workgroup> sa : array<vec4<f32>, ${nbuf * bk * (bm / 4)}>;   // [buf][k][m/4]
var<workgroup> sb : array<vec4<f32>, ${nbuf * bk * (bn / 4)}>;   // [buf][k][n/4]

${load('A', 'uniforms.M')}
${p.loadB ?? load('B', 'uniforms.N')}

fn act(v : f32) -> f32 {
  ${LINEAR_ACTIVATION_WGSL[p.activation]}
}

${'fn main()'} {
  let tid = i32(localIndex);
  let tr = tid / CT;
  let tc = tid % CT;
  let n0 = i32(workgroupId.x) * BN;
  let m0 = i32(workgroupId.y) * BM;
  let tiles = (uniforms.K + BK - 1) / BK;

  var ra : array<vec4<f32>, ${la}>;
  var rb : array<vec4<f32>, ${lb}>;
  var acc : array<vec4<f32>, ${(tm * tn) / 4}>;
  for (var i = 0; i < ${(tm * tn) / 4}; i++) { acc[i] = vec4<f32>(0.0); }

  // Tile t of x and W → registers: element e = row · K4 + k4 of the BM × BK (BN × BK) tile.
  for (var l = 0; l < ${la}; l++) {
    let e = tid + NT * l;
    ${guardA}{ ra[l] = loadA(m0 + e / K4, (e % K4) * 4); }
  }
  for (var l = 0; l < ${lb}; l++) {
    let e = tid + NT * l;
    ${guardB}{ rb[l] = loadB(n0 + e / K4, (e % K4) * 4); }
  }
  // registers → buffer 0, k-major
  for (var l = 0; l < ${la}; l++) {
    let e = tid + NT * l;
    let r = e / K4;
    let k = (e % K4) * 4;
    ${guardA}for (var q = 0; q < 4; q++) { sa[(k + q) * BM4 + r / 4][r % 4] = ra[l][q]; }
  }
  for (var l = 0; l < ${lb}; l++) {
    let e = tid + NT * l;
    let r = e / K4;
    let k = (e % K4) * 4;
    ${guardB}for (var q = 0; q < 4; q++) { sb[(k + q) * BN4 + r / 4][r % 4] = rb[l][q]; }
  }
  workgroupBarrier();

  for (var t = 0; t < tiles; t++) {
    let cur = ${doubleBuffer ? 't % 2' : '0'};
    let more = t + 1 < tiles;
    if (more) {
      let k0 = (t + 1) * BK;
      for (var l = 0; l < ${la}; l++) {
        let e = tid + NT * l;
        ${guardA}{ ra[l] = loadA(m0 + e / K4, k0 + (e % K4) * 4); }
      }
      for (var l = 0; l < ${lb}; l++) {
        let e = tid + NT * l;
        ${guardB}{ rb[l] = loadB(n0 + e / K4, k0 + (e % K4) * 4); }
      }
    }
    let ab = cur * BK * BM4 + tr * ${tm / 4};
    let bb = cur * BK * BN4 + tc * ${tn / 4};
    for (var k = 0; k < BK; k++) {
      var a : array<vec4<f32>, ${tm / 4}>;
      var b : array<vec4<f32>, ${tn / 4}>;
      for (var i = 0; i < ${tm / 4}; i++) { a[i] = sa[ab + k * BM4 + i]; }
      for (var j = 0; j < ${tn / 4}; j++) { b[j] = sb[bb + k * BN4 + j]; }
      for (var i = 0; i < TM; i++) {
        let x = a[i / 4][i % 4];
        for (var j = 0; j < ${tn / 4}; j++) { acc[i * ${tn / 4} + j] = fma(vec4<f32>(x), b[j], acc[i * ${tn / 4} + j]); }
      }
    }
    ${doubleBuffer ? '' : 'workgroupBarrier();   // single buffer: everyone is done reading it'}
    if (more) {
      let nxt = ${doubleBuffer ? '1 - cur' : '0'};
      for (var l = 0; l < ${la}; l++) {
        let e = tid + NT * l;
        let r = e / K4;
        let k = (e % K4) * 4;
        ${guardA}for (var q = 0; q < 4; q++) { sa[(nxt * BK + k + q) * BM4 + r / 4][r % 4] = ra[l][q]; }
      }
      for (var l = 0; l < ${lb}; l++) {
        let e = tid + NT * l;
        let r = e / K4;
        let k = (e % K4) * 4;
        ${guardB}for (var q = 0; q < 4; q++) { sb[(nxt * BK + k + q) * BN4 + r / 4][r % 4] = rb[l][q]; }
      }
    }
    workgroupBarrier();
  }

  // Epilogue: bias, activation, ⊙ mulIn, + residual; rows tr·TM + i, columns tc·TN + j.
  let M = uniforms.M;
  let N = uniforms.N;
  for (var i = 0; i < TM; i++) {
    let m = m0 + tr * TM + i;
    if (m < M) {
      for (var j = 0; j < TN; j++) {
        let n = n0 + tc * TN + j;
        if (n < N) {
          var v = acc[i * ${tn / 4} + j / 4][j % 4];
          ${p.bias ? 'v = v + biasIn[n];' : ''}
          v = act(v);
          ${p.multiply ? 'v = v * mulIn[m * N + n];' : ''}
          ${p.residual ? 'v = v + residualIn[m * N + n];' : ''}
          result[m * N + n] = v;
        }
      }
    }
  }
}
`;
}

class MatMulFusedProgram implements WebGPUProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [2], y: [1], z: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  uniforms = 'M : i32, N : i32, K : i32,';

  constructor(private readonly params: ProgramParams, M: number, N: number, grid: [number, number]) {
    const { tiles: t, vec4, activation, bias, multiply, residual } = params;
    this.outputShape = [1, M, N];
    this.dispatch = [grid[0], grid[1], 1];
    this.workgroupSize = [t.rt * t.ct, 1, 1];
    this.variableNames = ['AIn', 'BIn'];
    if (bias) this.variableNames.push('biasIn');
    if (multiply) this.variableNames.push('mulIn');
    if (residual) this.variableNames.push('residualIn');
    this.variableComponents = this.variableNames.map((_, i) => (vec4 && i < 2 ? 4 : 1));
    this.shaderKey = `infLlavaMatMulFused_${t.rt}x${t.tm}_${t.ct}x${t.tn}_${t.bk}_${t.doubleBuffer ? 'db' : 'sb'}_${vec4 ? 'v4' : 's'}_${activation}_${bias ? 'b' : ''}${multiply ? 'm' : ''}${residual ? 'r' : ''}`;
  }

  getUserCode(): string {
    return matMulFusedWGSL(this.params);
  }
}

interface KernelAttrs {
  M: number;
  N: number;
  K: number;
  rt: number;
  ct: number;
  tm: number;
  tn: number;
  bk: number;
  doubleBuffer: boolean;
  vec4: boolean;
  activation: LinearActivation;
  bias: boolean;
  multiply: boolean;
  residual: boolean;
  gridX: number;
  gridY: number;
}

const runKernel = defineWebGPUKernel<KernelAttrs>(MATMUL_FUSED_KERNEL, (ins, backend, a) => {
  const tiles: MatMulTiles = { rt: a.rt, ct: a.ct, tm: a.tm, tn: a.tn, bk: a.bk, bm: a.rt * a.tm, bn: a.ct * a.tn, doubleBuffer: a.doubleBuffer, sharedBytes: 0 };
  const program = new MatMulFusedProgram(
    { tiles, vec4: a.vec4, activation: a.activation, bias: a.bias, multiply: a.multiply, residual: a.residual },
    a.M, a.N, [a.gridX, a.gridY],
  );
  const list = [ins.AIn!, ins.BIn!];
  if (a.bias) list.push(ins.biasIn!);
  if (a.multiply) list.push(ins.mulIn!);
  if (a.residual) list.push(ins.residualIn!);
  const uniforms: ProgramUniform = [
    { type: 'int32', data: [a.M] },
    { type: 'int32', data: [a.N] },
    { type: 'int32', data: [a.K] },
  ];
  return backend.runWebGPUProgram(program, list, 'float32', uniforms);
});

/** Epilogue operands of {@link matMulFused}: `bias` [N], `multiply` and `residual` [M, N]. */
export interface MatMulEpilogue {
  activation: LinearActivation;
  bias?: Tensor;
  multiply?: Tensor;
  residual?: Tensor;
}

/**
 * `act(x · wᵀ + bias) ⊙ multiply + residual` on the active webgpu backend: x [M, K], w [N, K],
 * returns one new tensor [M, N]. Inputs are assumed validated (src/ops/linear.ts).
 */
export function matMulFused(x: Tensor2D, w: Tensor2D, e: MatMulEpilogue, plan: MatMulPlan): Tensor2D {
  const attrs: KernelAttrs = {
    M: plan.M, N: plan.N, K: plan.K,
    rt: plan.rt, ct: plan.ct, tm: plan.tm, tn: plan.tn, bk: plan.bk, doubleBuffer: plan.doubleBuffer, vec4: plan.vec4,
    activation: e.activation, bias: !!e.bias, multiply: !!e.multiply, residual: !!e.residual,
    gridX: plan.grid[0], gridY: plan.grid[1],
  };
  const inputs: Record<string, Tensor> = { AIn: x, BIn: w };
  if (e.bias) inputs.biasIn = e.bias;
  if (e.multiply) inputs.mulIn = e.multiply;
  if (e.residual) inputs.residualIn = e.residual;
  const out = runKernel(inputs, attrs);
  const y = reshape(out, [plan.M, plan.N]) as Tensor2D;
  out.dispose();
  return y;
}
