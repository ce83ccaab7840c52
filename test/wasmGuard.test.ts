// The wasm heap guard (src/backends/wasmGuard.ts): an allocation the 4 GiB WebAssembly heap
// cannot hold is refused with a JS error instead of aborting the module, so the next call works.
// Registered on wasm only: there is nothing to guard on the other backends.
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { loadInfLlava, loadLlama } from '../src/index.js';
import { guardWasmHeap, WASM_HEAP_MAX_BYTES } from '../src/backends/wasmGuard.js';
import { describeEachBackend } from './backends.js';

await describeEachBackend('wasm heap guard', () => {
  it('an output larger than the heap is refused with an error naming its size; nothing leaks; the backend keeps working', async () => {
    expect(guardWasmHeap()).toBe(true); // installed by useBackend; idempotent
    const a = tf.ones([70000, 64]);
    const b = tf.ones([64, 70000]);
    const before = tf.memory().numTensors;
    // [70000, 70000] float32 = 19.6 GB: without the guard the module aborts and every later call fails with "Aborted()".
    expect(() => tf.matMul(a, b)).toThrow(/wasm backend: cannot allocate 18692 MiB \(19600000000 bytes\).*cannot grow past 4096 MiB/);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([a, b]);
    const x = tf.tensor1d([1, 2]);
    const y = tf.add(x, 1);
    expect(Array.from(await y.data())).toEqual([2, 3]);
    tf.dispose([x, y]);
    expect(WASM_HEAP_MAX_BYTES).toBe(4294901760);
  });

  it('a prefill after a refused allocation still matches a fresh run', async () => {
    const llm = await loadLlama('test/fixtures/llama/tiny-llama');
    const ids = [[1, 5, 9, 200, 7, 3]];
    const first = llm.forward({ inputIds: ids });
    const ref = await first.logits.data();
    tf.dispose([first.logits]);
    first.cache.dispose();
    const a = tf.ones([70000, 64]);
    const b = tf.ones([64, 70000]);
    expect(() => tf.matMul(a, b)).toThrow(/cannot allocate/);
    tf.dispose([a, b]);
    const again = llm.forward({ inputIds: ids });
    expect(Array.from(await again.logits.data())).toEqual(Array.from(ref));
    tf.dispose([again.logits]);
    again.cache.dispose();
    llm.dispose();
  });

  it('generate: a stage that hits the heap limit fails naming the stage and the size; the next generate works and answers as before', async () => {
    const model = await loadInfLlava('assets/tiny-inf-llava');
    const image = tf.randomUniform([24, 32, 3], 0, 255, 'int32') as tf.Tensor3D;
    const ask = () => model.generate({ image, question: 'What is in the image?', maxNewTokens: 4 });
    const reference = await ask();
    const before = tf.memory().numTensors;
    const encode = model.vision.encode;
    model.vision.encode = async () => {
      const a = tf.ones([70000, 64]);
      const b = tf.ones([64, 70000]);
      try {
        return tf.matMul(a, b) as unknown as tf.Tensor3D; // 19.6 GB: refused by the guard
      } finally {
        tf.dispose([a, b]);
      }
    };
    await expect(ask()).rejects.toThrow(/generate: encode_image of a 24×32 image failed on wasm: wasm backend: cannot allocate 18692 MiB/);
    expect(tf.memory().numTensors).toBe(before);
    model.vision.encode = encode;
    const again = await ask();
    expect(again.tokens).toEqual(reference.tokens);
    image.dispose();
    model.dispose();
  });
}, { only: ['wasm'] });
