// End to end: the official prompt, visual tokens in the -200 slot, greedy decoding — against
// transformers' LLaMA fed with inputs_embeds (scripts/golden/generate_vision_fixtures.py): the
// fixture image, a second image, a question whose answer ends on a stop id, and the fixture image
// with its visual tokens zeroed, negated, reversed and moved after the question (the tiny LLaMA is
// scaled so that each of these changes the greedy ids: a splicing bug cannot pass).
import * as tf from '@tensorflow/tfjs-core';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argmax, loadInfLlava, readSafetensors, type InfLlava } from '../src/index.js';
import { describeEachBackend, type BackendName } from './backends.js';
import { copyWithPoisonedTensor } from './checkpointCopy.js';
import { expectCloseScaled, maxRelErr } from './oracle.js';

const CKPT = 'assets/tiny-inf-llava';

/** One greedy decoding by transformers (scripts/golden/generate_vision_fixtures.py). */
interface Case {
  greedy_ids: number[];
  greedy_text: string;
  stop_reason: 'eos' | 'max_tokens';
  /** The logits at the last prompt position (the prefill's). */
  prefill_last_logits: number[];
}
/** The main case with its visual tokens changed (`visual`) or moved (`insert_at`, an index into the prompt ids without the -200 slot). */
interface Perturbation extends Case {
  visual: 'zeros' | 'negated' | 'reversed' | 'tokens';
  insert_at: number;
  /** How many of the main case's ids differ. */
  changed: number;
}
const gen = JSON.parse(readFileSync('test/fixtures/infllava/generation.json', 'utf8')) as Case & {
  question: string;
  prompt_ids: number[];
  max_new_tokens: number;
  stop_ids: number[];
  min_changed: number;
  /** The same question, expected.safetensors' input.pixels_b. */
  image_b: Case;
  /** Another question, input.pixels; greedy decoding ends on a stop id. */
  eos: Case & { question: string; prompt_ids: number[] };
  perturbations: Record<'zeroed' | 'negated' | 'reversed' | 'after_question', Perturbation>;
};

/** How many positions of two id sequences differ (a length difference counts). */
const changed = (a: number[], b: number[]) => a.filter((id, i) => id !== b[i]).length + Math.max(0, b.length - a.length);

/** Swaps the model's image encoder for the fixture's normalised pixels (the image passed to generate is then ignored). */
function withPixels<T>(model: InfLlava, pixels: tf.Tensor4D, run: () => Promise<T>): Promise<T> {
  const encode = model.vision.encode;
  model.vision.encode = async () => model.vision.encodePixels(pixels);
  return run().finally(() => (model.vision.encode = encode));
}

/**
 * Greedy decoding through the public LLaMA from `embed(text[:at]) ++ visual ++ embed(text[at:])`
 * (what generate builds, with `at` the -200 slot): the prefill's last logits and the ids, until a
 * stop id or `maxNew` tokens.
 */
async function greedyFrom(model: InfLlava, text: number[], visual: tf.Tensor3D, at: number, maxNew: number): Promise<{ ids: number[]; prefill: Float32Array }> {
  const { llm } = model;
  const embeds = tf.tidy(() => tf.concat([llm.embed([text.slice(0, at)]), visual, llm.embed([text.slice(at)])], 1) as tf.Tensor3D);
  let step = llm.forward({ inputsEmbeds: embeds, logitsToKeep: 1 });
  embeds.dispose();
  const ids: number[] = [];
  let prefill: Float32Array | undefined;
  try {
    while (true) {
      const logits = Float32Array.from(await step.logits.data());
      step.logits.dispose();
      prefill ??= logits;
      ids.push(argmax(logits));
      if (gen.stop_ids.includes(ids.at(-1)!) || ids.length >= maxNew) break;
      step = llm.forward({ inputIds: [[ids.at(-1)!]], cache: step.cache, logitsToKeep: 1 });
    }
  } finally {
    step.cache.dispose();
    if (!step.logits.isDisposed) step.logits.dispose();
  }
  return { ids, prefill: prefill! };
}

await describeEachBackend('INF-LLaVA generation', (backend: BackendName) => {
  // Prefill logits against transformers, element by element: |err| ≤ atol·max|ref| + rtol·|ref|.
  // Measured worst atol at rtol 1e-6, in units of max|ref|, over the four backends: 2.9e-6 (wasm,
  // the eos prompt); max|err|/max|ref| at most 3.0e-6.
  const logitBound = { rtol: 1e-6, atol: 8e-6 };
  const logitTol = `${logitBound.atol}·max|ref| + ${logitBound.rtol}·|ref|`;
  let model: InfLlava;
  let t: Record<string, tf.Tensor>;
  let image: tf.Tensor3D; // handed to generate and ignored: the encoder is swapped for the fixture's pixels
  beforeAll(async () => {
    model = await loadInfLlava(CKPT);
    t = readSafetensors(new Uint8Array(readFileSync('test/fixtures/infllava/expected.safetensors'))).tensors;
    image = tf.zeros([2, 2, 3]);
  });
  afterAll(() => {
    model.dispose();
    tf.dispose([image, ...Object.values(t)]);
  });

  it('prompt ids equal LLaVA\'s tokenizer_image_token; generate() decodes the photo and streams text that adds up; no leaks', async () => {
    const before = tf.memory().numTensors;
    const fresh = await loadInfLlava(CKPT);
    expect(fresh.promptIds(gen.question)).toEqual(gen.prompt_ids);
    expect(fresh.promptIds(gen.eos.question)).toEqual(gen.eos.prompt_ids);
    const photo = readFileSync('assets/extreme_ironing.jpg');
    let streamed = '';
    const out = await fresh.generate({ image: new Uint8Array(photo), question: gen.question, maxNewTokens: 4, onToken: (s) => (streamed += s) });
    expect(out.tokens.length).toBeGreaterThan(0);
    expect(streamed).toBe(out.text);
    expect(out.stopReason).toBe(out.tokens.length === 4 ? 'max_tokens' : 'eos');
    expect(out.timings.prefill).toBeGreaterThan(0);
    fresh.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('greedy generation from the fixture pixels reproduces transformers: ids, text, stop reason (max_tokens)', async () => {
    let streamed = '';
    const out = await withPixels(model, t['input.pixels'] as tf.Tensor4D, () =>
      model.generate({ image, question: gen.question, maxNewTokens: gen.max_new_tokens, onToken: (s) => (streamed += s) }));
    expect(out.tokens).toEqual(gen.greedy_ids);
    expect(out.tokens).toHaveLength(gen.max_new_tokens);
    expect(out.stopReason).toBe('max_tokens');
    expect(gen.stop_reason).toBe('max_tokens');
    expect(out.text).toBe(gen.greedy_text);
    expect(streamed).toBe(gen.greedy_text);
    const [again, twice] = await withPixels(model, t['input.pixels'] as tf.Tensor4D, async () => [
      await model.generate({ image, question: gen.question, maxNewTokens: 5, temperature: 0.8, topP: 0.9, seed: 11 }),
      await model.generate({ image, question: gen.question, maxNewTokens: 5, temperature: 0.8, topP: 0.9, seed: 11 }),
    ]);
    expect(again.tokens).toEqual(twice.tokens); // seeded sampling repeats
  });

  it('a different image changes the answer: input.pixels_b gives transformers\' other ids and text', async () => {
    const out = await withPixels(model, t['input.pixels_b'] as tf.Tensor4D, () => model.generate({ image, question: gen.question, maxNewTokens: gen.max_new_tokens }));
    expect(out.tokens).toEqual(gen.image_b.greedy_ids);
    expect(out.text).toBe(gen.image_b.greedy_text);
    expect(out.stopReason).toBe(gen.image_b.stop_reason);
    expect(changed(gen.greedy_ids, gen.image_b.greedy_ids)).toBeGreaterThanOrEqual(gen.min_changed);
  });

  it('a generation that ends on a stop id: the ids include it, stopReason eos, the same text', async () => {
    let streamed = '';
    const out = await withPixels(model, t['input.pixels'] as tf.Tensor4D, () =>
      model.generate({ image, question: gen.eos.question, maxNewTokens: gen.max_new_tokens, onToken: (s) => (streamed += s) }));
    expect(gen.eos.stop_reason).toBe('eos');
    expect(gen.eos.greedy_ids.length).toBeLessThan(gen.max_new_tokens);
    expect(gen.stop_ids).toContain(gen.eos.greedy_ids.at(-1));
    expect(gen.stop_ids).toEqual([...model.llm.config.eosTokenIds].sort((a, b) => a - b));
    expect(out.tokens).toEqual(gen.eos.greedy_ids);
    expect(out.stopReason).toBe('eos');
    expect(out.text).toBe(gen.eos.greedy_text);
    expect(out.text.length).toBeGreaterThan(0);
    expect(streamed).toBe(out.text);
  });

  it(`prefill logits at the last prompt position match transformers (embeddings spliced as generate does; element-wise |err| <= ${logitTol})`, async () => {
    const errs: string[] = [];
    for (const [name, c, pixels, ids] of [
      ['main', gen, 'input.pixels', gen.prompt_ids],
      ['image_b', gen.image_b, 'input.pixels_b', gen.prompt_ids],
      ['eos', gen.eos, 'input.pixels', gen.eos.prompt_ids],
    ] as const) {
      const slot = ids.indexOf(-200);
      const visual = model.vision.encodePixels(t[pixels] as tf.Tensor4D);
      const { ids: greedy, prefill } = await greedyFrom(model, ids.filter((id) => id !== -200), visual, slot, 1).finally(() => visual.dispose());
      const err = maxRelErr(prefill, c.prefill_last_logits, `${name} prefill logits`);
      errs.push(`${name} ${err.toExponential(1)}`);
      expectCloseScaled(prefill, c.prefill_last_logits, logitBound.rtol, logitBound.atol, `${name} prefill logits`);
      expect(greedy[0]).toBe(c.greedy_ids[0]);
    }
    console.log(`[${backend}] prefill logits, max|err|/max|ref|: ${errs.join(', ')}`);
  }, 300_000);

  it('the answer depends on the visual tokens, their order and their place: zeroed, negated, reversed, moved after the question — each transformers\' ids, none the real ones', async () => {
    const slot = gen.prompt_ids.indexOf(-200);
    const text = gen.prompt_ids.filter((id) => id !== -200);
    const tokens = model.vision.encodePixels(t['input.pixels'] as tf.Tensor4D); // [1, 4, hidden]
    try {
      const errs: string[] = [];
      for (const [name, p] of Object.entries(gen.perturbations)) {
        const visual = tf.tidy(() => {
          switch (p.visual) {
            case 'zeros': return tf.zerosLike(tokens);
            case 'negated': return tf.neg(tokens);
            case 'reversed': return tf.reverse(tokens, 1);
            case 'tokens': return tf.clone(tokens);
          }
        });
        const { ids, prefill } = await greedyFrom(model, text, visual, p.insert_at, gen.max_new_tokens).finally(() => visual.dispose());
        expect(ids, name).toEqual(p.greedy_ids);
        expect(model.tokenizer.decode(ids, { skipSpecialTokens: true }), name).toBe(p.greedy_text);
        expect(gen.stop_ids.includes(ids.at(-1)!) ? 'eos' : 'max_tokens', name).toBe(p.stop_reason);
        const err = maxRelErr(prefill, p.prefill_last_logits, `${name} prefill logits`);
        errs.push(`${name} ${err.toExponential(1)}`);
        expectCloseScaled(prefill, p.prefill_last_logits, logitBound.rtol, logitBound.atol, `${name} prefill logits`);
        // The property: each change of the visual tokens changes most of the answer.
        expect(changed(gen.greedy_ids, ids), name).toBe(p.changed);
        expect(p.changed, name).toBeGreaterThanOrEqual(gen.min_changed);
      }
      expect(gen.perturbations.after_question.insert_at).toBeGreaterThan(slot);
      expect(new Set(Object.values(gen.perturbations).map((p) => p.visual))).toEqual(new Set(['zeros', 'negated', 'reversed', 'tokens']));
      console.log(`[${backend}] perturbed prefill logits, max|err|/max|ref|: ${errs.join(', ')}`);
      // The unperturbed control through the same helper: the main case's ids.
      const { ids } = await greedyFrom(model, text, tokens, slot, gen.max_new_tokens);
      expect(ids).toEqual(gen.greedy_ids);
    } finally {
      tokens.dispose();
    }
  }, 300_000);
});

describe('the inf-llava CLI (dist/cli.js, built by npm test)', () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, ['dist/cli.js', ...args], { encoding: 'utf8', timeout: 120_000 });

  it('answers with the bundled tiny checkpoint and prints JSON with --json', () => {
    const r = cli('chat', '--backend', 'cpu', '--max-tokens', '3', '--json', 'What is in the image?');
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(j.tokens.length).toBeGreaterThan(0);
    expect(j.timings_ms.encode_image).toBeGreaterThan(0);
    expect(j.backend).toBe('cpu');
  });

  it('error paths: usage, unknown backend, missing image, wrong directory, bad number', () => {
    const cases: Array<[string[], number, RegExp]> = [
      [[], 2, /missing command/],
      [['chat'], 2, /missing the question/],
      [['chat', '--backend', 'cuda', 'q'], 2, /unknown backend "cuda"; expected one of cpu, wasm, tensorflow, webgpu/],
      [['chat', '--image', 'no/such.jpg', 'q'], 2, /--image no\/such.jpg: no such file/],
      [['chat', '--model', 'no/such/dir', 'q'], 2, /--model no\/such\/dir: no such directory/],
      [['chat', '--model', 'test', 'q'], 2, /--model test: not a checkpoint directory \(no config.json\)/],
      [['chat', '--max-tokens', 'many', 'q'], 2, /--max-tokens needs a number, got "many"/],
      [['chat', '--frobnicate', 'q'], 2, /unknown option --frobnicate/],
    ];
    for (const [args, code, pattern] of cases) {
      const r = cli(...args);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(code);
      expect(r.stderr).toMatch(pattern);
    }
  });

  it('sampling flags are checked before anything runs: usage errors (exit 2) naming the flag and the value', () => {
    const cases: Array<[string[], RegExp]> = [
      [['--max-tokens', '-1'], /^inf-llava: --max-tokens must be a positive integer, got -1$/m],
      [['--max-tokens', '0'], /^inf-llava: --max-tokens must be a positive integer, got 0$/m],
      [['--max-tokens', '2.5'], /^inf-llava: --max-tokens must be a positive integer, got 2\.5$/m],
      [['--max-tokens', 'NaN'], /^inf-llava: --max-tokens needs a number, got "NaN"$/m],
      [['--max-tokens', 'Infinity'], /^inf-llava: --max-tokens needs a number, got "Infinity"$/m],
      [['--max-tokens', '0x10'], /^inf-llava: --max-tokens needs a number, got "0x10"$/m],
      [['--max-tokens', ''], /^inf-llava: --max-tokens needs a number, got ""$/m],
      [['--temperature', '-1'], /^inf-llava: --temperature must be a finite number >= 0, got -1$/m],
      [['--temperature', '1e999'], /^inf-llava: --temperature must be a finite number >= 0, got 1e999$/m],
      [['--top-p', '0'], /^inf-llava: --top-p must be in \(0, 1\], got 0$/m],
      [['--top-p', '1.5'], /^inf-llava: --top-p must be in \(0, 1\], got 1\.5$/m],
      [['--seed', '1.5'], /^inf-llava: --seed must be an integer, got 1\.5$/m],
      [['--seed', 'abc'], /^inf-llava: --seed needs a number, got "abc"$/m],
    ];
    for (const [flags, pattern] of cases) {
      const r = cli('chat', '--backend', 'cpu', ...flags, 'q');
      expect(r.status, `${flags.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr).toMatch(/^usage: inf-llava chat/m);
    }
    // Accepted forms.
    const ok = cli('chat', '--backend', 'cpu', '--max-tokens', '2', '--temperature', '0.5', '--top-p', '1', '--seed', '-3', '--json', 'q');
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout.trim().split('\n').pop()!).tokens.length).toBeLessThanOrEqual(2);
  });

  it('prints the stop reason (--json: stop_reason); <image> in the question is text unless --official-tokenization', () => {
    const j = cli('chat', '--backend', 'cpu', '--max-tokens', '2', '--json', 'what is <image> here?');
    expect(j.status, j.stderr).toBe(0);
    expect(JSON.parse(j.stdout.trim().split('\n').pop()!)).toMatchObject({ stop_reason: 'max_tokens', question: 'what is <image> here?' });
    const t = cli('chat', '--backend', 'cpu', '--max-tokens', '2', 'What is in the image?');
    expect(t.status, t.stderr).toBe(0);
    expect(t.stderr).toMatch(/\[cpu\] 2 tokens, stopped: max_tokens \(--max-tokens reached\); load \d+ ms/);
    const o = cli('chat', '--backend', 'cpu', '--official-tokenization', 'what is <image> here?');
    expect(o.status).toBe(1);
    expect(o.stderr).toMatch(/^inf-llava: generate: the prompt has 2 image slots but there is one image/m);
  });

  it('a prompt longer than the context and a file that is no image are clear errors (exit 1)', () => {
    const long = cli('chat', '--backend', 'cpu', 'word '.repeat(300));
    expect(long.status).toBe(1);
    expect(long.stderr).toMatch(/^inf-llava: generate: the prompt takes \d+ positions \(\d+ text tokens \+ 4 visual tokens\) but the language model's context \(max_position_embeddings\) is 256; /m);
    const notImage = cli('chat', '--backend', 'cpu', '--image', 'package.json', 'q');
    expect(notImage.status).toBe(1);
    expect(notImage.stderr).toMatch(/^inf-llava: generate: decode_image of \d+ bytes failed on cpu: decodeImage: could not decode \d+ bytes starting 7b 0a .* as an image/m);
  });

  it('an unsupported dtype in a checkpoint is a clear error', () => {
    const r = cli('chat', '--backend', 'cpu', '--model', copyWithPoisonedTensor(CKPT, 'model.norm.weight'), 'q');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/inf-llava: .*model\.norm\.weight.*(I64|int32)/);
  });
});
