/**
 * `inf-llava chat`: ask a question about an image.
 *
 *   inf-llava chat [--model DIR] [--vision DIR] [--tokenizer DIR] [--backend tensorflow|wasm|cpu|webgpu]
 *                  [--image photo.jpg] [--max-tokens N] [--temperature T] [--top-p P] [--seed S] [--json] "question"
 *
 * Without --model it runs the bundled tiny random checkpoint on the bundled photo: the whole
 * pipeline end to end in seconds, with meaningless words.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { BACKENDS, useBackend, type BackendName } from '../backends/node.js';
import { loadInfLlava } from '../pipeline/infLlava.js';

// dist/cli.js → ../assets; src/cli/main.ts (run with tsx) → ../../assets.
const HERE = dirname(fileURLToPath(import.meta.url));
const ASSETS = [resolve(HERE, '..', 'assets'), resolve(HERE, '..', '..', 'assets')].find((d) => existsSync(join(d, 'tiny-inf-llava'))) ?? resolve(HERE, '..', 'assets');
const USAGE = `usage: inf-llava chat [--model DIR] [--vision DIR] [--tokenizer DIR] [--backend ${BACKENDS.join('|')}]
                      [--image FILE] [--max-tokens N] [--temperature T] [--top-p P] [--seed S] [--json] "question"`;

class UsageError extends Error {}

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
  json: boolean;
  question: string;
}

function parse(argv: string[]): Args {
  if (argv[0] !== 'chat') throw new UsageError(argv.length ? `unknown command ${JSON.stringify(argv[0])}` : 'missing command');
  const a: Partial<Args> & { rest: string[] } = { rest: [], backend: 'tensorflow', maxTokens: 256, temperature: 0, topP: 1, seed: 0, json: false };
  const number = (flag: string, v: string | undefined) => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n)) throw new UsageError(`${flag} needs a number, got ${JSON.stringify(v)}`);
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
      case '--max-tokens': a.maxTokens = number(k, next()); break;
      case '--temperature': a.temperature = number(k, next()); break;
      case '--top-p': a.topP = number(k, next()); break;
      case '--seed': a.seed = number(k, next()); break;
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
    process.stderr.write(`${e.message ? `inf-llava: ${e.message}\n` : ''}${USAGE}\n`);
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
    const image = new Uint8Array(readFileSync(imagePath));
    const result = await m.generate({
      image,
      question: args.question,
      maxNewTokens: args.maxTokens,
      temperature: args.temperature,
      topP: args.topP,
      seed: args.seed,
      onProgress: (done, total) => bar('encoding image', done, total),
      onToken: args.json ? undefined : (text) => process.stdout.write(text),
    });
    m.dispose();
    const timings = { load: loadMs, ...result.timings };
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ model, image: imagePath, backend: tf.getBackend(), question: args.question, text: result.text, tokens: result.tokens, timings_ms: timings })}\n`);
    } else {
      process.stdout.write('\n');
      const line = Object.entries(timings).map(([k, v]) => `${k} ${k === 'tokens_per_second' ? v.toFixed(2) : `${v.toFixed(0)} ms`}`).join(', ');
      process.stderr.write(`\n[${tf.getBackend()}] ${result.tokens.length} tokens; ${line}\n`);
    }
    return 0;
  } catch (e) {
    process.stderr.write(`inf-llava: ${(e as Error).message}\n`);
    return 1;
  }
}
