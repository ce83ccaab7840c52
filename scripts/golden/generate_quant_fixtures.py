"""Generate the golden fixtures of the packed weight formats (src/quant/, docs/quantization.md).

Implements q8 and q4 exactly as the contract fixes them (group size 64 if it divides K, else the
largest of 32, 16, 8 that does; every step in float32 torch arithmetic), quantises the tiny LLaMA
of generate_llama_fixtures.py (test/fixtures/llama/tiny-llama, hidden 64, MLP 128, and its bf16
copy tiny-llama-bf16), and writes test/fixtures/llama/quant/expected.safetensors with:

  packed arrays       for a few weights of the model and a few synthetic matrices that exercise
                      the group-size rule (K = 48 → 16, 96 → 32, 200 → 8), zero and constant
                      groups: `<key>.data` (int32 words), `<key>.scales`, `<key>.mins` (q4), and
                      the synthetic inputs `synthetic.<name>` (float32): the TypeScript packing
                      must reproduce them bit for bit
  bf16 packing        `bf16.synthetic.<name>.data`: torch's float32 → bfloat16 (round to nearest
                      even) of the synthetic inputs, two per int32
  logits              transformers' LlamaForCausalLM with every linear weight (q, k, v, o, gate,
                      up, down, lm_head) replaced by its dequantised value, on the prompt `ids`
                      of test/fixtures/llama/expected.safetensors: `<src>.<fmt>.logits`, src
                      f32 (tiny-llama) or bf16 (tiny-llama-bf16), fmt q8 or q4; and the
                      unquantised references `f32.logits`, `bf16.logits`

The metadata key "stats" holds how far each quantised model's logits are from the unquantised
ones (max|diff| / max|ref|, and top-1 agreement), next to plain round-to-nearest baselines
computed here in float64 with torch.round (symmetric int8 absmax, symmetric int4 absmax
[-8, 7], asymmetric 4-bit min/max), same group sizes.

Regenerate with:

    bash scripts/golden/setup-venv.sh && .venv/bin/pip install transformers && .venv/bin/python scripts/golden/generate_quant_fixtures.py

Everything is float32 on CPU, eager attention, 2 threads.
"""

from __future__ import annotations

import json
import os
import sys

sys.dont_write_bytecode = True

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
LLAMA = os.path.join(ROOT, "test", "fixtures", "llama")
OUT = os.path.join(LLAMA, "quant")
REGEN = "bash scripts/golden/setup-venv.sh && .venv/bin/python scripts/golden/generate_quant_fixtures.py"

torch.set_num_threads(2)

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def group_size(k: int) -> int:
    for g in (64, 32, 16, 8):
        if k % g == 0:
            return g
    raise ValueError(f"K = {k} is not a multiple of 8")


def f32(v: float, like: torch.Tensor) -> torch.Tensor:
    """A float32 tensor of `like`'s shape filled with v: elementwise tensor-tensor ops only."""
    return torch.full_like(like, v, dtype=torch.float32)


def quant_q8(w: torch.Tensor):
    """Symmetric int8 groups. Returns (q int8 [N, K], scales f32 [N, K/G], dequantised f32 [N, K])."""
    assert w.dtype == torch.float32
    n, k = w.shape
    g = group_size(k)
    wg = w.reshape(n, k // g, g)
    amax = wg.abs().amax(dim=-1, keepdim=True)
    scale = amax / f32(127.0, amax)
    zero = scale == 0
    x = wg / torch.where(zero, f32(1.0, scale), scale)
    q = torch.sign(x) * torch.floor(x.abs() + f32(0.5, x))
    q = torch.where(zero, torch.zeros_like(q), q.clamp(-127, 127))
    deq = q * scale
    return q.reshape(n, k).to(torch.int8), scale.reshape(n, k // g), deq.reshape(n, k)


def quant_q4(w: torch.Tensor):
    """Asymmetric 4-bit groups (a float min). Returns (q uint8 [N, K], scales, mins, dequantised)."""
    assert w.dtype == torch.float32
    n, k = w.shape
    g = group_size(k)
    wg = w.reshape(n, k // g, g)
    lo = wg.amin(dim=-1, keepdim=True)
    hi = wg.amax(dim=-1, keepdim=True)
    scale = (hi - lo) / f32(15.0, lo)
    zero = scale == 0
    x = (wg - lo) / torch.where(zero, f32(1.0, scale), scale)
    q = torch.floor(x + f32(0.5, x)).clamp(0, 15)
    q = torch.where(zero, torch.zeros_like(q), q)
    deq = (q * scale) + lo  # two float32 roundings, as the contract: fround(fround(q * scale) + min)
    return q.reshape(n, k).to(torch.uint8), scale.reshape(n, k // g), lo.reshape(n, k // g), deq.reshape(n, k)


def to_int32(words: torch.Tensor) -> torch.Tensor:
    """int64 words in [0, 2^32) → int32 (two's complement)."""
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def pack_q8(q: torch.Tensor) -> torch.Tensor:
    n, k = q.shape
    b = q.to(torch.int64) & 0xFF
    b = b.reshape(n, k // 4, 4)
    return to_int32(b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16) | (b[..., 3] << 24))


def pack_q4(q: torch.Tensor) -> torch.Tensor:
    n, k = q.shape
    b = q.to(torch.int64).reshape(n, k // 8, 8)
    words = torch.zeros(n, k // 8, dtype=torch.int64)
    for i in range(8):
        words |= b[..., i] << (4 * i)
    return to_int32(words)


def pack_bf16(w: torch.Tensor) -> torch.Tensor:
    n, k = w.shape
    bits = w.to(torch.bfloat16).view(torch.int16).to(torch.int64) & 0xFFFF
    bits = bits.reshape(n, k // 2, 2)
    return to_int32(bits[..., 0] | (bits[..., 1] << 16))


# Plain round-to-nearest baselines (float64, torch.round: half to even), for the report only.
def rtn_sym(w: torch.Tensor, qmax: int, qmin: int) -> torch.Tensor:
    n, k = w.shape
    g = group_size(k)
    wg = w.double().reshape(n, k // g, g)
    scale = wg.abs().amax(dim=-1, keepdim=True) / qmax
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return (torch.round(wg / scale).clamp(qmin, qmax) * scale).reshape(n, k).float()


def rtn_asym4(w: torch.Tensor) -> torch.Tensor:
    n, k = w.shape
    g = group_size(k)
    wg = w.double().reshape(n, k // g, g)
    lo = wg.amin(dim=-1, keepdim=True)
    scale = (wg.amax(dim=-1, keepdim=True) - lo) / 15
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return (torch.round((wg - lo) / scale).clamp(0, 15) * scale + lo).reshape(n, k).float()


def linear_keys(model: LlamaForCausalLM) -> list[str]:
    keys = [n for n, _ in model.named_parameters() if n.endswith(".weight") and n.split(".")[-2] in LINEAR]
    if not model.config.tie_word_embeddings:
        keys.append("lm_head.weight")
    return keys


@torch.no_grad()
def logits_with(model: LlamaForCausalLM, ids: torch.Tensor, replace) -> torch.Tensor:
    """Logits with every linear weight W replaced by replace(W) (then restored)."""
    params = dict(model.named_parameters())
    saved = {}
    for key in linear_keys(model):
        p = params[key]
        saved[key] = p.detach().clone()
        p.copy_(replace(p.detach().float()))
    try:
        return model(input_ids=ids, use_cache=False).logits.float()
    finally:
        for key, v in saved.items():
            params[key].copy_(v)


def stats(a: torch.Tensor, ref: torch.Tensor) -> dict:
    return {
        "max_rel": float((a - ref).abs().max() / ref.abs().max()),
        "mean_abs_rel": float((a - ref).abs().mean() / ref.abs().mean()),
        "top1_agreement": float((a.argmax(-1) == ref.argmax(-1)).float().mean()),
    }


def synthetic() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(4242)
    out = {
        "k48": torch.randn((5, 48), generator=g) * 0.3,  # G = 16
        "k96": torch.randn((4, 96), generator=g),  # G = 32
        "k200": torch.randn((3, 200), generator=g) * 2.0,  # G = 8
        "k64": torch.randn((6, 64), generator=g) * 0.05,  # G = 64
    }
    w = out["k64"]
    w[0, :64] = 0.0  # a zero group: scale 0, codes 0
    w[1, :64] = -0.75  # a constant group: q4 scale 0, min -0.75
    w[2, 5] = 1e-39  # a subnormal
    w[2, 6] = -0.0
    w[3, :8] = torch.tensor([1.0, -1.0, 0.5, -0.5, 127.0, -127.0, 63.5, -63.5])  # q8 ties: x = ±63.5 → ±64
    return out


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    with safe_open(os.path.join(LLAMA, "expected.safetensors"), "pt") as f:
        ids = f.get_tensor("ids").long()
    out: dict[str, torch.Tensor] = {}
    report: dict[str, dict] = {}

    # --- synthetic matrices: the group rule, zero and constant groups, bf16 rounding ----------------
    for name, w in synthetic().items():
        out[f"synthetic.{name}"] = w.contiguous()
        q, s, _ = quant_q8(w)
        out[f"q8.synthetic.{name}.data"] = pack_q8(q)
        out[f"q8.synthetic.{name}.scales"] = s
        q, s, m, _ = quant_q4(w)
        out[f"q4.synthetic.{name}.data"] = pack_q4(q)
        out[f"q4.synthetic.{name}.scales"] = s
        out[f"q4.synthetic.{name}.mins"] = m
        out[f"bf16.synthetic.{name}.data"] = pack_bf16(w)

    # --- the tiny LLaMA, float32 and bf16 checkpoints ---------------------------------------------------
    packed_keys = ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight", "lm_head.weight"]
    for src, path in (("f32", "tiny-llama"), ("bf16", "tiny-llama-bf16")):
        dtype = torch.float32 if src == "f32" else torch.bfloat16
        model = LlamaForCausalLM.from_pretrained(os.path.join(LLAMA, path), dtype=dtype, attn_implementation="eager")
        model = model.float().eval()  # bf16 weights upcast exactly
        params = dict(model.named_parameters())
        ref = logits_with(model, ids, lambda w: w)
        out[f"{src}.logits"] = ref
        for fmt in ("q8", "q4"):
            quant = quant_q8 if fmt == "q8" else quant_q4
            out[f"{src}.{fmt}.logits"] = logits_with(model, ids, lambda w: quant(w)[-1])
            report[f"{src}.{fmt}"] = stats(out[f"{src}.{fmt}.logits"], ref)
            for key in packed_keys:
                w = params[key].detach().float()
                if fmt == "q8":
                    q, s, _ = quant_q8(w)
                    out[f"{src}.q8.{key}.data"] = pack_q8(q)
                    out[f"{src}.q8.{key}.scales"] = s
                else:
                    q, s, m, _ = quant_q4(w)
                    out[f"{src}.q4.{key}.data"] = pack_q4(q)
                    out[f"{src}.q4.{key}.scales"] = s
                    out[f"{src}.q4.{key}.mins"] = m
        for name, fn in (("rtn_int8_sym", lambda w: rtn_sym(w, 127, -127)), ("rtn_int4_sym", lambda w: rtn_sym(w, 7, -8)), ("rtn_4bit_minmax", rtn_asym4)):
            report[f"{src}.{name}"] = stats(logits_with(model, ids, fn), ref)
    report["bf16_vs_f32"] = stats(out["bf16.logits"], out["f32.logits"])
    for k, v in report.items():
        print(f"{k:24s} max|diff|/max|ref| {v['max_rel']:.3e}  mean {v['mean_abs_rel']:.3e}  top-1 {v['top1_agreement']:.3f}")

    out = {k: v.contiguous() for k, v in out.items()}
    meta = {
        "generator": REGEN,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "stats": json.dumps(report),
        "contents": json.dumps(
            {
                "synthetic.<name>": "float32 inputs [N, K]: k48 (G 16), k96 (G 32), k200 (G 8), k64 (G 64; zero, constant, subnormal, tie rows)",
                "<fmt>.synthetic.<name>.data|scales|mins": "their q8 / q4 packing; bf16.synthetic.<name>.data: torch's round-to-nearest-even bf16, two per int32",
                "<src>.<fmt>.<weight>.data|scales|mins": "packing of tiny-llama (src f32) or tiny-llama-bf16 (src bf16) weights",
                "<src>.logits": "LlamaForCausalLM(<src> checkpoint)(ids).logits, ids from ../expected.safetensors",
                "<src>.<fmt>.logits": "the same with every linear weight (q,k,v,o,gate,up,down,lm_head) replaced by its dequantised value",
            }
        ),
    }
    file = os.path.join(OUT, "expected.safetensors")
    save_file(out, file, metadata=meta)
    size = os.path.getsize(file)
    print(f"wrote {file} ({size / 1e6:.2f} MB)")
    assert size < 1_000_000, "quant fixtures must stay under 1 MB"


if __name__ == "__main__":
    main()
