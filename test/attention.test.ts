// The attention op (src/ops/attention.ts) against a float64 reference written out loop by loop:
// grouped-query, causal with Tq < Tk, Tq = 1, blocks that do not divide the sizes, dk ≠ dv, every
// layout, one-shot and blocked; gradients against the analytic float64 backward; the memory
// bound measured with tf.profile.
import '@tensorflow/tfjs'; // registers gradient kernels (same tfjs-core instance)
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { attention, type AttentionOptions } from '../src/index.js';
import { attentionPlan, attentionTransposedKeys } from '../src/ops/attention.js';
import { describeEachBackend, expectThrowsClean } from './backends.js';
import { expectCloseScaled, randomData } from './oracle.js';

type Dims = { B: number; H: number; Hkv: number; Tq: number; Tk: number; dk: number; dv: number };

/** softmax(q·kᵀ·scale + mask)·v in float64, and the softmax probabilities P [B, H, Tq, Tk]. */
function reference(q: Float32Array, k: Float32Array, v: Float32Array, d: Dims, causal: boolean, scale: number): { out: Float64Array; P: Float64Array } {
  const { B, H, Hkv, Tq, Tk, dk, dv } = d;
  const rep = H / Hkv;
  const out = new Float64Array(B * H * Tq * dv);
  const P = new Float64Array(B * H * Tq * Tk);
  const addAt = (a: Float64Array, i: number, x: number) => (a[i] = a[i]! + x);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / rep);
      for (let i = 0; i < Tq; i++) {
        const row = new Float64Array(Tk);
        let mx = -Infinity;
        for (let j = 0; j < Tk; j++) {
          if (causal && j > Tk - Tq + i) {
            row[j] = -Infinity;
            continue;
          }
          let s = 0;
          for (let c = 0; c < dk; c++) s += q[((b * H + h) * Tq + i) * dk + c]! * k[((b * Hkv + kh) * Tk + j) * dk + c]!;
          row[j] = s * scale;
          mx = Math.max(mx, row[j]!);
        }
        let total = 0;
        for (let j = 0; j < Tk; j++) total += row[j] = Math.exp(row[j]! - mx);
        for (let j = 0; j < Tk; j++) {
          const p = row[j]! / total;
          P[((b * H + h) * Tq + i) * Tk + j] = p;
          for (let c = 0; c < dv; c++) addAt(out, ((b * H + h) * Tq + i) * dv + c, p * v[((b * Hkv + kh) * Tk + j) * dv + c]!);
        }
      }
    }
  return { out, P };
}

/** The analytic backward in float64: dV = Pᵀ·dO, dS = P∘(dO·vᵀ − rowsum(dO∘O)), dQ = dS·k·scale, dK = dSᵀ·q·scale. */
function referenceGrad(q: Float32Array, k: Float32Array, v: Float32Array, dO: Float32Array, d: Dims, causal: boolean, scale: number) {
  const { B, H, Hkv, Tq, Tk, dk, dv } = d;
  const rep = H / Hkv;
  const { out, P } = reference(q, k, v, d, causal, scale);
  const dq = new Float64Array(q.length);
  const dk_ = new Float64Array(k.length);
  const dv_ = new Float64Array(v.length);
  const addAt = (a: Float64Array, i: number, x: number) => (a[i] = a[i]! + x);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / rep);
      for (let i = 0; i < Tq; i++) {
        const o = ((b * H + h) * Tq + i) * dv;
        let D = 0;
        for (let c = 0; c < dv; c++) D += dO[o + c]! * out[o + c]!;
        for (let j = 0; j < Tk; j++) {
          const p = P[((b * H + h) * Tq + i) * Tk + j]!;
          const kv = (b * Hkv + kh) * Tk + j;
          let dp = 0;
          for (let c = 0; c < dv; c++) {
            dp += dO[o + c]! * v[kv * dv + c]!;
            addAt(dv_, kv * dv + c, p * dO[o + c]!);
          }
          const ds = p * (dp - D) * scale;
          for (let c = 0; c < dk; c++) {
            addAt(dq, ((b * H + h) * Tq + i) * dk + c, ds * k[kv * dk + c]!);
            addAt(dk_, kv * dk + c, ds * q[((b * H + h) * Tq + i) * dk + c]!);
          }
        }
      }
    }
  return { dq, dk: dk_, dv: dv_ };
}

interface Case {
  name: string;
  d: Dims;
  causal?: boolean;
  scale?: number;
}

const CASES: Case[] = [
  { name: 'MHA, one head width', d: { B: 2, H: 3, Hkv: 3, Tq: 7, Tk: 7, dk: 8, dv: 8 } },
  { name: 'GQA 4:2, dk ≠ dv, Tq ≠ Tk', d: { B: 1, H: 4, Hkv: 2, Tq: 9, Tk: 23, dk: 16, dv: 12 } },
  { name: 'GQA 6:1 (one kv head), causal Tq < Tk (a cached prefill)', d: { B: 2, H: 6, Hkv: 1, Tq: 5, Tk: 13, dk: 8, dv: 8 }, causal: true },
  { name: 'causal Tq = Tk, sizes that are not multiples of any block', d: { B: 1, H: 2, Hkv: 2, Tq: 37, Tk: 37, dk: 8, dv: 5 }, causal: true },
  { name: 'Tq = 1 over a long cache (decode), GQA 4:1', d: { B: 1, H: 4, Hkv: 1, Tq: 1, Tk: 53, dk: 16, dv: 16 }, causal: true },
  { name: 'explicit scale', d: { B: 1, H: 2, Hkv: 1, Tq: 6, Tk: 11, dk: 4, dv: 4 }, scale: 0.37 },
];

/** One-shot and blocked, with key blocks and query blocks that leave remainders; every layout. */
const VARIANTS: Array<[string, AttentionOptions]> = [
  ['auto', {}],
  ['one-shot batched', { method: 'one-shot', layout: 'batched' }],
  ['blocked batched 4×5', { method: 'blocked', layout: 'batched', queryBlock: 4, keyBlock: 5 }],
  ['blocked per-window 3×8', { method: 'blocked', layout: 'per-window', queryBlock: 3, keyBlock: 8 }],
  ['blocked per-head 16×7', { method: 'blocked', layout: 'per-head', queryBlock: 16, keyBlock: 7 }],
  ['blocked, budget-sized blocks', { method: 'blocked', layout: 'per-window', blockElements: 40 }],
];

function inputs(d: Dims, seed: number) {
  const qd = randomData(d.B * d.H * d.Tq * d.dk, seed).map((x) => x * 3); // peaked scores: a wrong mask or block shows
  const kd = randomData(d.B * d.Hkv * d.Tk * d.dk, seed + 1);
  const vd = randomData(d.B * d.Hkv * d.Tk * d.dv, seed + 2);
  return { qd, kd, vd };
}

// Element by element: |out − ref| ≤ ATOL·max|ref| + RTOL·|ref|. Measured worst atol at RTOL, in
// units of max|ref|, over the four backends: 1.6e-7 (the variants), 1.8e-7 (gradients), 4.6e-7
// (the 1024-token head, wasm). Both together stay below the 1e-5·max|ref| of the old bound.
const RTOL = 1e-6;
const ATOL = 2e-6;
const TOL = `${ATOL}·max|ref| + ${RTOL}·|ref|`;

await describeEachBackend('attention op (float64 reference)', (backend) => {
  for (const c of CASES) {
    it(`${c.name}: every variant within ${TOL} of float64`, async () => {
      const { d } = c;
      const { qd, kd, vd } = inputs(d, 7);
      const scale = c.scale ?? 1 / Math.sqrt(d.dk);
      const ref = reference(qd, kd, vd, d, c.causal ?? false, scale).out;
      const q = tf.tensor4d(qd, [d.B, d.H, d.Tq, d.dk]);
      const k = tf.tensor4d(kd, [d.B, d.Hkv, d.Tk, d.dk]);
      const v = tf.tensor4d(vd, [d.B, d.Hkv, d.Tk, d.dv]);
      const kT = tf.transpose(k, [0, 1, 3, 2]) as tf.Tensor4D;
      for (const [label, opts] of VARIANTS) {
        const o: AttentionOptions = { ...opts, causal: c.causal ?? false };
        if (c.scale !== undefined) o.scale = c.scale;
        for (const [form, out] of [
          ['k', attention(q, k, v, o)],
          ['kT', attentionTransposedKeys(q, kT, v, o)],
        ] as const) {
          expect(out.shape).toEqual([d.B, d.H, d.Tq, d.dv]);
          expectCloseScaled(await out.data(), ref, RTOL, ATOL, `${backend} ${label} (${form})`);
          out.dispose();
        }
      }
      tf.dispose([q, k, v, kT]);
    });
  }

  it('gradients w.r.t. q, k and v match the analytic float64 backward (causal GQA, one-shot and blocked)', async () => {
    const d: Dims = { B: 1, H: 4, Hkv: 2, Tq: 9, Tk: 14, dk: 8, dv: 6 };
    const { qd, kd, vd } = inputs(d, 21);
    const dOd = randomData(d.B * d.H * d.Tq * d.dv, 99);
    const scale = 1 / Math.sqrt(d.dk);
    const ref = referenceGrad(qd, kd, vd, dOd, d, true, scale);
    const q = tf.tensor4d(qd, [d.B, d.H, d.Tq, d.dk]);
    const k = tf.tensor4d(kd, [d.B, d.Hkv, d.Tk, d.dk]);
    const v = tf.tensor4d(vd, [d.B, d.Hkv, d.Tk, d.dv]);
    const dO = tf.tensor4d(dOd, [d.B, d.H, d.Tq, d.dv]);
    for (const opts of [{ method: 'one-shot' }, { method: 'blocked', queryBlock: 4, keyBlock: 5 }] as AttentionOptions[]) {
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => attention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, { ...opts, causal: true }))([q, k, v], dO);
      const names = ['dq', 'dk', 'dv'] as const;
      for (let i = 0; i < 3; i++) {
        expectCloseScaled(await grads[i]!.data(), ref[names[i]!], RTOL, ATOL, `${opts.method} ${names[i]}`);
      }
      tf.dispose(grads);
    }
    tf.dispose([q, k, v, dO]);
  });

  it('memory-bounded: Tq = Tk = 1024, 8 heads, dk 64 — peak extra tensor memory ≤ 8× the output, no score matrix of ≥ 256 query rows', async () => {
    const d: Dims = { B: 1, H: 8, Hkv: 8, Tq: 1024, Tk: 1024, dk: 64, dv: 64 };
    const q = tf.randomNormal([1, 8, 1024, 64], 0, 1, 'float32', 1) as tf.Tensor4D;
    const k = tf.randomNormal([1, 8, 1024, 64], 0, 1, 'float32', 2) as tf.Tensor4D;
    const v = tf.randomNormal([1, 8, 1024, 64], 0, 1, 'float32', 3) as tf.Tensor4D;
    for (const causal of [false, true]) {
      const startBytes = tf.memory().numBytes;
      let out: tf.Tensor4D | undefined;
      const info = await tf.profile(() => {
        out = attention(q, k, v, { causal });
        return out;
      });
      const outBytes = out!.size * 4;
      const extra = info.peakBytes - startBytes;
      console.log(`[${backend}] attention 1024×1024×8×64 causal=${causal}: peak extra ${(extra / 2 ** 20).toFixed(1)} MiB = ${(extra / outBytes).toFixed(2)}× the output (full scores alone: 16×)`);
      expect(extra).toBeLessThanOrEqual(8 * outBytes);
      for (const kern of info.kernels) {
        for (const s of kern.outputShapes) {
          const big = s.length >= 2 && s[s.length - 1]! >= 256 && s[s.length - 2]! >= 256 && s[s.length - 1] !== 64 && s[s.length - 2] !== 64;
          expect(big, `${kern.name} produced ${JSON.stringify(s)}: a score matrix with ≥ 256 query rows`).toBe(false);
        }
      }
      // Spot-check values against the one-shot form on the first head (float64 reference is too slow here).
      const sub = (t: tf.Tensor4D, n: number) => tf.slice(t, [0, 0, 0, 0], [1, 1, n, 64]) as tf.Tensor4D;
      const [q1, k1, v1] = [sub(q, 1024), sub(k, 1024), sub(v, 1024)];
      const ref = reference(await q1.data() as Float32Array, await k1.data() as Float32Array, await v1.data() as Float32Array, { ...d, H: 1, Hkv: 1 }, causal, 1 / 8).out;
      const first = tf.slice(out!, [0, 0, 0, 0], [1, 1, 1024, 64]);
      expectCloseScaled(await first.data(), ref, RTOL, ATOL, 'head 0');
      tf.dispose([q1, k1, v1, first, out!]);
    }
    tf.dispose([q, k, v]);
  });

  it('plans: the measured layouts, one-shot where the scores are small, blocks where they are not', () => {
    // The DEM at its official size: 18 windows × 8 heads of 576 × 576, dk 128 — one-shot per window/head, as before.
    const dem = attentionPlan([18, 8, 576, 128], [18, 8, 576, 128], [18, 8, 576, 128]);
    expect(dem.oneShot).toBe(true);
    expect(dem.layout).toBe(backend === 'wasm' ? 'per-head' : 'per-window');
    // CLIP ViT-L on 6 images: 16 heads of 577 × 577.
    expect(attentionPlan([6, 16, 577, 64], [6, 16, 577, 64], [6, 16, 577, 64]).oneShot).toBe(true);
    // LLaMA-3-8B decode over an 8,000-token cache: one query row, one piece.
    expect(attentionPlan([1, 32, 1, 128], [1, 8, 8000, 128], [1, 8, 8000, 128], { causal: true }).oneShot).toBe(true);
    // A 4,000-token LLaMA-3-8B prefill: blocks of ≤ 128 queries × 1024 keys.
    const prefill = attentionPlan([1, 32, 4000, 128], [1, 8, 4000, 128], [1, 8, 4000, 128], { causal: true });
    expect(prefill.oneShot).toBe(false);
    expect(prefill.keyBlock).toBe(1024);
    expect(prefill.queryBlock).toBeLessThanOrEqual(128);
    // Forcing works.
    expect(attentionPlan([1, 2, 9, 4], [1, 2, 9, 4], [1, 2, 9, 4], { method: 'blocked', queryBlock: 4, keyBlock: 5 })).toMatchObject({ oneShot: false, queryBlock: 4, keyBlock: 5 });
  });

  it('bad inputs are refused with errors that name the problem, leaving nothing behind', () => {
    const q = tf.zeros([1, 4, 3, 8]) as tf.Tensor4D;
    const k = tf.zeros([1, 2, 5, 8]) as tf.Tensor4D;
    const v = tf.zeros([1, 2, 5, 6]) as tf.Tensor4D;
    const k3 = tf.zeros([1, 3, 5, 8]) as tf.Tensor4D;
    const kInt = tf.zeros([1, 2, 5, 8], 'int32') as tf.Tensor4D;
    const kShort = tf.zeros([1, 2, 2, 8]) as tf.Tensor4D;
    const vShort = tf.zeros([1, 2, 2, 6]) as tf.Tensor4D;
    const q3 = tf.zeros([4, 3, 8]) as unknown as tf.Tensor4D;
    const v3 = tf.zeros([1, 3, 5, 6]) as tf.Tensor4D;
    const k7 = tf.zeros([1, 2, 5, 7]) as tf.Tensor4D;
    expectThrowsClean(() => attention(q3, k, v), /attention: q must be \[B, H, Tq, dk\], got shape \[4,3,8\]/);
    expectThrowsClean(() => attention(q, kInt, v), /attention: k must be float32, got int32/);
    expectThrowsClean(() => attention(q, k3, v3), /kv heads 3 must divide query heads 4/);
    expectThrowsClean(() => attention(q, k7, v), /different head widths dk \(8 vs 7\)/);
    expectThrowsClean(() => attention(q, k, vShort), /k and v must have the same kv heads and keys/);
    expectThrowsClean(() => attention(q, kShort, vShort, { causal: true }), /causal attention needs at least as many keys as queries.*Tq 3 and Tk 2/);
    expectThrowsClean(() => attention(q, k, v, { scale: NaN }), /opts.scale must be a finite number/);
    expectThrowsClean(() => attention(q, k, v, { queryBlock: 0 }), /opts.queryBlock must be a positive integer, got 0/);
    expectThrowsClean(() => attention(q, k, v, { casual: true } as AttentionOptions), /unknown option "casual"/);
    expectThrowsClean(() => attention(q, k, v, { layout: 'diagonal' as 'batched' }), /opts.layout must be one of/);
    tf.dispose([q, k, v, k3, kInt, kShort, vShort, q3, v3, k7]);
  });
});
