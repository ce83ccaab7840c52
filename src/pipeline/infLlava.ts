/**
 * INF-LLaVA end to end: image + question → answer. `loadInfLlava` loads the three parts (vision.ts,
 * the LLaMA language model, tokenizer.ts) and the stop ids, and wires them to `generate`
 * (generate.ts: prompt, visual tokens in the `-200` slot, prefill, decode steps, stopping).
 */
import { loadLlama, type Llama, type LoadLlamaOptions } from '../models/llama/index.js';
import { checkQuantizeOption, type QuantFormat } from '../quant/groups.js';
import { toDirectory, type CheckpointSource } from '../io/sources/index.js';
import { checkOptionNames } from '../util/options.js';
import { generate, type GenerateResult } from './generate.js';
import type { GenerateOptions } from './generateOptions.js';
import { promptIds, stopIds, type PromptOptions } from './prompt.js';
import { loadTokenizer, type Tokenizer } from './tokenizer.js';
import { loadInfLlavaVision, type InfLlavaVision } from './vision.js';

export { visualTokenCount, type GenerateResult, type StopReason } from './generate.js';
export type { GenerateOptions } from './generateOptions.js';

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
  let stops: Set<number>;
  try {
    // eos_token_id as loadLlama parsed it from config.json (not read again here).
    stops = new Set(stopIds(tokenizer, { eos_token_id: llm.config.eosTokenIds }));
    if (vision.config.hiddenSize !== llm.config.hiddenSize) {
      throw new Error(`loadInfLlava: the projector outputs ${vision.config.hiddenSize} channels but the language model's hidden size is ${llm.config.hiddenSize}`);
    }
  } catch (e) {
    vision.dispose();
    llm.dispose();
    throw e;
  }

  const model: InfLlava = {
    vision,
    llm,
    tokenizer,
    promptIds: (question, o) => promptIds(tokenizer, question, o),
    generate: (g) => generate({ vision, llm, tokenizer, stops }, g),
    dispose() {
      vision.dispose();
      llm.dispose();
    },
  };
  return model;
}
