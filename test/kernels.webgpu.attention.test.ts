// The fused WGSL attention kernel (src/kernels/webgpu/flashAttention.ts) behind the attention op
// on webgpu: against a float64 reference written out loop by loop and against the composition
// (opts.kernel 'composition'), on shapes that are not tile multiples, Tq = 1 (split-K), GQA 4:2
// and 6:1, causal with Tq < Tk and Tq = Tk, batch > 1, dk ≠ dv, both key layouts; its memory
// (tf.profile) and that no output is a score matrix; tf.grad through the op. Comparisons are element
// by element. On the other backends: `kernel: 'fused'` is refused and 'auto' plans the composition
// (the composition itself is checked against float64 by test/attention.test.ts).
import '@tensorflow/tfjs'; // registers gradient kernels (same tfjs-core instance)
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { attention, type AttentionOptions } from '../src/index.js';
import { attentionPlan, attentionTransposedKeys } from '../src/ops/attention.js';
import { FLASH_ATTENTION_KERNEL, flashAttentionTiles } from '../src/kernels/webgpu/flashAttention.js';
import { FLASH_ATTENTION_COMBINE_KERNEL } from '../src/kernels/webgpu/flashAttentionCombine.js';
import { describeEachBackend, expectThrowsClean } from './backends.js';
import { expectClose, expectExact, randomData } from './oracle.js';

type Dims = { B: number; H: number; Hkv: number; Tq: number; Tk: number; dk: number; dv: number };

/** softmax(q·kᵀ·scale + mask)·v in float64; query i sees keys j ≤ Tk − Tq + i when causal. */
function reference(q: Float32Array, k: Float32Array, v: Float32Array, d: Dims, causal: boolean, scale: number): Float64Array {
  const { B, H, Hkv, Tq, Tk, dk, dv } = d;
  const rep = H / Hkv;
  const out = new Float64Array(B * H * Tq * dv);
  const row = new Float64Array(Tk);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / rep);
      for (let i = 0; i < Tq; i++) {
        const qo = ((b * H + h) * Tq + i) * dk;
        let mx = -Infinity;
        for (let j = 0; j < Tk; j++) {
          if (causal && j > Tk - Tq + i) {
            row[j] = -Infinity;
            continue;
          }
          const ko = ((b * Hkv + kh) * Tk + j) * dk;
          let s = 0;
          for (let c = 0; c < dk; c++) s += q[qo + c]! * k[ko + c]!;
          row[j] = s * scale;
          mx = Math.max(mx, row[j]!);
        }
        let total = 0;
        for (let j = 0; j < Tk; j++) total += row[j] = Math.exp(row[j]! - mx);
        const oo = ((b * H + h) * Tq + i) * dv;
        for (let j = 0; j < Tk; j++) {
          const p = row[j]! / total;
          if (p === 0) continue;
          const vo = ((b * Hkv + kh) * Tk + j) * dv;
          for (let c = 0; c < dv; c++) out[oo + c] = out[oo + c]! + p * v[vo + c]!;
        }
      }
    }
  return out;
}

function inputs(d: Dims, seed: number) {
  const qd = randomData(d.B * d.H * d.Tq * d.dk, seed).map((x) => x * 3); // peaked scores: a wrong mask or tile shows
  const kd = randomData(d.B * d.Hkv * d.Tk * d.dk, seed + 1);
  const vd = randomData(d.B * d.Hkv * d.Tk * d.dv, seed + 2);
  return { qd, kd, vd };
}

interface Case {
  name: string;
  d: Dims;
  causal?: boolean;
  scale?: number;
  /** opts.keySplits to also run with (split-K forced on a shape that would not pick it). */
  splits?: number[];
  /** Assert that the automatic plan splits the keys. */
  autoSplit?: boolean;
}

const CASES: Case[] = [
  { name: 'Tq 37 × Tk 53 (not tile multiples), MHA', d: { B: 1, H: 2, Hkv: 2, Tq: 37, Tk: 53, dk: 16, dv: 16 }, splits: [1, 3] },
  { name: 'Tq = 1 over Tk 53, GQA 4:1, causal: split-K', d: { B: 1, H: 4, Hkv: 1, Tq: 1, Tk: 53, dk: 16, dv: 16 }, causal: true, autoSplit: true, splits: [1, 2] },
  { name: 'Tq = 1 over Tk 200, GQA 4:2, batch 2, non-causal: split-K', d: { B: 2, H: 4, Hkv: 2, Tq: 1, Tk: 200, dk: 8, dv: 12 }, autoSplit: true },
  { name: 'GQA 4:2, dk ≠ dv, Tq ≠ Tk', d: { B: 1, H: 4, Hkv: 2, Tq: 9, Tk: 23, dk: 16, dv: 12 } },
  { name: 'GQA 6:1, causal Tq < Tk (a cached prefill), batch 2', d: { B: 2, H: 6, Hkv: 1, Tq: 5, Tk: 13, dk: 8, dv: 8 }, causal: true, splits: [1, 2] },
  { name: 'causal Tq = Tk = 37, odd dv', d: { B: 1, H: 2, Hkv: 2, Tq: 37, Tk: 37, dk: 8, dv: 5 }, causal: true },
  { name: 'causal Tq 20 < Tk 70, batch 3, GQA 2:1, dk 32 ≠ dv 24', d: { B: 3, H: 2, Hkv: 1, Tq: 20, Tk: 70, dk: 32, dv: 24 }, causal: true, splits: [1, 3] },
  { name: 'causal split-K where a key chunk lies past what a query block sees (empty partials)', d: { B: 1, H: 1, Hkv: 1, Tq: 40, Tk: 100, dk: 8, dv: 8 }, causal: true, splits: [4] },
  { name: 'rows spanning several query blocks, causal, GQA 4:1 (blocks straddle heads)', d: { B: 1, H: 4, Hkv: 1, Tq: 19, Tk: 45, dk: 12, dv: 12 }, causal: true },
  { name: 'odd dk, explicit scale', d: { B: 1, H: 3, Hkv: 3, Tq: 6, Tk: 11, dk: 7, dv: 4 }, scale: 0.37 },
  { name: 'dk = dv = 128 (LLaMA, DEM)', d: { B: 1, H: 2, Hkv: 1, Tq: 8, Tk: 40, dk: 128, dv: 128 }, causal: true },
  { name: 'dk = dv = 256 (widest taken)', d: { B: 1, H: 1, Hkv: 1, Tq: 3, Tk: 20, dk: 256, dv: 256 } },
];

// Element-wise tolerance, |a − e| ≤ atol + rtol·|e|: the worst element measured on SwiftShader (any
// case, vs float64 or vs the composition; outputs up to 3.7) uses 0.45 of it (an error of 1.1e-6).
const TOL = { rtol: 1e-5, atol: 1e-6 };

await describeEachBackend('fused attention kernel (webgpu)', (backend) => {
  if (backend !== 'webgpu') {
    it(`kernel 'fused' is refused off webgpu; 'auto' runs the composition`, async () => {
      const d: Dims = { B: 1, H: 2, Hkv: 1, Tq: 3, Tk: 5, dk: 4, dv: 4 };
      const { qd, kd, vd } = inputs(d, 3);
      const q = tf.tensor4d(qd, [1, 2, 3, 4]);
      const k = tf.tensor4d(kd, [1, 1, 5, 4]);
      const v = tf.tensor4d(vd, [1, 1, 5, 4]);
      expectThrowsClean(() => attention(q, k, v, { kernel: 'fused' }), new RegExp(`opts.kernel 'fused' cannot run here: it runs on the webgpu backend only \\(active: ${backend}\\)`));
      expect(attentionPlan(q.shape, k.shape, v.shape).kernel).toBe('composition');
      tf.dispose([q, k, v]);
    });
    return;
  }

  for (const c of CASES) {
    it(`${c.name}: fused close to float64 and to the composition, both key layouts`, async () => {
      const { d } = c;
      const causal = c.causal ?? false;
      const { qd, kd, vd } = inputs(d, 11);
      const scale = c.scale ?? 1 / Math.sqrt(d.dk);
      const ref = reference(qd, kd, vd, d, causal, scale);
      const q = tf.tensor4d(qd, [d.B, d.H, d.Tq, d.dk]);
      const k = tf.tensor4d(kd, [d.B, d.Hkv, d.Tk, d.dk]);
      const v = tf.tensor4d(vd, [d.B, d.Hkv, d.Tk, d.dv]);
      const kT = tf.transpose(k, [0, 1, 3, 2]) as tf.Tensor4D;
      const base: AttentionOptions = { causal };
      if (c.scale !== undefined) base.scale = c.scale;
      const plan = attentionPlan(q.shape, k.shape, v.shape, base);
      expect(plan.kernel).toBe('fused');
      if (c.autoSplit) expect(plan.fused!.splits, 'split-K planned').toBeGreaterThan(1);
      const comp = attention(q, k, v, { ...base, kernel: 'composition' });
      const compData = await comp.data();
      comp.dispose();
      const variants: Array<[string, AttentionOptions]> = [['auto', base], ['fused', { ...base, kernel: 'fused' }]];
      for (const n of c.splits ?? []) variants.push([`keySplits ${n}`, { ...base, kernel: 'fused', keySplits: n }]);
      for (const [label, opts] of variants) {
        for (const [form, run] of [
          ['k', () => attention(q, k, v, opts)],
          ['kT', () => attentionTransposedKeys(q, kT, v, opts)],
        ] as const) {
          const before = tf.memory().numTensors;
          const out = run();
          expect(tf.memory().numTensors - before, `${label} (${form}): one new tensor`).toBe(1);
          expect(out.shape).toEqual([d.B, d.H, d.Tq, d.dv]);
          const got = await out.data();
          expectClose(got, ref, TOL.rtol, TOL.atol, `${c.name}, ${label} (${form}) vs float64`);
          expectClose(got, compData, TOL.rtol, TOL.atol, `${c.name}, ${label} (${form}) vs composition`);
          out.dispose();
        }
      }
      tf.dispose([q, k, v, kT]);
    });
  }

  it('widths the kernel does not take: auto falls back to the composition, fused is refused', async () => {
    const d: Dims = { B: 1, H: 1, Hkv: 1, Tq: 2, Tk: 3, dk: 260, dv: 4 };
    const { qd, kd, vd } = inputs(d, 5);
    const q = tf.tensor4d(qd, [1, 1, 2, 260]);
    const k = tf.tensor4d(kd, [1, 1, 3, 260]);
    const v = tf.tensor4d(vd, [1, 1, 3, 4]);
    expect(attentionPlan(q.shape, k.shape, v.shape).kernel).toBe('composition');
    expectThrowsClean(() => attention(q, k, v, { kernel: 'fused' }), /opts.kernel 'fused' cannot run here: head widths above 256 \(dk 260, dv 4\)/);
    expectThrowsClean(() => attention(q, k, v, { kernel: 'fused', method: 'blocked' }), /opts.kernel 'fused' takes no composition option/);
    expectThrowsClean(() => attention(q, k, v, { kernel: 'fast' as 'fused' }), /opts.kernel must be one of auto, fused, composition/);
    expectThrowsClean(() => attention(q, k, v, { keySplits: 0 }), /opts.keySplits must be a positive integer/);
    const out = attention(q, k, v);
    expectClose(await out.data(), reference(qd, kd, vd, d, false, 1 / Math.sqrt(260)), TOL.rtol, TOL.atol, 'dk 260: the composition vs float64');
    // Composition options mean the composition under 'auto'.
    expect(attentionPlan([1, 2, 8, 8], [1, 2, 8, 8], [1, 2, 8, 8], { method: 'blocked' }).kernel).toBe('composition');
    expect(attentionPlan([1, 2, 8, 8], [1, 2, 8, 8], [1, 2, 8, 8], { layout: 'auto', method: 'auto' }).kernel).toBe('fused');
    tf.dispose([q, k, v, out]);
  });

  it('tiles fit the workgroup memory: H200 (48 KiB) and SwiftShader (32 KiB) at the shapes that matter', () => {
    // DEM windows and LLaMA (dk 128), CLIP (dk 64), decode rows (GQA 4:1, Tq 1).
    expect(flashAttentionTiles(576 * 1, 128, 128, 48 * 1024)).toMatchObject({ bq: 32, bk: 32, tm: 4, tn: 4 });
    expect(flashAttentionTiles(577, 64, 64, 48 * 1024)).toMatchObject({ bq: 32, bk: 32 });
    expect(flashAttentionTiles(4, 128, 128, 48 * 1024)).toMatchObject({ bq: 4, bk: 32 });
    expect(flashAttentionTiles(576, 128, 128, 32 * 1024)).toMatchObject({ bq: 32, bk: 16 });
    const wide = flashAttentionTiles(1000, 256, 256, 48 * 1024);
    expect(typeof wide).toBe('object');
    for (const t of [flashAttentionTiles(576, 128, 128, 48 * 1024), wide]) if (typeof t === 'object') expect(t.sharedBytes).toBeLessThanOrEqual(48 * 1024);
    expect(flashAttentionTiles(10, 300, 64, 48 * 1024)).toMatch(/head widths above 256/);
  });

  it('memory: [1, 8, 256, 256, 64] peak extra tensor memory ≤ 3× the output, no [.., t, t] output; decode split-K partials bounded', async () => {
    const q = tf.randomNormal([1, 8, 256, 64], 0, 1, 'float32', 1) as tf.Tensor4D;
    const k = tf.randomNormal([1, 8, 256, 64], 0, 1, 'float32', 2) as tf.Tensor4D;
    const v = tf.randomNormal([1, 8, 256, 64], 0, 1, 'float32', 3) as tf.Tensor4D;
    for (const causal of [false, true]) {
      await q.data(); // inputs on the GPU before measuring
      const startBytes = tf.memory().numBytes;
      let out: tf.Tensor4D | undefined;
      const info = await tf.profile(() => (out = attention(q, k, v, { causal })));
      const outBytes = out!.size * 4;
      const extra = info.peakBytes - startBytes;
      console.log(`[webgpu] fused attention 256×256×8×64 causal=${causal}: peak extra ${(extra / 2 ** 20).toFixed(2)} MiB = ${(extra / outBytes).toFixed(2)}× the output; kernels: ${info.kernels.map((x) => x.name).join(', ')}`);
      expect(extra).toBeLessThanOrEqual(3 * outBytes);
      expect(info.kernels.map((x) => x.name)).toContain(FLASH_ATTENTION_KERNEL);
      for (const kern of info.kernels)
        for (const s of kern.outputShapes) {
          const scores = s.length >= 2 && s[s.length - 1] === 256 && s[s.length - 2] === 256;
          expect(scores, `${kern.name} produced ${JSON.stringify(s)}`).toBe(false);
        }
      const comp = attention(q, k, v, { causal, kernel: 'composition' });
      expectClose(await out!.data(), await comp.data(), TOL.rtol, TOL.atol, `256 × 256 causal=${causal}: fused vs composition`);
      tf.dispose([out!, comp]);
    }
    tf.dispose([q, k, v]);

    // A decode step, LLaMA-3-8B heads (32 query heads over 8 kv heads, dk 128) over 1,024 keys.
    const qd = tf.randomNormal([1, 32, 1, 128], 0, 1, 'float32', 4) as tf.Tensor4D;
    const kd = tf.randomNormal([1, 8, 1024, 128], 0, 1, 'float32', 5) as tf.Tensor4D;
    const vd = tf.randomNormal([1, 8, 1024, 128], 0, 1, 'float32', 6) as tf.Tensor4D;
    await vd.data();
    const plan = attentionPlan(qd.shape, kd.shape, vd.shape, { causal: true });
    expect(plan.fused!.splits).toBeGreaterThan(1);
    const startBytes = tf.memory().numBytes;
    let out: tf.Tensor4D | undefined;
    const info = await tf.profile(() => (out = attention(qd, kd, vd, { causal: true })));
    const outBytes = out!.size * 4;
    const partialBytes = 8 * plan.fused!.splits * 4 * (128 + 2) * 4;
    const extra = info.peakBytes - startBytes;
    console.log(`[webgpu] fused decode 32/8 heads × 1024 keys: ${plan.fused!.splits} splits, peak extra ${(extra / 1024).toFixed(1)} KiB (output ${(outBytes / 1024).toFixed(1)} KiB, partials ${(partialBytes / 1024).toFixed(1)} KiB); kernels: ${info.kernels.map((x) => x.name).join(', ')}`);
    expect(info.kernels.map((x) => x.name)).toEqual([FLASH_ATTENTION_KERNEL, FLASH_ATTENTION_COMBINE_KERNEL]);
    expect(extra).toBeLessThanOrEqual(outBytes + Math.max(2 * outBytes, 2 * 2 ** 20));
    expect(extra).toBe(outBytes + partialBytes);
    const comp = attention(qd, kd, vd, { causal: true, kernel: 'composition' });
    expectClose(await out!.data(), await comp.data(), TOL.rtol, TOL.atol, 'decode split-K: fused vs composition');
    tf.dispose([out!, comp, qd, kd, vd]);
  });

  it('under tf.grad the op runs the composition (the kernel has no gradient): gradients equal the composition\'s; fused is refused there', async () => {
    const d: Dims = { B: 1, H: 4, Hkv: 2, Tq: 9, Tk: 14, dk: 8, dv: 6 };
    const { qd, kd, vd } = inputs(d, 21);
    const q = tf.tensor4d(qd, [d.B, d.H, d.Tq, d.dk]);
    const k = tf.tensor4d(kd, [d.B, d.Hkv, d.Tk, d.dk]);
    const v = tf.tensor4d(vd, [d.B, d.Hkv, d.Tk, d.dv]);
    const dO = tf.tensor4d(randomData(d.B * d.H * d.Tq * d.dv, 99), [d.B, d.H, d.Tq, d.dv]);
    const f = (opts: AttentionOptions) => (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => attention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, { causal: true, ...opts });
    const auto = tf.grads(f({}))([q, k, v], dO);
    const comp = tf.grads(f({ kernel: 'composition' }))([q, k, v], dO);
    for (let i = 0; i < 3; i++) expectExact(await auto[i]!.data(), await comp[i]!.data(), `grad ${i}`);
    tf.dispose([...auto, ...comp]);
    const before = tf.memory().numTensors;
    expect(() => tf.grads(f({ kernel: 'fused' }))([q, k, v], dO)).toThrow(/opts.kernel 'fused' cannot run here: a gradient tape is recording/);
    expect(tf.memory().numTensors).toBe(before);
    // Outside the tape, the same call is fused and agrees with the composition.
    expect(attentionPlan(q.shape, k.shape, v.shape, { causal: true }).kernel).toBe('fused');
    const [a, c] = [attention(q, k, v, { causal: true }), attention(q, k, v, { causal: true, kernel: 'composition' })];
    expectClose(await a.data(), await c.data(), TOL.rtol, TOL.atol, 'outside the tape: fused vs composition');
    tf.dispose([q, k, v, dO, a, c]);
  });

  it('SwiftShader sanity timing (a software GPU: says nothing about a real one): fused vs composition at [1, 8, 256, 256, 64]', async () => {
    const q = tf.randomNormal([1, 8, 256, 64], 0, 1, 'float32', 7) as tf.Tensor4D;
    const k = tf.randomNormal([1, 8, 256, 64], 0, 1, 'float32', 8) as tf.Tensor4D;
    const v = tf.randomNormal([1, 8, 256, 64], 0, 1, 'float32', 9) as tf.Tensor4D;
    await v.data();
    const time = async (kernel: 'fused' | 'composition') => {
      const runs: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const out = attention(q, k, v, { kernel });
        await out.data();
        runs.push(performance.now() - t0);
        out.dispose();
      }
      return runs.sort((x, y) => x - y)[1]!;
    };
    const fused = await time('fused');
    const comp = await time('composition');
    console.log(`[webgpu] SwiftShader attention [1, 8, 256, 256, 64]: fused ${fused.toFixed(0)} ms, composition ${comp.toFixed(0)} ms (median of 3, read back)`);
    tf.dispose([q, k, v]);
  });
});
