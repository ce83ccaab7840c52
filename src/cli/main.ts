/**
 * `inf-llava chat`: ask a question about an image.
 *
 *   inf-llava chat [--model DIR] [--vision DIR] [--tokenizer DIR] [--backend tensorflow|wasm|cpu|webgpu]
 *                  [--image photo.jpg] [--max-tokens N] [--temperature T] [--top-p P] [--seed S]
 *                  [--official-tokenization] [--preprocess native|upsampled] [--json] "question"
 *
 * The question is text: `<image>` and special-token spellings in it are tokenised as plain
 * characters. --official-tokenization tokenises it as LLaVA does (markup included).
 * --preprocess upsampled preprocesses the image as the released inference scripts do (the
 * S-pixel processor, then a bicubic upsample) instead of as in training (default: native).
 *
 * Without --model it runs the bundled tiny random checkpoint on the bundled photo: the whole
 * pipeline end to end in seconds, with meaningless words.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { BACKENDS, useBackend, type BackendName } from '../backends/node.js';
import { PREPROCESS_MODES, type PreprocessMode } from '../image/preprocess.js';
import { loadInfLlava, type GenerateResult, type StopReason } from '../pipeline/infLlava.js';

// dist/cli.js → ../assets; src/cli/main.ts (run with tsx) → ../../assets.
const HERE = dirname(fileURLToPath(import.meta.url));
const ASSETS = [resolve(HERE, '..', 'assets'), resolve(HERE, '..', '..', 'assets')].find((d) => existsSync(join(d, 'tiny-inf-llava'))) ?? resolve(HERE, '..', 'assets');
const USAGE = `usage: inf-llava chat [--model DIR] [--vision DIR] [--tokenizer DIR] [--backend ${BACKENDS.join('|')}]
                      [--image FILE] [--max-tokens N] [--temperature T] [--top-p P] [--seed S]
                      [--official-tokenization] [--preprocess native|upsampled] [--json] "question"`;
const HELP = `${USAGE}
  --max-tokens N             at most N new tokens (a positive integer; default 256)
  --temperature T            sampling temperature (>= 0; default 0: greedy)
  --top-p P                  nucleus mass in (0, 1] (default 1: off)
  --seed S                   the sampler's integer seed (default 0)
  --official-tokenization    read <image> and special-token text in the question as LLaVA does
                             (default: the question is plain text)
  --preprocess native|upsampled
                             native (default): the CLIP processor scaled to the crops' size,
                             as the model was trained; upsampled: the 336-pixel processor, then
                             a bicubic upsample, as the released inference scripts do`;

class UsageError extends Error {}

/** The stop reason in words; `context`: the model's max_position_embeddings. */
function stopWords(reason: StopReason, context: number): string {
  if (reason === 'eos') return 'eos (the model ended its answer)';
  if (reason === 'max_tokens') return 'max_tokens (--max-tokens reached)';
  return `context (the prompt and the answer fill the model's ${context} positions)`;
}

interface Args {
  model?: string;
  vision?: string;
  tokenizer?: string;
  backend: string;
  image?: string;
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  official: boolean;
  preprocess: PreprocessMode;
  json: boolean;
  question: string;
}

function parse(argv: string[]): Args {
  if (argv[0] !== 'chat') throw new UsageError(argv.length ? `unknown command ${JSON.stringify(argv[0])}` : 'missing command');
  const a: Partial<Args> & { rest: string[] } = { rest: [], backend: 'tensorflow', maxTokens: 256, temperature: 0, topP: 1, seed: 0, official: false, preprocess: 'native', json: false };
  // A decimal number (Number() alone would take "", "0x10", "Infinity"), then the flag's range.
  const number = (flag: string, v: string, ok: (n: number) => boolean, what: string) => {
    if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v.trim())) throw new UsageError(`${flag} needs a number, got ${JSON.stringify(v)}`);
    const n = Number(v);
    if (!ok(n)) throw new UsageError(`${flag} must be ${what}, got ${v}`);
    return n;
  };
  for (let i = 1; i < argv.length; i++) {
    const k = argv[i]!;
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${k} needs a value`);
      return v;
    };
    switch (k) {
      case '--model': a.model = next(); break;
      case '--vision': a.vision = next(); break;
      case '--tokenizer': a.tokenizer = next(); break;
      case '--backend': a.backend = next(); break;
      case '--image': a.image = next(); break;
      case '--max-tokens': a.maxTokens = number(k, next(), (n) => Number.isSafeInteger(n) && n >= 1, 'a positive integer'); break;
      case '--temperature': a.temperature = number(k, next(), (n) => Number.isFinite(n) && n >= 0, 'a finite number >= 0'); break;
      case '--top-p': a.topP = number(k, next(), (n) => n > 0 && n <= 1, 'in (0, 1]'); break;
      case '--seed': a.seed = number(k, next(), (n) => Number.isSafeInteger(n), 'an integer'); break;
      case '--official-tokenization': a.official = true; break;
      case '--preprocess': {
        const v = next();
        if (!(PREPROCESS_MODES as readonly string[]).includes(v)) throw new UsageError(`--preprocess must be ${PREPROCESS_MODES.join(' or ')}, got ${JSON.stringify(v)}`);
        a.preprocess = v as PreprocessMode;
        break;
      }
      case '--json': a.json = true; break;
      case '-h': case '--help': throw new UsageError('');
      default:
        if (k.startsWith('--')) throw new UsageError(`unknown option ${k}`);
        a.rest.push(k);
    }
  }
  if (a.rest.length !== 1) throw new UsageError(a.rest.length ? 'give the question as one quoted argument' : 'missing the question');
  if (!(BACKENDS as readonly string[]).includes(a.backend!)) throw new UsageError(`unknown backend ${JSON.stringify(a.backend)}; expected one of ${BACKENDS.join(', ')}`);
  return { ...(a as Args), question: a.rest[0]! };
}

function checkDir(flag: string, dir: string | undefined, file: string): void {
  if (dir === undefined) return;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`${flag} ${dir}: no such directory`);
  if (!existsSync(join(dir, file))) throw new UsageError(`${flag} ${dir}: not a checkpoint directory (no ${file})`);
}

/** A one-line progress bar on stderr. */
function bar(label: string, done: number, total: number): void {
  const width = 24;
  const filled = Math.round((done / Math.max(total, 1)) * width);
  process.stderr.write(`\r${label.padEnd(18)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}${done >= total ? '\n' : ''}`);
}

export async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parse(argv);
    checkDir('--model', args.model, 'config.json');
    checkDir('--vision', args.vision, 'config.json');
    checkDir('--tokenizer', args.tokenizer, 'tokenizer.json');
    if (args.image !== undefined && !existsSync(args.image)) throw new UsageError(`--image ${args.image}: no such file`);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(e.message ? `inf-llava: ${e.message}\n${USAGE}\n` : `${HELP}\n`);
    return 2;
  }
  const tiny = args.model === undefined;
  const model = args.model ?? join(ASSETS, 'tiny-inf-llava');
  const imagePath = args.image ?? join(ASSETS, 'extreme_ironing.jpg');
  try {
    await useBackend(args.backend as BackendName);
    if (!args.json && tiny) process.stderr.write('Using the bundled tiny random checkpoint: the pipeline is real, its words are random.\n');
    const t0 = performance.now();
    bar('loading weights', 0, 3);
    const m = await loadInfLlava(model, { visionDir: args.vision, tokenizerDir: args.tokenizer });
    bar('loading weights', 3, 3);
    const loadMs = performance.now() - t0;
    let result: GenerateResult;
    const context = m.llm.config.maxPositionEmbeddings;
    try {
      result = await m.generate({
        image: new Uint8Array(readFileSync(imagePath)),
        question: args.question,
        maxNewTokens: args.maxTokens,
        temperature: args.temperature,
        topP: args.topP,
        seed: args.seed,
        questionMarkup: args.official ? 'official' : 'literal',
        preprocess: args.preprocess,
        onProgress: (done, total) => bar('encoding image', done, total),
        onToken: args.json ? undefined : (text) => process.stdout.write(text),
      });
    } finally {
      m.dispose();
    }
    const timings = { load: loadMs, ...result.timings };
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ model, image: imagePath, backend: tf.getBackend(), question: args.question, text: result.text, tokens: result.tokens, stop_reason: result.stopReason, timings_ms: timings })}\n`);
    } else {
      process.stdout.write('\n');
      const line = Object.entries(timings).map(([k, v]) => `${k} ${k === 'tokens_per_second' ? v.toFixed(2) : `${v.toFixed(0)} ms`}`).join(', ');
      process.stderr.write(`\n[${tf.getBackend()}] ${result.tokens.length} tokens, stopped: ${stopWords(result.stopReason, context)}; ${line}\n`);
    }
    return 0;
  } catch (e) {
    process.stderr.write(`inf-llava: ${(e as Error).message}\n`);
    return 1;
  }
}
