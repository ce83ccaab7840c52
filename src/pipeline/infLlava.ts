/**
 * INF-LLaVA end to end: image + question → answer. The visual tokens (vision.ts) replace the
 * `-200` slot of the official prompt's embeddings (prompt.ts), LLaMA prefills from those
 * embeddings and decodes with its KV cache, sampling greedily or with temperature / top-p.
 */
import { errorMessage as message, showValue as show } from '../util/format.js';
import { concat, getBackend, tidy, type Tensor3D } from '@tensorflow/tfjs-core';
import { guardWasmHeap } from '../backends/wasmGuard.js';
import { decodeImage } from '../image/decode.js';
import { PREPROCESS_MODES, type PreprocessMode } from '../image/preprocess.js';
import { readConfigJson } from '../models/config.js';
import { loadLlama, type KVCache, type Llama, type LoadLlamaOptions } from '../models/llama/index.js';
import { IMAGE_TOKEN_INDEX, QUESTION_MARKUPS, promptIds, stopIds, type PromptOptions, type QuestionMarkup } from './prompt.js';
import { checkOptionNames, didYouMean } from '../util/options.js';
import { checkQuantizeOption, type QuantFormat } from '../quant/groups.js';
import { sampleNext, seededRng } from './sampling.js';
import { loadTokenizer, type Tokenizer } from './tokenizer.js';
import { toDirectory, type CheckpointSource } from '../io/sources/index.js';
import { loadInfLlavaVision, type EncodeOptions, type InfLlavaVision, type InfLlavaVisionConfig } from './vision.js';

export interface GenerateOptions {
  /**
   * `[H, W, 3]` RGB 0..255 (int32 or float32; not disposed), or encoded JPEG / PNG / WebP bytes
   * (decoded with {@link decodeImage}).
   */
  image: Tensor3D | Uint8Array;
  /** The user's question. Text only by default: see `questionMarkup`. */
  question: string;
  /**
   * How markup typed in the question is read. `'literal'` (default): `<image>` and special-token
   * spellings (`<|eot_id|>`) in the question are plain text, so the prompt has exactly one image
   * slot and the user cannot end their turn; for a question without them the ids are the
   * official ones. `'official'`: LLaVA's tokenisation byte for byte, markup included (a question
   * containing `<image>` is then refused: it would need a second image).
   */
  questionMarkup?: QuestionMarkup;
  /**
   * How the image becomes the n·S pixels the crops are taken from: `'native'` (default; the CLIP
   * processor scaled ×n, what the model was trained on) or `'upsampled'` (the released inference
   * scripts: the S-pixel processor, then a float bicubic upsample). See docs/paper-vs-code.md.
   */
  preprocess?: PreprocessMode;
  /** A positive integer; default 256. Generation also stops at the end of the context. */
  maxNewTokens?: number;
  /** Finite, ≥ 0; 0 (default) = greedy. */
  temperature?: number;
  /** Nucleus sampling mass in (0, 1] (default 1 = off). */
  topP?: number;
  /** Integer seed of the sampler's generator (default 0), so runs repeat. */
  seed?: number;
  /** Receives the answer's new text as each token arrives. An error it throws ends generation and is re-thrown as is. */
  onToken?: (text: string) => void;
  /** Progress of the image encoding (CLIP chunks). An error it throws is re-thrown as is. */
  onProgress?: EncodeOptions['onProgress'];
}

/**
 * Why generation stopped: `'eos'` a stop token was generated, `'max_tokens'` `maxNewTokens`
 * tokens were generated, `'context'` the prompt and the answer filled the language model's
 * context (`max_position_embeddings`).
 */
export type StopReason = 'eos' | 'max_tokens' | 'context';

export interface GenerateResult {
  /** The answer, special tokens omitted. */
  text: string;
  /** New token ids, including the stop token when one was generated (as transformers' generate). */
  tokens: number[];
  /** Why generation stopped. */
  stopReason: StopReason;
  /**
   * Milliseconds per stage: decode_image, encode_image, prefill, decode (all steps after the
   * first token), total; time_to_first_token (from the call to the first token sampled), and
   * tokens_per_second (decode steps per second; not milliseconds).
   */
  timings: Record<string, number>;
}

export interface InfLlava {
  vision: InfLlavaVision;
  llm: Llama;
  tokenizer: Tokenizer;
  /**
   * The official prompt's ids for `question`, `-200` marking the image slot (see
   * {@link promptIds}: the question is text unless `questionMarkup: 'official'`).
   */
  promptIds(question: string, opts?: PromptOptions): number[];
  /**
   * Answers `question` about `image`. Every option is checked, and the prompt's length (text
   * ids + visual tokens) against the context, before the image is decoded or encoded. An error
   * from a stage (decode_image, encode_image, prefill, decode) names the stage, its size and
   * the backend, with the original error as `cause`. No tensor is left behind on any path.
   */
  generate(opts: GenerateOptions): Promise<GenerateResult>;
  dispose(): void;
}

/** The number of visual tokens the vision side makes: `(imageSize / patchSize)²` (CLIP's patches, CLS dropped). */
export function visualTokenCount(config: Pick<InfLlavaVisionConfig, 'imageSize' | 'patchSize'>): number {
  return Math.floor(config.imageSize / config.patchSize) ** 2;
}

const GENERATE_OPTIONS = ['image', 'question', 'questionMarkup', 'preprocess', 'maxNewTokens', 'temperature', 'topP', 'seed', 'onToken', 'onProgress'] as const;

interface CheckedOptions {
  image: Tensor3D | Uint8Array;
  question: string;
  questionMarkup: QuestionMarkup;
  preprocess: PreprocessMode;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  onToken?: (text: string) => void;
  onProgress?: EncodeOptions['onProgress'];
}

/** Every option of {@link InfLlava.generate}, checked before any work. */
function checkGenerateOptions(g: GenerateOptions): CheckedOptions {
  const fn = 'generate';
  if (typeof g !== 'object' || g === null || Array.isArray(g)) throw new Error(`${fn}: expected an options object { image, question, ... }, got ${show(g)}`);
  for (const k of Object.keys(g)) {
    if (!(GENERATE_OPTIONS as readonly string[]).includes(k)) {
      throw new Error(`${fn}: unknown option ${JSON.stringify(k)}${didYouMean(k, GENERATE_OPTIONS)}; options: ${GENERATE_OPTIONS.join(', ')}`);
    }
  }
  const { image, question } = g;
  if (image instanceof Uint8Array) {
    if (image.length === 0) throw new Error(`${fn}: image is empty (0 bytes)`);
  } else {
    const t = image as Partial<Tensor3D> | null | undefined;
    if (typeof t !== 'object' || t === null || !Array.isArray(t.shape) || typeof t.dtype !== 'string' || typeof t.dispose !== 'function') {
      throw new Error(`${fn}: image must be a [H, W, 3] tensor or encoded image bytes (a Uint8Array), got ${show(image)}`);
    }
    if (t.isDisposed) throw new Error(`${fn}: image is a disposed tensor`);
    if (t.shape.length !== 3 || t.shape[2] !== 3) throw new Error(`${fn}: image must be a [H, W, 3] RGB tensor, got shape [${t.shape.join(', ')}]`);
    if (t.dtype !== 'int32' && t.dtype !== 'float32') throw new Error(`${fn}: image must be int32 or float32 (RGB 0..255), got ${t.dtype}`);
    if (t.shape[0] === 0 || t.shape[1] === 0) throw new Error(`${fn}: image is empty (shape [${t.shape.join(', ')}])`);
  }
  if (typeof question !== 'string') throw new Error(`${fn}: question must be a string, got ${show(question)}`);
  const questionMarkup = g.questionMarkup ?? 'literal';
  if (!QUESTION_MARKUPS.includes(questionMarkup)) throw new Error(`${fn}: questionMarkup must be 'literal' or 'official', got ${show(questionMarkup)}`);
  const preprocess = g.preprocess ?? 'native';
  if (!PREPROCESS_MODES.includes(preprocess)) throw new Error(`${fn}: preprocess must be 'native' or 'upsampled', got ${show(preprocess)}`);
  const maxNewTokens = g.maxNewTokens ?? 256;
  if (typeof maxNewTokens !== 'number' || !Number.isSafeInteger(maxNewTokens) || maxNewTokens < 1) {
    throw new Error(`${fn}: maxNewTokens must be a positive integer, got ${show(maxNewTokens)}`);
  }
  const temperature = g.temperature ?? 0;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw new Error(`${fn}: temperature must be a finite number >= 0, got ${show(temperature)}`);
  }
  const topP = g.topP ?? 1;
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) throw new Error(`${fn}: topP must be a number in (0, 1], got ${show(topP)}`);
  const seed = g.seed ?? 0;
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) throw new Error(`${fn}: seed must be an integer, got ${show(seed)}`);
  for (const k of ['onToken', 'onProgress'] as const) {
    if (g[k] !== undefined && typeof g[k] !== 'function') throw new Error(`${fn}: ${k} must be a function, got ${show(g[k])}`);
  }
  return { image, question, questionMarkup, preprocess, maxNewTokens, temperature, topP, seed, onToken: g.onToken, onProgress: g.onProgress };
}

/** Options of {@link loadInfLlava}. An unknown option name is an error. */
export interface LoadInfLlavaOptions {
  /** The CLIP vision tower's folder: a path, a URL or Files (default: the tower inside the checkpoint). */
  visionDir?: CheckpointSource;
  /** The folder holding `tokenizer.json`: a path, a URL or Files (default: the checkpoint's). */
  tokenizerDir?: CheckpointSource;
  /** The crop grid (see {@link loadInfLlavaVision}). */
  grid?: number;
  /**
   * Quantise the language model's linear weights at load: `'q8'` or `'q4'` (see
   * {@link LoadLlamaOptions.quantize} and docs/quantization.md). Default: none.
   */
  quantize?: QuantFormat;
}

const LOAD_INF_LLAVA_OPTIONS = ['visionDir', 'tokenizerDir', 'grid', 'quantize'] as const satisfies readonly (keyof LoadInfLlavaOptions)[];
// Every option of LoadInfLlavaOptions must be listed above (else it would be refused as unknown).
const _allLoadInfLlavaOptions: Exclude<keyof LoadInfLlavaOptions, (typeof LOAD_INF_LLAVA_OPTIONS)[number]> extends never ? true : never = true;
void _allLoadInfLlavaOptions;

/**
 * Loads an INF-LLaVA checkpoint (LLaVA format) from a local directory (Node), a base URL (read
 * with HTTP Range requests: only the byte ranges of the tensors it needs) or the `File`s of a
 * picked folder (see {@link CheckpointSource}): the vision side (only its tensors), the LLaMA
 * language model (bf16 kept resident and decoded per layer when the checkpoint is bf16;
 * quantised to q8 / q4 at load with `quantize`) and the tokenizer (`tokenizer.json` in the
 * checkpoint or `tokenizerDir`).
 */
export async function loadInfLlava(source: CheckpointSource, opts: LoadInfLlavaOptions = {}): Promise<InfLlava> {
  checkOptionNames('loadInfLlava', opts, LOAD_INF_LLAVA_OPTIONS);
  // One folder object for every reader: a URL folder fetches each file's header once.
  const dir = await toDirectory(source, 'loadInfLlava');
  checkQuantizeOption('loadInfLlava', opts.quantize);
  const tokenizer = await loadTokenizer(opts.tokenizerDir ?? dir);
  const vision = await loadInfLlavaVision(dir, { visionDir: opts.visionDir, grid: opts.grid });
  let llm: Llama;
  try {
    llm = await loadLlama(dir, opts.quantize === undefined ? {} : { quantize: opts.quantize });
  } catch (e) {
    vision.dispose();
    throw e;
  }
  const config = (await readConfigJson(dir, 'loadInfLlava')) as { eos_token_id?: number | number[] };
  const stops = new Set(stopIds(tokenizer, config));
  if (vision.config.hiddenSize !== llm.config.hiddenSize) {
    throw new Error(`loadInfLlava: the projector outputs ${vision.config.hiddenSize} channels but the language model's hidden size is ${llm.config.hiddenSize}`);
  }

  const model: InfLlava = {
    vision,
    llm,
    tokenizer,
    promptIds: (question, o) => promptIds(tokenizer, question, o),
    async generate(g: GenerateOptions): Promise<GenerateResult> {
      const fn = 'generate';
      const o = checkGenerateOptions(g);
      const timings: Record<string, number> = {};
      const clock = (name: string, t0: number) => (timings[name] = performance.now() - t0);
      const start = performance.now();

      // The prompt and its length, before any tensor work.
      const ids = promptIds(tokenizer, o.question, { questionMarkup: o.questionMarkup });
      const slots = ids.filter((id) => id === IMAGE_TOKEN_INDEX).length;
      if (slots !== 1) {
        throw new Error(`${fn}: the prompt has ${slots} image slots but there is one image (the question contains "<image>" and questionMarkup is 'official'); use questionMarkup: 'literal' to read it as text`);
      }
      const context = llm.config.maxPositionEmbeddings;
      const checkContext = (visualTokens: number): number => {
        const positions = ids.length - 1 + visualTokens;
        if (positions >= context) {
          throw new Error(
            `${fn}: the prompt takes ${positions} positions (${ids.length - 1} text tokens + ${visualTokens} visual tokens) but the language model's context (max_position_embeddings) is ${context}; ` +
              `shorten the question (the prompt may take at most ${context - 1} positions, leaving room for an answer)`,
          );
        }
        return positions;
      };
      checkContext(visualTokenCount(vision.config));
      // On wasm, an allocation the heap cannot hold must throw, not abort the module (which
      // would fail this and every later call): see backends/wasmGuard.ts.
      if (getBackend() === 'wasm') guardWasmHeap();

      // User callbacks' errors pass through unchanged; any other error inside a stage is the
      // backend's, re-thrown with the stage and its size.
      let callbackError: { error: unknown } | undefined;
      const onProgress = o.onProgress && ((done: number, total: number) => {
        try {
          o.onProgress!(done, total);
        } catch (e) {
          callbackError = { error: e };
          throw e;
        }
      });
      const stage = async <T>(what: string, run: () => T | Promise<T>): Promise<T> => {
        try {
          return await run();
        } catch (e) {
          if (callbackError) throw callbackError.error;
          throw new Error(`${fn}: ${what} failed on ${getBackend()}: ${message(e)}`, { cause: e });
        }
      };

      let t0 = performance.now();
      const bytes = o.image instanceof Uint8Array ? o.image : undefined;
      const image = bytes ? await stage(`decode_image of ${bytes.length} bytes`, () => decodeImage(bytes)) : (o.image as Tensor3D);
      clock('decode_image', t0);
      t0 = performance.now();
      const visual = await stage(`encode_image of a ${image.shape[0]}×${image.shape[1]} image`, async () => {
        let out: Tensor3D | undefined;
        try {
          out = await vision.encode(image, { onProgress, preprocess: o.preprocess }); // [1, tokens, hidden]
          await out.data();
          return out;
        } catch (e) {
          out?.dispose();
          throw e;
        } finally {
          if (image !== o.image) image.dispose();
        }
      });
      clock('encode_image', t0);

      let promptLength: number;
      try {
        promptLength = checkContext(visual.shape[1]); // a replaced encoder may make another count
      } catch (e) {
        visual.dispose();
        throw e;
      }

      const rng = seededRng(o.seed);
      const pick = async (logits: Tensor3D): Promise<number> => {
        try {
          const data = await logits.data();
          // A backend may hand back a float32 tensor's values in another typed array (cpu's int32 → float32 cast).
          const last = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
          return sampleNext(last, { temperature: o.temperature, topP: o.topP, rng });
        } finally {
          logits.dispose();
        }
      };
      const tokens: number[] = [];
      let text = '';
      const emit = () => {
        const now = tokenizer.decode(tokens, { skipSpecialTokens: true });
        if (now.length > text.length && !now.endsWith('\uFFFD')) {
          o.onToken?.(now.slice(text.length));
          text = now;
        }
      };
      let stopReason: StopReason;
      let embeds: Tensor3D | undefined;
      let cache: KVCache | undefined;
      try {
        t0 = performance.now();
        let next = await stage(`prefill of ${promptLength} positions`, async () => {
          const slot = ids.indexOf(IMAGE_TOKEN_INDEX);
          embeds = tidy(() => {
            const parts: Tensor3D[] = [];
            if (slot > 0) parts.push(llm.embed([ids.slice(0, slot)]));
            parts.push(visual);
            if (slot + 1 < ids.length) parts.push(llm.embed([ids.slice(slot + 1)]));
            return concat(parts, 1) as Tensor3D; // [1, prompt + visual tokens, hidden]
          });
          visual.dispose();
          // The cache is preallocated for the whole answer (webgpu writes each step in place).
          const cacheCapacity = Math.min(embeds.shape[1] + o.maxNewTokens, llm.config.maxPositionEmbeddings);
          const first = llm.forward({ inputsEmbeds: embeds, logitsToKeep: 1, cacheCapacity });
          cache = first.cache;
          return pick(first.logits);
        });
        embeds?.dispose();
        clock('prefill', t0);
        timings.time_to_first_token = performance.now() - start; // the first token is sampled from the prefill
        t0 = performance.now();
        while (true) {
          tokens.push(next);
          if (stops.has(next)) {
            stopReason = 'eos';
            break;
          }
          emit();
          if (tokens.length >= o.maxNewTokens) {
            stopReason = 'max_tokens';
            break;
          }
          // Prompt and answer fill every position: one more token would sit past the context.
          if (promptLength + tokens.length >= context) {
            stopReason = 'context';
            break;
          }
          const position = promptLength + tokens.length - 1; // of the token fed in
          next = await stage(`decode at position ${position} (new token ${tokens.length + 1})`, () => {
            const step: { logits: Tensor3D; cache: KVCache } = llm.forward({ inputIds: [[tokens[tokens.length - 1]!]], cache, logitsToKeep: 1 });
            cache = step.cache;
            return pick(step.logits);
          });
        }
        clock('decode', t0);
      } finally {
        if (!visual.isDisposed) visual.dispose();
        embeds?.dispose();
        cache?.dispose();
      }
      // The stream held back a trailing partial character (U+FFFD); hand over the rest so the
      // streamed pieces add up to the text.
      const streamed = text;
      text = tokenizer.decode(tokens, { skipSpecialTokens: true });
      if (text.length > streamed.length && text.startsWith(streamed)) o.onToken?.(text.slice(streamed.length));
      // Decode steps: every token after the first (which came from the prefill).
      timings.tokens_per_second = tokens.length > 1 ? (tokens.length - 1) / ((timings.decode ?? 0) / 1000 || Infinity) : 0;
      clock('total', start);
      return { text, tokens, stopReason, timings };
    },
    dispose() {
      vision.dispose();
      llm.dispose();
    },
  };
  return model;
}
