/**
 * The tokenizer against transformers' fast tokenizer on a tiny LLaMA-3-style byte-level BPE
 * (test/fixtures/tokenizer, from scripts/golden/generate_tokenizer_fixtures.py).
 */
import { mkdtemp, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { loadTokenizer, tokenizerFromJson, type Tokenizer } from '../src/pipeline/tokenizer.js';

const DIR = 'test/fixtures/tokenizer/tiny-llama3-tokenizer';

interface EncodingCase {
  text: string;
  ids: number[];
  ids_no_special: number[];
  tokens: string[];
  pre_tokens: string[];
  decoded: string;
  decoded_skip_special: string;
  decoded_cleanup: string;
}
interface Expected {
  vocab_size: number;
  special_tokens: Record<string, number>;
  bos_token_id: number;
  eos_token_id: number;
  encodings: EncodingCase[];
}
const expected = JSON.parse(readFileSync('test/fixtures/tokenizer/expected.json', 'utf8')) as Expected;

let tok: Tokenizer;
beforeAll(async () => {
  tok = await loadTokenizer(DIR);
});

describe('loadTokenizer: ids identical to transformers (AutoTokenizer, fast)', () => {
  it('covers the intended strings', () => {
    expect(expected.encodings.length).toBeGreaterThanOrEqual(15);
    expect(expected.encodings.some((e) => e.text === '')).toBe(true);
    expect(expected.encodings.some((e) => /\p{Extended_Pictographic}/u.test(e.text))).toBe(true);
  });

  for (const e of expected.encodings) {
    it(`encodes ${JSON.stringify(e.text.length > 40 ? `${e.text.slice(0, 40)}…` : e.text)}`, () => {
      expect(tok.encode(e.text)).toEqual(e.ids);
      expect(tok.encode(e.text, { addSpecialTokens: true })).toEqual(e.ids);
      expect(tok.encode(e.text, { addSpecialTokens: false })).toEqual(e.ids_no_special);
      expect(e.ids.map((id) => tok.idToken(id))).toEqual(e.tokens);
    });

    it(`decodes ${JSON.stringify(e.text.length > 40 ? `${e.text.slice(0, 40)}…` : e.text)}`, () => {
      expect(tok.decode(e.ids)).toBe(e.decoded);
      expect(tok.decode(e.ids, { skipSpecialTokens: true })).toBe(e.decoded_skip_special);
      expect(tok.decode(e.ids, { cleanUpTokenizationSpaces: true })).toBe(e.decoded_cleanup);
      // Byte-level BPE without cleanup is lossless.
      expect(tok.decode(e.ids_no_special)).toBe(e.text);
    });
  }
});

describe("LLaMA-3's split regex in Tokenizers.js", () => {
  // The ids above only see the regex through a tiny vocabulary; pin the pieces themselves.
  const hf = new HfTokenizer(JSON.parse(readFileSync(join(DIR, 'tokenizer.json'), 'utf8')) as object, {});
  for (const e of expected.encodings) {
    it(`pre-tokenizes ${JSON.stringify(e.text.length > 40 ? `${e.text.slice(0, 40)}…` : e.text)} as the Rust tokenizers do`, () => {
      expect(hf.pre_tokenizer?.pre_tokenize(e.text)).toEqual(e.pre_tokens);
    });
  }
});

describe('loadTokenizer: special tokens and config', () => {
  it('reads BOS/EOS from tokenizer_config.json, ids from the vocabulary', () => {
    expect(tok.bosId).toBe(expected.bos_token_id);
    expect(tok.bosToken).toBe('<|begin_of_text|>');
    expect(tok.eosToken).toBe('<|eot_id|>');
    expect(tok.eosIds).toEqual([expected.eos_token_id]);
    for (const [token, id] of Object.entries(expected.special_tokens)) expect(tok.tokenId(token)).toBe(id);
    expect(tok.tokenId('<|not_a_token|>')).toBeUndefined();
    expect(tok.idToken(-200)).toBeUndefined();
    expect(tok.idToken(1e9)).toBeUndefined();
  });

  it('special tokens sit contiguously at the end of the small vocabulary, in LLaMA-3 order', () => {
    const ids = Object.values(expected.special_tokens);
    expect(Math.min(...ids)).toBe(expected.vocab_size);
    expect(tok.tokenId('<|begin_of_text|>')).toBe(expected.vocab_size + 0);
    expect(tok.tokenId('<|end_of_text|>')).toBe(expected.vocab_size + 1);
    expect(tok.tokenId('<|start_header_id|>')).toBe(expected.vocab_size + 6);
    expect(tok.tokenId('<|end_header_id|>')).toBe(expected.vocab_size + 7);
    expect(tok.tokenId('<|eot_id|>')).toBe(expected.vocab_size + 9);
  });

  it('reads the chat template', () => {
    expect(tok.chatTemplate).toContain("{% if add_generation_prompt %}");
  });

  it('decodes [] to "" and refuses ids outside the vocabulary', () => {
    expect(tok.decode([])).toBe('');
    expect(() => tok.decode([1, -200, 2])).toThrow(/decode: id -200 is not in the tokenizer's vocabulary/);
    expect(() => tok.decode([100000])).toThrow(/id 100000/);
    expect(() => tok.decode([1.5])).toThrow(/id 1.5/);
  });

  it('encode is independent of earlier calls (no state)', () => {
    const a = tok.encode('What is shown in this image?');
    tok.encode('something else entirely 123');
    expect(tok.encode('What is shown in this image?')).toEqual(a);
  });
});

describe('loadTokenizer: files and errors', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'infllava-tok-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  async function folder(name: string, files: Record<string, string | undefined>): Promise<string> {
    const dir = join(tmp, name);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir);
    for (const [file, text] of Object.entries(files)) {
      if (text === undefined) await copyFile(join(DIR, file), join(dir, file));
      else await writeFile(join(dir, file), text);
    }
    return dir;
  }

  it('missing tokenizer.json: names the path', async () => {
    const dir = await folder('empty', {});
    await expect(loadTokenizer(dir)).rejects.toThrow(`loadTokenizer: missing tokenizer.json: no file at ${join(dir, 'tokenizer.json')}`);
  });

  it('malformed tokenizer.json / tokenizer_config.json: names the file', async () => {
    const bad = await folder('bad-json', { 'tokenizer.json': '{"model": {', 'tokenizer_config.json': undefined });
    await expect(loadTokenizer(bad)).rejects.toThrow(/loadTokenizer: .*bad-json\/tokenizer\.json is not valid JSON/);
    const badConfig = await folder('bad-config', { 'tokenizer.json': undefined, 'tokenizer_config.json': '{,}' });
    await expect(loadTokenizer(badConfig)).rejects.toThrow(/bad-config\/tokenizer_config\.json is not valid JSON/);
  });

  it('tokenizer.json that is not a tokenizers file', async () => {
    const dir = await folder('not-tokenizer', { 'tokenizer.json': '{"hello": 1}' });
    await expect(loadTokenizer(dir)).rejects.toThrow(/loadTokenizer: tokenizer\.json .* has no "model" object/);
    const arr = await folder('array', { 'tokenizer.json': '[1, 2]' });
    await expect(loadTokenizer(arr)).rejects.toThrow(/must be a JSON object/);
  });

  it('bos_token not in the vocabulary: clear error', async () => {
    const config = JSON.parse(await readFile(join(DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    const dir = await folder('bad-bos', {
      'tokenizer.json': undefined,
      'tokenizer_config.json': JSON.stringify({ ...config, bos_token: '<s>' }),
    });
    await expect(loadTokenizer(dir)).rejects.toThrow(/bos_token "<s>" .* is not in the tokenizer's vocabulary/);
  });

  it('tokenizer.json alone: no BOS/EOS/template, still the same ids', async () => {
    const dir = await folder('json-only', { 'tokenizer.json': undefined });
    const t = await loadTokenizer(dir);
    expect(t.bosId).toBeUndefined();
    expect(t.eosIds).toEqual([]);
    expect(t.chatTemplate).toBeUndefined();
    for (const e of expected.encodings) expect(t.encode(e.text)).toEqual(e.ids);
  });

  it('falls back to special_tokens_map.json and chat_template.jinja; AddedToken objects', async () => {
    const config = JSON.parse(await readFile(join(DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    const { bos_token: _b, eos_token: _e, chat_template: _c, ...rest } = config;
    const dir = await folder('fallbacks', {
      'tokenizer.json': undefined,
      'tokenizer_config.json': JSON.stringify(rest),
      'special_tokens_map.json': JSON.stringify({
        bos_token: { content: '<|begin_of_text|>', lstrip: false, normalized: false, rstrip: false, single_word: false },
        eos_token: '<|end_of_text|>',
      }),
      'chat_template.jinja': '{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}',
    });
    const t = await loadTokenizer(dir);
    expect(t.bosId).toBe(expected.bos_token_id);
    expect(t.eosIds).toEqual([expected.special_tokens['<|end_of_text|>']]);
    expect(t.chatTemplate).toBe('{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}');
  });

  it('chat_template given as a list of named templates picks "default"', () => {
    const json = JSON.parse(readFileSync(join(DIR, 'tokenizer.json'), 'utf8')) as unknown;
    const t = tokenizerFromJson(json, {
      chat_template: [
        { name: 'tool_use', template: 'TOOLS' },
        { name: 'default', template: 'DEFAULT' },
      ],
    });
    expect(t.chatTemplate).toBe('DEFAULT');
  });
});
