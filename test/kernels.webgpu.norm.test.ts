// The fused norm kernels (src/kernels/webgpu/layerNorm.ts) behind layerNorm and rmsNorm.
// Every backend: the compositions are the old formulas op for op (bit-identical) and, element by
// element, close to a float64 reference written out loop by loop (LayerNorm / RMSNorm of x + 0, 1
// or 2 residuals, d in {8, 37, 64, 1000, 1024, 4096}: vec4 and scalar operands, d below and above
// the workgroup size; 1, 3 and 577 rows, batch dims, a residual broadcast over the leading axes);
// bad inputs raise errors naming the argument, leaving no tensor behind. On webgpu: the kernel,
// with both reductions forced (subgroups and the workgroup-memory tree), against the float64
// reference and the composition, 577 rows on a 25 × 24 grid; the subgroup reduction against the
// tree at each subgroup size the device offers; a WebGPU validation error scope around each call
// (an invalid shader would leave a recycled buffer's old values in the output); under tf.grad the
// composition runs. Off webgpu `kernel: 'fused'` is refused.
import '@tensorflow/tfjs'; // registers gradient kernels (same tfjs-core instance)
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, describe, expect, it } from 'vitest';
import { layerNorm, type NormOptions } from '../src/ops/layerNorm.js';
import { rmsNorm } from '../src/ops/rmsNorm.js';
import { LAYER_NORM_KERNEL, RMS_NORM_KERNEL, normKernelConfig, normPlan } from '../src/kernels/webgpu/layerNorm.js';
import { subgroupKernelConfig } from '../src/kernels/webgpu/subgroups.js';
import { hoistEnableDirectives, placeSubgroupSize, webgpuHasSubgroups, webgpuSubgroupKernels, webgpuSubgroupSizes } from '../src/backends/webgpuDevice.js';
import { describeEachBackend, expectThrowsClean } from './backends.js';
import { expectClose, expectExact, randomData } from './oracle.js';

// Element-wise tolerances, |a − e| ≤ atol + rtol·|e|, from the worst elements measured (outputs up to
// 4.6; the error of the mean and rstd, shared by a row, dominates). The kernel on SwiftShader: 0.34
// of F64 and F32 (an error of 1.4e-6; subgroups vs tree 0.19). The compositions vs float64: 0.46 of
// COMPOSITION on wasm (its moments err by up to 6.2e-6 at 577 × 4096), less on the others.
const F64 = { rtol: 1e-5, atol: 1e-6 }; // the kernel vs the float64 reference
const F32 = { rtol: 1e-5, atol: 1e-6 }; // kernel vs composition, subgroups vs tree: both float32
const COMPOSITION = { rtol: 1e-5, atol: 4e-6 }; // the composition vs float64, every backend
type Kind = 'layer' | 'rms';

/** The norm of x + r1 + r2 (r· broadcast over rows: row % rows(r·)) in float64. */
function reference(kind: Kind, x: Float32Array, res: Array<{ data: Float32Array; rows: number }>, g: Float32Array, b: Float32Array | null, rows: number, d: number, eps: number): Float64Array {
  const out = new Float64Array(rows * d);
  const s = new Float64Array(d);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < d; j++) {
      let v = x[i * d + j]!;
      for (const r of res) v += r.data[(i % r.rows) * d + j]!;
      s[j] = v;
    }
    if (kind === 'layer') {
      let mean = 0;
      for (let j = 0; j < d; j++) mean += s[j]!;
      mean /= d;
      let variance = 0;
      for (let j = 0; j < d; j++) variance += (s[j]! - mean) ** 2;
      variance /= d;
      const rstd = 1 / Math.sqrt(variance + eps);
      for (let j = 0; j < d; j++) out[i * d + j] = (s[j]! - mean) * rstd * g[j]! + b![j]!;
    } else {
      let ms = 0;
      for (let j = 0; j < d; j++) ms += s[j]! ** 2;
      const rstd = 1 / Math.sqrt(ms / d + eps);
      for (let j = 0; j < d; j++) out[i * d + j] = s[j]! * rstd * g[j]!;
    }
  }
  return out;
}

/** The compositions as they were before the residual options existed, op for op. */
function oldLayerNorm(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, eps: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
  return tf.add(tf.mul(normed, w), b);
}
function oldRmsNorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), w);
}

interface Case {
  /** x's leading dims (rows = their product). */
  lead: number[];
  d: number;
  /** Residual counts to run (0, 1, 2 by default). */
  residuals?: number[];
  /** The first residual has only x's last two axes (broadcast over the first). */
  broadcast?: boolean;
  /** normKernelConfig.maxWorkgroupsPerDimension: a 2-D grid (rows = y · gridX + x). */
  maxGrid?: number;
}

const CASES: Case[] = [
  { lead: [1], d: 8 },
  { lead: [3], d: 37 },
  { lead: [2, 3], d: 64 },
  { lead: [3], d: 1000 },
  { lead: [577], d: 1024 },
  { lead: [1], d: 4096 },
  { lead: [3], d: 4096 },
  { lead: [577], d: 37, residuals: [2] },
  { lead: [577], d: 4096, residuals: [2] },
  { lead: [2, 2, 3], d: 8, residuals: [1, 2] },
  { lead: [2, 5], d: 64, residuals: [1, 2], broadcast: true },
  { lead: [577], d: 64, residuals: [1], maxGrid: 25 }, // a 2-D grid: 25 × 24 workgroups for 577 rows
];

const EPS = { layer: 1e-5, rms: 1e-6 };

function norm(kind: Kind, x: tf.Tensor, g: tf.Tensor1D, b: tf.Tensor1D, opts: NormOptions): tf.Tensor {
  return kind === 'layer' ? layerNorm(x, { weight: g, bias: b, eps: EPS.layer }, opts) : rmsNorm(x, g, EPS.rms, opts);
}

interface DeviceLike {
  pushErrorScope(filter: 'validation'): void;
  popErrorScope(): Promise<{ message: string } | null>;
}
const device = () => (tf.backend() as unknown as { device: DeviceLike }).device;

const caseName = (c: Case) => `[${[...c.lead, c.d].join(', ')}]${c.broadcast ? ' (residual broadcast)' : ''}${c.maxGrid ? ` (grid ${c.maxGrid} wide)` : ''}`;

/** Inputs of one case: x (offset and scaled, so that the mean matters: LayerNorm's cancellation), residuals, γ, β. */
function caseInputs(c: Case) {
  const rows = c.lead.reduce((p, q) => p * q, 1);
  const { d } = c;
  const shape = [...c.lead, d];
  const xd = randomData(rows * d, 31).map((v) => v * 3 + 0.5);
  const r1Shape = c.broadcast ? shape.slice(-2) : shape;
  const r1Rows = r1Shape.slice(0, -1).reduce((p, q) => p * q, 1);
  const r1d = randomData(r1Rows * d, 32);
  const r2d = randomData(rows * d, 33);
  const gd = randomData(d, 34).map((v) => 1 + 0.5 * v);
  const bd = randomData(d, 35);
  return { rows, shape, xd, r1Shape, r1Rows, r1d, r2d, gd, bd };
}

/** `f` inside a WebGPU validation error scope: its value, read back, and no validation error. */
async function validated(label: string, f: () => tf.Tensor): Promise<Float32Array> {
  device().pushErrorScope('validation');
  const y = f();
  const got = (await y.data()) as Float32Array;
  y.dispose();
  expect((await device().popErrorScope())?.message, `${label}: WebGPU validation error`).toBeUndefined();
  return got;
}

await describeEachBackend('fused LayerNorm / RMSNorm kernels (webgpu)', (backend) => {
  const gpu = backend === 'webgpu';
  afterEach(() => {
    normKernelConfig.subgroups = 'auto';
    delete normKernelConfig.maxWorkgroupsPerDimension;
    delete subgroupKernelConfig.size;
  });

  for (const c of CASES) {
    it(`${caseName(c)}: compositions = the old formulas, close to float64${gpu ? '; fused (subgroups and tree) close to float64 and to the composition' : ''}`, async () => {
      const { rows, shape, xd, r1Shape, r1Rows, r1d, r2d, gd, bd } = caseInputs(c);
      const x = tf.tensor(xd, shape);
      const r1 = tf.tensor(r1d, r1Shape);
      const r2 = tf.tensor(r2d, shape);
      const g = tf.tensor1d(gd);
      const b = tf.tensor1d(bd);
      if (c.maxGrid) normKernelConfig.maxWorkgroupsPerDimension = c.maxGrid;
      for (const kind of ['layer', 'rms'] as const) {
        for (const nres of c.residuals ?? [0, 1, 2]) {
          const opts: NormOptions = {};
          const res: Array<{ data: Float32Array; rows: number }> = [];
          if (nres >= 1) (opts.residual = r1), res.push({ data: r1d, rows: r1Rows });
          if (nres >= 2) (opts.residual2 = r2), res.push({ data: r2d, rows });
          const what = `${kind} + ${nres} residuals`;
          const ref = reference(kind, xd, res, gd, kind === 'layer' ? bd : null, rows, c.d, EPS[kind]);
          // The composition, and the old formula on the summed input: bit-identical.
          const comp = tf.tidy(() => norm(kind, x, g, b, { ...opts, kernel: 'composition' }));
          const old = tf.tidy(() => {
            let s: tf.Tensor = x;
            if (opts.residual) s = tf.add(s, opts.residual);
            if (opts.residual2) s = tf.add(s, opts.residual2);
            return kind === 'layer' ? oldLayerNorm(s, g, b, EPS.layer) : oldRmsNorm(s, g, EPS.rms);
          });
          const compData = await comp.data();
          expectExact(compData, await old.data(), `${what}: composition vs the old formula`);
          tf.dispose([comp, old]);
          expectClose(compData, ref, COMPOSITION.rtol, COMPOSITION.atol, `${what} composition vs float64`);
          if (!gpu) continue;
          for (const subgroups of ['on', 'off'] as const) {
            normKernelConfig.subgroups = subgroups;
            for (const kernel of subgroups === 'on' ? (['auto', 'fused'] as const) : (['fused'] as const)) {
              const label = `${what}, ${kernel}, subgroups ${subgroups}`;
              const before = tf.memory().numTensors;
              let y: tf.Tensor | undefined;
              // An invalid shader would leave a recycled buffer's old contents in y: catch it.
              device().pushErrorScope('validation');
              const info = await tf.profile(() => (y = norm(kind, x, g, b, { ...opts, kernel })));
              expect(tf.memory().numTensors - before, `${label}: one new tensor`).toBe(1);
              expect(info.kernels.map((k) => k.name).filter((n) => n !== 'Reshape'), `${label}: one kernel (and free reshapes)`).toEqual([kind === 'layer' ? LAYER_NORM_KERNEL : RMS_NORM_KERNEL]);
              expect(y!.shape).toEqual(shape);
              const got = await y!.data();
              y!.dispose();
              expect((await device().popErrorScope())?.message, `${label}: WebGPU validation error`).toBeUndefined();
              expectClose(got, ref, F64.rtol, F64.atol, `${label} vs float64`);
              expectClose(got, compData, F32.rtol, F32.atol, `${label} vs composition`);
            }
          }
        }
      }
      tf.dispose([x, r1, r2, g, b]);
    });
  }

  if (gpu) {
    it("the device: tfjs's webgpu backend runs on our device, with 'subgroups' where the adapter offers it (SwiftShader does); both reductions were compiled", async () => {
      const adapter = await (globalThis as unknown as { navigator: { gpu: { requestAdapter(): Promise<{ features: Set<string> }> } } }).navigator.gpu.requestAdapter();
      expect(adapter.features.has('subgroups'), "SwiftShader's adapter lists 'subgroups'").toBe(true);
      expect(webgpuHasSubgroups()).toBe(true);
      expect(webgpuSubgroupKernels()).toBe(true);
      const keys = Object.keys((tf.backend() as unknown as { pipelineCache: Record<string, unknown> }).pipelineCache);
      for (const kind of ['layer', 'rms']) {
        for (const path of ['sg', 'wg']) expect(keys.some((k) => k.startsWith(`infLlavaNorm_${kind}_`) && k.includes(`_${path}_`)), `${kind} ${path} pipeline`).toBe(true);
      }
    });

    // The subgroup reduction against the workgroup-memory tree at every subgroup size the device
    // offers: each power of two in [subgroupMinSize, subgroupMaxSize] required with @subgroup_size
    // where the device has 'subgroup-size-control', and the implementation's own choice. SwiftShader
    // offers only 4 (min = max), so there the required size is 4 and equals its own choice.
    const sizes = webgpuSubgroupSizes();
    const offered: number[] = [];
    if (sizes?.control) for (let n = sizes.min; n <= sizes.max; n *= 2) offered.push(n);
    const range = sizes ? `the adapter offers ${sizes.min}${sizes.max > sizes.min ? ` to ${sizes.max}` : ' only'}` : 'the adapter reports no sizes';
    // Workgroups of 256 (4 vec4 and 1 vec4 per thread, scalars), 32 and 64 threads.
    const SIZE_CASES: Case[] = [{ lead: [3], d: 4096 }, { lead: [5], d: 1024 }, { lead: [3], d: 1000 }, { lead: [2, 5], d: 64, broadcast: true }, { lead: [3], d: 37 }];
    for (const size of [0, ...offered]) {
      const title = size
        ? `subgroup size ${size} (required with @subgroup_size; ${range})`
        : `subgroup size of the implementation's choice (${range}${sizes?.control ? '' : "; no 'subgroup-size-control', so no other size can be required"})`;
      it(`${title}: subgroup reduction = the workgroup-memory tree, element-wise, for LayerNorm and RMSNorm with 0–2 residuals`, async () => {
        if (size) subgroupKernelConfig.size = size;
        for (const c of SIZE_CASES) {
          const { rows, shape, xd, r1Shape, r1d, r2d, gd, bd } = caseInputs(c);
          const plan = normPlan(rows, c.d, { maxComputeWorkgroupStorageSize: 1 << 14, maxStorageBufferBindingSize: 2 ** 30, maxComputeWorkgroupsPerDimension: 65535 }, true);
          if (typeof plan === 'string' || plan.wg < size) continue; // a required size may not exceed the workgroup
          const x = tf.tensor(xd, shape);
          const r1 = tf.tensor(r1d, r1Shape);
          const r2 = tf.tensor(r2d, shape);
          const g = tf.tensor1d(gd);
          const b = tf.tensor1d(bd);
          for (const kind of ['layer', 'rms'] as const) {
            for (const opts of [{}, { residual: r1 }, { residual: r1, residual2: r2 }] as NormOptions[]) {
              const label = `${caseName(c)} ${kind} + ${Object.keys(opts).length} residuals, size ${size || 'default'}`;
              normKernelConfig.subgroups = 'on';
              const sg = await validated(`${label} subgroups`, () => norm(kind, x, g, b, { ...opts, kernel: 'fused' }));
              normKernelConfig.subgroups = 'off';
              const tree = await validated(`${label} tree`, () => norm(kind, x, g, b, { ...opts, kernel: 'fused' }));
              expectClose(sg, tree, F32.rtol, F32.atol, `${label}: subgroups vs tree`);
              if (size && sizes!.min === sizes!.max) {
                // The only size there is: requiring it changes nothing.
                normKernelConfig.subgroups = 'on';
                delete subgroupKernelConfig.size;
                expectExact(sg, await validated(`${label} default size`, () => norm(kind, x, g, b, { ...opts, kernel: 'fused' })), `${label}: required = default size`);
                subgroupKernelConfig.size = size;
              }
            }
          }
          tf.dispose([x, r1, r2, g, b]);
        }
        const keys = Object.keys((tf.backend() as unknown as { pipelineCache: Record<string, unknown> }).pipelineCache);
        expect(keys.some((k) => k.startsWith('infLlavaNorm_') && k.includes(`_sg${size || ''}_`)), `a pipeline with subgroup size ${size || 'default'}`).toBe(true);
      });
    }

    it('subgroupKernelConfig.size the device cannot honour: an error naming the setting, nothing left behind', () => {
      const x = tf.tensor2d(randomData(3 * 1024, 1), [3, 1024]);
      const g = tf.tensor1d(randomData(1024, 2));
      normKernelConfig.subgroups = 'on';
      const max = sizes?.max ?? 4;
      subgroupKernelConfig.size = max * 2;
      expectThrowsClean(() => rmsNorm(x, g, 1e-6), new RegExp(`rmsNorm: subgroupKernelConfig.size ${max * 2} cannot be required: `));
      subgroupKernelConfig.size = 3;
      expectThrowsClean(() => layerNorm(x, { weight: g, bias: g }), /layerNorm: subgroupKernelConfig.size 3 cannot be required: /);
      tf.dispose([x, g]);
    });

    it('under tf.grad the composition runs (the kernels have no gradient): gradients equal the composition’s; fused is refused', async () => {
      const x = tf.tensor3d(randomData(2 * 3 * 40, 41), [2, 3, 40]);
      const r = tf.tensor3d(randomData(2 * 3 * 40, 42), [2, 3, 40]);
      const g = tf.tensor1d(randomData(40, 43));
      const b = tf.tensor1d(randomData(40, 44));
      for (const kind of ['layer', 'rms'] as const) {
        const f = (kernel: 'auto' | 'composition') => (xv: tf.Tensor, gv: tf.Tensor) => tf.sum(tf.square(norm(kind, xv, gv as tf.Tensor1D, b, { residual: r, kernel })));
        let grads: tf.Tensor[] = [];
        const info = await tf.profile(() => {
          grads = tf.grads(f('auto'))([x, g]);
        });
        expect(info.kernelNames).not.toContain(LAYER_NORM_KERNEL);
        expect(info.kernelNames).not.toContain(RMS_NORM_KERNEL);
        const ref = tf.grads(f('composition'))([x, g]);
        for (let i = 0; i < 2; i++) expectExact(await grads[i]!.data(), await ref[i]!.data(), `${kind} gradient ${i}`);
        tf.dispose([...grads, ...ref]);
        expect(() => tf.grad((xv: tf.Tensor) => tf.sum(norm(kind, xv, g, b, { kernel: 'fused' })))(x)).toThrow(/opts.kernel 'fused' cannot run here: a gradient tape is recording/);
      }
      tf.dispose([x, r, g, b]);
    });
  } else {
    it(`kernel 'fused' is refused off webgpu (also under tf.grad)`, () => {
      const x = tf.tensor2d(randomData(12, 1), [3, 4]);
      const g = tf.tensor1d(randomData(4, 2));
      const b = tf.tensor1d(randomData(4, 3));
      const re = new RegExp(`opts.kernel 'fused' cannot run here: it runs on the webgpu backend only \\(active: ${backend}\\)`);
      expectThrowsClean(() => layerNorm(x, { weight: g, bias: b }, { kernel: 'fused' }), new RegExp(`layerNorm: ${re.source}`));
      expectThrowsClean(() => rmsNorm(x, g, 1e-6, { kernel: 'fused' }), new RegExp(`rmsNorm: ${re.source}`));
      expect(() => tf.grad((xv: tf.Tensor) => tf.sum(rmsNorm(xv, g, 1e-6, { kernel: 'fused' })))(x)).toThrow(re);
      tf.dispose([x, g, b]);
    });
  }

  it('bad inputs: errors name the argument, before any work, leaving no tensor behind', () => {
    const x = tf.tensor3d(randomData(2 * 3 * 8, 51), [2, 3, 8]);
    const xi = tf.tensor3d(new Int32Array(48), [2, 3, 8], 'int32');
    const g = tf.tensor1d(randomData(8, 52));
    const b = tf.tensor1d(randomData(8, 53));
    const g7 = tf.tensor1d(randomData(7, 54));
    const gi = tf.tensor1d(new Int32Array(8), 'int32');
    const rBad = tf.tensor3d(randomData(2 * 2 * 8, 55), [2, 2, 8]);
    const rOk = tf.tensor2d(randomData(3 * 8, 56), [3, 8]);
    const s = tf.scalar(1);
    const ln = { weight: g, bias: b };
    expectThrowsClean(() => layerNorm(xi, ln), /layerNorm: x must be float32, got int32/);
    expectThrowsClean(() => layerNorm(x, { weight: g7, bias: b }), /layerNorm: ln.weight must be \[8\] \(x's last axis\), got \[7\]/);
    expectThrowsClean(() => layerNorm(x, { weight: g, bias: gi as tf.Tensor1D }), /layerNorm: ln.bias must be float32, got int32/);
    expectThrowsClean(() => layerNorm(x, { weight: g, bias: undefined as unknown as tf.Tensor1D }), /layerNorm: ln.bias must be a tensor, got undefined/);
    expectThrowsClean(() => layerNorm(x, { ...ln, eps: -1 }), /layerNorm: ln.eps must be a finite number ≥ 0, got -1/);
    expectThrowsClean(() => layerNorm(x, ln, { residual: rBad }), /layerNorm: opts.residual must have x's shape \[2, 3, 8\] or that of its trailing axes \(e.g. \[3, 8\]\), got \[2, 2, 8\]/);
    expectThrowsClean(() => layerNorm(x, ln, { residual: rOk, residual2: xi }), /layerNorm: opts.residual2 must be float32, got int32/);
    expectThrowsClean(() => layerNorm(x, ln, { kernel: 'fast' as 'fused' }), /layerNorm: opts.kernel must be one of auto, fused, composition/);
    expectThrowsClean(() => layerNorm(s, ln), /layerNorm: x must have at least one axis/);
    expectThrowsClean(() => rmsNorm(x, g7, 1e-6), /rmsNorm: weight must be \[8\] \(x's last axis\), got \[7\]/);
    expectThrowsClean(() => rmsNorm(xi, g, 1e-6), /rmsNorm: x must be float32, got int32/);
    expectThrowsClean(() => rmsNorm(x, g, Number.NaN), /rmsNorm: eps must be a finite number ≥ 0, got NaN/);
    expectThrowsClean(() => rmsNorm(x, g, 1e-6, { residual: rBad }), /rmsNorm: opts.residual must have x's shape/);
    tf.dispose([x, xi, s, g, b, g7, gi, rBad, rOk]);
  });
});

// Plain functions of numbers and strings: once, not once per backend.
describe('norm kernel plans; shader directives', () => {
  it('plans: workgroup sizes, vec4, limits; enable directives are hoisted; @subgroup_size is placed on the entry point', () => {
    const limits = { maxComputeWorkgroupStorageSize: 16384, maxStorageBufferBindingSize: 2 ** 30, maxComputeWorkgroupsPerDimension: 65535, maxComputeInvocationsPerWorkgroup: 256 };
    expect(normPlan(10386, 1024, limits, true)).toMatchObject({ vec4: true, units: 256, wg: 256, perThread: 1, subgroups: true, grid: [10386, 1] });
    expect(normPlan(1, 4096, limits, false)).toMatchObject({ vec4: true, wg: 256, perThread: 4 });
    expect(normPlan(3, 37, limits, false)).toMatchObject({ vec4: false, units: 37, wg: 64, perThread: 1 });
    expect(normPlan(3, 8, limits, false)).toMatchObject({ vec4: true, units: 2, wg: 32, perThread: 1 });
    expect(normPlan(100000, 64, limits, false)).toMatchObject({ grid: [65535, 2] });
    expect(normPlan(65535 ** 2 + 1, 8, { ...limits, maxStorageBufferBindingSize: 2 ** 40 }, false)).toMatch(/rows exceed 65535² workgroups/);
    expect(normPlan(1, 16384, limits, false)).toMatchObject({ perThread: 16 });
    expect(normPlan(1, 16388, limits, false)).toMatch(/exceed 16 vec4 per thread/);
    expect(normPlan(1, 4097, limits, false)).toMatch(/exceed 16 floats per thread/);
    expect(hoistEnableDirectives('struct A { a : f32 };\n  enable subgroups;\nfn f() {}\nenable subgroups;\n')).toBe('enable subgroups;\nstruct A { a : f32 };\n\nfn f() {}\n\n');
    expect(hoistEnableDirectives('fn f() { let enabled = 1; }')).toBe('fn f() { let enabled = 1; }');
    const tfjsEntry = '\n  @compute @workgroup_size(64, 1, 1)\n      fn _start() {}';
    expect(placeSubgroupSize(`var<workgroup> a : f32;\n@subgroup_size(16)   // required\nfn main() {}${tfjsEntry}`)).toBe(`var<workgroup> a : f32;\n\nfn main() {}\n  @compute @subgroup_size(16) @workgroup_size(64, 1, 1)\n      fn _start() {}`);
    expect(placeSubgroupSize(`fn main() {}${tfjsEntry}`)).toBe(`fn main() {}${tfjsEntry}`);
  });
});
