/**
 * `inf-llava chat`: ask a question about an image.
 *
 *   inf-llava chat [--model DIR] [--vision DIR] [--tokenizer DIR] [--backend auto|tensorflow|wasm|cpu|webgpu]
 *                  [--image photo.jpg] [--max-tokens N] [--temperature T] [--top-p P] [--seed S]
 *                  [--official-tokenization] [--preprocess native|upsampled] [--quantize q8|q4] [--json] "question"
 *   inf-llava --help | --version
 *
 * The question is text: `<image>` and special-token spellings in it are tokenised as plain
 * characters. --official-tokenization tokenises it as LLaVA does (markup included).
 * --preprocess upsampled preprocesses the image as the released inference scripts do (the
 * S-pixel processor, then a bicubic upsample) instead of as in training (default: native).
 * --quantize q8|q4 quantises the language model's linear weights at load (docs/quantization.md).
 *
 * Without --backend it starts the fastest backend installed that starts (tensorflow, then wasm,
 * then cpu) and says which on stderr. Without --model it runs the bundled tiny random checkpoint
 * on the bundled photo: the whole pipeline end to end in seconds, with meaningless words.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { BACKENDS, BackendUnavailableError, useBackend, useFastestBackend, type BackendName } from '../backends/node.js';
import { resolveImageDecoder } from '../image/decode.js';
import { formatName, sniffImageFormat } from '../image/decodeJs.js';
import { PREPROCESS_MODES, type PreprocessMode } from '../image/preprocess.js';
import { loadInfLlava, type GenerateResult, type StopReason } from '../pipeline/infLlava.js';
import { QUANT_FORMATS, type QuantFormat } from '../quant/groups.js';

// dist/cli.js → ../assets, ../package.json; src/cli/main.ts (run with tsx) → ../../assets, ../../package.json.
const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = [resolve(HERE, '..'), resolve(HERE, '..', '..')].find((d) => existsSync(join(d, 'assets', 'tiny-inf-llava'))) ?? resolve(HERE, '..');
const ASSETS = join(ROOT, 'assets');

/** This package's version, read from its package.json at run time. */
function version(): string {
  for (const dir of [resolve(HERE, '..'), resolve(HERE, '..', '..')]) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'inf-llava' && pkg.version) return pkg.version;
    } catch {
      // not here
    }
  }
  return 'unknown';
}

/** --max-tokens without the flag: a short answer from the tiny random model, else this. */
const MAX_TOKENS = 256;
const MAX_TOKENS_TINY = 48;

const USAGE = `usage: inf-llava chat [options] "question"
       inf-llava --help | --version`;
const HELP = `${USAGE}

Ask a question about an image with INF-LLaVA on TensorFlow.js. The answer streams to stdout;
progress, the backend and timings go to stderr.

commands:
  chat                       answer "question" (one quoted argument) about --image

options of chat (defaults in brackets):
  --model DIR                INF-LLaVA checkpoint directory (LLaVA format: config.json,
                             safetensors, tokenizer.json) [the bundled tiny random checkpoint:
                             the whole pipeline in seconds, its words are random]
  --vision DIR               CLIP vision tower directory (e.g. clip-vit-large-patch14-336)
                             [the tower inside --model]
  --tokenizer DIR            directory with tokenizer.json [--model]
  --image FILE               the image: JPEG or PNG, or any format sharp reads when it is
                             installed [the bundled photo, extreme_ironing.jpg]
  --backend NAME             auto, tensorflow, wasm, cpu or webgpu [auto: the fastest
                             installed that starts, trying tensorflow, wasm, then cpu;
                             webgpu (a GPU through Dawn and Vulkan) only when named]
  --max-tokens N             at most N new tokens, a positive integer [${MAX_TOKENS}; ${MAX_TOKENS_TINY} with the
                             bundled tiny model]
  --temperature T            sampling temperature, >= 0 [0: greedy]
  --top-p P                  nucleus mass in (0, 1] [1: off]
  --seed S                   the sampler's integer seed [0]
  --official-tokenization    read <image> and special-token text in the question as LLaVA
                             does [off: the question is plain text]
  --preprocess native|upsampled
                             native: the CLIP processor scaled to the crops' size, as the
                             model was trained; upsampled: the 336-pixel processor, then a
                             bicubic upsample, as the released inference scripts do [native]
  --quantize q8|q4           quantise the language model's linear weights at load: q8 (int8,
                             ~1.06 bytes per weight) or q4 (4-bit, ~0.63 bytes per weight);
                             LLaMA-3-8B q4 needs ~5.7 GB instead of 16 GB of bf16 [none: the
                             checkpoint's dtype]
  --json                     print one JSON object (text, tokens, stop_reason, timings_ms)
                             instead of streaming the answer [off]

options:
  -h, --help                 print this help and exit
  -v, --version              print the version and exit

environment:
  INF_LLAVA_NO_SHARP=1       decode the image with the built-in JPEG/PNG decoders even when
                             sharp is installed (they are the fallback without it; their JPEG
                             pixels differ slightly from Pillow's)
  TF_CPP_MIN_LOG_LEVEL       TensorFlow's native log level for --backend tensorflow [2: errors]

examples:
  inf-llava chat "What is unusual about this image?"
  inf-llava chat --backend wasm --image photo.jpg --max-tokens 64 "Describe the image."`;

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
  backend: BackendName | 'auto';
  image?: string;
  /** undefined: the default, which depends on --model. */
  maxTokens?: number;
  temperature: number;
  topP: number;
  seed: number;
  official: boolean;
  preprocess: PreprocessMode;
  quantize?: QuantFormat;
  json: boolean;
  question: string;
}

type Command = { kind: 'help' } | { kind: 'version' } | { kind: 'chat'; args: Args };

function parse(argv: string[]): Command {
  // --help and --version win wherever they are (`inf-llava chat --help`, `inf-llava -h`).
  if (argv.some((k) => k === '-h' || k === '--help') || argv[0] === 'help') return { kind: 'help' };
  if (argv.some((k) => k === '-v' || k === '--version')) return { kind: 'version' };
  if (argv[0] !== 'chat') throw new UsageError(argv.length ? `unknown command ${JSON.stringify(argv[0])}` : 'missing command');
  const a: Partial<Args> & { rest: string[] } = { rest: [], backend: 'auto', temperature: 0, topP: 1, seed: 0, official: false, preprocess: 'native', json: false };
  // A decimal number (Number() alone would take "", "0x10", "Infinity"), then the flag's range.
  const number = (flag: string, v: string, ok: (n: number) => boolean, what: string) => {
    if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v.trim())) throw new UsageError(`${flag} needs a number, got ${JSON.stringify(v)}`);
    const n = Number(v);
    if (!ok(n)) throw new UsageError(`${flag} must be ${what}, got ${v}`);
    return n;
  };
  let backend = 'auto';
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
      case '--backend': backend = next(); break;
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
      case '--quantize': {
        const v = next();
        if (!(QUANT_FORMATS as readonly string[]).includes(v)) throw new UsageError(`--quantize must be ${QUANT_FORMATS.join(' or ')}, got ${JSON.stringify(v)}`);
        a.quantize = v as QuantFormat;
        break;
      }
      case '--json': a.json = true; break;
      default:
        if (k.startsWith('--')) throw new UsageError(`unknown option ${k}`);
        a.rest.push(k);
    }
  }
  if (a.rest.length !== 1) throw new UsageError(a.rest.length ? 'give the question as one quoted argument' : 'missing the question');
  if (backend !== 'auto' && !(BACKENDS as readonly string[]).includes(backend)) {
    throw new UsageError(`unknown backend ${JSON.stringify(backend)}; expected one of ${BACKENDS.join(', ')} (or auto: the fastest installed)`);
  }
  return { kind: 'chat', args: { ...(a as Args), backend: backend as Args['backend'], question: a.rest[0]! } };
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

/**
 * Before any backend loads: no "Hi, looks like you are running TensorFlow.js in Node.js…"
 * banner (tfjs-backend-cpu prints it on its first tensor in Node unless the PROD or IS_TEST
 * flag is set; PROD — tf.enableProdMode() — only silences tfjs's warnings in 4.22, IS_TEST
 * would turn on kernel leak checks), none of tfjs's "backend already registered" or failed
 * probe warnings while a backend is chosen, and TensorFlow's native INFO/WARNING lines
 * (tfjs-node) only when TF_CPP_MIN_LOG_LEVEL asks for them.
 */
function quietTfjs(): void {
  tf.enableProdMode();
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
}

/** Starts the backend --backend names, or the fastest installed one, saying which on stderr. */
async function startBackend(backend: Args['backend']): Promise<void> {
  if (backend === 'auto') {
    const chosen = await useFastestBackend().catch((e: Error) => {
      throw new Error(e.message.replace(/^useFastestBackend: /, ''), { cause: e });
    });
    process.stderr.write(`backend: ${chosen.summary}\n`);
    return;
  }
  try {
    await useBackend(backend);
  } catch (e) {
    if (!(e instanceof BackendUnavailableError)) throw e;
    const others = ['tensorflow', 'wasm', 'cpu'].filter((b) => b !== backend).map((b) => `--backend ${b}`).join(', ');
    const then = `or choose another backend (${others}), or leave --backend out to use the fastest installed`;
    throw new Error(`backend '${backend}' could not start: ${e.reason}. ${e.installed ? 'To fix it' : 'To get it'}: ${e.fix}; ${then}`, { cause: e });
  }
}

export async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    const command = parse(argv);
    if (command.kind === 'help') {
      process.stdout.write(`${HELP}\n`);
      return 0;
    }
    if (command.kind === 'version') {
      process.stdout.write(`${version()}\n`);
      return 0;
    }
    args = command.args;
    checkDir('--model', args.model, 'config.json');
    checkDir('--vision', args.vision, 'config.json');
    checkDir('--tokenizer', args.tokenizer, 'tokenizer.json');
    if (args.image !== undefined && !existsSync(args.image)) throw new UsageError(`--image ${args.image}: no such file`);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`inf-llava: ${e.message}\n${USAGE}\n(inf-llava --help lists the options)\n`);
    return 2;
  }
  const tiny = args.model === undefined;
  const model = args.model ?? join(ASSETS, 'tiny-inf-llava');
  const imagePath = args.image ?? join(ASSETS, 'extreme_ironing.jpg');
  const maxTokens = args.maxTokens ?? (tiny ? MAX_TOKENS_TINY : MAX_TOKENS);
  quietTfjs();
  try {
    const image = new Uint8Array(readFileSync(imagePath));
    // Without sharp only JPEG and PNG can be read: say so now, not after the weights load.
    const decoder = await resolveImageDecoder();
    if (decoder.decoder === 'js') {
      const format = sniffImageFormat(image);
      if (format !== 'jpeg' && format !== 'png') {
        throw new Error(
          `--image ${imagePath}: ${format ? `a ${formatName(format)} image` : 'neither JPEG nor PNG'}; the built-in decoders (used because ${decoder.why}) read JPEG and PNG only. ` +
            "For other formats install the optional peer dependency 'sharp': npm install sharp",
        );
      }
      process.stderr.write(`image decoder: built-in ${formatName(format)} decoder (${decoder.why}; JPEG pixels can differ slightly from Pillow's: npm install sharp for exact ones)\n`);
    }
    await startBackend(args.backend);
    if (!args.json && tiny) {
      const cap = args.maxTokens === undefined ? ` (at most ${maxTokens} tokens unless --max-tokens)` : '';
      process.stderr.write(`Using the bundled tiny random checkpoint: the pipeline is real, its words are random${cap}.\n`);
    }
    const t0 = performance.now();
    bar('loading weights', 0, 3);
    const m = await loadInfLlava(model, { visionDir: args.vision, tokenizerDir: args.tokenizer, ...(args.quantize ? { quantize: args.quantize } : {}) });
    bar('loading weights', 3, 3);
    const loadMs = performance.now() - t0;
    const weightBytes = m.llm.weightBytes();
    if (args.quantize && !args.json) {
      const mb = (n: number) => `${(n / 1e6).toFixed(n < 1e7 ? 2 : 0)} MB`;
      process.stderr.write(
        `language model weights (${args.quantize}): ${mb(weightBytes.total)} = linear ${mb(weightBytes.linear)} + scales ${mb(weightBytes.scales)} + embedding ${mb(weightBytes.embedding)} + norms ${mb(weightBytes.other)}\n`,
      );
    }
    let result: GenerateResult;
    const context = m.llm.config.maxPositionEmbeddings;
    try {
      result = await m.generate({
        image,
        question: args.question,
        maxNewTokens: maxTokens,
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
      process.stdout.write(`${JSON.stringify({ model, image: imagePath, backend: tf.getBackend(), question: args.question, text: result.text, tokens: result.tokens, stop_reason: result.stopReason, timings_ms: timings, quantize: args.quantize ?? null, weight_bytes: weightBytes })}\n`);
    } else {
      process.stdout.write('\n');
      const line = Object.entries(timings).map(([k, v]) => k === 'tokens_per_second' ? `${v.toFixed(2)} tokens/s` : `${k} ${v.toFixed(0)} ms`).join(', ');
      process.stderr.write(`\n[${tf.getBackend()}] ${result.tokens.length} tokens, stopped: ${stopWords(result.stopReason, context)}; ${line}\n`);
    }
    return 0;
  } catch (e) {
    process.stderr.write(`inf-llava: ${(e as Error).message}\n`);
    return 1;
  }
}
