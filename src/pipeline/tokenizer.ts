/**
 * The language model's tokenizer (LLaMA-3's byte-level BPE for the official checkpoint), read from
 * a Hugging Face checkpoint's `tokenizer.json` and `tokenizer_config.json` and run by
 * `@huggingface/tokenizers` (Tokenizers.js): no hand-written BPE here.
 *
 * Special token ids (BOS, EOS) come from the checkpoint's files, never from constants.
 *
 * {@link loadTokenizer} reads a local folder (Node), a URL or Files; no Node built-in is
 * imported (see io/sources/). {@link tokenizerFromJson} builds one from parsed JSON anywhere.
 */
import { errorMessage as message, isPlainObject } from '../util/format.js';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { toDirectory, utf8Text, type CheckpointSource } from '../io/sources/index.js';

/** Options of {@link Tokenizer.encode}. */
export interface TokenizeOptions {
  /**
   * Apply the tokenizer's post-processor template (LLaMA-3's prepends `<|begin_of_text|>`), as
   * transformers' `tokenizer(text)` does. Default true.
   */
  addSpecialTokens?: boolean;
}

/** Options of {@link Tokenizer.decode}. */
export interface DetokenizeOptions {
  /** Leave special tokens (`<|eot_id|>`, ...) out of the text. Default false. */
  skipSpecialTokens?: boolean;
  /**
   * Remove the space before `.`, `?`, `!`, `,` and some contractions. Default: the checkpoint's
   * `clean_up_tokenization_spaces`, except for BPE tokenizers (LLaMA-3), where it is false, as in
   * transformers ≥ 5 (transformers 4.x applied LLaMA-3's `true`, which corrupts text such as
   * `"a , b"`).
   */
  cleanUpTokenizationSpaces?: boolean;
}

/** A text tokenizer: ids in, text out, special-token lookups. */
export interface Tokenizer {
  /**
   * Token ids of `text` (with the template's special tokens unless `addSpecialTokens: false`).
   * Text spelling an added token (`<|eot_id|>`, …) becomes that token, as in transformers.
   */
  encode(text: string, opts?: TokenizeOptions): number[];
  /**
   * Token ids of `text` as plain text: the spelling of an added / special token (`<|eot_id|>`,
   * `<|start_header_id|>`) is not recognised but split by the pre-tokenizer and run through the
   * BPE like any other text, and no template token (BOS) is added. For text without such
   * spellings it equals `encode(text, { addSpecialTokens: false })`. Used for user text in
   * prompts (see `promptIds`). Optional: tokenizers made by {@link tokenizerFromJson} have it.
   */
  encodeLiteral?(text: string): number[];
  /** Text of `ids`. Throws on an id the vocabulary lacks (negative ids such as -200 included). */
  decode(ids: readonly number[], opts?: DetokenizeOptions): string;
  /** The id of a token string (vocabulary or added token), or undefined. */
  tokenId(token: string): number | undefined;
  /** The token string of an id, or undefined. */
  idToken(id: number): string | undefined;
  /** `bos_token` of tokenizer_config.json / special_tokens_map.json, when it names one. */
  bosToken?: string;
  bosId?: number;
  /** `eos_token`: may be absent. */
  eosToken?: string;
  /** The ids of `eos_token` (empty when the files name none). */
  eosIds: number[];
  /** The checkpoint's Jinja chat template (tokenizer_config.json or chat_template.jinja). */
  chatTemplate?: string;
}

/** Options of {@link tokenizerFromJson}. */
export interface TokenizerFromJsonOptions {
  /** `special_tokens_map.json`: fallback for `bos_token` / `eos_token`. */
  specialTokensMap?: unknown;
  /** A chat template from elsewhere (`chat_template.jinja`), used when the config has none. */
  chatTemplate?: string;
  /** Where the JSON came from, for error messages. */
  source?: string;
}

/** A special-token entry: `"<|eot_id|>"` or `{"__type": "AddedToken", "content": "<|eot_id|>", ...}`. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isPlainObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

/** `chat_template`: a string, or a list of `{name, template}` (the `default` one, else the first). */
function chatTemplateOf(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v.filter(
      (t): t is { name?: unknown; template: string } => isPlainObject(t) && typeof t.template === 'string',
    );
    return (named.find((t) => t.name === 'default') ?? named[0])?.template;
  }
  return undefined;
}

/**
 * A {@link Tokenizer} from the parsed contents of `tokenizer.json` and (optionally)
 * `tokenizer_config.json`. Works anywhere (no file system).
 */
export function tokenizerFromJson(
  tokenizerJson: unknown,
  tokenizerConfig: unknown = {},
  opts: TokenizerFromJsonOptions = {},
): Tokenizer {
  const FN = 'tokenizerFromJson';
  const where = opts.source ? ` (${opts.source})` : '';
  if (!isPlainObject(tokenizerJson)) {
    throw new Error(`${FN}: tokenizer.json${where} must be a JSON object`);
  }
  if (!isPlainObject(tokenizerJson.model)) {
    throw new Error(`${FN}: tokenizer.json${where} has no "model" object: not a Hugging Face tokenizers file`);
  }
  const config = tokenizerConfig ?? {};
  if (!isPlainObject(config)) {
    throw new Error(`${FN}: tokenizer_config.json${where} must be a JSON object`);
  }
  const json = { ...tokenizerJson, added_tokens: Array.isArray(tokenizerJson.added_tokens) ? tokenizerJson.added_tokens : [] };
  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(json, config);
  } catch (e) {
    throw new Error(`${FN}: cannot build the tokenizer${where}: ${message(e)}`);
  }

  const modelType = typeof tokenizerJson.model.type === 'string' ? tokenizerJson.model.type : undefined;
  const cleanUpDefault = config.clean_up_tokenization_spaces === true && modelType !== 'BPE';
  const map = isPlainObject(opts.specialTokensMap) ? opts.specialTokensMap : {};

  const tokenId = (token: string): number | undefined => hf.token_to_id(token);
  const idToken = (id: number): string | undefined =>
    Number.isInteger(id) && id >= 0 ? hf.id_to_token(id) : undefined;

  const special = (key: 'bos_token' | 'eos_token'): { token?: string; id?: number } => {
    const token = tokenContent(config[key]) ?? tokenContent(map[key]);
    if (token === undefined) return {};
    const id = tokenId(token);
    if (id === undefined) {
      throw new Error(`${FN}: ${key} ${JSON.stringify(token)}${where} is not in the tokenizer's vocabulary`);
    }
    return { token, id };
  };
  const bos = special('bos_token');
  const eos = special('eos_token');
  const chatTemplate = chatTemplateOf(config.chat_template) ?? opts.chatTemplate;

  // A second instance without the added tokens encodes text with no special-token matching
  // (Tokenizers.js splits at added tokens before the BPE; LLaMA-3's specials exist only there).
  // Built on first use: for a 128k vocabulary it costs a second vocabulary in memory.
  let literal: HfTokenizer | undefined;
  const literalTokenizer = (): HfTokenizer => {
    if (literal) return literal;
    try {
      literal = new HfTokenizer({ ...tokenizerJson, added_tokens: [] }, config);
    } catch (e) {
      throw new Error(`encodeLiteral: cannot build the tokenizer without its added tokens${where}: ${message(e)}`);
    }
    return literal;
  };

  const tokenizer: Tokenizer = {
    encode(text: string, o: TokenizeOptions = {}): number[] {
      if (typeof text !== 'string') throw new Error(`encode: text must be a string, got ${typeof text}`);
      return hf.encode(text, { add_special_tokens: o.addSpecialTokens ?? true }).ids;
    },
    encodeLiteral(text: string): number[] {
      if (typeof text !== 'string') throw new Error(`encodeLiteral: text must be a string, got ${typeof text}`);
      const { ids, tokens } = literalTokenizer().encode(text, { add_special_tokens: false });
      // Byte-level BPE covers every byte; a vocabulary that does not would give undefined ids.
      const bad = ids.findIndex((id: number) => !Number.isInteger(id));
      if (bad >= 0) throw new Error(`encodeLiteral: piece ${JSON.stringify(tokens[bad])} of ${JSON.stringify(text)} is not in the vocabulary and the tokenizer has no unk token`);
      return ids;
    },
    decode(ids: readonly number[], o: DetokenizeOptions = {}): string {
      for (const id of ids) {
        if (idToken(id) === undefined) {
          throw new Error(`decode: id ${id} is not in the tokenizer's vocabulary`);
        }
      }
      if (ids.length === 0) return '';
      return hf.decode([...ids], {
        skip_special_tokens: o.skipSpecialTokens ?? false,
        clean_up_tokenization_spaces: o.cleanUpTokenizationSpaces ?? cleanUpDefault,
      });
    },
    tokenId,
    idToken,
    eosIds: eos.id === undefined ? [] : [eos.id],
  };
  if (bos.token !== undefined) tokenizer.bosToken = bos.token;
  if (bos.id !== undefined) tokenizer.bosId = bos.id;
  if (eos.token !== undefined) tokenizer.eosToken = eos.token;
  if (chatTemplate !== undefined) tokenizer.chatTemplate = chatTemplate;
  return tokenizer;
}

/**
 * Load a Hugging Face tokenizer from a checkpoint folder: a local path (Node), an `http(s)` base
 * URL, the `File`s of a picked folder or a `ModelDirectory` (see {@link CheckpointSource}).
 * Reads `tokenizer.json` (required), `tokenizer_config.json` (chat template, BOS/EOS, cleanup
 * flag), `special_tokens_map.json` and `chat_template.jinja` (fallbacks), each optional.
 */
export async function loadTokenizer(source: CheckpointSource): Promise<Tokenizer> {
  const FN = 'loadTokenizer';
  const dir = await toDirectory(source, FN, 'use tokenizerFromJson on fetched JSON');

  const readText = async (file: string, required: boolean): Promise<string | undefined> => {
    const p = dir.pathOf(file);
    let bytes: Uint8Array | undefined;
    try {
      bytes = await dir.readFile(file);
    } catch (e) {
      const m = message(e);
      throw new Error(`${FN}: cannot read ${p}: ${m.startsWith(`${p}: `) ? m.slice(p.length + 2) : m}`, { cause: e });
    }
    if (bytes === undefined && required) throw new Error(`${FN}: missing ${file}: no file at ${p}`);
    return bytes === undefined ? undefined : utf8Text(bytes);
  };
  const readJson = async (file: string, required: boolean): Promise<unknown> => {
    const text = await readText(file, required);
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      throw new Error(`${FN}: ${dir.pathOf(file)} is not valid JSON: ${message(e)}`);
    }
  };

  const [tokenizerJson, config, specialTokensMap, chatTemplate] = await Promise.all([
    readJson('tokenizer.json', true),
    readJson('tokenizer_config.json', false),
    readJson('special_tokens_map.json', false),
    readText('chat_template.jinja', false),
  ]);
  const opts: TokenizerFromJsonOptions = { source: dir.name, specialTokensMap };
  if (chatTemplate !== undefined) opts.chatTemplate = chatTemplate;
  try {
    return tokenizerFromJson(tokenizerJson, config ?? {}, opts);
  } catch (e) {
    throw new Error(`${FN}: ${message(e).replace(/^tokenizerFromJson: /, '')}`);
  }
}
