/**
 * generate(): every option checked before any work, the context limit (refused prompts, the
 * 'context' stop), stop reasons, and errors in and after each stage — named by stage, size and
 * backend, with no tensor left behind — on the bundled tiny checkpoint (context 256, 4 visual
 * tokens per image).
 */
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadInfLlava, type GenerateOptions, type InfLlava, type KVCache, type LlamaForwardInput } from '../src/index.js';
import { describeEachBackend } from './backends.js';

const CKPT = 'assets/tiny-inf-llava';
const JPEG = new Uint8Array(readFileSync('assets/extreme_ironing.jpg'));
const NOT_AN_IMAGE = new TextEncoder().encode('definitely not an image');
const VISUAL = 4; // (28 / 14)²

/** Replaces `obj[key]` for the duration of `run`. */
async function patched<T extends object, K extends keyof T, R>(obj: T, key: K, value: T[K], run: () => Promise<R>): Promise<R> {
  const had = Object.prototype.hasOwnProperty.call(obj, key);
  const old = obj[key];
  obj[key] = value;
  try {
    return await run();
  } finally {
    if (had) obj[key] = old;
    else delete obj[key];
  }
}

/** Asserts the promise rejects with a message matching `pattern`, leaving no new tensor; returns the error. */
async function rejectsClean(p: () => Promise<unknown>, pattern: RegExp): Promise<Error> {
  const before = tf.memory().numTensors;
  let error: unknown;
  try {
    await p();
  } catch (e) {
    error = e;
  }
  expect(error, `expected a rejection matching ${pattern}`).toBeInstanceOf(Error);
  expect((error as Error).message).toMatch(pattern);
  expect(tf.memory().numTensors, `tensors left behind by: ${(error as Error).message}`).toBe(before);
  return error as Error;
}

await describeEachBackend('generate: options, context limit, stop reasons, stage errors', (backend) => {
  let model: InfLlava;
  let small: tf.Tensor3D; // a small image keeps the slow backends (webgpu on SwiftShader) quick
  let encodes = 0;
  let stops: number[];
  beforeAll(async () => {
    model = await loadInfLlava(CKPT);
    // Count encoder calls: option and context errors must come before any.
    const encode = model.vision.encode;
    model.vision.encode = (image, o) => {
      encodes++;
      return encode(image, o);
    };
    stops = [...model.llm.config.eosTokenIds, model.tokenizer.tokenId('<|eot_id|>')!];
    small = tf.tidy(() => tf.cast(tf.mul(tf.randomUniform([12, 18, 3], 0, 1, 'float32', 7), 255), 'int32')) as tf.Tensor3D;
  });
  afterAll(() => {
    model.dispose();
    small.dispose();
  });

  /** A question whose prompt takes exactly `positions` positions (text ids + visual tokens). */
  const questionOfLength = (positions: number): string => {
    for (let words = 0; words < 200; words++) {
      for (let extra = 0; extra < 8; extra++) {
        const q = 'word '.repeat(words) + 'x'.repeat(extra);
        if (model.promptIds(q).length - 1 + VISUAL === positions) return q;
      }
    }
    throw new Error(`no question of ${positions} positions`);
  };

  it('every bad option is refused before decoding or encoding, naming the option and the value', async () => {
    const rank2 = tf.zeros([4, 4]);
    const rgba = tf.zeros([4, 4, 4]);
    const bool = tf.zeros([4, 4, 3], 'bool');
    const empty = tf.zeros([0, 4, 3]);
    const disposed = tf.zeros([4, 4, 3]);
    disposed.dispose();
    const base = { image: NOT_AN_IMAGE, question: 'q' }; // decoding these bytes would fail differently
    const cases: Array<[unknown, RegExp]> = [
      [{ ...base, maxNewTokens: -1 }, /^generate: maxNewTokens must be a positive integer, got -1$/],
      [{ ...base, maxNewTokens: 0 }, /maxNewTokens must be a positive integer, got 0$/],
      [{ ...base, maxNewTokens: 2.5 }, /maxNewTokens must be a positive integer, got 2\.5$/],
      [{ ...base, maxNewTokens: NaN }, /maxNewTokens must be a positive integer, got NaN$/],
      [{ ...base, maxNewTokens: Infinity }, /maxNewTokens must be a positive integer, got Infinity$/],
      [{ ...base, maxNewTokens: '5' }, /maxNewTokens must be a positive integer, got "5"$/],
      [{ ...base, temperature: -1 }, /^generate: temperature must be a finite number >= 0, got -1$/],
      [{ ...base, temperature: NaN }, /temperature must be a finite number >= 0, got NaN$/],
      [{ ...base, temperature: Infinity }, /temperature must be a finite number >= 0, got Infinity$/],
      [{ ...base, temperature: '0.7' }, /temperature must be a finite number >= 0, got "0.7"$/],
      [{ ...base, topP: 0 }, /^generate: topP must be a number in \(0, 1\], got 0$/],
      [{ ...base, topP: 1.5 }, /topP must be a number in \(0, 1\], got 1\.5$/],
      [{ ...base, topP: NaN }, /topP must be a number in \(0, 1\], got NaN$/],
      [{ ...base, topP: '1' }, /topP must be a number in \(0, 1\], got "1"$/],
      [{ ...base, seed: 1.5 }, /^generate: seed must be an integer, got 1\.5$/],
      [{ ...base, seed: NaN }, /seed must be an integer, got NaN$/],
      [{ ...base, seed: '3' }, /seed must be an integer, got "3"$/],
      [{ ...base, question: 42 }, /^generate: question must be a string, got 42$/],
      [{ image: small }, /question must be a string, got undefined$/],
      [{ ...base, questionMarkup: 'raw' }, /^generate: questionMarkup must be 'literal' or 'official', got "raw"$/],
      [{ ...base, onToken: 'print' }, /^generate: onToken must be a function, got "print"$/],
      [{ ...base, onProgress: 42 }, /^generate: onProgress must be a function, got 42$/],
      [{ ...base, maxTokens: 5 }, /^generate: unknown option "maxTokens" \(did you mean maxNewTokens\?\); options: image, question, /],
      [{ ...base, top_p: 0.9 }, /unknown option "top_p" \(did you mean topP\?\)/],
      [{ ...base, frobnicate: 1 }, /unknown option "frobnicate"; options:/],
      [{ question: 'q' }, /^generate: image must be a \[H, W, 3\] tensor or encoded image bytes \(a Uint8Array\), got undefined$/],
      [{ ...base, image: 'photo.jpg' }, /image must be a \[H, W, 3\] tensor or encoded image bytes \(a Uint8Array\), got "photo.jpg"$/],
      [{ ...base, image: [1, 2, 3] }, /image must be .*, got an array of 3$/],
      [{ ...base, image: new Uint8Array(0) }, /^generate: image is empty \(0 bytes\)$/],
      [{ ...base, image: rank2 }, /^generate: image must be a \[H, W, 3\] RGB tensor, got shape \[4, 4\]$/],
      [{ ...base, image: rgba }, /image must be a \[H, W, 3\] RGB tensor, got shape \[4, 4, 4\]$/],
      [{ ...base, image: bool }, /^generate: image must be int32 or float32 \(RGB 0\.\.255\), got bool$/],
      [{ ...base, image: empty }, /^generate: image is empty \(shape \[0, 4, 3\]\)$/],
      [{ ...base, image: disposed }, /^generate: image is a disposed tensor$/],
      [null, /^generate: expected an options object \{ image, question, \.\.\. \}, got null$/],
      ['q', /expected an options object .*, got "q"$/],
    ];
    for (const [opts, pattern] of cases) {
      await rejectsClean(() => model.generate(opts as GenerateOptions), pattern);
    }
    expect(encodes).toBe(0);
    tf.dispose([rank2, rgba, bool, empty]);
  });

  it('a prompt longer than the context is refused with both numbers, before the image is decoded or encoded', async () => {
    const before = encodes;
    const long = 'word '.repeat(300);
    const e = await rejectsClean(
      () => model.generate({ image: NOT_AN_IMAGE, question: long }),
      /^generate: the prompt takes (\d+) positions \((\d+) text tokens \+ 4 visual tokens\) but the language model's context \(max_position_embeddings\) is 256; shorten the question \(the prompt may take at most 255 positions, leaving room for an answer\)$/,
    );
    expect(Number(/takes (\d+)/.exec(e.message)![1])).toBe(model.promptIds(long).length - 1 + VISUAL);
    // Exactly the context: no room for one new token.
    await rejectsClean(() => model.generate({ image: NOT_AN_IMAGE, question: questionOfLength(256) }), /the prompt takes 256 positions .* is 256;/);
    expect(encodes).toBe(before);
  });

  it("generation stops at the end of the context: prompt + tokens = max_position_embeddings, stopReason 'context'", async () => {
    const context = model.llm.config.maxPositionEmbeddings;
    expect(context).toBe(256);
    for (const positions of [255, 240]) {
      const question = questionOfLength(positions);
      let streamed = '';
      const out = await model.generate({ image: small, question, maxNewTokens: 1000, onToken: (s) => (streamed += s) });
      expect(out.stopReason, `${positions}: ${JSON.stringify(out.tokens)}`).toBe('context');
      expect(positions + out.tokens.length).toBe(context);
      expect(out.tokens.some((t) => stops.includes(t))).toBe(false);
      expect(streamed).toBe(out.text);
    }
  }, 300_000);

  it("stopReason 'max_tokens' when maxNewTokens is reached first, 'eos' at a stop token", async () => {
    const out = await model.generate({ image: small, question: 'What is in the image?', maxNewTokens: 2 });
    expect(out).toMatchObject({ stopReason: 'max_tokens' });
    expect(out.tokens).toHaveLength(2);
    // Reaching both at once: the caller's limit is the reason.
    const q = questionOfLength(254);
    expect((await model.generate({ image: small, question: q, maxNewTokens: 2 })).stopReason).toBe('max_tokens');

    // A language model whose second token is <|eot_id|>.
    const eot = model.tokenizer.tokenId('<|eot_id|>')!;
    const forward = model.llm.forward.bind(model.llm);
    let calls = 0;
    const eos = await patched(model.llm, 'forward', (input: LlamaForwardInput) => {
      const r = forward(input);
      if (++calls < 2) return r;
      const V = r.logits.shape[2];
      r.logits.dispose();
      return { cache: r.cache, logits: tf.tidy(() => tf.cast(tf.reshape(tf.oneHot([eot], V), [1, 1, V]), 'float32')) as tf.Tensor3D };
    }, () => model.generate({ image: small, question: 'What is in the image?', maxNewTokens: 50 }));
    expect(eos.stopReason).toBe('eos');
    expect(eos.tokens).toHaveLength(2);
    expect(eos.tokens[1]).toBe(eot);
    expect(eos.text).toBe(model.tokenizer.decode(eos.tokens.slice(0, 1)));
    expect(calls).toBe(2);
  }, 300_000);

  it('a tensor image (int32 or float32) is used as is and left to the caller', async () => {
    for (const dtype of ['int32', 'float32'] as const) {
      const image = tf.fill([10, 14, 3], 128, dtype) as tf.Tensor3D;
      const out = await model.generate({ image, question: 'q', maxNewTokens: 1 });
      expect(out.tokens).toHaveLength(1);
      expect(image.isDisposed).toBe(false);
      image.dispose();
    }
  }, 300_000);

  it("'<image>' in the question: text by default (one slot); refused up front in official mode (two slots, one image)", async () => {
    const q = 'what is <image> here?';
    const out = await model.generate({ image: small, question: q, maxNewTokens: 1 });
    expect(out.tokens).toHaveLength(1);
    const before = encodes;
    await rejectsClean(
      () => model.generate({ image: small, question: q, questionMarkup: 'official' }),
      /^generate: the prompt has 2 image slots but there is one image \(the question contains "<image>" and questionMarkup is 'official'\); use questionMarkup: 'literal' to read it as text$/,
    );
    expect(encodes).toBe(before);
  }, 300_000);

  it('errors after the image was encoded leave no tensor: onToken, onProgress, the tokenizer', async () => {
    const boom = new Error('callback failed');
    const e1 = await rejectsClean(() => model.generate({ image: small, question: 'q', maxNewTokens: 5, onToken: () => { throw boom; } }), /^callback failed$/);
    expect(e1).toBe(boom); // the caller's own error, as is
    const e2 = await rejectsClean(() => model.generate({ image: small, question: 'q', onProgress: () => { throw boom; } }), /^callback failed$/);
    expect(e2).toBe(boom);
    await patched(model.tokenizer, 'decode', () => { throw new Error('detokenizer broke'); }, () =>
      rejectsClean(() => model.generate({ image: small, question: 'q', maxNewTokens: 3 }), /^detokenizer broke$/),
    );
  }, 300_000);

  // Stage errors: named with the stage, its size and the backend; the original error is the cause; nothing leaks.
  const broken = new Error('out of memory');
  const promptLength = () => model.promptIds('q').length - 1 + VISUAL;

  it('stage error: decode_image (bytes that are no image)', async () => {
    const d = await rejectsClean(
      () => model.generate({ image: NOT_AN_IMAGE, question: 'q' }),
      new RegExp(`^generate: decode_image of 23 bytes failed on ${backend}: decodeImage: could not decode 23 bytes starting 64 65 66 69 6e 69 74 65 as an image`),
    );
    expect((d.cause as Error).message).toMatch(/^decodeImage: could not decode/);
  });

  it('stage error: encode_image (the decoded image is disposed too)', async () => {
    const e = await patched(model.vision, 'encode', () => Promise.reject(broken), () =>
      rejectsClean(() => model.generate({ image: JPEG, question: 'q' }), new RegExp(`^generate: encode_image of a 380×570 image failed on ${backend}: out of memory$`)),
    );
    expect(e.cause).toBe(broken);
  });

  it('stage error: prefill (the first forward; then the sampler refusing NaN logits)', async () => {
    const L = promptLength();
    const p = await patched(model.llm, 'forward', () => { throw broken; }, () =>
      rejectsClean(() => model.generate({ image: small, question: 'q' }), new RegExp(`^generate: prefill of ${L} positions failed on ${backend}: out of memory$`)),
    );
    expect(p.cause).toBe(broken);

    const forward = model.llm.forward.bind(model.llm);
    let cacheSeen: KVCache | undefined;
    await patched(model.llm, 'forward', (input: LlamaForwardInput) => {
      const r = forward(input);
      cacheSeen = r.cache;
      const nan = tf.fill(r.logits.shape, NaN, 'float32') as tf.Tensor3D;
      r.logits.dispose();
      return { cache: r.cache, logits: nan };
    }, () => rejectsClean(() => model.generate({ image: small, question: 'q' }), new RegExp(`^generate: prefill of ${L} positions failed on ${backend}: sampleNext: `)));
    expect(cacheSeen!.keys[0]!.isDisposed).toBe(true);
  }, 300_000);

  it('stage error: decode (a step that fails without consuming its cache; a failure inside the real forward)', async () => {
    const L = promptLength();
    const forward = model.llm.forward.bind(model.llm);
    let calls = 0;
    const failing = (input: LlamaForwardInput) => {
      if (++calls === 4) throw broken;
      return forward(input);
    };
    const d = await patched(model.llm, 'forward', failing, () =>
      rejectsClean(() => model.generate({ image: small, question: 'q', maxNewTokens: 10 }), new RegExp(`^generate: decode at position ${L + 2} \\(new token 4\\) failed on ${backend}: out of memory$`)),
    );
    expect(d.cause).toBe(broken);

    const embed = model.llm.embed.bind(model.llm);
    await patched(model.llm, 'embed', (ids: number[][] | tf.Tensor2D) => {
      if (Array.isArray(ids) && ids[0]!.length === 1) throw new Error('embedding failed');
      return embed(ids);
    }, () => rejectsClean(() => model.generate({ image: small, question: 'q', maxNewTokens: 3 }), new RegExp(`^generate: decode at position ${L} \\(new token 2\\) failed on ${backend}: embedding failed$`)));
  }, 300_000);
});
