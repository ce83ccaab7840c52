/**
 * The official prompt, its tokenisation (LLaVA's tokenizer_image_token), chat templates and
 * stop ids, against test/fixtures/tokenizer/expected.json (transformers + a Python transcription).
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  IMAGE_TOKEN_INDEX,
  LLAMA3_SYSTEM_MESSAGE,
  applyChatTemplate,
  officialPromptText,
  promptIds,
  stopIds,
  tokenizerImageToken,
  type ChatMessage,
} from '../src/pipeline/prompt.js';
import { loadTokenizer, type Tokenizer } from '../src/pipeline/tokenizer.js';

const DIR = 'test/fixtures/tokenizer/tiny-llama3-tokenizer';

interface Expected {
  special_tokens: Record<string, number>;
  bos_token_id: number;
  eos_token_id: number;
  image_token_index: number;
  system: string;
  official_prompt_template: string;
  official_prompts: { question: string; text: string; ids: number[] }[];
  raw_prompts: { prompt: string; ids: number[] }[];
  chats: { messages: ChatMessage[]; add_generation_prompt: boolean; rendered: string }[];
}
const expected = JSON.parse(readFileSync('test/fixtures/tokenizer/expected.json', 'utf8')) as Expected;
const id = (token: string): number => {
  const v = expected.special_tokens[token];
  if (v === undefined) throw new Error(token);
  return v;
};

let tok: Tokenizer;
beforeAll(async () => {
  tok = await loadTokenizer(DIR);
});

describe('officialPromptText', () => {
  it("is docs/spec.md's llama3 text", () => {
    expect(IMAGE_TOKEN_INDEX).toBe(expected.image_token_index);
    expect(LLAMA3_SYSTEM_MESSAGE).toBe(expected.system);
    expect(officialPromptText('{question}')).toBe(expected.official_prompt_template);
    for (const p of expected.official_prompts) expect(officialPromptText(p.question)).toBe(p.text);
    expect(officialPromptText('Q')).toBe(
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nA chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n<image>\nQ<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    );
  });
});

describe('promptIds: LLaVA tokenizer_image_token', () => {
  for (const p of expected.official_prompts) {
    it(`matches the Python transcription for ${JSON.stringify(p.question)}`, () => {
      const ids = promptIds(tok, p.question);
      expect(ids).toEqual(p.ids);
      // Two BOS: the auto-added one and the literal one; exactly one placeholder.
      expect(ids.slice(0, 2)).toEqual([expected.bos_token_id, expected.bos_token_id]);
      expect(ids[2]).not.toBe(expected.bos_token_id);
      expect(ids.filter((x) => x === IMAGE_TOKEN_INDEX)).toHaveLength(1);
      expect(ids.filter((x) => x === expected.bos_token_id)).toHaveLength(2);
      // The placeholder sits right after "<|end_header_id|>\n\n"; the ids end with the assistant
      // header.
      const at = ids.indexOf(IMAGE_TOKEN_INDEX);
      const nl = tok.encode('\n\n', { addSpecialTokens: false });
      expect(ids.slice(at - nl.length - 1, at)).toEqual([id('<|end_header_id|>'), ...nl]);
      const tail = [id('<|start_header_id|>'), ...tok.encode('assistant', { addSpecialTokens: false }), id('<|end_header_id|>'), ...nl];
      expect(ids.slice(-tail.length)).toEqual(tail);
      // Everything but the placeholder is the two chunks' own tokens.
      const [before, after] = p.text.split('<image>') as [string, string];
      expect(ids).toEqual([
        expected.bos_token_id,
        ...tok.encode(before, { addSpecialTokens: false }),
        IMAGE_TOKEN_INDEX,
        ...tok.encode(after, { addSpecialTokens: false }),
      ]);
    });
  }

  it('a custom placeholder id', () => {
    const p = expected.official_prompts[0]!;
    expect(promptIds(tok, p.question, { imageTokenIndex: -7 })).toEqual(p.ids.map((x) => (x === -200 ? -7 : x)));
    expect(() => promptIds(tok, 'q', { imageTokenIndex: 1.5 })).toThrow(/imageTokenIndex must be an integer/);
  });

  for (const r of expected.raw_prompts) {
    it(`tokenizerImageToken(${JSON.stringify(r.prompt)}) matches the Python transcription`, () => {
      expect(tokenizerImageToken(tok, r.prompt)).toEqual(r.ids);
    });
  }

  it('a tokenizer that adds no BOS: offset 0, chunks kept whole, one placeholder each', () => {
    const noBos: Tokenizer = {
      ...tok,
      encode: (text, o) => tok.encode(text, { ...o, addSpecialTokens: false }),
    };
    const plain = (s: string): number[] => tok.encode(s, { addSpecialTokens: false });
    expect(tokenizerImageToken(noBos, 'two <image> images <image> here')).toEqual([
      ...plain('two '),
      -200,
      ...plain(' images '),
      -200,
      ...plain(' here'),
    ]);
    // The literal BOS of the official text is then the first id, once.
    const ids = promptIds(noBos, 'What?');
    expect(ids[0]).toBe(expected.bos_token_id);
    expect(ids[1]).not.toBe(expected.bos_token_id);
  });
});

describe('applyChatTemplate (@huggingface/jinja) = transformers apply_chat_template', () => {
  for (const c of expected.chats) {
    it(`${c.messages.map((m) => m.role).join('+')}, add_generation_prompt=${c.add_generation_prompt}`, () => {
      expect(tok.chatTemplate).toBeDefined();
      const rendered = applyChatTemplate(tok.chatTemplate!, c.messages, {
        addGenerationPrompt: c.add_generation_prompt,
        bosToken: tok.bosToken!,
        eosToken: tok.eosToken!,
      });
      expect(rendered).toBe(c.rendered);
    });
  }

  it('the chat template and the official text agree for system + <image> user turn', () => {
    const rendered = applyChatTemplate(
      tok.chatTemplate!,
      [
        { role: 'system', content: LLAMA3_SYSTEM_MESSAGE },
        { role: 'user', content: '<image>\nWhat is shown in this image?' },
      ],
      { addGenerationPrompt: true, bosToken: tok.bosToken! },
    );
    expect(rendered).toBe(officialPromptText('What is shown in this image?'));
  });

  it('defaults: no generation prompt; extra variables; parse errors are clear', () => {
    expect(applyChatTemplate('{{ messages | length }}{{ add_generation_prompt }}', [{ role: 'user', content: 'x' }])).toBe('1false');
    expect(applyChatTemplate('{{ greeting }}', [], { extra: { greeting: 'hi' } })).toBe('hi');
    expect(() => applyChatTemplate('{% for %}', [])).toThrow(/applyChatTemplate: cannot parse the chat template/);
  });
});

describe('stopIds', () => {
  const eot = (): number => id('<|eot_id|>');
  const eotext = (): number => id('<|end_of_text|>');

  it("<|eot_id|> and <|end_of_text|> from the tokenizer when the config has none", () => {
    expect(stopIds(tok)).toEqual([eot(), eotext()]);
    expect(stopIds(tok, {})).toEqual([eot(), eotext()]);
    expect(stopIds(tok, { eos_token_id: null })).toEqual([eot(), eotext()]);
  });

  it('config eos_token_id (a number or a list) first, without repeats', () => {
    expect(stopIds(tok, { eos_token_id: eotext() })).toEqual([eotext(), eot()]);
    expect(stopIds(tok, { eos_token_id: [eotext(), eot()] })).toEqual([eotext(), eot()]);
    expect(stopIds(tok, { eos_token_id: [7, eot()] })).toEqual([7, eot(), eotext()]);
  });

  it('ids are never constants: a tokenizer with other ids gives other stop ids', () => {
    const shifted: Tokenizer = {
      ...tok,
      eosIds: [5],
      tokenId: (t) => (t === '<|eot_id|>' ? 1009 : t === '<|end_of_text|>' ? 1001 : undefined),
    };
    expect(stopIds(shifted)).toEqual([5, 1009, 1001]);
    expect(stopIds(shifted)).not.toContain(128009);
  });

  it('errors: bad config ids, nothing to stop at', () => {
    expect(() => stopIds(tok, { eos_token_id: -1 })).toThrow(/stopIds: config eos_token_id must be a non-negative integer/);
    expect(() => stopIds(tok, { eos_token_id: ['2' as unknown as number] })).toThrow(/non-negative integer, got "2"/);
    const none: Tokenizer = { ...tok, eosIds: [], tokenId: () => undefined };
    expect(() => stopIds(none)).toThrow(/stopIds: no stop token/);
    expect(stopIds(none, { eos_token_id: [3] })).toEqual([3]);
  });
});
