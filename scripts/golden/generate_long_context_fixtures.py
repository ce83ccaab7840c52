"""Generate the long-context golden fixture for the LLaMA language model (src/models/llama/).

Writes, under test/fixtures/llama/:
  tiny-llama-long/           a seeded random LlamaForCausalLM (2 layers, GQA 4/2 heads, head_dim 16,
                             llama3 rope scaling with original_max_position_embeddings 1024,
                             max_position_embeddings 8192, untied lm_head), save_pretrained in float32
  expected-long.safetensors  an 8,000-token prompt and Hugging Face's outputs for it (see the
                             metadata "contents" key)

Regenerate with:

    bash scripts/golden/setup-venv.sh && .venv/bin/pip install transformers && .venv/bin/python scripts/golden/generate_long_context_fixtures.py

Everything is float32 on CPU, eager attention, 2 threads (peak memory about 4 GB: eager attention
materialises [1, 4, 8000, 8000] float32 scores).

The weights are N(0, 0.02) (transformers' initializer_range) except that each head's rows of
q_proj and k_proj are scaled by a seeded factor in [10, 20]: at 0.02 the attention scores are
~0.03 and attention is nearly uniform over 8,000 keys, so a wrong mask, a wrong key block or a
wrong online-softmax rescale would barely move the logits. With the scaling the attention is
peaked; the script asserts that dropping the first 4,000 keys (same positions, only the last
4,000 tokens as input) changes the last position's logits by more than 1e-2 (relative).
The norm weights are perturbed around 1 so that they matter.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

sys.dont_write_bytecode = True

import torch
import transformers
from safetensors.torch import save_file
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "test", "fixtures", "llama")
MODEL_DIR = os.path.join(OUT, "tiny-llama-long")
EXPECTED = os.path.join(OUT, "expected-long.safetensors")
REGEN = (
    "bash scripts/golden/setup-venv.sh && .venv/bin/pip install transformers && "
    ".venv/bin/python scripts/golden/generate_long_context_fixtures.py"
)

torch.set_num_threads(2)

T = 8000  # prompt length
PREFILL = 7990  # cached-decode check: prefill this many, then decode the rest one token at a time
POSITIONS = [0, 1, 511, 512, 4095, 7998, 7999]  # logits stored for these positions
DROP = 4000  # the sensitivity check drops the first DROP keys
QK_SCALE = (10.0, 20.0)  # per-head factor range for q_proj / k_proj rows

LONG = dict(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    rms_norm_eps=1e-5,
    max_position_embeddings=8192,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=[2, 3],
)
ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 1024,
}


def make_config() -> LlamaConfig:
    # transformers 5 keeps rope_theta / rope_scaling under rope_parameters.
    return LlamaConfig(**LONG, rope_parameters=dict(ROPE), attn_implementation="eager")


def init_weights(model: LlamaForCausalLM, seed: int) -> list[float]:
    """Seeded N(0, 0.02) matrices, norms 1 + 0.1·N(0, 1), q/k rows scaled per head. Returns the head scales."""
    cfg = model.config
    hd = cfg.head_dim
    g = torch.Generator().manual_seed(seed)
    scales: list[float] = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(cfg.initializer_range * torch.randn(p.shape, generator=g))
            if name.endswith("self_attn.q_proj.weight") or name.endswith("self_attn.k_proj.weight"):
                n = p.shape[0] // hd  # heads in this projection
                lo, hi = QK_SCALE
                s = lo + (hi - lo) * torch.rand(n, generator=g)
                p.mul_(s.repeat_interleave(hd)[:, None])
                scales += s.tolist()
    return scales


@torch.no_grad()
def full(model, ids, position_ids=None):
    return model(input_ids=ids, position_ids=position_ids, use_cache=False).logits.float()


@torch.no_grad()
def cached_decode(model, ids, prefill: int) -> torch.Tensor:
    """Prefill ids[:, :prefill] into a DynamicCache, then one token at a time: [steps, V] logits of the steps."""
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids[:, :prefill], past_key_values=cache, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    steps = []
    for j in range(prefill, ids.shape[1]):
        out = model(input_ids=ids[:, j : j + 1], past_key_values=cache, use_cache=True)
        steps.append(out.logits[0, -1].float())
        cache = out.past_key_values
    return torch.stack(steps)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a − b| / max|b|, the tests' parity metric."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    shutil.rmtree(MODEL_DIR, ignore_errors=True)

    torch.manual_seed(0)
    model = LlamaForCausalLM(make_config()).eval()
    scales = init_weights(model, 11)
    print("q/k head scales:", ", ".join(f"{s:.2f}" for s in scales))

    g = torch.Generator().manual_seed(4321)
    ids = torch.randint(0, LONG["vocab_size"], (1, T), generator=g)

    logits = full(model, ids)[0]  # [T, V]
    assert torch.isfinite(logits).all()
    at = logits[POSITIONS]  # [7, V]

    # Sensitivity: the last DROP.. tokens at their own positions, without the first DROP keys.
    pos = torch.arange(DROP, T)[None]
    short = full(model, ids[:, DROP:], position_ids=pos)[0]
    drop_change = rel(short[-1], logits[-1])
    print(f"dropping the first {DROP} keys changes the last logits by max|diff|/max|ref| = {drop_change:.3e}")
    assert drop_change > 1e-2, f"attention is too flat: dropping {DROP} keys moves the logits by only {drop_change:.3e}"

    # Cached decoding with a DynamicCache reproduces the full forward.
    decode = cached_decode(model, ids, PREFILL)  # [T - PREFILL, V]
    dec_err = rel(decode, logits[PREFILL:])
    print(f"cached decode vs full forward: max|diff|/max|ref| = {dec_err:.3e}")
    assert (decode - logits[PREFILL:]).abs().max().item() < 1e-4, "DynamicCache decode disagrees with the full forward"

    # float32 noise floor of the reference itself (eager float32 vs float64), for the report.
    m64 = LlamaForCausalLM(make_config()).eval()
    m64.load_state_dict(model.state_dict())
    m64 = m64.double()
    with torch.no_grad():
        l64 = m64(input_ids=ids, use_cache=False).logits[0]
    noise = rel(at, l64[POSITIONS])
    print(f"float32 reference vs float64: max|diff|/max|ref| at the stored positions = {noise:.3e}")
    del m64, l64

    model.save_pretrained(MODEL_DIR, safe_serialization=True)
    for f in os.listdir(MODEL_DIR):  # keep only what the loader reads
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(MODEL_DIR, f))

    out = {
        "input.ids": ids.to(torch.int32),
        "input.positions": torch.tensor(POSITIONS, dtype=torch.int32),
        "expected.logits_at": at,
        "expected.decode_logits": decode,
    }
    out = {k: v.contiguous() for k, v in out.items()}
    meta = {
        "generator": REGEN,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "prefill": str(PREFILL),
        "drop_first_4000_keys_rel_change": f"{drop_change:.6e}",
        "float32_vs_float64_rel": f"{noise:.6e}",
        "contents": json.dumps(
            {
                "input.ids": f"[1, {T}] int32 prompt, seeded uniform in [0, 300)",
                "input.positions": f"[{len(POSITIONS)}] int32 positions whose logits are stored",
                "expected.logits_at": f"[{len(POSITIONS)}, 300] LlamaForCausalLM(tiny-llama-long)(input.ids).logits[0, input.positions] (eager, float32)",
                "expected.decode_logits": f"[{T - PREFILL}, 300] prefill input.ids[:, :{PREFILL}] into a DynamicCache, then input.ids[:, {PREFILL}:] one token at a time: each step's logits",
            }
        ),
    }
    save_file(out, EXPECTED, metadata=meta)

    total = os.path.getsize(EXPECTED)
    for f in os.listdir(MODEL_DIR):
        total += os.path.getsize(os.path.join(MODEL_DIR, f))
    print(f"wrote {MODEL_DIR} and {EXPECTED} ({total / 1e6:.2f} MB)")
    assert total < 1_000_000, "long-context fixtures must stay under 1 MB"


if __name__ == "__main__":
    main()
