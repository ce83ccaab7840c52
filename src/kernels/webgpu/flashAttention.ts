/**
 * Fused attention forward for tfjs-backend-webgpu (FlashAttention-2's recurrence in WGSL, fp32):
 *
 *   out = softmax(q·kᵀ·scale + causal mask)·v      q [B, H, Tq, dk], k [B, Hkv, Tk, dk] (or kT [B, Hkv, dk, Tk]), v [B, Hkv, Tk, dv]
 *
 * One workgroup of 64 threads owns one query block of one kv head's group: grouped-query
 * attention stacks the `rep = H/Hkv` query heads of a kv head as the rows of one matrix
 * (`[B, H, Tq, dk]` is `[B·Hkv, rep·Tq, dk]` in memory, nothing is copied), so the key and value
 * tiles a workgroup streams serve all `rep` heads. Per key tile of BK keys:
 *   1. the tile of k (either layout) goes to workgroup memory;
 *   2. each thread computes TM × TN scores (rows rg + RG·i, keys cg + C·j) from the block's
 *      pre-scaled q (loaded once, in workgroup memory) and the tile, masks them (causal,
 *      bottom-right aligned: query i sees keys j ≤ Tk − Tq + i; tile tail), and writes its
 *      partial row maxima;
 *   3. online softmax: m' = max(m, tile max), the accumulator and l rescaled by e^(m−m'),
 *      p = e^(s−m') written to workgroup memory; the v tile replaces the k tile;
 *   4. each thread adds p·v to its TM rows × TV4 vec4 columns (c4 = cg + C·t), summing the p
 *      of its rows into l on the way.
 * Key tiles after the last key any row of the block sees are never visited (causal skip).
 * k and v may hold more keys per head than are attended to (`keyStride` > Tk: a preallocated KV
 * cache `[B, Hkv, Smax, d]`, src/ops/kvCache.ts): the kernel uses the first Tk (uniform `nk`; the
 * buffer length `tk` is only the row stride), never reads past them, and places causal queries at
 * the last Tq of those Tk positions.
 * No score matrix exists outside workgroup memory: the output (or, split-K, the partial results
 * below) is the only buffer written.
 *
 * Split-K (few query blocks over many keys: a decode step, Tq = 1): the keys are cut into
 * `splits` chunks of whole tiles, one workgroup per (query block, chunk, group); each writes
 * its unnormalised partial `(acc, m, l)` to `[B·Hkv, splits, rows, dv + 2]`, and
 * {@link ./flashAttentionCombine.ts} merges them: M = max m_s, out = Σ e^(m_s−M)·acc_s / Σ e^(m_s−M)·l_s.
 *
 * Registered as the tfjs kernel {@link FLASH_ATTENTION_KERNEL} for 'webgpu' (lazily, on first
 * use) and run through `engine().runKernel`, so tf.profile, tf.memory and tidy see its output
 * like any other op's. It has no gradient: `src/ops/attention.ts` uses it only while no gradient
 * tape is recording. Nothing here imports tfjs-backend-webgpu (an optional peer): the program
 * is a plain object the backend's `runWebGPUProgram` compiles.
 */
import type { Tensor4D } from '@tensorflow/tfjs-core';
import { runFlashAttentionCombine } from './flashAttentionCombine.js';
import { ceilDiv, defineWebGPUKernel, type ProgramUniform, type WebGPULimits, type WebGPUProgramLike } from './program.js';

export const FLASH_ATTENTION_KERNEL = 'InfLlavaFlashAttention';

/** Largest head widths the kernel takes (registers hold TM × ⌈dv/4C⌉ vec4 accumulators per thread). */
export const FUSED_MAX_HEAD_WIDTH = 256;
/** Threads per workgroup (RG row groups × C column groups) in every configuration. */
const THREADS = 64;
/** Accumulator floats per thread we allow (TM · TV4 · 4): beyond this registers spill. */
const MAX_ACC = 64;
/** Split-K: workgroups we aim for (≈ 4 per SM of an H200's 132) when a problem has few query blocks. */
const SPLIT_TARGET_WORKGROUPS = 528;
const MAX_SPLITS = 64;
/** Split-K partials may take max(2 × the output, this many bytes). */
const SPLIT_PARTIAL_BYTES = 2 * 2 ** 20;

/** The tile geometry of one launch. */
export interface FlashAttentionTiles {
  /** Query rows per workgroup (RG row groups × TM rows per thread). */
  bq: number;
  /** Keys per tile (C column groups × TN keys per thread). */
  bk: number;
  rg: number;
  tm: number;
  c: number;
  tn: number;
  /** vec4 output columns per thread: ⌈dv / 4C⌉. */
  tv4: number;
  /** Workgroup memory of the shader, bytes. */
  sharedBytes: number;
}

/** The tiles of a launch from its flat attributes (the shared-memory size is the program's to compute). */
export function tilesOf(a: Omit<FlashAttentionTiles, 'sharedBytes'>): FlashAttentionTiles {
  return { bq: a.bq, bk: a.bk, rg: a.rg, tm: a.tm, c: a.c, tn: a.tn, tv4: a.tv4, sharedBytes: 0 };
}

/** What the fused path does for one call. */
export interface FlashAttentionPlan extends FlashAttentionTiles {
  /** Stacked query rows per kv head: (H/Hkv)·Tq. */
  rows: number;
  /** Workgroups along the rows: ⌈rows / bq⌉. */
  queryBlocks: number;
  /** Key chunks per query block (1: no split-K, the kernel writes the output directly). */
  splits: number;
  /** Keys per chunk (a multiple of bk; ≥ Tk when splits = 1). */
  chunkKeys: number;
  /** Workgroups of the main dispatch: queryBlocks × splits × B·Hkv. */
  workgroups: number;
}

export interface FlashAttentionShape {
  B: number;
  H: number;
  Hkv: number;
  Tq: number;
  /** Keys attended to (the first Tk of each head's keys). */
  Tk: number;
  dk: number;
  dv: number;
  /** Keys k and v hold per head when more than Tk (a preallocated KV cache `[B, Hkv, Smax, d]`: Smax). Default Tk. */
  keyStride?: number;
}

/** Row groups, rows per thread, column groups, keys per thread — by preference. */
type Geometry = [rg: number, tm: number, c: number, tn: number];
const LARGE: Geometry[] = [[8, 4, 8, 4], [8, 4, 8, 2], [8, 2, 8, 4], [8, 2, 8, 2], [8, 1, 8, 4], [8, 1, 8, 2], [8, 1, 8, 1], [4, 1, 16, 1]];
const BY_ROWS: Array<[maxRows: number, first: Geometry[]]> = [
  [4, [[4, 1, 16, 2], [4, 1, 16, 1]]],
  [8, [[8, 1, 8, 4], [8, 1, 8, 2]]],
  [16, [[8, 2, 8, 4], [8, 2, 8, 2]]],
];

function sharedBytes(bq: number, bk: number, c: number, dk4: number, dv4: number): number {
  // qs: bq rows of dk4+1 vec4; kvs: bk rows of max(dk4, dv4)+1 vec4; ps: bq rows of bk/4+1 vec4; mx: bq·c f32; 2 i32.
  return 16 * (bq * (dk4 + 1) + bk * (Math.max(dk4, dv4) + 1) + bq * (bk / 4 + 1)) + 4 * bq * c + 8;
}

/** The tile geometry for `rows` stacked query rows of widths dk, dv within `maxShared` bytes of workgroup memory, or why none fits. */
export function flashAttentionTiles(rows: number, dk: number, dv: number, maxShared: number): FlashAttentionTiles | string {
  if (dk > FUSED_MAX_HEAD_WIDTH || dv > FUSED_MAX_HEAD_WIDTH) return `head widths above ${FUSED_MAX_HEAD_WIDTH} (dk ${dk}, dv ${dv})`;
  const dk4 = ceilDiv(dk, 4);
  const dv4 = ceilDiv(dv, 4);
  const first = BY_ROWS.find(([maxRows]) => rows <= maxRows)?.[1] ?? [];
  for (const [rg, tm, c, tn] of [...first, ...LARGE]) {
    const tv4 = ceilDiv(dv4, c);
    if (tm * tv4 * 4 > MAX_ACC) continue;
    const bq = rg * tm;
    const bk = c * tn;
    const bytes = sharedBytes(bq, bk, c, dk4, dv4);
    if (bytes <= maxShared) return { bq, bk, rg, tm, c, tn, tv4, sharedBytes: bytes };
  }
  return `no tile fits ${maxShared} bytes of workgroup memory at dk ${dk}, dv ${dv}`;
}

/**
 * The launch plan for these shapes on a device with these limits, or the reason the fused
 * kernel cannot take them. `splits` forces the number of key chunks (1: no split-K).
 */
export function flashAttentionPlan(s: FlashAttentionShape, limits: WebGPULimits, splits?: number): FlashAttentionPlan | string {
  const { B, H, Hkv, Tq, Tk, dk, dv } = s;
  const rows = (H / Hkv) * Tq;
  const G = B * Hkv;
  const tiles = flashAttentionTiles(rows, dk, dv, limits.maxComputeWorkgroupStorageSize);
  if (typeof tiles === 'string') return tiles;
  const queryBlocks = ceilDiv(rows, tiles.bq);
  const keyTiles = ceilDiv(Tk, tiles.bk);
  const maxDim = limits.maxComputeWorkgroupsPerDimension;
  if (queryBlocks > maxDim || G > maxDim) return `grid ${queryBlocks} × ${G} exceeds ${maxDim} workgroups per dimension`;
  const Tmem = Math.max(Tk, s.keyStride ?? Tk);
  const largest = Math.max(B * H * Tq * dk, G * Tmem * dk, G * Tmem * dv, B * H * Tq * dv);
  if (largest * 4 > limits.maxStorageBufferBindingSize || largest >= 2 ** 31) return `a tensor of ${largest} elements exceeds the storage binding limit`;
  let n: number;
  if (splits !== undefined) n = Math.min(splits, keyTiles, maxDim);
  else if (queryBlocks <= 2 && G * queryBlocks < SPLIT_TARGET_WORKGROUPS / 2 && keyTiles >= 2) {
    const outBytes = B * H * Tq * dv * 4;
    const perSplit = G * rows * (dv + 2) * 4;
    const memCap = Math.max(1, Math.floor(Math.max(2 * outBytes, SPLIT_PARTIAL_BYTES) / perSplit));
    n = Math.min(MAX_SPLITS, keyTiles, ceilDiv(SPLIT_TARGET_WORKGROUPS, G * queryBlocks), memCap, maxDim);
  } else n = 1;
  const chunkTiles = ceilDiv(keyTiles, Math.max(1, n));
  n = ceilDiv(keyTiles, chunkTiles); // no empty chunk
  return { ...tiles, rows, queryBlocks, splits: n, chunkKeys: chunkTiles * tiles.bk, workgroups: queryBlocks * n * G };
}

interface ProgramParams {
  dk: number;
  dv: number;
  tiles: FlashAttentionTiles;
  causal: boolean;
  keysTransposed: boolean;
  split: boolean;
  /**
   * The number of keys used is the uniform `nk` (≤ `tk`, the keys k and v hold per head: a
   * preallocated KV cache); without it, all `tk`. (The windowed kernel's template has no `nk`.)
   */
  validKeys?: boolean;
}

/**
 * The WGSL of one configuration. Sizes that change from call to call (rows, Tq, Tk, chunk,
 * splits, scale) are uniforms, so a decode loop whose cache grows by one key per step reuses
 * one compiled pipeline; tile sizes and head widths are constants (they size register arrays).
 */
export function flashAttentionWGSL(p: ProgramParams): string {
  const { dk, dv, causal, keysTransposed, split } = p;
  const { bq, bk, rg, tm, c, tn, tv4 } = p.tiles;
  const dk4 = ceilDiv(dk, 4);
  const dv4 = ceilDiv(dv, 4);
  return /* wgsl */ `
// ---- fused attention: ${causal ? 'causal' : 'full'}, keys ${keysTransposed ? '[dk, Tk]' : '[Tk, dk]'}, ${split ? 'split-K partials' : 'direct output'}
const DK : i32 = ${dk};
const DV : i32 = ${dv};
const DK4 : i32 = ${dk4};
const DV4 : i32 = ${dv4};
const BQ : i32 = ${bq};        // query rows per workgroup
const BK : i32 = ${bk};        // keys per tile
const RG : i32 = ${rg};        // row groups (thread = rg·C + cg)
const C : i32 = ${c};          // column groups
const TM : i32 = ${tm};        // rows per thread: rg + RG·i
const TN : i32 = ${tn};        // keys per thread: cg + C·j
const TV4 : i32 = ${tv4};      // vec4 output columns per thread: cg + C·t
const NT : i32 = RG * C;       // threads
const QS : i32 = DK4 + 1;      // row strides in vec4, padded by one against bank conflicts
const KS : i32 = ${Math.max(dk4, dv4)} + 1;
const PS : i32 = BK / 4 + 1;
const MASKED : f32 = -1.0e30;  // score of a masked key; e^(MASKED - m) is 0 and never NaN

var<workgroup> qs : array<vec4<f32>, ${bq * (dk4 + 1)}>;                       // q block · scale
var<workgroup> kvs : array<vec4<f32>, ${bk * (Math.max(dk4, dv4) + 1)}>;       // k tile, then v tile
var<workgroup> ps : array<vec4<f32>, ${bq * (bk / 4 + 1)}>;                    // p = e^(s - m)
var<workgroup> mx : array<f32, ${bq * c}>;                                     // partial row maxima
var<workgroup> wgFirst : i32;
var<workgroup> wgStop : i32;

${'fn main()'} {
  let tid = i32(localIndex);
  let cg = tid % C;
  let rg = tid / C;
  let r0 = i32(workgroupId.x) * BQ;   // first stacked row of the block
  let chunk = i32(workgroupId.y);     // key chunk (split-K), 0 otherwise
  let g = i32(workgroupId.z);         // batch · Hkv + kv head
  let rows = uniforms.rows;
  let tq = uniforms.tq;
  let tk = uniforms.tk;               // keys per kv head in memory (the row stride of k and v)
  let nk = ${p.validKeys ? 'uniforms.nk;       // keys used: the first nk (a preallocated cache holds more)' : 'tk;'}

  // The keys this workgroup visits: its chunk, cut at the last key a row of the block sees.
  if (tid == 0) {
    let r1 = min(r0 + BQ, rows) - 1;
    var kEnd = nk;
    ${causal ? `// row r is query r % Tq of head r / Tq; a block spanning two heads needs every key
    let iMax = select(tq - 1, r1 % tq, r0 / tq == r1 / tq);
    kEnd = min(nk, nk - tq + iMax + 1);` : ''}
    wgFirst = chunk * uniforms.chunk;
    wgStop = min(kEnd, wgFirst + uniforms.chunk);
  }
  let kFirst = workgroupUniformLoad(&wgFirst);
  let kStop = workgroupUniformLoad(&wgStop);

  // q block → workgroup memory, scaled; rows past the end and columns past dk are 0.
  for (var e = tid; e < BQ * DK4 * 4; e += NT) {
    let rr = e / (DK4 * 4);
    let d = e % (DK4 * 4);
    var x = 0.0;
    if (r0 + rr < rows && d < DK) { x = qIn[(g * rows + r0 + rr) * DK + d] * uniforms.scale; }
    qs[rr * QS + d / 4][d % 4] = x;
  }

  // Per thread: TM rows' running max, sum and TV4 vec4 accumulators; the key limit of each row.
  var m : array<f32, ${tm}>;
  var l : array<f32, ${tm}>;
  var acc : array<vec4<f32>, ${tm * tv4}>;
  var lim : array<i32, ${tm}>;
  for (var t = 0; t < TM * TV4; t++) { acc[t] = vec4<f32>(0.0); }
  for (var i = 0; i < TM; i++) {
    m[i] = MASKED;
    l[i] = 0.0;
    ${causal ? 'lim[i] = min(kStop, nk - tq + ((r0 + rg + RG * i) % tq) + 1);' : 'lim[i] = kStop;'}
  }

  for (var k0 = kFirst; k0 < kStop; k0 += BK) {
    // 1. k tile → kvs (keys past Tk are 0)
    ${keysTransposed
      ? `for (var e = tid; e < BK * DK4 * 4; e += NT) {
      let jj = e % BK;          // consecutive threads read consecutive keys of kT [dk, Tk]
      let d = e / BK;
      var x = 0.0;
      if (k0 + jj < nk && d < DK) { x = kIn[(g * DK + d) * tk + k0 + jj]; }
      kvs[jj * KS + d / 4][d % 4] = x;
    }`
      : `for (var e = tid; e < BK * DK4 * 4; e += NT) {
      let jj = e / (DK4 * 4);
      let d = e % (DK4 * 4);
      var x = 0.0;
      if (k0 + jj < nk && d < DK) { x = kIn[(g * tk + k0 + jj) * DK + d]; }
      kvs[jj * KS + d / 4][d % 4] = x;
    }`}
    workgroupBarrier();

    // 2. scores s = (q·scale)·kᵀ for rows rg + RG·i, keys cg + C·j
    var s : array<f32, ${tm * tn}>;
    for (var e = 0; e < TM * TN; e++) { s[e] = 0.0; }   // explicit: SwiftShader kept the last tile's values without it
    for (var d4 = 0; d4 < DK4; d4++) {
      var qv : array<vec4<f32>, ${tm}>;
      for (var i = 0; i < TM; i++) { qv[i] = qs[(rg + RG * i) * QS + d4]; }
      for (var j = 0; j < TN; j++) {
        let kv = kvs[(cg + C * j) * KS + d4];
        for (var i = 0; i < TM; i++) { s[i * TN + j] += dot(qv[i], kv); }
      }
    }
    for (var i = 0; i < TM; i++) {
      var pm = MASKED;
      for (var j = 0; j < TN; j++) {
        if (k0 + cg + C * j >= lim[i]) { s[i * TN + j] = MASKED; }
        pm = max(pm, s[i * TN + j]);
      }
      mx[(rg + RG * i) * C + cg] = pm;
    }
    workgroupBarrier();

    // 3. online softmax: new row max, rescale, p = e^(s - m') (exactly 0 where masked)
    for (var i = 0; i < TM; i++) {
      var tileMax = MASKED;
      for (var c2 = 0; c2 < C; c2++) { tileMax = max(tileMax, mx[(rg + RG * i) * C + c2]); }
      let mNew = max(m[i], tileMax);
      let corr = exp(m[i] - mNew);
      m[i] = mNew;
      l[i] *= corr;
      for (var t = 0; t < TV4; t++) { acc[i * TV4 + t] *= corr; }
      for (var j = 0; j < TN; j++) {
        let kk = cg + C * j;
        ps[(rg + RG * i) * PS + kk / 4][kk % 4] = select(exp(s[i * TN + j] - mNew), 0.0, k0 + kk >= lim[i]);
      }
    }
    // v tile → kvs (every thread is past step 2, so k is no longer read)
    for (var e = tid; e < BK * DV4 * 4; e += NT) {
      let jj = e / (DV4 * 4);
      let d = e % (DV4 * 4);
      var x = 0.0;
      if (k0 + jj < nk && d < DV) { x = vIn[(g * tk + k0 + jj) * DV + d]; }
      kvs[jj * KS + d / 4][d % 4] = x;
    }
    workgroupBarrier();

    // 4. acc += p·v; l += Σ p
    for (var k4 = 0; k4 < BK / 4; k4++) {
      var pv : array<vec4<f32>, ${tm}>;
      for (var i = 0; i < TM; i++) {
        pv[i] = ps[(rg + RG * i) * PS + k4];
        l[i] += (pv[i].x + pv[i].y) + (pv[i].z + pv[i].w);
      }
      for (var kq = 0; kq < 4; kq++) {
        for (var t = 0; t < TV4; t++) {
          let c4 = cg + C * t;
          if (c4 < DV4) {
            let vv = kvs[(k4 * 4 + kq) * KS + c4];
            for (var i = 0; i < TM; i++) { acc[i * TV4 + t] += pv[i][kq] * vv; }
          }
        }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0; i < TM; i++) {
    let r = r0 + rg + RG * i;
    if (r < rows) {
      ${split
        ? `let base = ((g * uniforms.splits + chunk) * rows + r) * (DV + 2);   // [G, splits, rows, dv + 2]: acc, m, l
      for (var t = 0; t < TV4; t++) {
        let c4 = cg + C * t;
        for (var q = 0; q < 4; q++) {
          if (c4 * 4 + q < DV) { result[base + c4 * 4 + q] = acc[i * TV4 + t][q]; }
        }
      }
      if (cg == 0) {
        result[base + DV] = m[i];
        result[base + DV + 1] = l[i];
      }`
        : `let base = (g * rows + r) * DV;   // [B, H, Tq, dv] = [G, rows, dv]
      for (var t = 0; t < TV4; t++) {
        let c4 = cg + C * t;
        for (var q = 0; q < 4; q++) {
          if (c4 * 4 + q < DV) { result[base + c4 * 4 + q] = acc[i * TV4 + t][q] / l[i]; }
        }
      }`}
    }
  }
}
`;
}

class FlashAttentionProgram implements WebGPUProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0], y: [1], z: [2] }; // 3 of 4 output dims: tfjs emits no coordinate helper; main() reads workgroupId
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  variableNames = ['qIn', 'kIn', 'vIn'];
  uniforms = 'rows : i32, tq : i32, tk : i32, chunk : i32, splits : i32, scale : f32, nk : i32,';

  constructor(
    private readonly params: ProgramParams,
    outputShape: number[],
    dispatch: [number, number, number],
  ) {
    const { dk, dv, tiles, causal, keysTransposed, split } = params;
    this.outputShape = outputShape;
    this.dispatch = dispatch;
    this.shaderKey = `infLlavaFlashAttention_${dk}_${dv}_${tiles.rg}x${tiles.tm}_${tiles.c}x${tiles.tn}_${causal ? 'causal' : 'full'}_${keysTransposed ? 'kT' : 'k'}_${split ? 'split' : 'direct'}`;
  }

  getUserCode(): string {
    return flashAttentionWGSL(this.params);
  }
}

/** The launch's attributes: sizes, flags and the tiles (flat, as tfjs attrs are). */
interface KernelAttrs extends Omit<FlashAttentionTiles, 'sharedBytes'>, Required<FlashAttentionShape> {
  causal: boolean;
  keysTransposed: boolean;
  scale: number;
  splits: number;
  chunkKeys: number;
  queryBlocks: number;
}

const runKernel = defineWebGPUKernel<KernelAttrs>(FLASH_ATTENTION_KERNEL, ({ qIn, kIn, vIn }, backend, a) => {
  const G = a.B * a.Hkv;
  const rows = (a.H / a.Hkv) * a.Tq;
  const split = a.splits > 1;
  const tiles = tilesOf(a);
  const program = new FlashAttentionProgram(
    { dk: a.dk, dv: a.dv, tiles, causal: a.causal, keysTransposed: a.keysTransposed, split, validKeys: true },
    split ? [G, a.splits, rows, a.dv + 2] : [a.B, a.H, a.Tq, a.dv],
    [a.queryBlocks, a.splits, G],
  );
  const uniforms: ProgramUniform = [
    { type: 'int32', data: [rows] },
    { type: 'int32', data: [a.Tq] },
    { type: 'int32', data: [a.keyStride] },
    { type: 'int32', data: [a.chunkKeys] },
    { type: 'int32', data: [a.splits] },
    { type: 'float32', data: [a.scale] },
    { type: 'int32', data: [a.Tk] },
  ];
  return backend.runWebGPUProgram(program, [qIn!, kIn!, vIn!], 'float32', uniforms);
});

/**
 * Runs the fused kernel (and, split-K, the combine kernel) on the active webgpu backend.
 * Inputs are assumed validated (src/ops/attention.ts); `plan` from {@link flashAttentionPlan}.
 * Returns one new tensor `[B, H, Tq, dv]`; the split-K partials are disposed before returning.
 */
export function flashAttention(
  q: Tensor4D,
  k: Tensor4D,
  v: Tensor4D,
  s: FlashAttentionShape & { causal: boolean; scale: number; keysTransposed: boolean },
  plan: FlashAttentionPlan,
): Tensor4D {
  const attrs: KernelAttrs = {
    B: s.B, H: s.H, Hkv: s.Hkv, Tq: s.Tq, Tk: s.Tk, dk: s.dk, dv: s.dv,
    causal: s.causal, keysTransposed: s.keysTransposed, scale: s.scale,
    bq: plan.bq, bk: plan.bk, rg: plan.rg, tm: plan.tm, c: plan.c, tn: plan.tn, tv4: plan.tv4,
    splits: plan.splits, chunkKeys: plan.splits > 1 ? plan.chunkKeys : Math.max(plan.chunkKeys, s.Tk), queryBlocks: plan.queryBlocks,
    keyStride: s.keyStride ?? s.Tk,
  };
  const out = runKernel({ qIn: q, kIn: k, vIn: v }, attrs) as Tensor4D;
  if (plan.splits === 1) return out;
  const combined = runFlashAttentionCombine(out, [s.B, s.H, s.Tq, s.dv]);
  out.dispose();
  return combined;
}
