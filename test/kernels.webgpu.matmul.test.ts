// The fused linear kernel (src/kernels/webgpu/matMulFused.ts) behind the linear op on webgpu:
// against a float64 reference written out loop by loop and against the composition
// (opts.kernel 'composition'), on shapes that are not tile multiples (vec4 and scalar loads),
// a decode-like single row, CLIP-like 577 rows, batch dims > 1; every epilogue, bias absent and
// present; element-wise comparisons. On the other backends: `kernel: 'fused'` is refused and the
// composition is checked against the float64 reference.
import '@tensorflow/tfjs'; // registers gradient kernels (same tfjs-core instance)
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { linear, type LinearActivation, type LinearOptions } from '../src/ops/linear.js';
import { MATMUL_FUSED_KERNEL, matMulTiles } from '../src/kernels/webgpu/matMulFused.js';
import { describeEachBackend, expectThrowsClean } from './backends.js';
import { expectClose, expectExact, linearReference, randomData } from './oracle.js';

// Element-wise tolerances, |a − e| ≤ atol + rtol·|e|. A float32 dot product over K terms errs by
// about K·ε times its terms: on SwiftShader the worst element (K 30 … 4096, vs float64) used 0.23 of
// atol = 1e-7·K (an error of 9.4e-5 at K 4096); the kernel matched the composition to 0.16 of it.
const dot = (K: number) => ({ rtol: 1e-5, atol: 1e-7 * K });

interface Case {
  name: string;
  /** x's leading dims (rows = their product). */
  lead: number[];
  K: number;
  N: number;
  /** Epilogues to run (all by default). */
  epilogues?: Epi[];
}
interface Epi {
  activation: LinearActivation;
  bias: boolean;
  multiply?: boolean;
  residual?: boolean;
}

const ALL: Epi[] = [
  { activation: 'none', bias: false },
  { activation: 'none', bias: true },
  { activation: 'gelu', bias: true },
  { activation: 'gelu', bias: false },
  { activation: 'quick-gelu', bias: true },
  { activation: 'quick-gelu', bias: false, residual: true },
  { activation: 'silu', bias: false, multiply: true },
  { activation: 'silu', bias: true },
  { activation: 'none', bias: true, residual: true },
  { activation: 'gelu', bias: true, multiply: true, residual: true },
];

const CASES: Case[] = [
  { name: '37 × 53 → 29 (scalar loads, no tile multiple)', lead: [37], K: 53, N: 29 },
  { name: '37 × 52 → 29 (vec4 loads, no tile multiple)', lead: [37], K: 52, N: 29 },
  { name: 'batch [2, 3, 7] × 30 → 67 (batch dims, scalar loads)', lead: [2, 3, 7], K: 30, N: 67 },
  { name: 'batch [3, 45] × 64 → 130 (batch dims, vec4)', lead: [3, 45], K: 64, N: 130 },
  { name: '1 × 4096 → 64 (decode-like)', lead: [1], K: 4096, N: 64, epilogues: [ALL[1]!, ALL[6]!] },
  { name: '5 × 1023 → 70 (small rows, scalar loads, long K)', lead: [5], K: 1023, N: 70, epilogues: [ALL[2]!] },
  { name: '577 × 1024 → 256 (CLIP-like)', lead: [577], K: 1024, N: 256, epilogues: [ALL[4]!, ALL[8]!] },
];

const label = (e: Epi) => `${e.activation}${e.bias ? '+bias' : ''}${e.multiply ? '⊙u' : ''}${e.residual ? '+res' : ''}`;

await describeEachBackend('fused linear kernel (webgpu)', (backend) => {
  if (backend !== 'webgpu') {
    it(`kernel 'fused' is refused off webgpu; the composition is close to float64`, async () => {
      const [M, K, N] = [7, 13, 9];
      const xd = randomData(M * K, 1);
      const wd = randomData(N * K, 2);
      const bd = randomData(N, 3);
      const rd = randomData(M * N, 4);
      const x = tf.tensor2d(xd, [M, K]);
      const layer = { weight: tf.tensor2d(wd, [N, K]), bias: tf.tensor1d(bd) };
      const r = tf.tensor2d(rd, [M, N]);
      expectThrowsClean(() => linear(x, layer, { kernel: 'fused' }), new RegExp(`opts.kernel 'fused' cannot run here: it runs on the webgpu backend only \\(active: ${backend}\\)`));
      for (const a of ['none', 'gelu', 'quick-gelu', 'silu'] as const) {
        const y = tf.tidy(() => linear(x, layer, { activation: a, residual: r }));
        expectClose(await y.data(), linearReference(xd, wd, bd, null, rd, M, K, N, a), dot(K).rtol, dot(K).atol, `${a}: composition vs float64`);
        y.dispose();
      }
      tf.dispose([x, layer.weight, layer.bias, r]);
    });
    return;
  }

  for (const c of CASES) {
    it(`${c.name}: fused close to float64 and to the composition, ${(c.epilogues ?? ALL).length} epilogues`, async () => {
      const M = c.lead.reduce((p, q) => p * q, 1);
      const { K, N } = c;
      const xd = randomData(M * K, 11);
      const wd = randomData(N * K, 12);
      const bd = randomData(N, 13);
      const ud = randomData(M * N, 14);
      const rd = randomData(M * N, 15);
      const x = tf.tensor(xd, [...c.lead, K]);
      const w = tf.tensor2d(wd, [N, K]);
      const b = tf.tensor1d(bd);
      const u = tf.tensor(ud, [...c.lead, N]);
      const r = tf.tensor(rd, [...c.lead, N]);
      for (const e of c.epilogues ?? ALL) {
        const layer = e.bias ? { weight: w, bias: b } : { weight: w };
        const opts: LinearOptions = { activation: e.activation };
        if (e.multiply) opts.multiply = u;
        if (e.residual) opts.residual = r;
        const ref = linearReference(xd, wd, e.bias ? bd : null, e.multiply ? ud : null, e.residual ? rd : null, M, K, N, e.activation);
        const comp = tf.tidy(() => linear(x, layer, { ...opts, kernel: 'composition' }));
        const compData = await comp.data();
        comp.dispose();
        expectClose(compData, ref, dot(K).rtol, dot(K).atol, `${c.name} ${label(e)}: composition vs float64`);
        for (const kernel of ['auto', 'fused'] as const) {
          const before = tf.memory().numTensors;
          let y: tf.Tensor | undefined;
          const info = await tf.profile(() => (y = linear(x, layer, { ...opts, kernel })));
          expect(tf.memory().numTensors - before, `${kernel} ${label(e)}: one new tensor`).toBe(1);
          expect(info.kernels.map((k) => k.name).filter((n) => n !== 'Reshape'), `${kernel} ${label(e)}: one kernel (and free reshapes)`).toEqual([MATMUL_FUSED_KERNEL]);
          expect(y!.shape).toEqual([...c.lead, N]);
          const got = await y!.data();
          expectClose(got, ref, dot(K).rtol, dot(K).atol, `${c.name} ${kernel} ${label(e)} vs float64`);
          expectClose(got, compData, dot(K).rtol, dot(K).atol, `${c.name} ${kernel} ${label(e)} vs composition`);
          y!.dispose();
        }
      }
      tf.dispose([x, w, b, u, r]);
    });
  }

  it('under tf.grad: auto runs the (differentiable) composition, fused is refused; bad options', async () => {
    const x = tf.tensor2d(randomData(6, 1), [2, 3]);
    const layer = { weight: tf.tensor2d(randomData(12, 2), [4, 3]), bias: tf.tensor1d(randomData(4, 3)) };
    const g = tf.grad((v: tf.Tensor) => tf.sum(linear(v, layer, { activation: 'gelu' })))(x);
    const gc = tf.tidy(() => tf.grad((v: tf.Tensor) => tf.sum(linear(v, layer, { activation: 'gelu', kernel: 'composition' })))(x));
    expectExact(await g.data(), await gc.data(), 'gradient: auto (the composition under the tape) vs composition');
    expect(() => tf.grad((v: tf.Tensor) => tf.sum(linear(v, layer, { kernel: 'fused' })))(x)).toThrow(/opts.kernel 'fused' cannot run here: a gradient tape is recording/);
    expectThrowsClean(() => linear(x, layer, { kernel: 'fast' as 'fused' }), /opts.kernel must be one of auto, fused, composition/);
    expectThrowsClean(() => linear(x, layer, { activation: 'relu' as 'gelu' }), /opts.activation must be one of/);
    expectThrowsClean(() => linear(x, layer, { residual: x }), /opts.residual must have the output's shape \[2, 4\]/);
    tf.dispose([x, layer.weight, layer.bias, g, gc]);
  });

  it('tiles fit the workgroup memory: H200 (48 KiB) and SwiftShader (32 KiB)', () => {
    for (const bytes of [48 * 1024, 32 * 1024]) {
      expect(matMulTiles(577, bytes)).toMatchObject({ bm: 128, bn: 64, tm: 8, tn: 4, bk: 16, doubleBuffer: true, sharedBytes: 24576 });
      expect(matMulTiles(1, bytes)).toMatchObject({ bm: 16, bn: 64, doubleBuffer: true });
      expect(matMulTiles(40, bytes)).toMatchObject({ bm: 32, bn: 64, doubleBuffer: true });
    }
    expect(matMulTiles(577, 16 * 1024)).toMatchObject({ bm: 128, bn: 64, bk: 8, doubleBuffer: true, sharedBytes: 12288 });
    expect(matMulTiles(577, 12 * 1024)).toMatchObject({ bk: 8, doubleBuffer: true });
    expect(matMulTiles(577, 1024)).toMatch(/no tile fits/);
  });
});
