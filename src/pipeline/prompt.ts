/**
 * The official INF-LLaVA prompt (conversation version `llama3`, SPEC.md "The official prompt"),
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

/**
 * The official single-turn prompt text (SPEC.md), with {@link IMAGE_TOKEN} before the question:
 * `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>`
 * `<|start_header_id|>user<|end_header_id|>\n\n<image>\n{question}<|eot_id|>`
 * `<|start_header_id|>assistant<|end_header_id|>\n\n`. The question is used verbatim.
 */
export function officialPromptText(question: string): string {
  if (typeof question !== 'string') throw new Error(`officialPromptText: question must be a string, got ${typeof question}`);
  return (
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n' +
    LLAMA3_SYSTEM_MESSAGE +
    '<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n' +
    IMAGE_TOKEN +
    '\n' +
    question +
    '<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'
  );
}

/** Options of {@link promptIds} and {@link tokenizerImageToken}. */
export interface PromptIdsOptions {
  /** The placeholder id put where `<image>` was. Default {@link IMAGE_TOKEN_INDEX} (−200). */
  imageTokenIndex?: number;
}

/**
 * LLaVA's `tokenizer_image_token(prompt, tokenizer)`, exactly: split `prompt` at `<image>`,
 * tokenise every chunk with special tokens (LLaMA-3's tokenizer prepends `<|begin_of_text|>` to
 * each), and when the first chunk starts with BOS keep that BOS once and drop the first token of
 * every chunk; one placeholder id between consecutive chunks.
 */
export function tokenizerImageToken(tokenizer: Tokenizer, prompt: string, opts: PromptIdsOptions = {}): number[] {
  const imageTokenIndex = opts.imageTokenIndex ?? IMAGE_TOKEN_INDEX;
  if (!Number.isInteger(imageTokenIndex)) {
    throw new Error(`tokenizerImageToken: imageTokenIndex must be an integer, got ${imageTokenIndex}`);
  }
  const chunks = prompt.split(IMAGE_TOKEN).map((chunk) => tokenizer.encode(chunk, { addSpecialTokens: true }));
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
 * The official prompt's ids for `question` (SPEC.md): {@link officialPromptText} through
 * {@link tokenizerImageToken}. With LLaMA-3's tokenizer they start with two `<|begin_of_text|>`
 * ids (the auto-added one and the literal one) and hold one placeholder.
 */
export function promptIds(tokenizer: Tokenizer, question: string, opts: PromptIdsOptions = {}): number[] {
  return tokenizerImageToken(tokenizer, officialPromptText(question), opts);
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
