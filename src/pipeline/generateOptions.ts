/**
 * The options of `InfLlava.generate` and their checking: every option is refused with its name
 * and value before any image or tensor work, so a typo costs nothing.
 */
import type { Tensor3D } from '@tensorflow/tfjs-core';
import type { decodeImage } from '../image/decode.js'; // for the doc link
import { PREPROCESS_MODES, type PreprocessMode } from '../image/preprocess.js';
import { isPlainObject, showValue as show } from '../util/format.js';
import { checkOptionNames } from '../util/options.js';
import { QUESTION_MARKUPS, type QuestionMarkup } from './prompt.js';
import type { EncodeOptions } from './vision.js';

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

const GENERATE_OPTIONS = ['image', 'question', 'questionMarkup', 'preprocess', 'maxNewTokens', 'temperature', 'topP', 'seed', 'onToken', 'onProgress'] as const satisfies readonly (keyof GenerateOptions)[];
// Every option of GenerateOptions must be listed above (else it would be refused as unknown).
const _allGenerateOptions: Exclude<keyof GenerateOptions, (typeof GENERATE_OPTIONS)[number]> extends never ? true : never = true;
void _allGenerateOptions;

/** {@link GenerateOptions} checked, defaults filled in. */
export interface CheckedGenerateOptions {
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

/** Checks that `image` is encoded bytes or a live `[H, W, 3]` int32 / float32 tensor. */
function checkImage(fn: string, image: unknown): void {
  if (image instanceof Uint8Array) {
    if (image.length === 0) throw new Error(`${fn}: image is empty (0 bytes)`);
    return;
  }
  const t = image as Partial<Tensor3D> | null | undefined;
  if (typeof t !== 'object' || t === null || !Array.isArray(t.shape) || typeof t.dtype !== 'string' || typeof t.dispose !== 'function') {
    throw new Error(`${fn}: image must be a [H, W, 3] tensor or encoded image bytes (a Uint8Array), got ${show(image)}`);
  }
  if (t.isDisposed) throw new Error(`${fn}: image is a disposed tensor`);
  if (t.shape.length !== 3 || t.shape[2] !== 3) throw new Error(`${fn}: image must be a [H, W, 3] RGB tensor, got shape [${t.shape.join(', ')}]`);
  if (t.dtype !== 'int32' && t.dtype !== 'float32') throw new Error(`${fn}: image must be int32 or float32 (RGB 0..255), got ${t.dtype}`);
  if (t.shape[0] === 0 || t.shape[1] === 0) throw new Error(`${fn}: image is empty (shape [${t.shape.join(', ')}])`);
}

/** Every option of `InfLlava.generate`, checked before any work; defaults filled in. */
export function checkGenerateOptions(g: GenerateOptions): CheckedGenerateOptions {
  const fn = 'generate';
  if (!isPlainObject(g)) throw new Error(`${fn}: expected an options object { image, question, ... }, got ${show(g)}`);
  checkOptionNames(fn, g, GENERATE_OPTIONS);
  const { image, question } = g;
  checkImage(fn, image);
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
