/**
 * One answer, top to bottom ({@link generate}): the prompt's ids → the image decoded and encoded
 * into visual tokens → prefill (the visual tokens spliced into the `-200` slot, one pass of the
 * language model) → the first token id → decode steps, one id in and one id out each, until a
 * stop rule fires → the text. Each step is a small function here; the model only runs forward
 * passes, sampling and stopping happen beside it.
 */
import { concat, getBackend, tidy, type Tensor3D } from '@tensorflow/tfjs-core';
import { guardWasmHeap } from '../backends/wasmGuard.js';
import { decodeImage } from '../image/decode.js';
import type { KVCache, Llama } from '../models/llama/index.js';
import { errorMessage as message } from '../util/format.js';
import { checkGenerateOptions, type CheckedGenerateOptions, type GenerateOptions } from './generateOptions.js';
import { IMAGE_TOKEN_INDEX, promptIds } from './prompt.js';
import { sampleNext, seededRng, type SampleOptions } from './sampling.js';
import type { Tokenizer } from './tokenizer.js';
import type { InfLlavaVision, InfLlavaVisionConfig } from './vision.js';

const FN = 'generate';

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

/** What {@link generate} runs on: the loaded parts and the ids that end an answer. */
export interface GenerateModel {
  vision: InfLlavaVision;
  llm: Llama;
  tokenizer: Tokenizer;
  /** The stop ids (prompt.ts's `stopIds`: the language model's config, then the tokenizer's). */
  stops: ReadonlySet<number>;
}

/** The number of visual tokens the vision side makes: `(imageSize / patchSize)²` (CLIP's patches, CLS dropped). */
export function visualTokenCount(config: Pick<InfLlavaVisionConfig, 'imageSize' | 'patchSize'>): number {
  return Math.floor(config.imageSize / config.patchSize) ** 2;
}

// ---------------------------------------------------------------------------------------
// generate

/**
 * Answers a question about an image (see `InfLlava.generate`). Options and the prompt's length
 * are checked before any tensor work; no tensor is left behind on any path.
 */
export async function generate(model: GenerateModel, g: GenerateOptions): Promise<GenerateResult> {
  const { vision, llm, tokenizer } = model;
  const o = checkGenerateOptions(g);
  const timings = new Timings();

  const ids = imagePromptIds(tokenizer, o);
  const context = llm.config.maxPositionEmbeddings;
  promptPositions(ids, visualTokenCount(vision.config), context);
  // On wasm, an allocation the heap cannot hold must throw, not abort the module (which
  // would fail this and every later call): see backends/wasmGuard.ts.
  if (getBackend() === 'wasm') guardWasmHeap();

  const stages = new Stages();
  const visual = await encodeImageStage(vision, o, stages, timings);
  let promptLength: number;
  try {
    promptLength = promptPositions(ids, visual.shape[1], context); // a replaced encoder may make another count
  } catch (e) {
    visual.dispose();
    throw e;
  }

  const sampling: SampleOptions = { temperature: o.temperature, topP: o.topP, rng: seededRng(o.seed) };
  const rule: StopRule = { stops: model.stops, maxNewTokens: o.maxNewTokens, promptLength, context };
  const stream = new TextStream(tokenizer, o.onToken);
  const tokens: number[] = [];
  let stopReason: StopReason;
  let cache: KVCache | undefined;
  try {
    let t0 = performance.now();
    let next = await stages.run(`prefill of ${promptLength} positions`, () => {
      const first = prefillStep(llm, ids, visual, o.maxNewTokens);
      cache = first.cache;
      return sampleToken(first.logits, sampling);
    });
    timings.since('prefill', t0);
    timings.sinceStart('time_to_first_token'); // the first token is sampled from the prefill
    t0 = performance.now();
    while (true) {
      tokens.push(next);
      const stop = stopReasonAfter(tokens, rule);
      if (stop !== 'eos') stream.push(tokens); // a stop token ends the answer: nothing to stream
      if (stop) {
        stopReason = stop;
        break;
      }
      const position = promptLength + tokens.length - 1; // of the token fed in
      const fed = next;
      next = await stages.run(`decode at position ${position} (new token ${tokens.length + 1})`, () => {
        const step = decodeStep(llm, fed, cache!);
        cache = step.cache;
        return sampleToken(step.logits, sampling);
      });
    }
    timings.since('decode', t0);
  } finally {
    if (!visual.isDisposed) visual.dispose();
    cache?.dispose();
  }

  const text = stream.finish(tokens);
  timings.tokensPerSecond(tokens.length);
  timings.sinceStart('total');
  return { text, tokens, stopReason, timings: timings.values };
}

// ---------------------------------------------------------------------------------------
// The prompt and the context

/** The official prompt's ids for the question, with exactly one `-200` image slot. */
function imagePromptIds(tokenizer: Tokenizer, o: CheckedGenerateOptions): number[] {
  const ids = promptIds(tokenizer, o.question, { questionMarkup: o.questionMarkup });
  const slots = ids.filter((id) => id === IMAGE_TOKEN_INDEX).length;
  if (slots !== 1) {
    throw new Error(`${FN}: the prompt has ${slots} image slots but there is one image (the question contains "<image>" and questionMarkup is 'official'); use questionMarkup: 'literal' to read it as text`);
  }
  return ids;
}

/** The positions the prompt takes once the slot holds `visualTokens`; refused unless one new token still fits the context. */
function promptPositions(ids: readonly number[], visualTokens: number, context: number): number {
  const positions = ids.length - 1 + visualTokens;
  if (positions >= context) {
    throw new Error(
      `${FN}: the prompt takes ${positions} positions (${ids.length - 1} text tokens + ${visualTokens} visual tokens) but the language model's context (max_position_embeddings) is ${context}; ` +
        `shorten the question (the prompt may take at most ${context - 1} positions, leaving room for an answer)`,
    );
  }
  return positions;
}

// ---------------------------------------------------------------------------------------
// The image

/** decode_image and encode_image: the image (bytes or a tensor) → visual tokens `[1, tokens, hidden]`, read back so encoding errors surface here. */
async function encodeImageStage(vision: InfLlavaVision, o: CheckedGenerateOptions, stages: Stages, timings: Timings): Promise<Tensor3D> {
  let t0 = performance.now();
  const bytes = o.image instanceof Uint8Array ? o.image : undefined;
  const image = bytes ? await stages.run(`decode_image of ${bytes.length} bytes`, () => decodeImage(bytes)) : (o.image as Tensor3D);
  timings.since('decode_image', t0);
  t0 = performance.now();
  const onProgress = stages.callback(o.onProgress);
  const visual = await stages.run(`encode_image of a ${image.shape[0]}×${image.shape[1]} image`, async () => {
    let out: Tensor3D | undefined;
    try {
      out = await vision.encode(image, { onProgress, preprocess: o.preprocess });
      await out.data();
      return out;
    } catch (e) {
      out?.dispose();
      throw e;
    } finally {
      if (image !== o.image) image.dispose(); // decoded here; a caller's tensor is left to the caller
    }
  });
  timings.since('encode_image', t0);
  return visual;
}

// ---------------------------------------------------------------------------------------
// Prefill, decode step, sampling

/** The prompt's embeddings with the visual tokens in place of the `-200` id: `[1, positions, hidden]`. */
export function spliceVisualTokens(llm: Llama, ids: readonly number[], visual: Tensor3D): Tensor3D {
  const slot = ids.indexOf(IMAGE_TOKEN_INDEX);
  return tidy(() => {
    const parts: Tensor3D[] = [];
    if (slot > 0) parts.push(llm.embed([ids.slice(0, slot)]));
    parts.push(visual);
    if (slot + 1 < ids.length) parts.push(llm.embed([ids.slice(slot + 1)]));
    return concat(parts, 1) as Tensor3D;
  });
}

/**
 * Prefill: the whole prompt through the language model in one pass. Consumes `visual`; returns
 * the last position's logits and the KV cache.
 */
export function prefillStep(llm: Llama, ids: readonly number[], visual: Tensor3D, maxNewTokens: number): { logits: Tensor3D; cache: KVCache } {
  let embeds: Tensor3D;
  try {
    embeds = spliceVisualTokens(llm, ids, visual);
  } finally {
    visual.dispose(); // the embeddings hold a copy; free it before the forward pass
  }
  try {
    // Preallocated for the whole answer (webgpu writes each step in place).
    const cacheCapacity = Math.min(embeds.shape[1] + maxNewTokens, llm.config.maxPositionEmbeddings);
    return llm.forward({ inputsEmbeds: embeds, logitsToKeep: 1, cacheCapacity });
  } finally {
    embeds.dispose();
  }
}

/** One decode step: `tokenId` in at the cache's next position (the cache is consumed); its logits and the longer cache. */
export function decodeStep(llm: Llama, tokenId: number, cache: KVCache): { logits: Tensor3D; cache: KVCache } {
  return llm.forward({ inputIds: [[tokenId]], cache, logitsToKeep: 1 });
}

/** The next token id from one position's logits `[1, 1, vocab]` (disposed), with {@link sampleNext}. */
export async function sampleToken(logits: Tensor3D, opts: SampleOptions): Promise<number> {
  try {
    const data = await logits.data();
    // A backend may hand back a float32 tensor's values in another typed array (cpu's int32 → float32 cast).
    const last = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
    return sampleNext(last, opts);
  } finally {
    logits.dispose();
  }
}

// ---------------------------------------------------------------------------------------
// Stopping and streaming

/** What {@link stopReasonAfter} checks against. */
export interface StopRule {
  stops: ReadonlySet<number>;
  maxNewTokens: number;
  /** The positions the prompt takes (text ids + visual tokens). */
  promptLength: number;
  /** `max_position_embeddings`. */
  context: number;
}

/** Why generation ends with `tokens` (the newest last), or undefined to go on. A stop token wins, then the caller's limit. */
export function stopReasonAfter(tokens: readonly number[], rule: StopRule): StopReason | undefined {
  if (rule.stops.has(tokens[tokens.length - 1]!)) return 'eos';
  if (tokens.length >= rule.maxNewTokens) return 'max_tokens';
  // Prompt and answer fill every position: one more token would sit past the context.
  if (rule.promptLength + tokens.length >= rule.context) return 'context';
  return undefined;
}

/**
 * The answer's text as tokens arrive. Each call decodes all the tokens so far (a token may
 * change how the previous ones read) and hands `onToken` the new text; text ending in U+FFFD is
 * held back, since that is a character whose remaining bytes are in tokens still to come.
 */
export class TextStream {
  private text = '';

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly onToken: ((text: string) => void) | undefined,
  ) {}

  push(tokens: readonly number[]): void {
    const now = this.tokenizer.decode(tokens, { skipSpecialTokens: true });
    if (now.length > this.text.length && !now.endsWith('\uFFFD')) {
      this.onToken?.(now.slice(this.text.length));
      this.text = now;
    }
  }

  /** The whole answer; what was held back is handed over, so the streamed pieces add up to it. */
  finish(tokens: readonly number[]): string {
    const streamed = this.text;
    const text = this.tokenizer.decode(tokens, { skipSpecialTokens: true });
    if (text.length > streamed.length && text.startsWith(streamed)) this.onToken?.(text.slice(streamed.length));
    return text;
  }
}

// ---------------------------------------------------------------------------------------
// Timings

/** Stage timings in milliseconds; the keys keep the order they were first set in. */
class Timings {
  readonly values: Record<string, number> = {};
  private readonly start = performance.now();

  /** Records `name` as the time since `t0`. */
  since(name: string, t0: number): void {
    this.values[name] = performance.now() - t0;
  }

  /** Records `name` as the time since the call began. */
  sinceStart(name: string): void {
    this.since(name, this.start);
  }

  /** Decode steps per second: every token after the first (which came from the prefill). */
  tokensPerSecond(tokens: number): void {
    this.values.tokens_per_second = tokens > 1 ? (tokens - 1) / ((this.values.decode ?? 0) / 1000 || Infinity) : 0;
  }
}

// ---------------------------------------------------------------------------------------
// Stage errors

/**
 * Runs the stages of one call. An error inside a stage is the backend's and is re-thrown with
 * the stage and its size (the original as `cause`); a user callback's error passes through as is.
 */
class Stages {
  private callbackError: { error: unknown } | undefined;

  /** `f` wrapped so that its error is recognised inside a stage (and re-thrown unchanged). */
  callback<A extends unknown[]>(f: ((...args: A) => void) | undefined): ((...args: A) => void) | undefined {
    return f && ((...args: A) => {
      try {
        f(...args);
      } catch (e) {
        this.callbackError = { error: e };
        throw e;
      }
    });
  }

  async run<T>(what: string, body: () => T | Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (e) {
      if (this.callbackError) throw this.callbackError.error;
      throw new Error(`${FN}: ${what} failed on ${getBackend()}: ${message(e)}`, { cause: e });
    }
  }
}

