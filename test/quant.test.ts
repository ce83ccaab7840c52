// Packed weight formats (bf16, q8, q4; docs/quantization.md): packing bit for bit against the
// Python implementation of the same contract (scripts/golden/generate_quant_fixtures.py), the
// WebAssembly SIMD gemv and its JS fallback against float64 sums, the gemv.wat ↔ committed
// bytes check, LazyWeights' quantised entries, and the tiny LLaMA quantised at load against
// transformers running the dequantised weights — on every backend.
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { GEMV_WASM_BASE64 } from '../src/kernels/wasm/gemv.wasm.js';
import { WasmArenas, packedGemv, packedGemvJs, setBf16Simd } from '../src/kernels/wasm/gemv.js';
import { llamaConfigFromJson, llamaFromTensors, loadLlama, type Llama } from '../src/models/llama/index.js';
import { LazyWeights } from '../src/io/lazyWeights.js';
import { loadSafetensors } from '../src/io/loadSafetensors.js';
import {
  dequantizeBf16Rows,
  dequantizeQ4Rows,
  dequantizeQ8Rows,
  dequantizeRows,
  float32ToBf16Bits,
  packBf16,
  packWeight,
  quantGroupSize,
  quantizeQ4,
  quantizeQ8,
  quantizeRowsInto,
  type PackedFormat,
  type PackedWeight,
} from '../src/quant/index.js';
import { describeEachBackend, expectThrowsClean, type BackendName } from './backends.js';
import { expectCloseScaled } from './oracle.js';

const LLAMA = 'test/fixtures/llama';
const TINY = `${LLAMA}/tiny-llama`;
const BF16 = `${LLAMA}/tiny-llama-bf16`;
const fixtures = LazyWeights.fromSafetensors(new Uint8Array(readFileSync(`${LLAMA}/quant/expected.safetensors`)));
const llamaRef = LazyWeights.fromSafetensors(new Uint8Array(readFileSync(`${LLAMA}/expected.safetensors`)));

function f32(name: string, store = fixtures): { data: Float32Array; shape: number[] } {
  const e = store.get(name);
  if (!e || e.dtype !== 'F32') throw new Error(`fixture ${name} missing or not F32`);
  return { data: new Float32Array(e.bytes.slice().buffer), shape: [...e.shape] };
}
function i32(name: string): Int32Array {
  const e = fixtures.get(name);
  if (!e || e.dtype !== 'I32') throw new Error(`fixture ${name} missing or not I32`);
  return new Int32Array(e.bytes.slice().buffer);
}
const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
const idsRef = (() => {
  const e = llamaRef.get('ids')!;
  return [Array.from(new Int32Array(e.bytes.slice().buffer))];
})();

/** A packed weight's arrays equal the Python fixture's, bit for bit. */
function expectPackedLike(p: PackedWeight, key: string): void {
  expect(p.data, `${key}.data`).toEqual(i32(`${key}.data`));
  if (p.format !== 'bf16') expect(bitsOf(p.scales!), `${key}.scales`).toEqual(bitsOf(f32(`${key}.scales`).data));
  if (p.format === 'q4') expect(bitsOf(p.mins!), `${key}.mins`).toEqual(bitsOf(f32(`${key}.mins`).data));
}

/** Seeded values in [-amp, amp). */
function seeded(n: number, seed: number, amp = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * amp;
  }
  return out;
}

const SYNTHETIC = ['k48', 'k96', 'k200', 'k64'] as const;
const MODEL_WEIGHTS = ['model.layers.0.self_attn.q_proj.weight', 'model.layers.1.mlp.down_proj.weight', 'lm_head.weight'];

describe('packed formats: the contract, bit for bit against Python', () => {
  it('group size: 64 when it divides K, else the largest of 32, 16, 8; K not a multiple of 8 is an error naming the tensor', () => {
    expect([4096, 14336, 128, 64, 96, 48, 200, 8, 24].map((k) => quantGroupSize(k))).toEqual([64, 64, 64, 64, 32, 16, 8, 8, 8]);
    expect(() => quantGroupSize(100, 'model.x.weight')).toThrow(/"model\.x\.weight" has K = 100 input features, not a multiple of 8/);
    expect(() => quantizeQ4(new Float32Array(12), [2, 6], { name: 'w6' })).toThrow(/quantizeQ4: tensor "w6" has K = 6 .*not a multiple of 8/);
  });

  it('synthetic matrices (G = 16, 32, 8, 64; zero and constant groups, a subnormal, -0, q8 ties): q8, q4 and bf16 packing', () => {
    for (const name of SYNTHETIC) {
      const w = f32(`synthetic.${name}`);
      const shape = w.shape as [number, number];
      for (const fmt of ['q8', 'q4', 'bf16'] as const) {
        const p = packWeight(fmt, w.data, shape, { name });
        expect(p.groupSize).toBe(fmt === 'bf16' ? 0 : quantGroupSize(shape[1]));
        expectPackedLike(p, `${fmt}.synthetic.${name}`);
      }
    }
    // The special rows of k64 as the contract says: a zero group (scale 0, codes 0) and a constant group (q4: scale 0, min = the value).
    const q4 = quantizeQ4(f32('synthetic.k64').data, [6, 64]);
    expect([q4.scales![0], q4.data[0], q4.scales![1], q4.mins![1]]).toEqual([0, 0, 0, -0.75]);
    expect(dequantizeQ4Rows(q4, 1, 1).every((v) => v === -0.75)).toBe(true);
    const q8 = quantizeQ8(f32('synthetic.k64').data, [6, 64]);
    expect(q8.scales![3]).toBe(1); // amax 127
    expect(Array.from(dequantizeQ8Rows(q8, 3, 1).subarray(0, 8))).toEqual([1, -1, 1, -1, 127, -127, 64, -64]); // 0.5 and 63.5 round away from zero
  });

  it('tiny LLaMA weights from the float32 and the bf16 checkpoint (bf16 bits in, and LazyWeights.quantize block by block)', () => {
    for (const [src, dir] of [['f32', TINY], ['bf16', BF16]] as const) {
      const store = LazyWeights.fromSafetensors(new Uint8Array(readFileSync(`${dir}/model.safetensors`)));
      for (const key of MODEL_WEIGHTS) {
        const e = store.get(key)!;
        const shape = e.shape as [number, number];
        const values = e.dtype === 'BF16' ? new Uint16Array(e.bytes.slice().buffer) : new Float32Array(e.bytes.slice().buffer);
        for (const fmt of ['q8', 'q4'] as const) {
          expectPackedLike(packWeight(fmt, values, shape), `${src}.${fmt}.${key}`);
          // The store's per-block path (7 rows at a time) packs the same bits.
          const copy = new LazyWeights([[key, e]]);
          expectPackedLike(copy.quantize(key, fmt, { blockElements: 7 * shape[1] }), `${src}.${fmt}.${key}`);
        }
      }
    }
  });

  it('bf16 packing rounds float32 to nearest even as torch does (NaN quiet, infinities kept); bf16 bits pack as they are', () => {
    expect([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -0, Infinity, -Infinity, 3.4028234663852886e38].map(float32ToBf16Bits)).toEqual([0x3f80, 0x3f80, 0x3f82, 0x8000, 0x7f80, 0xff80, 0x7f80]);
    expect(float32ToBf16Bits(NaN) & 0x7fc0).toBe(0x7fc0);
    const bits = Uint16Array.from([0x3f80, 0xbf80, 0x7f80, 0x0001]);
    const p = packBf16(bits, [2, 2]);
    expect(Array.from(p.data)).toEqual([0xbf803f80 | 0, 0x00017f80]);
    expect(Array.from(dequantizeBf16Rows(p, 0, 2))).toEqual([1, -1, Infinity, 2 ** -133 * 1]);
  });

  it('round trip: |w − dequant(w)| ≤ scale / 2 (+ float32 rounding); dequantizeRows = the contract expressions; bf16 exact', () => {
    const f = Math.fround;
    for (const [N, K] of [[7, 64], [5, 48], [3, 200], [4, 96]] as const) {
      const w = seeded(N * K, N * K, 3);
      const G = quantGroupSize(K);
      for (const fmt of ['q8', 'q4'] as const) {
        const p = packWeight(fmt, w, [N, K]);
        const deq = dequantizeRows(p, 0, N);
        expect(bitsOf(dequantizeRows(p, 2, N - 2))).toEqual(bitsOf(deq.subarray(2 * K)));
        for (let n = 0; n < N; n++) {
          for (let k = 0; k < K; k++) {
            const g = n * (K / G) + Math.floor(k / G);
            const s = p.scales![g]!;
            const word = p.data[(n * K + k) >> (fmt === 'q8' ? 2 : 3)]!;
            const q = fmt === 'q8' ? (word << (24 - 8 * (k % 4))) >> 24 : (word >>> (4 * (k % 8))) & 15;
            const want = fmt === 'q8' ? f(q * s) : f(f(q * s) + p.mins![g]!);
            expect(deq[n * K + k]).toBe(want);
            expect(Math.abs(deq[n * K + k]! - w[n * K + k]!)).toBeLessThanOrEqual(s / 2 + 4 * 2 ** -23 * 3);
          }
        }
      }
      const b = packBf16(w, [N, K]);
      const back = dequantizeRows(b, 0, N);
      for (let i = 0; i < w.length; i++) expect(Math.abs(back[i]! - w[i]!)).toBeLessThanOrEqual(Math.abs(w[i]!) * 2 ** -8);
    }
  });

  it('bad inputs and bad packed weights are refused with errors that name the problem', () => {
    expect(() => quantizeQ8([1, 2] as unknown as Float32Array, [1, 2])).toThrow(/values must be a Float32Array \(float32\) or a Uint16Array \(bf16 bits\)/);
    expect(() => quantizeQ8(new Float32Array(10), [2, 8], { name: 'w' })).toThrow(/tensor "w": 10 values, expected rows × cols = 16/);
    expect(() => quantizeQ8(new Float32Array(8), [1, 8, 1] as unknown as [number, number])).toThrow(/shape must be \[rows, cols\]/);
    expect(() => quantizeQ4(new Float32Array(16), [0, 16])).toThrow(/shape must be \[rows, cols\] of positive integers/);
    expect(() => packBf16(new Float32Array(9), [3, 3])).toThrow(/3 columns: bf16 packing needs an even number/);
    const nan = new Float32Array(16);
    nan[11] = NaN;
    expect(() => quantizeQ8(nan, [2, 8], { name: 'w' })).toThrow(/quantizeQ8: tensor "w"\[1, 3\] is NaN: only finite weights can be quantised/);
    nan[11] = -Infinity;
    expect(() => quantizeQ4(nan, [2, 8])).toThrow(/quantizeQ4: the weight\[1, 3\] is -Infinity/);
    const big = new Float32Array(8);
    big[0] = -3e38;
    big[1] = 3e38;
    expect(() => quantizeQ4(big, [1, 8])).toThrow(/quantizeQ4: the weight row 0, columns \[0, 8\): the range -3\.0+\d+e\+38\.\.3\.0+\d+e\+38 overflows float32/);
    const p = quantizeQ4(seeded(32, 1), [2, 16]);
    expect(() => dequantizeRows(p, 1, 2)).toThrow(/rows \[1, 3\) are outside the weight's 2 rows/);
    expect(() => dequantizeRows({ ...p, format: 'q5' as PackedFormat }, 0, 1)).toThrow(/format must be one of bf16, q8, q4, got "q5"/);
    expect(() => dequantizeRows({ ...p, groupSize: 8 }, 0, 1)).toThrow(/groupSize must be 16 for q4 with K = 16, got 8/);
    expect(() => dequantizeRows({ ...p, data: p.data.subarray(1) }, 0, 1)).toThrow(/data holds 3 words, expected 4/);
    expect(() => dequantizeRows({ ...p, mins: undefined }, 0, 1)).toThrow(/q4 needs mins as a Float32Array/);
    expect(() => dequantizeRows({ ...p, format: 'q8' }, 0, 1)).toThrow(/data holds 4 words, expected 8/);
    expect(() => dequantizeQ8Rows(p, 0, 1)).toThrow(/expected a q8 weight, got q4/);
    expect(() => packWeight('q3' as PackedFormat, new Float32Array(8), [1, 8])).toThrow(/format must be 'bf16', 'q8' or 'q4', got "q3"/);
  });
});

describe('the WebAssembly gemv kernels', () => {
  it('gemv.wasm.ts is exactly what scripts/build-wasm.mjs assembles from gemv.wat (wabt)', async () => {
    const script = '../scripts/build-wasm.mjs'; // plain JS (a variable: no declaration file needed)
    const { assemble, generated } = (await import(script)) as {
      assemble: (text: string) => Promise<Uint8Array<ArrayBuffer>>;
      generated: (bytes: Uint8Array) => string;
    };
    const bytes = await assemble(readFileSync('src/kernels/wasm/gemv.wat', 'utf8'));
    expect(Buffer.from(GEMV_WASM_BASE64, 'base64').equals(Buffer.from(bytes)), 'committed bytes = assembled .wat: run node scripts/build-wasm.mjs').toBe(true);
    expect(readFileSync('src/kernels/wasm/gemv.wasm.ts', 'utf8')).toBe(generated(bytes));
    expect(WebAssembly.validate(bytes)).toBe(true);
  });

  it('q8, q4 and bf16 gemv: SIMD and JS against float64 sums of the dequantised weights (≤ 1e-5 relative); odd rows, several x rows, several blocks', () => {
    const cases: Array<[number, number]> = [[1, 8], [5, 16], [7, 48], [9, 64], [33, 96], [300, 128], [3, 200], [4500, 1024]];
    try {
      for (const [N, K] of cases) {
        const w = seeded(N * K, N + K, 0.5);
        for (const m of [1, 3]) {
          const x = seeded(m * K, 7 * K + m, 2);
          for (const fmt of ['q8', 'q4', 'bf16'] as const) {
            const p = packWeight(fmt, w, [N, K]);
            const deq = dequantizeRows(p, 0, N);
            const ref = new Float64Array(m * N);
            for (let i = 0; i < m; i++) for (let n = 0; n < N; n++) {
              let acc = 0;
              for (let k = 0; k < K; k++) acc += deq[n * K + k]! * x[i * K + k]!;
              ref[i * N + n] = acc;
            }
            expect(setBf16Simd(true)).toBe(true);
            const simd = packedGemv(p, x, m);
            const js = packedGemvJs(p, x, m);
            expect(setBf16Simd(false)).toBe(false);
            const fallback = packedGemv(p, x, m);
            setBf16Simd(true);
            expect(bitsOf(fallback), 'packedGemv without SIMD is the JS gemv').toEqual(bitsOf(js));
            for (const [y, what] of [[simd, 'simd'], [js, 'js']] as const) {
              // Element by element against the float64 sums (measured worst atol at rtol 1e-6: 2.5e-7·max|ref|, simd).
              expectCloseScaled(y, ref, 1e-6, 1e-6, `${fmt} [${N}, ${K}] m ${m} ${what}`);
            }
          }
        }
      }
    } finally {
      setBf16Simd(true);
    }
    // Weights in WebAssembly arenas (as LazyWeights.quantize allocates them) are read in place: the same results, bit for bit.
    const pool = new WasmArenas();
    for (const [N, K, m] of [[7, 48, 1], [300, 128, 3], [20000, 64, 2], [3, 200, 2]] as const) {
      const w = seeded(N * K, 3 * N + K, 0.5);
      const x = seeded(m * K, K + m, 2);
      for (const fmt of ['q8', 'q4'] as const) {
        const plain = packWeight(fmt, w, [N, K]);
        const inArena = pool.allocate(fmt, N, K)!;
        quantizeRowsInto(inArena, w, 0, N);
        expect(inArena.data).toEqual(plain.data);
        expect(bitsOf(packedGemv(inArena, x, m)), `${fmt} [${N}, ${K}] in an arena`).toEqual(bitsOf(packedGemv(plain, x, m)));
      }
    }
    expect(pool.byteLength).toBeGreaterThan(20000 * 64);
    pool.dispose();
    // Inputs with NaN or infinities propagate them (the JS gemv), as float math does.
    const nanX = seeded(16, 2);
    nanX[3] = NaN;
    expect(Number.isNaN(packedGemv(quantizeQ4(seeded(32, 1), [2, 16]), nanX, 1)[0])).toBe(true);
    const p = quantizeQ8(seeded(64, 1), [4, 16]);
    expect(() => packedGemv(p, new Float32Array(15), 1)).toThrow(/x must hold m × 16 values for a q8 \[4, 16\] weight, got 15 for m = 1/);
    expect(() => packedGemv(p, new Float32Array(32), 0)).toThrow(/got 32 for m = 0/);
  });
});

describe('LazyWeights: quantised entries', () => {
  it('quantize() replaces an entry by its packed form; info, byteReport, packed(), rows, materialize, gatherRows and matMulTransposed use it', async () => {
    const store = LazyWeights.fromSafetensors(new Uint8Array(readFileSync(`${BF16}/model.safetensors`)));
    const key = 'model.layers.1.mlp.down_proj.weight'; // [64, 128] bf16
    const before = store.byteReport();
    expect(store.info(key)).toEqual({ dtype: 'BF16', shape: [64, 128], byteLength: 64 * 128 * 2 });
    const asBf16 = store.packed(key)!;
    expect([asBf16.format, asBf16.rows, asBf16.cols, asBf16.data.length]).toEqual(['bf16', 64, 128, 64 * 64]);
    const raw = store.get(key)!;
    expect(dequantizeBf16Rows(asBf16, 0, 64)).toEqual(new Float32Array(Array.from(new Uint16Array(raw.bytes.slice().buffer), (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!)));
    const p = store.quantize(key, 'q4');
    expect(store.quantize(key, 'q4')).toBe(p);
    expect(() => store.quantize(key, 'q8')).toThrow(/already quantised to q4; re-quantising to q8/);
    expect(store.get(key), 'no checkpoint bytes left').toBeUndefined();
    expect(store.info(key)).toEqual({ dtype: 'q4', shape: [64, 128], byteLength: 64 * 16 * 4 + 2 * 64 * 2 * 4 });
    const after = store.byteReport();
    expect(after.raw.BF16).toBe(before.raw.BF16! - 64 * 128 * 2);
    expect(after.packed).toEqual({ q4: 4096 });
    expect(after.scales).toBe(1024);
    expect(after.total).toBe(store.byteLength);
    const deq = dequantizeRows(p, 0, 64);
    const rows = store.rows(key, 5, 3);
    const all = store.materialize(key);
    const gathered = store.gatherRows(key, [63, 0]);
    expect(rows.shape).toEqual([3, 128]);
    expect(bitsOf((await rows.data()) as Float32Array)).toEqual(bitsOf(deq.subarray(5 * 128, 8 * 128)));
    expect(bitsOf((await all.data()) as Float32Array)).toEqual(bitsOf(deq));
    expect(bitsOf((await gathered.data()) as Float32Array)).toEqual(bitsOf(Float32Array.from([...deq.subarray(63 * 128), ...deq.subarray(0, 128)])));
    tf.dispose([rows, all, gathered]);
    const x = seeded(2 * 128, 3);
    expect(store.matMulTransposed(key, x, 2)).toEqual(packedGemv(p, x, 2));
    expect(() => store.matMulTransposed(key, x, 3)).toThrow(/x must hold m × 128 values/);
    expect(() => store.quantize('model.norm.weight', 'q8')).toThrow(/must be a 2-D F32\/F16\/BF16 tensor/);
    expect(() => store.quantize('nope', 'q8')).toThrow(/no tensor "nope" in the store/);
    expect(() => store.quantize(key, 'q2' as 'q8')).toThrow(/format must be 'q8' or 'q4', got "q2"/);
    expect(() => store.setPacked('x', { ...p, scales: undefined })).toThrow(/LazyWeights\.setPacked: tensor "x": q4 needs scales/);
    expect(() => store.setPacked('x', packBf16(new Float32Array(4), [2, 2]))).toThrow(/bf16 is stored as checkpoint bytes/);
    const odd = new LazyWeights([['w', { dtype: 'F32', shape: [2, 12], bytes: new Uint8Array(96) }]]);
    expect(() => odd.quantize('w', 'q8')).toThrow(/tensor "w" has K = 12 input features, not a multiple of 8/);
  });
});

// ---------------------------------------------------------------------------------------
// The tiny LLaMA quantised at load, on every backend

const report: string[] = [];

/** max|a − b| / max|b|: the report's measure, and the q8 quality bound against the unquantised logits. */
function relErr(a: Float32Array, b: Float32Array): number {
  let err = 0;
  let max = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    max = Math.max(max, Math.abs(b[i]!));
  }
  return err / max;
}

/** Prefill the first 8 ids, then decode the rest one at a time (the SIMD gemv on the CPU backends). */
function incremental(model: Llama, ids: number[][]): tf.Tensor3D {
  let { logits, cache } = model.forward({ inputIds: ids.map((r) => r.slice(0, 8)) });
  const parts = [logits];
  for (let j = 8; j < ids[0]!.length; j++) {
    ({ logits, cache } = model.forward({ inputIds: ids.map((r) => [r[j]!]), cache }));
    parts.push(logits);
  }
  cache.dispose();
  const out = tf.concat(parts, 1);
  tf.dispose(parts);
  return out;
}

await describeEachBackend('LLaMA quantised at load (q8, q4) against transformers on the dequantised weights', (backend: BackendName) => {
  // Element by element against transformers on the dequantised weights: |err| ≤ atol·max|ref| +
  // rtol·|ref|. Measured worst atol at rtol 1e-6, in units of max|ref|, over the four backends:
  // 9.6e-7 (tensorflow, cached decode); max|err|/max|ref| at most 1.1e-6.
  const tol = { rtol: 1e-6, atol: 5e-6 };
  const close = (a: Float32Array, b: Float32Array, what: string) => expectCloseScaled(a, b, tol.rtol, tol.atol, what);

  for (const [src, dir] of [['f32', TINY], ['bf16', BF16]] as const) {
    for (const fmt of ['q8', 'q4'] as const) {
      it(`${src} checkpoint, quantize '${fmt}': full forward and prefill + cached decode within ${tol.atol}·max|ref| + ${tol.rtol}·|ref|; weightBytes`, async () => {
        const model = await loadLlama(dir, { quantize: fmt, lazyBlockElements: 1000 });
        const want = f32(`${src}.${fmt}.logits`).data;
        try {
          const full = model.forward({ inputIds: idsRef });
          const fullData = (await full.logits.data()) as Float32Array;
          const fullErr = relErr(fullData, want);
          full.cache.dispose();
          full.logits.dispose();
          const inc = incremental(model, idsRef);
          const incData = (await inc.data()) as Float32Array;
          const incErr = relErr(incData, want);
          inc.dispose();
          const ref = f32(`${src}.logits`).data;
          const out = model.forward({ inputIds: idsRef });
          const vsRef = relErr((await out.logits.data()) as Float32Array, ref);
          out.cache.dispose();
          out.logits.dispose();
          report.push(`[${backend}] ${src} ${fmt}: vs Python dequantised model ${fullErr.toExponential(2)} (full), ${incErr.toExponential(2)} (decode); vs unquantised ${src} ${(100 * vsRef).toFixed(2)} %`);
          close(fullData, want, 'full forward vs the Python dequantised model');
          close(incData, want, 'prefill 8 + 4 decode steps vs the Python dequantised model');
          if (fmt === 'q8') expect(vsRef, 'q8 within ~2.5 % of the unquantised logits').toBeLessThanOrEqual(0.03);
          // Resident bytes: the linear weights packed, the embedding as in the checkpoint.
          const b = model.weightBytes();
          const linear = 2 * (64 * 64 * 2 + 32 * 64 * 2 + 3 * 128 * 64) + 300 * 64; // weights per model
          const perWeight = fmt === 'q8' ? 1 : 0.5;
          expect(b.quantized).toBe(fmt);
          expect(b.linear).toBe(linear * perWeight);
          expect(b.scales).toBe((linear / 64) * 4 * (fmt === 'q8' ? 1 : 2));
          expect(b.embedding).toBe(300 * 64 * (src === 'f32' ? 4 : 2));
          expect(b.other).toBe(4 * 64 * 5);
          expect(b.total).toBe(b.linear + b.scales + b.embedding + b.other);
        } finally {
          model.dispose();
        }
      });
    }
  }

  it('quantize from a caller’s LazyWeights store (left unchanged) and from a record of float32 tensors: the same logits', async () => {
    const config = llamaConfigFromJson(JSON.parse(readFileSync(`${BF16}/config.json`, 'utf8')));
    const store = LazyWeights.fromSafetensors(new Uint8Array(readFileSync(`${BF16}/model.safetensors`)));
    const fromStore = llamaFromTensors(store, config, { quantize: 'q4' });
    expect(store.info('lm_head.weight')!.dtype, 'the caller’s store keeps its bf16 bytes').toBe('BF16');
    const out = fromStore.forward({ inputIds: idsRef });
    close((await out.logits.data()) as Float32Array, f32('bf16.q4.logits').data, 'q4 from a LazyWeights store');
    tf.dispose([out.logits]);
    out.cache.dispose();
    fromStore.dispose();
    expect(store.names().length).toBe(21);
    if (backend === 'webgpu') return; // a record of webgpu tensors cannot be read back synchronously in Node
    const { tensors } = await loadSafetensors(TINY);
    const fromRecord = llamaFromTensors(tensors, llamaConfigFromJson(JSON.parse(readFileSync(`${TINY}/config.json`, 'utf8'))), { quantize: 'q8' });
    tf.dispose(Object.values(tensors)); // the model holds its own copy
    const r = fromRecord.forward({ inputIds: idsRef });
    close((await r.logits.data()) as Float32Array, f32('f32.q8.logits').data, 'q8 from a record of tensors');
    tf.dispose([r.logits]);
    r.cache.dispose();
    expect(fromRecord.weightBytes().quantized).toBe('q8');
    fromRecord.dispose();
  });

  it('bad options are errors naming them, with no tensor left behind', async () => {
    const before = tf.memory().numTensors;
    await expect(loadLlama(TINY, { quantise: 'q4' } as never)).rejects.toThrow(/loadLlama: unknown option "quantise" \(did you mean quantize\?\); options: prefix, lazyBlockElements, lazyGemvMaxRows, quantize, webgpuResident, lazy, config/);
    await expect(loadLlama(TINY, { quantize: 'q3' as 'q4' })).rejects.toThrow(/loadLlama: quantize must be 'q8' or 'q4', got "q3"/);
    await expect(loadLlama(TINY, { quantize: 'q4', lazy: false })).rejects.toThrow(/quantize needs the lazy residency/);
    const { loadInfLlava } = await import('../src/pipeline/infLlava.js');
    await expect(loadInfLlava('assets/tiny-inf-llava', { quantized: 'q4' } as never)).rejects.toThrow(/loadInfLlava: unknown option "quantized" \(did you mean quantize\?\)/);
    await expect(loadInfLlava('assets/tiny-inf-llava', { quantize: 'int4' as 'q4' })).rejects.toThrow(/loadInfLlava: quantize must be 'q8' or 'q4', got "int4"/);
    const config = llamaConfigFromJson(JSON.parse(readFileSync(`${BF16}/config.json`, 'utf8')));
    const store = LazyWeights.fromSafetensors(new Uint8Array(readFileSync(`${BF16}/model.safetensors`)));
    expectThrowsClean(() => llamaFromTensors(store, config, { quantize: 'q4', lazyBlock: 3 } as never), /llamaFromTensors: unknown option "lazyBlock" \(did you mean lazyBlockElements\?\)/);
    expectThrowsClean(() => llamaFromTensors(store, config, { quantize: 'Q4' as 'q4' }), /llamaFromTensors: quantize must be 'q8' or 'q4', got "Q4"/);
    // A weight whose K is not a multiple of 8 (a config for such shapes) is refused at quantisation, naming it.
    const odd = new LazyWeights();
    const put = (name: string, shape: number[]) => odd.set(name, { dtype: 'F32', shape, bytes: new Uint8Array(4 * shape.reduce((a, b) => a * b, 1)) });
    const c = { ...config, vocabSize: 8, hiddenSize: 12, intermediateSize: 16, numHiddenLayers: 1, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 6 };
    put('model.embed_tokens.weight', [8, 12]);
    put('model.norm.weight', [12]);
    put('lm_head.weight', [8, 12]);
    put('model.layers.0.input_layernorm.weight', [12]);
    put('model.layers.0.post_attention_layernorm.weight', [12]);
    for (const [p, s] of [['self_attn.q_proj', [12, 12]], ['self_attn.k_proj', [6, 12]], ['self_attn.v_proj', [6, 12]], ['self_attn.o_proj', [12, 12]], ['mlp.gate_proj', [16, 12]], ['mlp.up_proj', [16, 12]], ['mlp.down_proj', [12, 16]]] as const) {
      put(`model.layers.0.${p}.weight`, [...s]);
    }
    expectThrowsClean(() => llamaFromTensors(odd, c, { quantize: 'q8' }), /llamaFromTensors: quantize q8: .*"model\.layers\.0\.self_attn\.q_proj\.weight" has K = 12 input features, not a multiple of 8/);
    const plain = llamaFromTensors(odd, c); // unquantised it loads
    plain.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

// A report, not a test (it could not fail).
afterAll(() => {
  const stats = JSON.parse(readStats()) as Record<string, { max_rel: number; top1_agreement: number }>;
  for (const line of report) console.log(`quant: ${line}`);
  for (const [k, v] of Object.entries(stats)) console.log(`quant: Python ${k}: max|diff|/max|ref| ${(100 * v.max_rel).toFixed(2)} %, top-1 agreement ${v.top1_agreement.toFixed(3)}`);
});

/** The "stats" metadata of the fixture (the Python logit errors of q8 / q4 and the RTN baselines). */
function readStats(): string {
  const bytes = new Uint8Array(readFileSync(`${LLAMA}/quant/expected.safetensors`));
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as { __metadata__: { stats: string } };
  return header.__metadata__.stats;
}
