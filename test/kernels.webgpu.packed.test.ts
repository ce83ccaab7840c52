// Issue 13's webgpu kernels for a GPU-resident LLaMA: the packed-weight linear layer
// (src/kernels/webgpu/packedGemv.ts and packedGemm.ts behind src/ops/packedLinear.ts: GEMV for ≤ 8
// rows, GEMM above, bf16 / q8 / q4), the in-place KV-cache write (src/kernels/webgpu/kvCacheWrite.ts
// behind src/ops/kvCache.ts) and attention over the valid prefix of a preallocated cache
// (`validKeys`). Each against a float64 reference written out loop by loop and against the
// composition, element by element; the GEMV's subgroup reduction against its workgroup-memory tree
// at each subgroup size the device offers. The packers here follow .scratch/packed-formats.md (the
// contract the CPU side implements in src/quant/) and are test-local on purpose, so that a bug
// shared by both sides cannot hide. On the other backends: the fused kernels are refused and the
// compositions are checked against the same references.
import '@tensorflow/tfjs'; // registers gradient kernels (same tfjs-core instance)
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, expect, it } from 'vitest';
import { webgpuSubgroupKernels, webgpuSubgroupSizes } from '../src/backends/webgpuDevice.js';
import { KV_CACHE_WRITE_KERNEL } from '../src/kernels/webgpu/kvCacheWrite.js';
import { PACKED_GEMM_KERNEL } from '../src/kernels/webgpu/packedGemm.js';
import { PACKED_GEMV_KERNEL } from '../src/kernels/webgpu/packedGemv.js';
import { subgroupKernelConfig } from '../src/kernels/webgpu/subgroups.js';
import { attention, attentionTransposedKeys } from '../src/ops/attention.js';
import { kvCacheWrite } from '../src/ops/kvCache.js';
import { type LinearActivation } from '../src/ops/linear.js';
import { dequantizePacked, packedLinear, packedLinearPlan, type PackedLinear, type PackedLinearOptions, type PackedWeightFormat } from '../src/ops/packedLinear.js';
import { describeEachBackend, expectThrowsClean } from './backends.js';
import { expectClose, expectExact, linearReference, randomData } from './oracle.js';

// Element-wise tolerances, |a − e| ≤ atol + rtol·|e|, from the worst elements measured on SwiftShader.
// A float32 dot product over K terms errs by about K·ε times its terms: at K 30 … 4096 the largest
// error was 9.5e-7 … 6.1e-5 (kernel or composition vs float64, kernel vs composition, subgroup vs
// tree alike), 0.15 to 0.5 of atol = 1e-7·K. Against a float64 reference and between two float32 results.
const dot = (K: number) => ({ rtol: 1e-5, atol: 1e-7 * K });
/** Attention over ≤ 40 keys (outputs ≤ 1), validKeys vs the sliced cache: the worst element uses 0.18 of it (1.2e-7). */
const ATTN = { rtol: 1e-6, atol: 3e-7 };
const f = Math.fround;

// ---------------------------------------------------------------------------------------------
// Test-local packers (the contract, written out) and the float64 reference
// ---------------------------------------------------------------------------------------------

interface Packed {
  format: PackedWeightFormat;
  data: Int32Array;
  scales?: Float32Array;
  mins?: Float32Array;
  /** The dequantised weight [N, K] the contract defines (float32 values, as float64). */
  dequant: Float64Array;
  G: number;
}

function groupSize(K: number): number {
  for (const g of [64, 32, 16, 8]) if (K % g === 0) return g;
  throw new Error(`K = ${K}`);
}

/** Upper 16 bits of each float32 (bf16 by truncation): values and bits. */
function toBf16(w: Float32Array): { values: Float32Array; bits: Uint16Array } {
  const u = new Uint32Array(w.length);
  const values = new Float32Array(u.buffer);
  const bits = new Uint16Array(w.length);
  const src = new Uint32Array(w.buffer, w.byteOffset, w.length);
  for (let i = 0; i < w.length; i++) {
    bits[i] = src[i]! >>> 16;
    u[i] = bits[i]! << 16;
  }
  return { values, bits };
}

function pack(format: PackedWeightFormat, w: Float32Array, N: number, K: number, G0?: number): Packed {
  if (format === 'bf16') {
    const { values, bits } = toBf16(w);
    const data = new Int32Array((N * K) / 2);
    for (let j = 0; j < data.length; j++) data[j] = bits[2 * j]! | (bits[2 * j + 1]! << 16);
    return { format, data, dequant: Float64Array.from(values), G: 0 };
  }
  const G = G0 ?? groupSize(K);
  const groups = K / G;
  const scales = new Float32Array(N * groups);
  const mins = format === 'q4' ? new Float32Array(N * groups) : undefined;
  const q = new Int32Array(N * K);
  const dequant = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < groups; g++) {
      const at = (k: number) => n * K + g * G + k;
      if (format === 'q8') {
        let amax = 0;
        for (let k = 0; k < G; k++) amax = Math.max(amax, Math.abs(w[at(k)]!));
        const s = f(amax / 127);
        scales[n * groups + g] = s;
        for (let k = 0; k < G; k++) {
          let v = 0;
          if (s !== 0) {
            const x = f(w[at(k)]! / s);
            v = Math.max(-127, Math.min(127, Math.sign(x) * Math.floor(Math.abs(x) + 0.5)));
          }
          q[at(k)] = v;
          dequant[at(k)] = f(v * s);
        }
      } else {
        let lo = Infinity;
        let hi = -Infinity;
        for (let k = 0; k < G; k++) {
          lo = Math.min(lo, w[at(k)]!);
          hi = Math.max(hi, w[at(k)]!);
        }
        const s = f((hi - lo) / 15);
        scales[n * groups + g] = s;
        mins![n * groups + g] = lo;
        for (let k = 0; k < G; k++) {
          let v = 0;
          if (s !== 0) {
            const x = f(f(w[at(k)]! - lo) / s);
            v = Math.max(0, Math.min(15, Math.floor(x + 0.5)));
          }
          q[at(k)] = v;
          dequant[at(k)] = f(f(v * s) + lo);
        }
      }
    }
  }
  const per = format === 'q8' ? 4 : 8;
  const bitsPer = 32 / per;
  const data = new Int32Array((N * K) / per);
  for (let j = 0; j < data.length; j++) {
    let word = 0;
    for (let b = 0; b < per; b++) word |= (q[j * per + b]! & ((1 << bitsPer) - 1)) << (bitsPer * b);
    data[j] = word;
  }
  return { format, data, scales, mins, dequant, G };
}

function layerOf(p: Packed, N: number, bias?: tf.Tensor1D): PackedLinear {
  const K = (p.data.length / N) * (p.format === 'bf16' ? 2 : p.format === 'q8' ? 4 : 8);
  const layer: PackedLinear = { format: p.format, data: tf.tensor2d(p.data, [N, p.data.length / N], 'int32') };
  if (p.scales) layer.scales = tf.tensor2d(p.scales, [N, K / p.G]);
  if (p.mins) layer.mins = tf.tensor2d(p.mins, [N, K / p.G]);
  if (bias) layer.bias = bias;
  return layer;
}

const disposeLayer = (l: PackedLinear) => tf.dispose([l.data, l.scales, l.mins].filter((t): t is tf.Tensor2D => !!t));

interface Epi {
  activation: LinearActivation;
  bias: boolean;
  multiply?: boolean;
  residual?: boolean;
}
const EPILOGUES: Epi[] = [
  { activation: 'none', bias: false },
  { activation: 'silu', bias: false, multiply: true },
  { activation: 'none', bias: true, residual: true },
  { activation: 'gelu', bias: true },
  { activation: 'quick-gelu', bias: false, residual: true },
  { activation: 'silu', bias: true, multiply: true, residual: true },
];
const label = (e: Epi) => `${e.activation}${e.bias ? '+bias' : ''}${e.multiply ? '⊙u' : ''}${e.residual ? '+res' : ''}`;

/** The rotary embedding on the way (two products and a sum) vs float64: largest error 5.8e-8 at outputs ≤ 1.4. */
const ROPE = { rtol: 1e-6, atol: 1e-7 };

const FORMATS: PackedWeightFormat[] = ['bf16', 'q8', 'q4'];
/** [K, N]: G 16, 64, 8 (and bf16's odd word count 15 at K 30), and a long row with few outputs. */
const SHAPES: Array<[K: number, N: number]> = [
  [48, 37],
  [64, 29],
  [200, 13],
  [4096, 5],
];
const ROWS = [1, 3, 8, 9, 77];
/** Group sizes the op accepts though the packing rule would pick a larger one: several scales per load unit. */
const SMALL_GROUPS: Array<[format: PackedWeightFormat, K: number, N: number, G: number]> = [
  ['q8', 64, 9, 8],
  ['q4', 128, 6, 8],
  ['q4', 64, 10, 16],
];

await describeEachBackend('packed linear, KV cache, attention over a preallocated cache (issue 13)', (backend) => {
  if (backend !== 'webgpu') {
    it(`packed linear: kernel 'fused' is refused off webgpu; the composition is close to float64`, async () => {
      const [M, K, N] = [3, 64, 11];
      for (const format of FORMATS) {
        const p = pack(format, randomData(N * K, 21), N, K);
        const xd = randomData(M * K, 22);
        const bd = randomData(N, 23);
        const rd = randomData(M * N, 24);
        const x = tf.tensor2d(xd, [M, K]);
        const b = tf.tensor1d(bd);
        const r = tf.tensor2d(rd, [M, N]);
        const layer = layerOf(p, N, b);
        expectThrowsClean(() => packedLinear(x, layer, { kernel: 'fused' }), new RegExp(`opts.kernel 'fused' cannot run here: it runs on the webgpu backend only \\(active: ${backend}\\)`));
        expect(packedLinearPlan(x, layer)).toBeNull();
        const before = tf.memory().numTensors;
        const y = packedLinear(x, layer, { activation: 'silu', residual: r });
        expect(tf.memory().numTensors - before).toBe(1);
        expectClose(await y.data(), linearReference(xd, p.dequant, bd, null, rd, M, K, N, 'silu'), dot(K).rtol, dot(K).atol, `${format} composition vs float64`);
        tf.dispose([x, b, r, y]);
        disposeLayer(layer);
      }
    });
  }

  if (backend === 'webgpu') {
    const subgroups = webgpuSubgroupKernels();
    if (!subgroups) console.warn("NOTICE: this webgpu device has no 'subgroups' feature (or was not made by registerWebGPUBackend): the GEMV's subgroup reduction is not tested");
    let epi = 0;
    for (const format of FORMATS) {
      for (const [K, N] of [...SHAPES, ...(format === 'bf16' ? ([[30, 7]] as Array<[number, number]>) : [])]) {
        it(`${format} [${N}, ${K}]: GEMV (M 1, 3, 8; ${subgroups ? 'subgroup and workgroup reductions' : 'workgroup reduction'}) and GEMM (M 9, 77) close to float64 and to the composition`, async () => {
          const p = pack(format, randomData(N * K, K + N), N, K);
          const bd = randomData(N, 3);
          const b = tf.tensor1d(bd);
          const layer = layerOf(p, N, b);
          for (const M of ROWS) {
            if (K === 4096 && M === 77) continue; // slow on SwiftShader and nothing new
            const e = EPILOGUES[epi++ % EPILOGUES.length]!;
            const xd = randomData(M * K, 5 + M);
            const ud = randomData(M * N, 6);
            const rd = randomData(M * N, 7);
            const lead = M === 77 ? [7, 11] : [M];
            const x = tf.tensor(xd, [...lead, K]);
            const u = tf.tensor(ud, [...lead, N]);
            const r = tf.tensor(rd, [...lead, N]);
            const l = e.bias ? layer : { ...layer, bias: undefined };
            const opts: PackedLinearOptions = { activation: e.activation };
            if (e.multiply) opts.multiply = u;
            if (e.residual) opts.residual = r;
            const ref = linearReference(xd, p.dequant, e.bias ? bd : null, e.multiply ? ud : null, e.residual ? rd : null, M, K, N, e.activation);
            const comp = packedLinear(x, l, { ...opts, kernel: 'composition' });
            const compData = await comp.data();
            comp.dispose();
            const what = `${format} [${N}, ${K}] M ${M} ${label(e)}`;
            expectClose(compData, ref, dot(K).rtol, dot(K).atol, `${what}: composition vs float64`);
            const reductions = M <= 8 ? (subgroups ? (['subgroup', 'workgroup'] as const) : (['workgroup'] as const)) : ([undefined] as const);
            for (const reduction of reductions) {
              const o = reduction ? { ...opts, reduction } : opts;
              const plan = packedLinearPlan(x, l, o);
              expect(plan?.kind).toBe(M <= 8 ? 'gemv' : 'gemm');
              const before = tf.memory().numTensors;
              let y: tf.Tensor | undefined;
              const info = await tf.profile(() => (y = packedLinear(x, l, o)));
              expect(tf.memory().numTensors - before, `${what}: one new tensor`).toBe(1);
              expect(info.kernels.map((k) => k.name).filter((n) => n !== 'Reshape'), `${what}: one kernel`).toEqual([M <= 8 ? PACKED_GEMV_KERNEL : PACKED_GEMM_KERNEL]);
              expect(y!.shape).toEqual([...lead, N]);
              const got = await y!.data();
              y!.dispose();
              const tag = `${what}${reduction ? ` ${reduction}` : ''}`;
              expectClose(got, ref, dot(K).rtol, dot(K).atol, `${tag} vs float64`);
              expectClose(got, compData, dot(K).rtol, dot(K).atol, `${tag} vs composition`);
            }
            tf.dispose([x, u, r]);
          }
          tf.dispose(b);
          disposeLayer(layer);
        });
      }
    }
  }

  if (backend === 'webgpu') {
    it('packed linear: group sizes below the packing rule (several scales per load unit), GEMV both reductions and GEMM', async () => {
      for (const [format, K, N, G] of SMALL_GROUPS) {
        const p = pack(format, randomData(N * K, 31), N, K, G);
        const layer = layerOf(p, N);
        for (const M of [1, 4, 12]) {
          const xd = randomData(M * K, 32 + M);
          const x = tf.tensor2d(xd, [M, K]);
          const ref = linearReference(xd, p.dequant, null, null, null, M, K, N, 'none');
          for (const reduction of M <= 8 ? (['subgroup', 'workgroup'] as const).filter((r) => r === 'workgroup' || webgpuSubgroupKernels()) : [undefined]) {
            const y = packedLinear(x, layer, reduction ? { kernel: 'fused', reduction } : { kernel: 'fused' });
            expectClose(await y.data(), ref, dot(K).rtol, dot(K).atol, `${format} [${N}, ${K}] G ${G} M ${M} ${reduction ?? 'gemm'} vs float64`);
            y.dispose();
          }
          x.dispose();
        }
        disposeLayer(layer);
      }
    });

    const subgroups = webgpuSubgroupKernels();
    // The subgroup reduction against the workgroup-memory tree at every subgroup size the device
    // offers: each power of two in [subgroupMinSize, subgroupMaxSize] required with @subgroup_size
    // where the device has 'subgroup-size-control', and the implementation's own choice. SwiftShader
    // offers only 4 (min = max), so there the required size is 4 and equals its own choice.
    const sizes = webgpuSubgroupSizes();
    const offered: number[] = [];
    if (sizes?.control) for (let n = sizes.min; n <= sizes.max; n *= 2) offered.push(n);
    const range = sizes ? `the adapter offers ${sizes.min}${sizes.max > sizes.min ? ` to ${sizes.max}` : ' only'}` : 'the adapter reports no sizes';
    afterEach(() => {
      delete subgroupKernelConfig.size;
    });
    for (const size of subgroups ? [0, ...offered] : []) {
      const title = size
        ? `subgroup size ${size} (required with @subgroup_size; ${range})`
        : `subgroup size of the implementation's choice (${range}${sizes?.control ? '' : "; no 'subgroup-size-control', so no other size can be required"})`;
      it(`GEMV at ${title}: subgroup reduction = the workgroup-memory tree, element-wise (bf16 / q8 / q4, 32 to 128 threads, M 1, 3, 8)`, async () => {
        if (size) subgroupKernelConfig.size = size;
        for (const format of FORMATS) {
          for (const [K, N] of [[4096, 5], [200, 13], [48, 37]] as Array<[number, number]>) {
            const p = pack(format, randomData(N * K, K + N), N, K);
            const b = tf.tensor1d(randomData(N, 3));
            const layer = layerOf(p, N, b);
            for (const M of [1, 3, 8]) {
              const x = tf.tensor2d(randomData(M * K, 5 + M), [M, K]);
              const r = tf.tensor2d(randomData(M * N, 7), [M, N]);
              const opts: PackedLinearOptions = { activation: 'silu', residual: r, kernel: 'fused' };
              const plan = packedLinearPlan(x, layer, { ...opts, reduction: 'workgroup' });
              if (plan?.kind === 'gemv' && plan.T >= size) {
                const what = `${format} [${N}, ${K}] M ${M} (${plan.T} threads), size ${size || 'default'}`;
                expect(packedLinearPlan(x, layer, { ...opts, reduction: 'subgroup' })).toMatchObject({ reduction: 'subgroup', subgroupSize: size });
                const run = async (reduction: 'subgroup' | 'workgroup') => {
                  const y = packedLinear(x, layer, { ...opts, reduction });
                  const data = await y.data();
                  y.dispose();
                  return data;
                };
                const sg = await run('subgroup');
                expectClose(sg, await run('workgroup'), dot(K).rtol, dot(K).atol, `${what}: subgroup vs workgroup reduction`);
                if (size && sizes!.min === sizes!.max) {
                  // The only size there is: requiring it changes nothing.
                  delete subgroupKernelConfig.size;
                  expectExact(sg, await run('subgroup'), `${what}: required = default size`);
                  subgroupKernelConfig.size = size;
                }
              }
              tf.dispose([x, r]);
            }
            tf.dispose(b);
            disposeLayer(layer);
          }
        }
        const keys = Object.keys((tf.backend() as unknown as { pipelineCache: Record<string, unknown> }).pipelineCache);
        expect(keys.some((k) => k.startsWith('infLlavaPackedGemv_') && k.includes(`_subgroup${size || ''}_`)), `a GEMV pipeline with subgroup size ${size || 'default'}`).toBe(true);
      });
    }
    if (subgroups) {
      it('GEMV: a subgroupKernelConfig.size the device cannot honour is an error naming the setting, nothing left behind', () => {
        const [K, N] = [64, 4];
        const layer = layerOf(pack('q8', randomData(N * K, 51), N, K), N);
        const x = tf.zeros([2, K]);
        const max = sizes?.max ?? 4;
        subgroupKernelConfig.size = max * 2;
        expectThrowsClean(() => packedLinear(x, layer, { reduction: 'subgroup' }), new RegExp(`packedLinear: subgroupKernelConfig.size ${max * 2} cannot be required: `));
        tf.dispose(x);
        disposeLayer(layer);
      });
    }

    it('packed linear: variant forced (GEMM for 1 row), dequantizePacked exact, the composition on webgpu', async () => {
      const [M, K, N] = [2, 64, 7];
      for (const format of FORMATS) {
        const p = pack(format, randomData(N * K, 41), N, K);
        const layer = layerOf(p, N);
        const w = dequantizePacked(layer);
        const wd = await w.data();
        const diff = Array.from(wd).findIndex((v, i) => v !== p.dequant[i]);
        expect(diff, `${format}: element ${diff} is ${wd[diff]}, expected ${p.dequant[diff]}`).toBe(-1);
        w.dispose();
        const xd = randomData(M * K, 42);
        const x = tf.tensor2d(xd, [M, K]);
        const y = packedLinear(x, layer, { kernel: 'fused', variant: 'gemm' });
        expectClose(await y.data(), linearReference(xd, p.dequant, null, null, null, M, K, N, 'none'), dot(K).rtol, dot(K).atol, `${format} GEMM forced for ${M} rows vs float64`);
        y.dispose();
        x.dispose();
        disposeLayer(layer);
      }
    });
  }

  it('packed linear: clear errors naming the argument, nothing left behind', () => {
    const [K, N] = [64, 4];
    const p = pack('q4', randomData(N * K, 51), N, K);
    const layer = layerOf(p, N);
    const x = tf.zeros([2, K]);
    const xi = tf.zeros([2, K], 'int32');
    const b = tf.zeros([N + 1]);
    const r = tf.zeros([2, N + 1]);
    const data8 = tf.zeros([N, K / 4], 'int32');
    const dataF = tf.zeros([N, K / 8]);
    const s9 = tf.zeros([N, 9]);
    const bf = tf.zeros([N, K / 2], 'int32') as tf.Tensor2D;
    const x9 = tf.zeros([9, K]);
    expectThrowsClean(() => packedLinear(x, { ...layer, format: 'q3' as 'q4' }), /packedLinear: layer.format must be one of bf16, q8, q4, got "q3"/);
    expectThrowsClean(() => packedLinear(x, { ...layer, data: dataF as tf.Tensor2D }), /packedLinear: layer.data must be int32, got float32/);
    expectThrowsClean(() => packedLinear(x, { ...layer, data: data8 as tf.Tensor2D }), /packedLinear: x's last axis is K = 64 but layer.data is \[4, 16\]: q4 holds 8 weights per word, so K = 128/);
    expectThrowsClean(() => packedLinear(x, { ...layer, mins: undefined }), /packedLinear: q4 needs layer.mins, a float32 tensor \[N, K\/G\]/);
    expectThrowsClean(() => packedLinear(x, { format: 'q8', data: data8 as tf.Tensor2D, scales: layer.scales, mins: layer.mins }), /packedLinear: q8 takes no layer.mins/);
    expectThrowsClean(() => packedLinear(x, { format: 'bf16', data: bf, scales: layer.scales }), /packedLinear: bf16 takes no layer.scales/);
    expectThrowsClean(() => packedLinear(x, { ...layer, scales: s9 as tf.Tensor2D }), /packedLinear: layer.scales must be \[N, K\/G\] = \[4, K\/G\] with G one of 8, 16, 32, 64 \(K = 64\), got \[4, 9\]/);
    expectThrowsClean(() => packedLinear(x, { ...layer, bias: b as tf.Tensor1D }), /packedLinear: layer.bias must be \[N\] = \[4\], got \[5\]/);
    expectThrowsClean(() => packedLinear(xi, layer), /packedLinear: x must be float32, got int32/);
    expectThrowsClean(() => packedLinear(x, layer, { residual: r }), /packedLinear: opts.residual must have the output's shape \[2, 4\], got \[2, 5\]/);
    expectThrowsClean(() => packedLinear(x, layer, { activation: 'relu' as 'gelu' }), /packedLinear: opts.activation must be one of none, gelu, quick-gelu, silu/);
    expectThrowsClean(() => packedLinear(x, layer, { kernel: 'fast' as 'fused' }), /packedLinear: opts.kernel must be one of auto, fused, composition/);
    expectThrowsClean(() => packedLinear(x, layer, { variant: 'gemx' as 'gemv' }), /packedLinear: opts.variant must be one of auto, gemv, gemm/);
    expectThrowsClean(() => packedLinear(x, layer, { reduction: 'warp' as 'subgroup' }), /packedLinear: opts.reduction must be one of auto, subgroup, workgroup/);
    expectThrowsClean(() => packedLinear(x, layer, { bias: b } as PackedLinearOptions), /packedLinear: unknown option "bias"; options: activation, multiply, residual, kernel, variant, reduction/);
    if (backend === 'webgpu') {
      expectThrowsClean(() => packedLinear(x9, layer, { kernel: 'fused', variant: 'gemv' }), /packedLinear: opts.kernel 'fused' cannot run here: the GEMV takes 1 to 8 rows of x, got 9/);
    }
    tf.dispose([x, xi, b, r, data8, dataF, s9, bf, x9]);
    disposeLayer(layer);
  });

  // -------------------------------------------------------------------------------------------
  // KV cache written in place
  // -------------------------------------------------------------------------------------------

  /** cache with `update` ([B, H, T, hd] values) written at P, as a flat array. */
  function written(cache: Float32Array, upd: Float32Array, shape: number[], T: number, P: number): Float32Array {
    const [B, H, S, D] = shape as [number, number, number, number];
    const out = cache.slice();
    for (let g = 0; g < B * H; g++) for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) out[(g * S + P + t) * D + d] = upd[(g * T + t) * D + d]!;
    return out;
  }

  const CACHE = [2, 3, 10, 8];

  it(`kvCacheWrite: positions 0, middle, end; ${backend === 'webgpu' ? 'in place (the same tensor, no new tensor or byte, other positions untouched, a stale CPU copy dropped)' : "the composition (a new tensor); 'fused' refused"}`, async () => {
    const [B, H, S, D] = CACHE as [number, number, number, number];
    const cd = randomData(B * H * S * D, 61);
    for (const [P, T] of [[0, 4], [3, 2], [8, 2], [0, 10]] as const) {
      const ud = randomData(B * H * T * D, 62 + P);
      const cache = tf.tensor4d(cd, [B, H, S, D]);
      const upd = tf.tensor4d(ud, [B, H, T, D]);
      const want = written(cd, ud, CACHE, T, P);
      if (backend === 'webgpu') {
        expect(Array.from(await cache.data())).toEqual(Array.from(cd)); // leaves a CPU copy next to the GPU buffer
        const before = tf.memory();
        let out: tf.Tensor | undefined;
        const info = await tf.profile(() => (out = kvCacheWrite(cache, upd, P)));
        expect(out).toBe(cache);
        expect(tf.memory().numTensors).toBe(before.numTensors);
        expect(tf.memory().numBytes).toBe(before.numBytes);
        expect(info.kernels.map((k) => k.name)).toEqual([KV_CACHE_WRITE_KERNEL]);
        expect(Array.from(await cache.data()), `P ${P} T ${T}`).toEqual(Array.from(want));
        // a view shares the buffer: 'auto' copies (the view keeps its contents), 'fused' writes through it
        const c1 = tf.tensor4d(cd, [B, H, S, D]);
        const view = tf.reshape(c1, [B * H, S, D]);
        const copied = kvCacheWrite(c1, upd, P);
        expect(copied).not.toBe(c1);
        expect(Array.from(await copied.data())).toEqual(Array.from(want));
        expect(Array.from(await view.data()), 'auto: the view is untouched').toEqual(Array.from(cd));
        expect(kvCacheWrite(c1, upd, P, { kernel: 'fused' })).toBe(c1);
        expect(Array.from(await view.data()), 'fused: the view sees the write').toEqual(Array.from(want));
        tf.dispose([c1, view, copied]);
        // the composition on webgpu: a new tensor, the old one unchanged
        const c2 = tf.tensor4d(cd, [B, H, S, D]);
        const next = kvCacheWrite(c2, upd, P, { kernel: 'composition' });
        expect(next).not.toBe(c2);
        expect(Array.from(await next.data())).toEqual(Array.from(want));
        expect(Array.from(await c2.data())).toEqual(Array.from(cd));
        tf.dispose([c2, next]);
      } else {
        expectThrowsClean(() => kvCacheWrite(cache, upd, P, { kernel: 'fused' }), new RegExp(`kvCacheWrite: opts.kernel 'fused' cannot run here: it runs on the webgpu backend only \\(active: ${backend}\\)`));
        const before = tf.memory().numTensors;
        const next = kvCacheWrite(cache, upd, P);
        expect(tf.memory().numTensors - before).toBe(1);
        expect(next).not.toBe(cache);
        expect(Array.from(await next.data())).toEqual(Array.from(want));
        expect(Array.from(await cache.data())).toEqual(Array.from(cd));
        next.dispose();
      }
      tf.dispose([cache, upd]);
    }
  });

  it('kvCacheWrite: [B, T, kvH, hd] updates and the rotary embedding on the way, against float64 (and the composition)', async () => {
    const [B, H, S, D] = CACHE as [number, number, number, number];
    const [P, T] = [5, 3];
    const cd = randomData(B * H * S * D, 71);
    const ud = randomData(B * T * H * D, 72); // [B, T, H, D]
    const ang = Array.from({ length: T * (D / 2) }, (_, i) => (P + Math.floor(i / (D / 2))) * 10000 ** (-(2 * (i % (D / 2))) / D));
    const cosd = new Float32Array(T * D);
    const sind = new Float32Array(T * D);
    for (let t = 0; t < T; t++)
      for (let j = 0; j < D / 2; j++) {
        const a = ang[t * (D / 2) + j]!;
        cosd[t * D + j] = cosd[t * D + D / 2 + j] = Math.cos(a);
        sind[t * D + j] = -Math.sin(a);
        sind[t * D + D / 2 + j] = Math.sin(a);
      }
    // float64 reference: rotate, then write
    const want = Float64Array.from(cd);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let t = 0; t < T; t++)
          for (let d = 0; d < D; d++) {
            const row = ((b * T + t) * H + h) * D;
            const partner = (d + D / 2) % D;
            want[((b * H + h) * S + P + t) * D + d] = ud[row + d]! * cosd[t * D + d]! + ud[row + partner]! * sind[t * D + d]!;
          }
    const rope = { cos: tf.tensor2d(cosd, [T, D]), sinSigned: tf.tensor2d(sind, [T, D]) };
    const upd = tf.tensor4d(ud, [B, T, H, D]);
    for (const kernel of backend === 'webgpu' ? (['fused', 'composition'] as const) : (['composition'] as const)) {
      for (const withRope of [false, true]) {
        const cache = tf.tensor4d(cd, [B, H, S, D]);
        const out = kvCacheWrite(cache, upd, P, { layout: 'BTHD', kernel, ...(withRope ? { rope } : {}) });
        const got = await out.data();
        if (withRope) expectClose(got, want, ROPE.rtol, ROPE.atol, `${kernel} rope vs float64`);
        else {
          const ut = tf.transpose(upd, [0, 2, 1, 3]);
          const plain = written(cd, Float32Array.from(await ut.data()), CACHE, T, P);
          ut.dispose();
          expect(Array.from(got)).toEqual(Array.from(plain));
        }
        tf.dispose(out === cache ? [cache] : [cache, out]);
      }
    }
    tf.dispose([rope.cos, rope.sinSigned, upd]);
  });

  it('kvCacheWrite: errors (overflow past Smax, shapes, position, options), nothing written or left behind', async () => {
    const [B, H, S, D] = CACHE as [number, number, number, number];
    const cd = randomData(B * H * S * D, 81);
    const cache = tf.tensor4d(cd, [B, H, S, D]);
    const upd = tf.zeros([B, H, 3, D]) as tf.Tensor4D;
    expectThrowsClean(() => kvCacheWrite(cache, upd, 8), /kvCacheWrite: position 8 \+ 3 new positions = 11 exceeds the cache's 10 positions \(Smax\)/);
    expectThrowsClean(() => kvCacheWrite(cache, upd, -1), /kvCacheWrite: position must be a non-negative integer, got -1/);
    expectThrowsClean(() => kvCacheWrite(cache, upd, 1.5), /kvCacheWrite: position must be a non-negative integer, got 1.5/);
    const wrongH = tf.zeros([B, H + 1, 3, D]) as tf.Tensor4D;
    expectThrowsClean(() => kvCacheWrite(cache, wrongH, 0), /kvCacheWrite: update \[2, 4, 3, 8\] \(\[B, kvH, T, hd\]\) does not match the cache \[2, 3, 10, 8\]/);
    const i32 = tf.zeros([B, H, 3, D], 'int32') as tf.Tensor4D;
    expectThrowsClean(() => kvCacheWrite(cache, i32, 0), /kvCacheWrite: update must be float32, got int32/);
    expectThrowsClean(() => kvCacheWrite(cache, cache, 0), /kvCacheWrite: update must not be the cache itself/);
    const badCos = tf.zeros([3, D - 2]) as tf.Tensor2D;
    expectThrowsClean(() => kvCacheWrite(cache, upd, 0, { rope: { cos: badCos, sinSigned: badCos } }), /kvCacheWrite: opts.rope.cos must be \[T, hd\] = \[3, 8\], got \[3, 6\]/);
    expectThrowsClean(() => kvCacheWrite(cache, upd, 0, { layout: 'BHDT' as 'BHTD' }), /kvCacheWrite: opts.layout must be one of BHTD, BTHD/);
    expectThrowsClean(() => kvCacheWrite(cache, upd, 0, { at: 1 } as object), /kvCacheWrite: unknown option "at"/);
    expect(Array.from(await cache.data())).toEqual(Array.from(cd));
    tf.dispose([cache, upd, wrongH, i32, badCos]);
  });

  // -------------------------------------------------------------------------------------------
  // Attention over the valid prefix of a preallocated cache
  // -------------------------------------------------------------------------------------------

  it(`attention with validKeys over a preallocated cache (NaN past the valid keys) equals attention on the sliced cache: prefill, decode, split-K, GQA${backend === 'webgpu' ? ', fused and composition' : ''}`, async () => {
    const [B, H, Hkv, D, Smax] = [1, 4, 2, 16, 40];
    const kernels = backend === 'webgpu' ? (['fused', 'composition'] as const) : (['composition'] as const);
    const kd = randomData(B * Hkv * Smax * D, 91);
    const vd = randomData(B * Hkv * Smax * D, 92);
    const poison = (a: Float32Array, S: number) => a.map((x, i) => (Math.floor(i / D) % Smax >= S ? NaN : x));
    for (const [S, Tq, causal, keySplits] of [[7, 7, true, undefined], [12, 1, true, undefined], [33, 1, true, 3], [20, 4, true, undefined], [19, 5, false, undefined]] as const) {
      const qd = randomData(B * H * Tq * D, 93 + S);
      const q = tf.tensor4d(qd, [B, H, Tq, D]);
      const k = tf.tensor4d(poison(kd, S), [B, Hkv, Smax, D]);
      const v = tf.tensor4d(poison(vd, S), [B, Hkv, Smax, D]);
      const [ks, vs] = tf.tidy(() => [tf.tensor4d(kd, [B, Hkv, Smax, D]).slice([0, 0, 0, 0], [-1, -1, S, -1]), tf.tensor4d(vd, [B, Hkv, Smax, D]).slice([0, 0, 0, 0], [-1, -1, S, -1])]);
      const ref = tf.tidy(() => attention(q, ks as tf.Tensor4D, vs as tf.Tensor4D, { causal, kernel: 'composition' }));
      const refData = await ref.data();
      for (const kernel of kernels) {
        const opts = { causal, kernel, validKeys: S, ...(kernel === 'fused' && keySplits ? { keySplits } : {}) };
        const before = tf.memory().numTensors;
        const y = attention(q, k, v, opts);
        expect(tf.memory().numTensors - before).toBe(1);
        const got = await y.data();
        const what = `S ${S} Tq ${Tq} ${causal ? 'causal' : 'full'} ${kernel}${keySplits ? ` splits ${keySplits}` : ''}`;
        expectClose(got, refData, ATTN.rtol, ATTN.atol, `${what} vs the composition on the sliced cache`);
        if (kernel === 'fused') {
          const sliced = attention(q, ks as tf.Tensor4D, vs as tf.Tensor4D, { causal, kernel, ...(keySplits ? { keySplits } : {}) });
          expect(Array.from(got), `${what}: the same as the fused kernel on the sliced cache`).toEqual(Array.from(await sliced.data()));
          sliced.dispose();
        }
        y.dispose();
      }
      tf.dispose([q, k, v, ks, vs, ref]);
    }
  });

  it('attention validKeys: keys transposed, and errors', async () => {
    const [B, H, D, Smax, S, Tq] = [1, 2, 8, 24, 10, 3];
    const qd = randomData(B * H * Tq * D, 101);
    const kd = randomData(B * H * Smax * D, 102);
    const vd = randomData(B * H * Smax * D, 103);
    const q = tf.tensor4d(qd, [B, H, Tq, D]);
    const k = tf.tensor4d(kd, [B, H, Smax, D]);
    const v = tf.tensor4d(vd, [B, H, Smax, D]);
    const kT = tf.transpose(k, [0, 1, 3, 2]) as tf.Tensor4D;
    const ref = tf.tidy(() => attention(q, k.slice([0, 0, 0, 0], [-1, -1, S, -1]), v.slice([0, 0, 0, 0], [-1, -1, S, -1]), { causal: true, kernel: 'composition' }));
    const y = attentionTransposedKeys(q, kT, v, { causal: true, validKeys: S });
    expectClose(await y.data(), await ref.data(), ATTN.rtol, ATTN.atol, 'keys transposed, validKeys vs the composition on the sliced cache');
    expectThrowsClean(() => attention(q, k, v, { validKeys: Smax + 1 }), /attention: opts.validKeys 25 exceeds the 24 keys k and v hold/);
    expectThrowsClean(() => attention(q, k, v, { validKeys: 0 }), /attention: opts.validKeys must be a positive integer, got 0/);
    expectThrowsClean(() => attention(q, k, v, { validKeys: 2, causal: true }), /attention: causal attention needs at least as many keys as queries .* got Tq 3 and Tk 2/);
    tf.dispose([q, k, v, kT, ref, y]);
  });
});
