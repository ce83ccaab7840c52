"""Generate golden fixtures for the LLaMA language model (src/models/llama/).

Writes, under test/fixtures/llama/:
  tiny-llama/          a seeded random LlamaForCausalLM (2 layers, GQA 4/2 heads, llama3 rope
                       scaling), save_pretrained in float32
  tiny-llama-bf16/     the same model saved in bfloat16
  tiny-llama-variant/  1 layer, explicit head_dim (32, != hidden/heads), 1 kv head, q/k/v/o and
                       MLP biases, default rope (theta 10000), tied word embeddings (no lm_head saved)
  expected.safetensors inputs and Hugging Face's outputs (see the metadata "contents" key)

Regenerate with:

    bash scripts/golden/setup-venv.sh && .venv/bin/python scripts/golden/generate_llama_fixtures.py

Everything is float32 on CPU, eager attention, 2 threads. The bf16 expectations are computed by
loading the bf16 checkpoint and upcasting it to float32 (what the TypeScript reader does).
"""

from __future__ import annotations

import json
import os
import shutil
import sys

sys.dont_write_bytecode = True

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "test", "fixtures", "llama")
REGEN = "bash scripts/golden/setup-venv.sh && .venv/bin/python scripts/golden/generate_llama_fixtures.py"

torch.set_num_threads(2)

TINY = dict(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-5,
    rope_theta=500000.0,
    rope_scaling={
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    },
    max_position_embeddings=512,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=[2, 3],
)

VARIANT = dict(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=32,
    rms_norm_eps=1e-6,
    max_position_embeddings=256,
    attention_bias=True,
    mlp_bias=True,
    tie_word_embeddings=True,
)


def make_config(kw: dict) -> LlamaConfig:
    kw = dict(kw)
    rope = {"rope_type": "default", "rope_theta": kw.pop("rope_theta", 10000.0)}
    if "rope_scaling" in kw:
        rope.update(kw.pop("rope_scaling"))
    # transformers 5 keeps rope_theta / rope_scaling under rope_parameters.
    return LlamaConfig(**kw, rope_parameters=rope, attn_implementation="eager")


def perturb(model: LlamaForCausalLM, seed: int) -> None:
    """Random init is N(0, 0.02) with norms at 1: perturb the norms (and biases) so they matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))  # LLaMA's embeddings are not tiny
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)


@torch.no_grad()
def full(model, ids=None, embeds=None):
    return model(input_ids=ids, inputs_embeds=embeds, use_cache=False).logits.float()


@torch.no_grad()
def incremental(model, prefill_ids=None, prefill_embeds=None, decode_ids=None):
    """Logits of a prefill (ids or embeds) followed by one decode step per column of decode_ids."""
    cache = DynamicCache(config=model.config)
    out = model(input_ids=prefill_ids, inputs_embeds=prefill_embeds, past_key_values=cache, use_cache=True)
    logits = [out.logits.float()]
    cache = out.past_key_values
    for j in range(decode_ids.shape[1]):
        out = model(input_ids=decode_ids[:, j : j + 1], past_key_values=cache, use_cache=True)
        logits.append(out.logits.float())
        cache = out.past_key_values
    return torch.cat(logits, dim=1)


def inv_freq_of(config: LlamaConfig) -> torch.Tensor:
    rope_type = config.rope_parameters["rope_type"]
    if rope_type == "default":
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        inv, _ = LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    else:
        inv, _ = ROPE_INIT_FUNCTIONS[rope_type](config)
    return inv.float()


def save(model: LlamaForCausalLM, name: str, dtype: torch.dtype) -> str:
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    m = model.to(dtype)
    m.save_pretrained(path, safe_serialization=True)
    model.to(torch.float32)
    for f in os.listdir(path):  # keep only what the loader reads
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(path, f))
    return path


def main() -> None:
    # Only this script's outputs: generate_long_context_fixtures.py writes beside them.
    os.makedirs(OUT, exist_ok=True)
    for name in ("tiny-llama", "tiny-llama-bf16", "tiny-llama-variant", "expected.safetensors"):
        target = os.path.join(OUT, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        elif os.path.exists(target):
            os.remove(target)
    out: dict[str, torch.Tensor] = {}
    g = torch.Generator().manual_seed(1234)

    # --- the tiny model, float32 -------------------------------------------------------------
    torch.manual_seed(0)
    cfg = make_config(TINY)
    model = LlamaForCausalLM(cfg).eval()
    perturb(model, 1)
    ids = torch.randint(0, 300, (1, 12), generator=g)
    ids2 = torch.randint(0, 300, (2, 12), generator=g)
    embeds = torch.randn((1, 5, 64), generator=g) * 0.5
    embeds_decode = torch.randint(0, 300, (1, 3), generator=g)
    out["ids"] = ids.to(torch.int32)
    out["ids_batch2"] = ids2.to(torch.int32)
    out["logits"] = full(model, ids)
    out["logits_batch2"] = full(model, ids2)
    out["logits_incremental"] = incremental(model, prefill_ids=ids[:, :8], decode_ids=ids[:, 8:])
    out["logits_batch2_incremental"] = incremental(model, prefill_ids=ids2[:, :8], decode_ids=ids2[:, 8:])
    out["embeds"] = embeds
    out["embeds_decode_ids"] = embeds_decode.to(torch.int32)
    out["logits_embeds"] = incremental(model, prefill_embeds=embeds, decode_ids=embeds_decode)
    out["inv_freq"] = inv_freq_of(model.config)
    save(model, "tiny-llama", torch.float32)

    # --- the same weights in bf16, expectations from the bf16 weights upcast ---------------------
    save(model, "tiny-llama-bf16", torch.bfloat16)
    m16 = LlamaForCausalLM.from_pretrained(os.path.join(OUT, "tiny-llama-bf16"), dtype=torch.bfloat16, attn_implementation="eager")
    m16 = m16.float().eval()
    out["bf16.logits"] = full(m16, ids)
    out["bf16.logits_incremental"] = incremental(m16, prefill_ids=ids[:, :8], decode_ids=ids[:, 8:])
    # How far bf16 rounding moves the logits (for the report, not a test tolerance).
    diff = (out["bf16.logits"] - out["logits"]).abs().max() / out["logits"].abs().max()
    print(f"bf16 vs f32 logits: max|diff|/max|ref| = {diff:.3e}")

    # --- the variant: head_dim, biases, one kv head, default rope, tied embeddings --------------
    torch.manual_seed(2)
    vcfg = make_config(VARIANT)
    vmodel = LlamaForCausalLM(vcfg).eval()
    perturb(vmodel, 3)
    vmodel.tie_weights()
    assert vmodel.lm_head.weight.data_ptr() == vmodel.model.embed_tokens.weight.data_ptr()
    out["variant.logits"] = full(vmodel, ids)
    out["variant.logits_incremental"] = incremental(vmodel, prefill_ids=ids[:, :8], decode_ids=ids[:, 8:])
    out["variant.inv_freq"] = inv_freq_of(vmodel.config)
    vpath = save(vmodel, "tiny-llama-variant", torch.float32)
    assert "lm_head.weight" not in load_file(os.path.join(vpath, "model.safetensors")), "tied lm_head was saved"

    # --- LLaMA-3.1-8B's rope (llama3 scaling at real size) ----------------------------------------
    big = LlamaConfig(
        vocab_size=16,
        hidden_size=4096,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131072,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    )
    out["rope.llama31_8b.inv_freq"] = inv_freq_of(big)

    out = {k: v.contiguous() for k, v in out.items()}
    meta = {
        "generator": REGEN,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "prefill": "8",
        "contents": json.dumps(
            {
                "logits": "LlamaForCausalLM(tiny-llama)(ids).logits",
                "logits_incremental": "prefill ids[:, :8], then ids[:, 8:] one token at a time with a DynamicCache",
                "logits_embeds": "prefill inputs_embeds=embeds [1,5,64], then embeds_decode_ids one at a time",
                "bf16.*": "tiny-llama-bf16 upcast to float32",
                "variant.*": "tiny-llama-variant",
                "inv_freq": "rotary inv_freq of tiny-llama (llama3 scaling)",
                "rope.llama31_8b.inv_freq": "rotary inv_freq of LLaMA-3.1-8B (llama3, factor 8, orig 8192, theta 5e5, head_dim 128)",
            }
        ),
    }
    save_file(out, os.path.join(OUT, "expected.safetensors"), metadata=meta)

    total = 0
    for root, _, files in os.walk(OUT):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")
    assert total < 2_000_000, "fixtures must stay under 2 MB"


if __name__ == "__main__":
    main()
