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

  it('an unsupported dtype in a checkpoint is a clear error', () => {
    const r = cli('chat', '--backend', 'cpu', '--model', copyWithPoisonedTensor(CKPT, 'model.norm.weight'), 'q');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/inf-llava: .*model\.norm\.weight.*(I64|int32)/);
  });
});
