/**
 * The official INF-LLaVA prompt (conversation version `llama3`, docs/spec.md "The official prompt"),
 * its tokenisation (a transcription of LLaVA's `tokenizer_image_token`), Hugging Face chat
 * templates (rendered by `@huggingface/jinja`) and the generation stop ids.
 */
import { Template } from '@huggingface/jinja';
import type { Tokenizer } from './tokenizer.js';

/** The marker in prompt text where the visual tokens go. */
export const IMAGE_TOKEN = '<image>';
/** LLaVA's `IMAGE_TOKEN_INDEX`: the placeholder id the image embeddings replace. */
export const IMAGE_TOKEN_INDEX = -200;

/** The system message of the `llama3` conversation template. */
export const LLAMA3_SYSTEM_MESSAGE =
  "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

// The official template around the user turn: HEAD + IMAGE_TOKEN + '\n' + question + TAIL.
const PROMPT_HEAD = `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n${LLAMA3_SYSTEM_MESSAGE}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n`;
const PROMPT_TAIL = '<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n';

/**
 * The official single-turn prompt text (docs/spec.md), with {@link IMAGE_TOKEN} before the question:
 * `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>`
 * `<|start_header_id|>user<|end_header_id|>\n\n<image>\n{question}<|eot_id|>`
 * `<|start_header_id|>assistant<|end_header_id|>\n\n`. The question is used verbatim.
 */
export function officialPromptText(question: string): string {
  if (typeof question !== 'string') throw new Error(`officialPromptText: question must be a string, got ${typeof question}`);
  return PROMPT_HEAD + IMAGE_TOKEN + '\n' + question + PROMPT_TAIL;
}

/** Options of {@link promptIds} and {@link tokenizerImageToken}. */
export interface PromptIdsOptions {
  /** The placeholder id put where `<image>` was. Default {@link IMAGE_TOKEN_INDEX} (−200). */
  imageTokenIndex?: number;
}

/**
 * How {@link promptIds} reads markup typed in the question:
 * - `'literal'` (default): the question is text. `<image>` in it stays text (the one image slot
 *   is the template's) and the spelling of a special token (`<|eot_id|>`,
 *   `<|start_header_id|>`) is tokenised as ordinary characters, so user text cannot end its
 *   turn or open a new one. For a question without such spellings the ids are the official
 *   ones, byte for byte.
 * - `'official'`: LLaVA's `tokenizer_image_token` on the whole text, exactly: every `<image>`
 *   in the question is another image slot, special-token spellings become special tokens.
 */
export type QuestionMarkup = 'literal' | 'official';

/** The values of {@link QuestionMarkup}. */
export const QUESTION_MARKUPS: readonly QuestionMarkup[] = ['literal', 'official'];

/** Options of {@link promptIds}. */
export interface PromptOptions extends PromptIdsOptions {
  /** How markup in the question is read (default `'literal'`); see {@link QuestionMarkup}. */
  questionMarkup?: QuestionMarkup;
}

function checkImageTokenIndex(fn: string, imageTokenIndex: number): void {
  if (!Number.isInteger(imageTokenIndex)) {
    throw new Error(`${fn}: imageTokenIndex must be an integer, got ${imageTokenIndex}`);
  }
}

/**
 * `tokenizer_image_token`'s joining of the tokenised chunks: when the first chunk starts with
 * BOS keep that BOS once and drop the first token of every chunk; one placeholder between
 * consecutive chunks.
 */
function joinImageChunks(tokenizer: Tokenizer, chunks: number[][], imageTokenIndex: number): number[] {
  const ids: number[] = [];
  let offset = 0;
  const first = chunks[0];
  if (first !== undefined && first.length > 0 && tokenizer.bosId !== undefined && first[0] === tokenizer.bosId) {
    offset = 1;
    ids.push(first[0]);
  }
  // insert_separator(chunks, [imageTokenIndex] * (offset + 1)), each element sliced [offset:]:
  // the separator then contributes exactly one placeholder.
  chunks.forEach((chunk, i) => {
    if (i > 0) ids.push(...new Array<number>(offset + 1).fill(imageTokenIndex).slice(offset));
    ids.push(...chunk.slice(offset));
  });
  return ids;
}

/**
 * LLaVA's `tokenizer_image_token(prompt, tokenizer)`, exactly: split `prompt` at `<image>`,
 * tokenise every chunk with special tokens (LLaMA-3's tokenizer prepends `<|begin_of_text|>` to
 * each), and when the first chunk starts with BOS keep that BOS once and drop the first token of
 * every chunk; one placeholder id between consecutive chunks.
 */
export function tokenizerImageToken(tokenizer: Tokenizer, prompt: string, opts: PromptIdsOptions = {}): number[] {
  const imageTokenIndex = opts.imageTokenIndex ?? IMAGE_TOKEN_INDEX;
  checkImageTokenIndex('tokenizerImageToken', imageTokenIndex);
  const chunks = prompt.split(IMAGE_TOKEN).map((chunk) => tokenizer.encode(chunk, { addSpecialTokens: true }));
  return joinImageChunks(tokenizer, chunks, imageTokenIndex);
}

/** Index of `needle` in `hay` as a contiguous run, or -1. */
function indexOfRun(hay: readonly number[], needle: readonly number[]): number {
  for (let i = 0; i + needle.length <= hay.length; i++) {
    if (needle.every((v, j) => hay[i + j] === v)) return i;
  }
  return -1;
}

/**
 * The literal tokenisation: the official chunks, except that `"\n" + question` (a piece of its
 * own in the official one: an added token, `<|eot_id|>`, follows it, and Hugging Face
 * tokenizers split at added tokens before the BPE) goes through {@link Tokenizer.encodeLiteral}.
 * The second chunk's template tokens (BOS) are those `encode` adds around the tail.
 */
function literalPromptIds(fn: string, tokenizer: Tokenizer, question: string, imageTokenIndex: number): number[] {
  if (typeof tokenizer.encodeLiteral !== 'function') {
    throw new Error(`${fn}: the tokenizer has no encodeLiteral (plain-text encoding); pass questionMarkup: 'official' or a tokenizer from loadTokenizer / tokenizerFromJson`);
  }
  const head = tokenizer.encode(PROMPT_HEAD, { addSpecialTokens: true });
  const tailPlain = tokenizer.encode(PROMPT_TAIL, { addSpecialTokens: false });
  const tailTemplated = tokenizer.encode(PROMPT_TAIL, { addSpecialTokens: true });
  const at = indexOfRun(tailTemplated, tailPlain);
  if (at < 0) {
    throw new Error(`${fn}: cannot tell this tokenizer's template tokens from the text's; pass questionMarkup: 'official'`);
  }
  const user = [...tailTemplated.slice(0, at), ...tokenizer.encodeLiteral('\n' + question), ...tailPlain, ...tailTemplated.slice(at + tailPlain.length)];
  return joinImageChunks(tokenizer, [head, user], imageTokenIndex);
}

// Tokenizers whose literal tokenisation was checked against the official one on a plain question.
const literalChecked = new WeakSet<Tokenizer>();

function checkLiteralAgrees(fn: string, tokenizer: Tokenizer): void {
  if (literalChecked.has(tokenizer)) return;
  // The literal path assumes the LLaMA-3 layout (the question's piece ends at an added token
  // that strips nothing); a tokenizer where that fails must not silently get other ids.
  for (const probe of ['What is shown in this image?', ' a\n b ']) {
    const literal = literalPromptIds(fn, tokenizer, probe, IMAGE_TOKEN_INDEX);
    const official = tokenizerImageToken(tokenizer, officialPromptText(probe));
    if (literal.length !== official.length || literal.some((v, i) => v !== official[i])) {
      throw new Error(`${fn}: with this tokenizer the literal tokenisation of the plain question ${JSON.stringify(probe)} differs from the official one (not a LLaMA-3 tokenizer?); pass questionMarkup: 'official'`);
    }
  }
  literalChecked.add(tokenizer);
}

/**
 * The official prompt's ids for `question` (docs/spec.md): {@link officialPromptText} tokenised as
 * {@link tokenizerImageToken} does. With LLaMA-3's tokenizer they start with two
 * `<|begin_of_text|>` ids (the auto-added one and the literal one).
 *
 * By default (`questionMarkup: 'literal'`) the question is text: the ids hold exactly one
 * placeholder (the template's, before the question) whatever the question says, and special-token
 * spellings in it are ordinary characters; for a question without `<image>` or special-token
 * spellings the ids equal the official ones. `questionMarkup: 'official'` reproduces LLaVA byte
 * for byte, markup in the question included (a second `<image>` is a second placeholder).
 */
export function promptIds(tokenizer: Tokenizer, question: string, opts: PromptOptions = {}): number[] {
  const fn = 'promptIds';
  if (typeof question !== 'string') throw new Error(`${fn}: question must be a string, got ${typeof question}`);
  const markup = opts.questionMarkup ?? 'literal';
  if (!QUESTION_MARKUPS.includes(markup)) {
    throw new Error(`${fn}: questionMarkup must be 'literal' or 'official', got ${JSON.stringify(markup)}`);
  }
  const imageTokenIndex = opts.imageTokenIndex ?? IMAGE_TOKEN_INDEX;
  checkImageTokenIndex(fn, imageTokenIndex);
  if (markup === 'official') return tokenizerImageToken(tokenizer, officialPromptText(question), { imageTokenIndex });
  checkLiteralAgrees(fn, tokenizer);
  return literalPromptIds(fn, tokenizer, question, imageTokenIndex);
}

/** One chat message. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** Options of {@link applyChatTemplate}. */
export interface ApplyChatTemplateOptions {
  /** End with the assistant header, as transformers' `add_generation_prompt`. Default false. */
  addGenerationPrompt?: boolean;
  /** `bos_token` in the template (the tokenizer's {@link Tokenizer.bosToken}). */
  bosToken?: string;
  /** `eos_token` in the template. */
  eosToken?: string;
  /** More template variables. */
  extra?: Record<string, unknown>;
}

/**
 * Render a Hugging Face Jinja chat template (tokenizer_config.json's `chat_template`) for
 * `messages`, as transformers' `apply_chat_template(messages, tokenize=False)` does.
 */
export function applyChatTemplate(
  template: string,
  messages: readonly ChatMessage[],
  opts: ApplyChatTemplateOptions = {},
): string {
  let compiled: Template;
  try {
    compiled = new Template(template);
  } catch (e) {
    throw new Error(`applyChatTemplate: cannot parse the chat template: ${e instanceof Error ? e.message : String(e)}`);
  }
  const context: Record<string, unknown> = {
    ...opts.extra,
    messages: messages.map((m) => ({ ...m })),
    add_generation_prompt: opts.addGenerationPrompt ?? false,
  };
  if (opts.bosToken !== undefined) context.bos_token = opts.bosToken;
  if (opts.eosToken !== undefined) context.eos_token = opts.eosToken;
  return compiled.render(context);
}

/** The part of a `config.json` / `generation_config.json` {@link stopIds} reads. */
export interface StopIdsConfig {
  eos_token_id?: number | readonly number[] | null;
}

/** LLaMA-3's stop tokens, looked up by name in the tokenizer (their ids are never assumed). */
export const LLAMA3_STOP_TOKENS = ['<|eot_id|>', '<|end_of_text|>'] as const;

/**
 * The ids generation stops at: the config's `eos_token_id` (a number or a list), the tokenizer's
 * EOS ids, and the ids of `<|eot_id|>` and `<|end_of_text|>` where the tokenizer has them, in that
 * order, without repeats. Throws when none is found.
 */
export function stopIds(tokenizer: Tokenizer, config?: StopIdsConfig | null): number[] {
  const ids: number[] = [];
  const add = (id: number, what: string): void => {
    if (!Number.isInteger(id) || id < 0) throw new Error(`stopIds: ${what} must be a non-negative integer, got ${JSON.stringify(id)}`);
    if (!ids.includes(id)) ids.push(id);
  };
  const eos = config?.eos_token_id;
  if (eos !== undefined && eos !== null) {
    const list: readonly unknown[] = Array.isArray(eos) ? eos : [eos];
    for (const id of list) add(id as number, 'config eos_token_id');
  }
  for (const id of tokenizer.eosIds) add(id, "the tokenizer's eos id");
  for (const token of LLAMA3_STOP_TOKENS) {
    const id = tokenizer.tokenId(token);
    if (id !== undefined) add(id, token);
  }
  if (ids.length === 0) {
    throw new Error('stopIds: no stop token: the config has no eos_token_id, the tokenizer no eos_token, <|eot_id|> or <|end_of_text|>');
  }
  return ids;
}
