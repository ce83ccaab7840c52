"""Generate golden fixtures for the LLaMA-3 tokenizer, the official prompt and the chat template.

Writes:
  test/fixtures/tokenizer/tiny-llama3-tokenizer/{tokenizer.json, tokenizer_config.json,
                                                  special_tokens_map.json}
  test/fixtures/tokenizer/expected.json

Regenerate with:

    bash scripts/golden/setup-venv.sh && .venv/bin/python scripts/golden/generate_tokenizer_fixtures.py

The tokenizer is a tiny byte-level BPE (352 learned tokens: the 256 byte symbols plus 96 merges)
trained with the `tokenizers` library on the paragraphs below. Everything else is built the way
Meta-Llama-3-8B(-Instruct)'s tokenizer.json is built:
  * pre-tokenizer: Sequence[Split(LLaMA-3 regex, Isolated), ByteLevel(add_prefix_space=False,
    use_regex=False)];
  * BPE model with ignore_merges=True;
  * ByteLevel decoder;
  * post-processor: Sequence[ByteLevel, TemplateProcessing("<|begin_of_text|> $A")];
  * LLaMA-3's special tokens as special added tokens, laid out with LLaMA-3's relative ids
    (begin_of_text = +0, end_of_text = +1, start_header_id = +6, end_header_id = +7,
    eot_id = +9, reserved tokens in between) contiguous at the END of the small vocab, as the real
    ones (128000...) sit at the end of LLaMA-3's.
tokenizer_config.json mirrors Meta-Llama-3-8B-Instruct's (bos/eos, added_tokens_decoder,
clean_up_tokenization_spaces=true, PreTrainedTokenizerFast, the official chat_template).

Expected values come from transformers' AutoTokenizer (fast tokenizer) loaded from that folder;
the official prompt ids come from a literal transcription of LLaVA's `tokenizer_image_token`;
chat templates are rendered by transformers' `apply_chat_template`.

Decoding: transformers >= 5 ignores `clean_up_tokenization_spaces=true` for BPE tokenizers
(`decoded`, lossless); `decoded_cleanup` records the cleaned-up text transformers 4.x returned.
"""

from __future__ import annotations

import json
import os
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the repo

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
import transformers
from transformers import AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT_ROOT = os.path.join(ROOT, "test", "fixtures", "tokenizer")
TOK_DIR = os.path.join(OUT_ROOT, "tiny-llama3-tokenizer")
REGEN = "bash scripts/golden/setup-venv.sh && .venv/bin/python scripts/golden/generate_tokenizer_fixtures.py"

VOCAB_SIZE = 352

# LLaMA-3's pre-tokenizer regex (tokenizer.json of Meta-Llama-3-8B).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# LLaMA-3's first 16 special tokens, in their real order (128000 + i -> BASE + i).
SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|reserved_special_token_2|>",
    "<|reserved_special_token_3|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|reserved_special_token_4|>",
    "<|eot_id|>",
    "<|reserved_special_token_5|>",
    "<|reserved_special_token_6|>",
    "<|reserved_special_token_7|>",
    "<|reserved_special_token_8|>",
    "<|reserved_special_token_9|>",
    "<|reserved_special_token_10|>",
]

# Meta-Llama-3-8B-Instruct's chat_template (tokenizer_config.json).
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# docs/spec.md, "The official prompt (version llama3)".
OFFICIAL_PROMPT = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    + SYSTEM
    + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n<image>\n{question}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)

IMAGE_TOKEN_INDEX = -200

CORPUS = [
    SYSTEM,
    "INF-LLaVA crops a high-resolution image two ways. The local perspective cuts the image into "
    "non-overlapping tiles; the global perspective takes strided samples so that every crop sees the "
    "whole picture. Each crop is encoded by the CLIP vision tower, and the Dual-perspective "
    "Enhancement Module lets the local and global features attend to each other before they are "
    "fused and projected into the language model.",
    "The language model is LLaMA-3-8B. The prompt follows the llama3 conversation template: a system "
    "message, the user's turn with the image placeholder and the question, then the assistant's "
    "header. Generation stops at the end-of-turn token or at the end-of-text token.",
    "What is shown in this image? Describe the image in detail. How many people are in the picture? "
    "What colour is the car on the left? Is there any text in the image, and what does it say?",
    "The quick brown fox jumps over the lazy dog. It's a sunny day; we'll go outside, they're "
    "happy and I'd say you've seen it. I'm sure.\n\nNumbers: 1, 2, 3, 10, 100, 1000, 2024, 336, "
    "576, 1008, 3.14159 and 72x72x1024.\n",
    "Tokenisation splits the text at the image marker, tokenises each chunk with the LLaMA-3 "
    "tokenizer, keeps the first chunk's leading begin-of-text token once, drops each later chunk's "
    "automatic one, and puts one image placeholder between chunks.",
]

TEST_STRINGS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "What is shown in this image?",
    "   leading spaces, trailing spaces   ",
    " single leading space",
    "Numbers: 1234567 and 3.14159, year 2024, 72x72x1024!",
    "line one\nline two\r\n\nline three\n\n\n",
    "tabs\tand\t\tspaces  mixed \t\n end",
    "It's they're we'll I'd you've I'm DON'T SHE'S",
    "punctuation!!! ??? ... ;;; --- (a) [b] {c} \"quoted\" 'single'",
    "Hello , world . Is it ? Yes !",
    "unicode: café naïve Ελληνικά 日本語 — “quotes” ü",
    "emoji: 🙂👍🏽 🐱‍👤 ❤️",
    "",
    " ",
    "\n",
    "special <|eot_id|> inside <|start_header_id|>user<|end_header_id|>\n\nhi",
    "<|begin_of_text|>starts with bos",
    # Aimed at the LLaMA-3 split regex (case-insensitive contractions, digit runs, whitespace).
    "HELLO'S WORLD'LL x'Re y'VE z'D",
    "a  b   c\u00a0d \u2003e  ",
    "123456789 12 1 \u0661\u0662\u0663\u0664 \uff11\uff12",
    "$$$ 100% #tag @user a+b=c ...\n\n",
    "\r\n\r\n  \n\t\n",
    "\u00fcn\u00efc\u00f6d\u00e9's \u0130stanbul \u00df STRASSE",
    OFFICIAL_PROMPT.replace("{question}", "What is shown in this image?"),
]

QUESTIONS = [
    "What is shown in this image?",
    "Describe the image in detail.\nMention any text you can read.",
    "  How many cats are there? 🐱 Answer with a number, e.g. 2. ",
]

# Raw prompts for the generic <image> splitting (edge cases of tokenizer_image_token).
RAW_PROMPTS = [
    "no image at all",
    "<image>\nleading image",
    "trailing image <image>",
    "two <image> images <image> here",
    "<image><image>",
]

CHATS = [
    {"messages": [{"role": "user", "content": "What is shown in this image?"}], "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "What is shown in this image?"}], "add_generation_prompt": False},
    {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "<image>\n  Describe it.  \n"},
        ],
        "add_generation_prompt": True,
    },
    {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": " Hello! "},
            {"role": "user", "content": "Bye"},
        ],
        "add_generation_prompt": True,
    },
]


def train_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    added = tok.add_special_tokens(SPECIALS)
    assert added == len(SPECIALS)
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == VOCAB_SIZE + i, (s, tok.token_to_id(s))
    bos = SPECIALS[0]
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
            processors.TemplateProcessing(
                single=f"{bos} $A",
                pair=f"{bos} $A {bos}:1 $B:1",
                special_tokens=[(bos, VOCAB_SIZE)],
            ),
        ]
    )
    return tok


def write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def tokenizer_image_token(prompt, tokenizer, image_token_index=IMAGE_TOKEN_INDEX):
    """Literal transcription of LLaVA's llava/mm_utils.py::tokenizer_image_token (no tensors)."""
    prompt_chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]

    def insert_separator(X, sep):
        return [ele for sublist in zip(X, [sep] * len(X)) for ele in sublist][:-1]

    input_ids = []
    offset = 0
    if len(prompt_chunks) > 0 and len(prompt_chunks[0]) > 0 and prompt_chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        input_ids.append(prompt_chunks[0][0])

    for x in insert_separator(prompt_chunks, [image_token_index] * (offset + 1)):
        input_ids.extend(x[offset:])
    return input_ids


def main() -> None:
    os.makedirs(TOK_DIR, exist_ok=True)
    tok = train_tokenizer()
    tok.save(os.path.join(TOK_DIR, "tokenizer.json"), pretty=True)

    added_tokens_decoder = {
        str(VOCAB_SIZE + i): {
            "content": s,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, s in enumerate(SPECIALS)
    }
    write_json(
        os.path.join(TOK_DIR, "tokenizer_config.json"),
        {
            "added_tokens_decoder": added_tokens_decoder,
            "bos_token": "<|begin_of_text|>",
            "chat_template": LLAMA3_CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": True,
            "eos_token": "<|eot_id|>",
            "model_input_names": ["input_ids", "attention_mask"],
            "model_max_length": 1000000000000000019884624838656,
            "tokenizer_class": "PreTrainedTokenizerFast",
        },
    )
    write_json(
        os.path.join(TOK_DIR, "special_tokens_map.json"),
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    )

    hf = AutoTokenizer.from_pretrained(TOK_DIR)
    assert hf.is_fast, type(hf)
    hf_cleanup = AutoTokenizer.from_pretrained(
        TOK_DIR, clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output=True
    )
    bos_id = hf.bos_token_id
    eos_id = hf.eos_token_id
    assert bos_id == VOCAB_SIZE and eos_id == VOCAB_SIZE + SPECIALS.index("<|eot_id|>"), (bos_id, eos_id)

    encodings = []
    for s in TEST_STRINGS:
        with_special = hf(s).input_ids
        without_special = hf(s, add_special_tokens=False).input_ids
        assert with_special == [bos_id] + without_special, s
        encodings.append(
            {
                "text": s,
                "ids": with_special,
                "ids_no_special": without_special,
                "tokens": hf.convert_ids_to_tokens(with_special),
                # The pre-tokenizer's pieces (byte-level alphabet), to pin the split regex.
                "pre_tokens": [p for p, _ in tok.pre_tokenizer.pre_tokenize_str(s)],
                "decoded": hf.decode(with_special, skip_special_tokens=False),
                "decoded_skip_special": hf.decode(with_special, skip_special_tokens=True),
                # What transformers 4.x returned for LLaMA-3 (clean_up_tokenization_spaces=true in its
                # tokenizer_config.json); transformers >= 5 ignores that flag for BPE tokenizers.
                "decoded_cleanup": hf_cleanup.decode(with_special, skip_special_tokens=False),
            }
        )

    official = []
    for q in QUESTIONS:
        text = OFFICIAL_PROMPT.replace("{question}", q)
        ids = tokenizer_image_token(text, hf)
        assert ids[0] == bos_id and ids[1] == bos_id and ids.count(IMAGE_TOKEN_INDEX) == 1, ids[:4]
        official.append({"question": q, "text": text, "ids": ids})

    raw = [{"prompt": p, "ids": tokenizer_image_token(p, hf)} for p in RAW_PROMPTS]

    chats = []
    for c in CHATS:
        rendered = hf.apply_chat_template(
            c["messages"], tokenize=False, add_generation_prompt=c["add_generation_prompt"]
        )
        chats.append({**c, "rendered": rendered})

    write_json(
        os.path.join(OUT_ROOT, "expected.json"),
        {
            "_generated_by": REGEN,
            "_versions": {"transformers": transformers.__version__, "tokenizers": __import__("tokenizers").__version__},
            "vocab_size": VOCAB_SIZE,
            "special_tokens": {s: VOCAB_SIZE + i for i, s in enumerate(SPECIALS)},
            "bos_token_id": bos_id,
            "eos_token_id": eos_id,
            "image_token_index": IMAGE_TOKEN_INDEX,
            "system": SYSTEM,
            "official_prompt_template": OFFICIAL_PROMPT,
            "encodings": encodings,
            "official_prompts": official,
            "raw_prompts": raw,
            "chats": chats,
        },
    )
    print(f"wrote {TOK_DIR} and {os.path.join(OUT_ROOT, 'expected.json')}")


if __name__ == "__main__":
    main()
