// LLaMA on webgpu with its weights resident (issue 13): the store's matrices are uploaded once
// as packed int32 tensors (bf16 pairs, q8, q4), a decode step uploads no weights, and the KV
// cache is preallocated and written in place. Results equal the per-step streamed path
// (`webgpuResident: false`, which decodes blocks of rows on the CPU). Off webgpu the option
// changes nothing, so the resident-vs-streamed cases are registered on webgpu only; the load,
// cache and option checks run on every backend.
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { loadLlama, type Llama } from '../src/models/llama/index.js';
import { describeEachBackend } from './backends.js';
import { expectCloseScaled, expectExact } from './oracle.js';

const BF16 = 'test/fixtures/llama/tiny-llama-bf16'; // d 64, mlp 128, 2 layers, V 300, bf16
const TINY = 'test/fixtures/llama/tiny-llama'; // the same shapes, float32
const PROMPT = [[1, 17, 42, 99, 7, 250, 3, 64]];
const NEXT = [5, 123, 77];
/**
 * Resident vs streamed logits, element by element: |Δ| ≤ ATOL·max|ref| + RTOL·|ref|. Measured
 * worst atol at RTOL, in units of max|ref|: 6.0e-7 (q8 on webgpu); max|Δ|/max|ref| at most 7.8e-7.
 */
const RTOL = 1e-6;
const ATOL = 3e-6;

/**
 * Prefills PROMPT, then counts the bytes tfjs uploads from CPU values to the GPU during one
 * decode step (webgpu; 0 elsewhere): the total and the largest single upload.
 */
async function decodeStepUploads(model: Llama, cacheCapacity?: number): Promise<{ bytes: number; largest: number }> {
  const first = model.forward({ inputIds: PROMPT, cacheCapacity });
  first.logits.dispose();
  const b = tf.backend() as unknown as { uploadToGPU?: (id: object) => void; tensorMap?: { get(id: object): { values?: ArrayLike<number> | null } | undefined } };
  const original = b.uploadToGPU;
  const spy = tf.getBackend() === 'webgpu' && original && b.tensorMap;
  let bytes = 0;
  let largest = 0;
  if (spy) {
    b.uploadToGPU = function (id: object) {
      const values = b.tensorMap!.get(id)?.values;
      if (values) {
        bytes += 4 * values.length;
        largest = Math.max(largest, 4 * values.length);
      }
      return original.call(this, id);
    };
  }
  try {
    const step = model.forward({ inputIds: [[5]], cache: first.cache });
    await step.logits.data();
    step.logits.dispose();
    step.cache.dispose();
  } finally {
    if (spy) b.uploadToGPU = original;
  }
  return { bytes, largest };
}

/** Prefill PROMPT, then decode NEXT token by token: every step's logits, concatenated. */
async function run(model: Llama, cacheCapacity?: number): Promise<Float32Array> {
  let { logits, cache } = model.forward({ inputIds: PROMPT, cacheCapacity });
  const out: number[] = [...(await logits.data())];
  logits.dispose();
  for (const id of NEXT) {
    ({ logits, cache } = model.forward({ inputIds: [[id]], cache }));
    out.push(...(await logits.data()));
    logits.dispose();
  }
  cache.dispose();
  return Float32Array.from(out);
}

await describeEachBackend('LLaMA weights resident on the GPU', (backend) => {
  const gpu = backend === 'webgpu';

  it(gpu ? 'bf16: the projections are packed int32 tensors after load, and a decode step uploads no weights' : 'bf16 off webgpu: nothing is packed at load (the 5 norms are the only tensors); weightBytes counts 2 bytes per weight', async () => {
    const before = tf.memory();
    const model = await loadLlama(BF16);
    const after = tf.memory();
    // 5 norms always; on webgpu 2 layers × 7 projections + lm_head, packed.
    expect(after.numTensors - before.numTensors).toBe(5 + (gpu ? 15 : 0));
    const w = model.weightBytes();
    // bf16 words: 2 bytes per weight, lm_head [300, 64] included.
    const perLayer = 64 * 64 + 32 * 64 + 32 * 64 + 64 * 64 + 3 * 128 * 64; // q, k, v, o, gate, up, down
    expect(w.linear).toBe(2 * (2 * perLayer + 300 * 64));
    if (gpu) {
      expect(after.numBytes - before.numBytes).toBeGreaterThanOrEqual(w.linear);
      const step = await decodeStepUploads(model, 16);
      // The token's embedding row (64 floats), rope tables and scalars: far below the smallest matrix (4 KiB).
      expect(step.largest).toBeLessThanOrEqual(64 * 4);
      expect(step.bytes).toBeLessThan(2048);
      expect(step.bytes).toBeGreaterThan(0); // the spy sees uploads at all
    }
    model.dispose();
    expect(tf.memory().numTensors).toBe(before.numTensors);
  });

  it('the cache: preallocated and written in place on webgpu, grown when full, clones stay intact', async () => {
    const model = await loadLlama(BF16);
    const first = model.forward({ inputIds: PROMPT, cacheCapacity: 10 });
    expect(first.cache.length).toBe(8);
    expect(first.cache.capacity).toBe(gpu ? 10 : 8);
    expect(first.cache.keys[0]!.shape[2]).toBe(first.cache.capacity);
    const keys0 = first.cache.keys[0];
    const s1 = model.forward({ inputIds: [[5]], cache: first.cache });
    if (gpu) expect(s1.cache.keys[0]).toBe(keys0); // the same buffer, written in place
    const kept = s1.cache.clone(); // shares the buffers: the next write must copy, not overwrite
    const s2 = model.forward({ inputIds: [[123]], cache: s1.cache });
    if (gpu) expect(s2.cache.keys[0]).not.toBe(keys0);
    const s3 = model.forward({ inputIds: [[77]], cache: s2.cache });
    const s4 = model.forward({ inputIds: [[9]], cache: s3.cache }); // 12 > 10: grows
    expect(s4.cache.length).toBe(12);
    expect(s4.cache.capacity).toBe(gpu ? 20 : 12);
    // The clone was not overwritten: decoding from it again gives s2's logits, bit for bit.
    const again = model.forward({ inputIds: [[123]], cache: kept });
    expectExact((await again.logits.data()) as Float32Array, (await s2.logits.data()) as Float32Array, 'decoding from the clone vs s2');
    // And the grown cache continues the same sequence as the streamed path.
    const ref = await loadLlama(BF16, { webgpuResident: false });
    const r = ref.forward({ inputIds: [[...PROMPT[0]!, 5, 123, 77, 9]] });
    const last = tf.slice(r.logits, [0, 11, 0], [1, 1, -1]);
    expectCloseScaled((await s4.logits.data()) as Float32Array, (await last.data()) as Float32Array, RTOL, ATOL, 'grown cache vs the streamed full forward');
    tf.dispose([r.logits, last]);
    r.cache.dispose();
    ref.dispose();
    tf.dispose([first.logits, s1.logits, s2.logits, s3.logits, s4.logits, again.logits]);
    s4.cache.dispose();
    again.cache.dispose();
    model.dispose();
  });

  it('webgpuResident must be a boolean', async () => {
    await expect(loadLlama(BF16, { webgpuResident: 'yes' as unknown as boolean })).rejects.toThrow(/webgpuResident must be a boolean/);
  });
});

// Off webgpu `webgpuResident` changes nothing: these would compare a path with itself.
await describeEachBackend('LLaMA weights resident on the GPU: resident vs streamed', () => {
  it('the streamed path (webgpuResident: false) uploads the weights at every step instead', async () => {
    const model = await loadLlama(BF16, { webgpuResident: false });
    const step = await decodeStepUploads(model);
    expect(step.bytes).toBeGreaterThan(4 * 2 * (64 * 64 * 2 + 128 * 64 * 3)); // ≥ both layers' matrices, as float32
    model.dispose();
  });

  for (const quantize of [undefined, 'q8', 'q4'] as const) {
    it(`${quantize ?? 'bf16'}: resident prefill + cached decode = the streamed path (element-wise, ≤ ${ATOL}·max|ref| + ${RTOL}·|ref|)`, async () => {
      const src = quantize ? TINY : BF16;
      const resident = await loadLlama(src, quantize ? { quantize } : {});
      const streamed = await loadLlama(src, { ...(quantize ? { quantize } : {}), webgpuResident: false });
      const a = await run(resident, 12);
      const b = await run(streamed);
      expectCloseScaled(a, b, RTOL, ATOL, `${quantize ?? 'bf16'}: resident vs streamed`);
      resident.dispose();
      streamed.dispose();
    });
  }
}, { only: ['webgpu'] });
