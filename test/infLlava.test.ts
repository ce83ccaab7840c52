// End to end: the official prompt, visual tokens in the -200 slot, greedy decoding — against
// transformers' LLaMA fed with inputs_embeds (scripts/golden/generate_vision_fixtures.py).
import * as tf from '@tensorflow/tfjs-core';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { expect, it, describe } from 'vitest';
import { loadInfLlava, readSafetensors } from '../src/index.js';
import { describeEachBackend } from './backends.js';
import { copyWithPoisonedTensor } from './checkpointCopy.js';

const CKPT = 'assets/tiny-inf-llava';
const gen = JSON.parse(readFileSync('test/fixtures/infllava/generation.json', 'utf8')) as { question: string; prompt_ids: number[]; greedy_ids: number[]; max_new_tokens: number };

await describeEachBackend('INF-LLaVA generation', () => {
  it('prompt ids equal LLaVA\'s tokenizer_image_token; generate() decodes the photo and streams text that adds up; no leaks', async () => {
    const before = tf.memory().numTensors;
    const model = await loadInfLlava(CKPT);
    expect(model.promptIds(gen.question)).toEqual(gen.prompt_ids);
    const image = readFileSync('assets/extreme_ironing.jpg');
    let streamed = '';
    const out = await model.generate({ image: new Uint8Array(image), question: gen.question, maxNewTokens: 4, onToken: (s) => (streamed += s) });
    expect(out.tokens.length).toBeGreaterThan(0);
    expect(streamed).toBe(out.text);
    expect(out.stopReason).toBe(out.tokens.length === 4 ? 'max_tokens' : 'eos');
    expect(out.timings.prefill).toBeGreaterThan(0);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('greedy generation from the fixture pixels reproduces transformers token for token', async () => {
    const model = await loadInfLlava(CKPT);
    const { tensors } = readSafetensors(new Uint8Array(readFileSync('test/fixtures/infllava/expected.safetensors')));
    // Swap the image encoder's input for the fixture's normalised pixels.
    const encode = model.vision.encode;
    model.vision.encode = async () => model.vision.encodePixels(tensors['input.pixels'] as tf.Tensor4D);
    const image = tf.zeros([2, 2, 3]) as tf.Tensor3D; // ignored by the swapped encoder
    const out = await model.generate({ image, question: gen.question, maxNewTokens: gen.max_new_tokens });
    model.vision.encode = encode;
    expect(out.tokens).toEqual(gen.greedy_ids);
    model.vision.encode = async () => model.vision.encodePixels(tensors['input.pixels'] as tf.Tensor4D);
    const again = await model.generate({ image, question: gen.question, maxNewTokens: 5, temperature: 0.8, topP: 0.9, seed: 11 });
    const twice = await model.generate({ image, question: gen.question, maxNewTokens: 5, temperature: 0.8, topP: 0.9, seed: 11 });
    model.vision.encode = encode;
    expect(again.tokens).toEqual(twice.tokens); // seeded sampling repeats
    tf.dispose([image, ...Object.values(tensors)]);
    model.dispose();
  });
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
