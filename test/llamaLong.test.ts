// LLaMA long-context parity with Hugging Face transformers, on every backend: an 8,000-token
// prefill of a tiny LLaMA (llama3 rope scaling, original context 1024, peaked attention), golden
// fixture from scripts/golden/generate_long_context_fixtures.py (test/fixtures/llama/tiny-llama-long,
// test/fixtures/llama/expected-long.safetensors).
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { llamaConfigFromJson, loadLlama, type Llama } from '../src/models/llama/index.js';
import { decodeTensorValues, parseSafetensorsHeader, readSafetensorsHeaderLength } from '../src/io/safetensors.js';
import { describeEachBackend, type BackendName } from './backends.js';
import { expectCloseScaled, maxRelErr } from './oracle.js';

const MODEL = 'test/fixtures/llama/tiny-llama-long';
const FIXTURE = 'test/fixtures/llama/expected-long.safetensors';
// Element by element: |err| ≤ ATOL·max|ref| + RTOL·|ref| (no more than the 1e-5·max|ref| of the
// old max|err|/max|ref| bound). Measured worst atol at RTOL, in units of max|ref|, over the four
// backends: 5.5e-6 (wasm, the decode steps); max|err|/max|ref| at most 5.7e-6.
const RTOL = 1e-6;
const ATOL = 9e-6;
const TOL = `${ATOL}·max|ref| + ${RTOL}·|ref|`;
// Measured on 2 CPU cores: tensorflow ~1 s, wasm ~4 s, cpu ~60 s, webgpu on SwiftShader
// (software Vulkan) ~400–480 s per 8,000-token pass (compute-bound: ~0.06 GFLOP/s there).
const timeout = (backend: BackendName) => (backend === 'webgpu' ? 1_200_000 : 600_000);

// The expectations as plain arrays (no tensors: nothing to leak or to move between backends).
const fixture = (() => {
  const bytes = new Uint8Array(readFileSync(FIXTURE));
  const n = readSafetensorsHeaderLength(bytes.subarray(0, 8), bytes.length);
  const header = parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.length);
  const data = bytes.subarray(header.dataOffset);
  const get = (name: string) => {
    const e = header.entries.find((x) => x.name === name);
    if (!e) throw new Error(`${FIXTURE}: no tensor ${name}`);
    return decodeTensorValues(e, data.subarray(e.begin, e.end));
  };
  return { get, metadata: header.metadata };
})();
const idsT = fixture.get('input.ids');
const T = idsT.shape[1]!;
const ids: number[] = Array.from(idsT.values);
const positions: number[] = Array.from(fixture.get('input.positions').values);
const logitsAt = fixture.get('expected.logits_at');
const decodeLogits = fixture.get('expected.decode_logits');
const STEPS = decodeLogits.shape[0]!;
const PREFILL = T - STEPS;
const V = logitsAt.shape[1]!;

/** Rows of a [N, V] array. */
const rows = (a: ArrayLike<number>, from: number, to: number) => Float32Array.prototype.slice.call(a, from * V, to * V) as Float32Array;
const seconds = (t0: number) => ((performance.now() - t0) / 1000).toFixed(1);

describe('long-context fixture', () => {
  it('is what the test expects: 8,000 ids in [0, 300), 7 positions, 10 decode steps, llama3 scaling from 1024 to 8192', () => {
    expect(idsT.shape).toEqual([1, 8000]);
    expect(idsT.dtype).toBe('int32');
    expect(ids.every((v) => v >= 0 && v < 300)).toBe(true);
    expect(positions).toEqual([0, 1, 511, 512, 4095, 7998, 7999]);
    expect(logitsAt.shape).toEqual([7, 300]);
    expect(decodeLogits.shape).toEqual([10, 300]);
    expect(PREFILL).toBe(Number(fixture.metadata.prefill));
    const config = llamaConfigFromJson(JSON.parse(readFileSync(`${MODEL}/config.json`, 'utf8')) as object);
    expect(config).toMatchObject({ numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 16, maxPositionEmbeddings: 8192, tieWordEmbeddings: false });
    expect(config.ropeScaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 1024 });
    // The generator asserted that the first 4,000 keys matter to the last position's logits.
    expect(Number(fixture.metadata.drop_first_4000_keys_rel_change)).toBeGreaterThan(1e-2);
  });
});

await describeEachBackend('LLaMA 8,000-token prefill parity with transformers', (backend: BackendName) => {
  let model: Llama;

  beforeAll(async () => {
    model = await loadLlama(MODEL);
  });
  afterAll(() => model?.dispose());

  // One 8,000-token pass (the software GPU takes minutes per pass): a prefill of the first
  // PREFILL tokens with every position's logits, then STEPS cached decode steps.
  it(
    `prefill ${PREFILL} tokens (logits at ${positions.filter((p) => p < PREFILL).join(', ')}), then ${STEPS} cached decode steps (logits at ${PREFILL}..${T - 1}) = transformers (element-wise, |err| <= ${TOL})`,
    async () => {
      const t0 = performance.now();
      let { logits, cache } = model.forward({ inputIds: [ids.slice(0, PREFILL)] });
      expect(logits.shape).toEqual([1, PREFILL, V]);
      expect(cache.length).toBe(PREFILL);
      const early = positions.filter((p) => p < PREFILL);
      const picked = tf.tidy(() => tf.gather(tf.reshape(logits, [PREFILL, V]), tf.tensor1d(early, 'int32')));
      logits.dispose();
      const got = (await picked.data()) as Float32Array; // waits for the prefill (webgpu runs asynchronously)
      picked.dispose();
      const tPrefill = seconds(t0);
      const rel = maxRelErr(got, rows(logitsAt.values, 0, early.length), 'logits_at');
      const perPos = early.map((p, i) => `${p}: ${maxRelErr(rows(got, i, i + 1), rows(logitsAt.values, i, i + 1), `logits[${p}]`).toExponential(1)}`);
      console.log(`parity ${backend} ${PREFILL}-token prefill: ${rel.toExponential(2)} (${tPrefill} s; per position ${perPos.join(', ')})`);
      expectCloseScaled(got, rows(logitsAt.values, 0, early.length), RTOL, ATOL, `prefill logits_at (max|err|/max|ref| = ${rel.toExponential(2)})`);

      const steps: tf.Tensor[] = [];
      for (let j = PREFILL; j < T; j++) {
        ({ logits, cache } = model.forward({ inputIds: [[ids[j]!]], cache }));
        steps.push(logits);
      }
      expect(cache.length).toBe(T);
      cache.dispose();
      const all = tf.concat(steps, 1); // [1, STEPS, V]
      tf.dispose(steps);
      const dec = (await all.data()) as Float32Array;
      all.dispose();
      const relDecode = maxRelErr(dec, decodeLogits.values, 'decode_logits');
      // The last stored positions (7998, 7999) are decode steps: against the full forward's logits too.
      const late = positions.map((p, i) => [p, i] as const).filter(([p]) => p >= PREFILL);
      const relLate = Math.max(...late.map(([p, i]) => maxRelErr(rows(dec, p - PREFILL, p - PREFILL + 1), rows(logitsAt.values, i, i + 1), `logits[${p}]`)));
      console.log(`parity ${backend} ${STEPS} decode steps: ${relDecode.toExponential(2)}; positions ${late.map(([p]) => p).join(', ')} vs the full forward: ${relLate.toExponential(2)} (total ${seconds(t0)} s)`);
      expectCloseScaled(dec, decodeLogits.values, RTOL, ATOL, `decode_logits (max|err|/max|ref| = ${relDecode.toExponential(2)})`);
      for (const [p, i] of late) expectCloseScaled(rows(dec, p - PREFILL, p - PREFILL + 1), rows(logitsAt.values, i, i + 1), RTOL, ATOL, `logits_at[${p}] (decoded)`);
    },
    timeout(backend),
  );
});
