"""Generate golden fixtures for the CLIP vision tower (src/models/clip.ts).

Writes, under test/fixtures/clip/:
  tiny-clip-vision/   a seeded random CLIPVisionModel, save_pretrained (config.json + model.safetensors);
                      transformers 5 saves its tensors with no prefix (`embeddings.…`), where 4.x
                      wrote `vision_model.embeddings.…`
  tiny-clip-full/     a CLIPModel with the same vision weights and a tiny text tower
                      (names under `vision_model.`, beside `text_model.` and the projections)
  tiny-clip-vision-257/  the same widths at 32×32 pixels in 2×2 patches: 257 tokens, 2 layers
  expected.safetensors
      input.pixels              [2, 28, 28, 3] NHWC (normalised pixels, seeded)
      hidden_states.{0..3}      transformers' hidden_states[i], CLS kept, quick_gelu (the config's)
      gelu.hidden_states.{0..3} the same weights run with hidden_act='gelu' (exact erf)
      long.input.pixels, long.hidden_states.2   [2, 32, 32, 3] → [2, 257, 32] for tiny-clip-vision-257
  README.md

Regenerate with:

    bash scripts/golden/setup-venv.sh
    PIP_INDEX_URL=file:///opt/pypi/simple .venv/bin/pip install transformers
    .venv/bin/python scripts/golden/generate_clip_fixtures.py

The references are computed in float64 (model.double(), eager attention) from the stored
float32 weights and stored as float32, so the tests measure only the TypeScript side's
float32 rounding. Weights are re-initialised at unit scale (the CLIP initialiser's 0.02 std
makes every layer close to the identity) and every LayerNorm gets a non-trivial affine.
"""

from __future__ import annotations

import os
import shutil
import sys

sys.dont_write_bytecode = True

import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "test", "fixtures", "clip")
SEED = 20240613

VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    image_size=28,
    patch_size=14,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
)
# 256 patches + CLS = 257 tokens: at >= 256 tokens the attention runs per image (tensorflow)
# or per head (wasm) instead of batched, so this exercises those layouts.
LONG = dict(VISION, num_hidden_layers=2, image_size=32, patch_size=2)
TEXT = dict(
    vocab_size=64,
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    max_position_embeddings=8,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=1,
)


def reinit(model: torch.nn.Module, g: torch.Generator) -> None:
    """Unit-scale random weights: linear/conv ~ N(0, 1/fan_in), LayerNorm affine 1 ± 0.1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                continue
            if "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() >= 2 and "position_embedding" not in name and "token_embedding" not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
            else:  # class_embedding, position/token embeddings
                p.copy_(0.5 * torch.randn(p.shape, generator=g))


def hidden_states(model: CLIPVisionModel, pixels_nhwc: torch.Tensor) -> list[torch.Tensor]:
    m = model.double().eval()
    with torch.no_grad():
        out = m(pixel_values=pixels_nhwc.double().permute(0, 3, 1, 2), output_hidden_states=True)
    hs = [h.float().contiguous() for h in out.hidden_states]
    assert len(hs) == model.config.num_hidden_layers + 1, len(hs)
    # Sanity: hidden_states[0] is the pre_layrnorm'd embeddings, [-1] the encoder output.
    with torch.no_grad():
        emb = m.pre_layrnorm(m.embeddings(pixels_nhwc.double().permute(0, 3, 1, 2)))
    assert torch.allclose(emb.float(), hs[0], atol=1e-6), "hidden_states[0] is not pre_layrnorm(embeddings)"
    assert torch.allclose(out.last_hidden_state.float(), hs[-1], atol=1e-6), "hidden_states[-1] != last_hidden_state"
    return hs


def main() -> None:
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)

    vcfg = CLIPVisionConfig(**VISION)
    vision = CLIPVisionModel._from_config(vcfg, attn_implementation="eager")
    reinit(vision, g)
    vision.save_pretrained(os.path.join(OUT, "tiny-clip-vision"), safe_serialization=True)

    full_cfg = CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=8)
    full = CLIPModel._from_config(full_cfg, attn_implementation="eager")
    reinit(full, g)
    full.vision_model.load_state_dict(vision.state_dict())
    full.save_pretrained(os.path.join(OUT, "tiny-clip-full"), safe_serialization=True)

    # Reload what was written: the references come from the stored float32 weights.
    stored = load_file(os.path.join(OUT, "tiny-clip-vision", "model.safetensors"))
    full_stored = load_file(os.path.join(OUT, "tiny-clip-full", "model.safetensors"))
    for k, v in stored.items():
        assert v.dtype == torch.float32, k
        assert torch.equal(full_stored["vision_model." + k], v), f"full CLIPModel's vision_model.{k} differs"
    ref = CLIPVisionModel._from_config(vcfg, attn_implementation="eager")
    missing, unexpected = ref.load_state_dict(stored, strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing), (missing, unexpected)

    pixels = torch.randn((2, VISION["image_size"], VISION["image_size"], 3), generator=g)
    out = {"input.pixels": pixels.contiguous()}
    for i, h in enumerate(hidden_states(ref, pixels)):
        out[f"hidden_states.{i}"] = h
    ref_gelu = CLIPVisionModel._from_config(CLIPVisionConfig(**{**VISION, "hidden_act": "gelu"}), attn_implementation="eager")
    ref_gelu.load_state_dict(stored, strict=False)
    for i, h in enumerate(hidden_states(ref_gelu, pixels)):
        out[f"gelu.hidden_states.{i}"] = h
    assert not torch.allclose(out["hidden_states.3"], out["gelu.hidden_states.3"], atol=1e-3), "gelu and quick_gelu agree?"

    lcfg = CLIPVisionConfig(**LONG)
    long = CLIPVisionModel._from_config(lcfg, attn_implementation="eager")
    reinit(long, g)
    long.save_pretrained(os.path.join(OUT, "tiny-clip-vision-257"), safe_serialization=True)
    long_ref = CLIPVisionModel._from_config(lcfg, attn_implementation="eager")
    long_ref.load_state_dict(load_file(os.path.join(OUT, "tiny-clip-vision-257", "model.safetensors")), strict=False)
    long_pixels = torch.randn((2, LONG["image_size"], LONG["image_size"], 3), generator=g)
    out["long.input.pixels"] = long_pixels.contiguous()
    out["long.hidden_states.2"] = hidden_states(long_ref, long_pixels)[2]

    save_file(out, os.path.join(OUT, "expected.safetensors"), metadata={"seed": str(SEED)})  # one key: byte-identical reruns

    import transformers

    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(
            "# CLIP vision golden fixtures\n\n"
            "Generated by `scripts/golden/generate_clip_fixtures.py` "
            f"(transformers {transformers.__version__}, torch {torch.__version__}, seed {SEED}); do not edit.\n\n"
            f"- `tiny-clip-vision/`: `CLIPVisionModel({VISION})`, random unit-scale weights, LayerNorms perturbed.\n"
            f"- `tiny-clip-vision-257/`: `CLIPVisionModel({LONG})` (257 tokens: the per-image / per-head attention layouts).\n"
            f"- `tiny-clip-full/`: `CLIPModel` with the same vision weights and text tower `{TEXT}`.\n"
            "- `expected.safetensors`: `input.pixels` [2, 28, 28, 3] NHWC; `hidden_states.{0..3}` = "
            "`output_hidden_states=True` (float64 forward, stored float32, CLS kept); "
            "`gelu.hidden_states.{0..3}` = the same weights with `hidden_act='gelu'`; "
            "`long.input.pixels` [2, 32, 32, 3] and `long.hidden_states.2` for `tiny-clip-vision-257`.\n"
        )
    total = 0
    for dirpath, _, files in os.walk(OUT):
        for name in sorted(files):
            size = os.path.getsize(os.path.join(dirpath, name))
            total += size
            print(f"{os.path.relpath(os.path.join(dirpath, name), ROOT)}: {size} bytes")
    print(f"total {total} bytes")
    assert total < 1_000_000


if __name__ == "__main__":
    main()
