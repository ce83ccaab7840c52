"""Golden data for the INF-LLaVA visual path (docs/spec.md, "The official visual pipeline", steps 2-5).

Writes assets/tiny-clip/, assets/tiny-inf-llava/ (the bundled tiny checkpoint) and test/fixtures/infllava/:
  tiny-clip/            a tiny random CLIPVisionModel (save_pretrained, safetensors)
  tiny-inf-llava/       LLaVA-format checkpoint: config.json (LLaMA keys + mm_*), model.safetensors with
                        model.spatial_embed.*, model.mm_projector.*, a tiny LLaMA (model.layers.*, model.embed_tokens,
                        model.norm, lm_head) and the vision tower embedded under model.vision_tower.vision_tower.*,
                        plus the tiny LLaMA-3-style tokenizer of test/fixtures/tokenizer
  generation.json       official prompt ids and greedy generation ids for image + question (transformers' LLaMA
                        fed with inputs_embeds, the visual tokens replacing the -200 slot)
  expected.safetensors  a deterministic normalised pixel input [1, n*S, n*S, 3] (NHWC) and every stage:
                        clip features of the 9 local, 9 global and the S x S view, the DEM output, the mean,
                        the projected visual tokens.

The composition is written from docs/spec.md with transformers' own CLIP and the DEM reference in
spatial_embed.py; it is independent of the TypeScript code. Run:
  bash scripts/golden/setup-venv.sh && .venv/bin/pip install transformers && .venv/bin/python scripts/golden/generate_vision_fixtures.py
"""
import json
import os
import sys

sys.dont_write_bytecode = True
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
import shutil
from transformers import AutoTokenizer, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

sys.path.insert(0, os.path.dirname(__file__))
from spatial_embed import SpatialEmbedRef, global_stride_crop, local_crop, prefixed_state_dict  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "infllava")
ASSETS = os.path.join(os.path.dirname(__file__), "..", "..", "assets")  # the bundled tiny checkpoint (CLI default)
N = 3  # DCM grid
S, PATCH, D = 28, 14, 32  # tiny CLIP: image 28, patch 14 -> 2x2 patches, hidden 32
LLM_HIDDEN = 48
SELECT_LAYER = -2


def main() -> None:
    torch.manual_seed(7)
    torch.set_num_threads(2)
    os.makedirs(ROOT, exist_ok=True)

    clip_cfg = CLIPVisionConfig(hidden_size=D, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                                image_size=S, patch_size=PATCH, hidden_act="quick_gelu", projection_dim=16)
    clip = CLIPVisionModel(clip_cfg).eval()
    with torch.no_grad():  # LayerNorms that are not the identity
        for name, p in clip.named_parameters():
            if "layer_norm" in name or "layrnorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    # Real CLIP checkpoints (openai/clip-vit-large-patch14-336, and LLaVA's embedded tower) name the tensors
    # vision_model.*; transformers 5 saves a CLIPVisionModel without that prefix, so write them as the real ones are.
    clip_sd = {(k if k.startswith("vision_model.") else f"vision_model.{k}"): v.contiguous() for k, v in clip.state_dict().items()}
    clip_dir = os.path.join(ASSETS, "tiny-clip")
    clip.save_pretrained(clip_dir, safe_serialization=True)
    save_file(clip_sd, os.path.join(clip_dir, "model.safetensors"), metadata={"format": "pt"})

    dem = SpatialEmbedRef(D, heads=8).eval()
    with torch.no_grad():
        for name, p in dem.named_parameters():
            if ".ln" in name or "ln_fuse" in name:
                p.add_(0.1 * torch.randn_like(p))
    projector = torch.nn.Sequential(torch.nn.Linear(D, LLM_HIDDEN), torch.nn.GELU(), torch.nn.Linear(LLM_HIDDEN, LLM_HIDDEN)).eval()

    tensors = dict(prefixed_state_dict(dem))
    tensors.update({f"model.mm_projector.{k}": v for k, v in projector.state_dict().items()})
    tok_dir = os.path.join(ROOT, "..", "tokenizer", "tiny-llama3-tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    vocab = len(tokenizer)
    llm_cfg = LlamaConfig(vocab_size=vocab, hidden_size=LLM_HIDDEN, intermediate_size=96, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=500000.0,
                          max_position_embeddings=256, tie_word_embeddings=False,
                          bos_token_id=tokenizer.convert_tokens_to_ids("<|begin_of_text|>"),
                          eos_token_id=[tokenizer.convert_tokens_to_ids("<|end_of_text|>"), tokenizer.convert_tokens_to_ids("<|eot_id|>")])
    llm = LlamaForCausalLM(llm_cfg).eval()
    tensors.update({k: v for k, v in llm.state_dict().items()})  # model.embed_tokens..., model.layers..., lm_head
    tensors.update({f"model.vision_tower.vision_tower.{k}": v for k, v in clip_sd.items()})
    ckpt = os.path.join(ASSETS, "tiny-inf-llava")
    os.makedirs(ckpt, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(ckpt, "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama",
        "hidden_size": LLM_HIDDEN, "intermediate_size": 96, "num_attention_heads": 4, "num_hidden_layers": 2,
        "num_key_value_heads": 2, "vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "max_position_embeddings": 256, "bos_token_id": llm_cfg.bos_token_id, "eos_token_id": llm_cfg.eos_token_id,
        "tie_word_embeddings": False,
        "mm_hidden_size": D, "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": SELECT_LAYER,
        "mm_vision_select_feature": "patch", "mm_vision_tower": "tiny-clip", "image_aspect_ratio": "pad",
        "torch_dtype": "float32",
    }
    with open(os.path.join(ckpt, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name in os.listdir(tok_dir):
        shutil.copy(os.path.join(tok_dir, name), os.path.join(ckpt, name))

    # A deterministic normalised image at n*S: smooth structure plus noise.
    H = N * S
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, H), indexing="ij")
    img = torch.stack([torch.sin(3 * xx + yy), torch.cos(2 * yy - xx), xx * yy], -1) + 0.3 * torch.randn(H, H, 3)
    pixels = img[None].float()  # [1, nS, nS, 3] NHWC

    def features(nhwc: torch.Tensor) -> torch.Tensor:  # [B, S, S, 3] -> [B, g*g, D] (LLaVA: hidden_states[-2], CLS dropped)
        out = clip(pixel_values=nhwc.permute(0, 3, 1, 2).contiguous(), output_hidden_states=True)
        return out.hidden_states[SELECT_LAYER][:, 1:]

    with torch.no_grad():
        local = local_crop(pixels, N)  # [9, S, S, 3]
        glob = global_stride_crop(pixels, N)
        view = F.interpolate(pixels.permute(0, 3, 1, 2), size=(S, S), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
        f_local, f_global, f_view = features(local), features(glob), features(view)
        g = S // PATCH
        stages = dem(f_local.reshape(N * N, g, g, D), f_global.reshape(N * N, g, g, D), (N, N), out_size=(g, g))
        dem_out = stages["output"].reshape(1, g * g, D)
        mean = torch.mean(torch.stack([f_view, dem_out], dim=-1), dim=-1)
        tokens = projector(mean)
    expected = {
        "input.pixels": pixels, "stage.view_pixels": view,
        "stage.features_local": f_local, "stage.features_global": f_global, "stage.features_view": f_view,
        "stage.dem": dem_out, "stage.mean": mean, "output.tokens": tokens,
    }
    meta = {"grid": str(N), "image_size": str(S), "patch_size": str(PATCH), "select_layer": str(SELECT_LAYER),
            "note": "view = bicubic(align_corners=False) resize of the input to S x S; for n = 3 it equals global tile (1,1)"}
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(ROOT, "expected.safetensors"), metadata=meta)
    # Generation: the official prompt, tokenised as LLaVA's tokenizer_image_token does, the visual tokens in the
    # -200 slot, greedy decoding with transformers' LLaMA until a stop id or MAX_NEW tokens.
    question = "What is unusual about this image?"
    text = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nA chat between a curious user and an artificial "
            "intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n<image>\n" + question + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    chunks = [tokenizer(c).input_ids for c in text.split("<image>")]
    offset = 1 if chunks[0] and chunks[0][0] == tokenizer.bos_token_id else 0
    ids = [chunks[0][0]] if offset else []
    for i, c in enumerate(chunks):
        if i:
            ids.append(-200)
        ids.extend(c[offset:])
    stops = set(llm_cfg.eos_token_id)
    MAX_NEW = 12
    with torch.no_grad():
        slot = ids.index(-200)
        emb = llm.model.embed_tokens
        before = emb(torch.tensor([ids[:slot]]))
        after = emb(torch.tensor([ids[slot + 1:]]))
        embeds = torch.cat([before, tokens, after], dim=1)
        out = llm(inputs_embeds=embeds, use_cache=True)
        prefill_logits = out.logits[0, -1]
        generated = []
        past = out.past_key_values
        nxt = int(torch.argmax(out.logits[0, -1]))
        while True:
            generated.append(nxt)
            if nxt in stops or len(generated) >= MAX_NEW:
                break
            out = llm(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = int(torch.argmax(out.logits[0, -1]))
    with open(os.path.join(ROOT, "generation.json"), "w") as f:
        json.dump({"question": question, "prompt_ids": ids, "greedy_ids": generated, "max_new_tokens": MAX_NEW,
                   "prefill_last_logits": [float(v) for v in prefill_logits], "stop_ids": sorted(stops),
                   "greedy_text": tokenizer.decode(generated, skip_special_tokens=True)}, f, indent=1)
    print("prompt ids", len(ids), "greedy", generated)
    center = glob[4:5]
    print("view == global tile (1,1):", torch.equal(view, center), "max diff", (view - center).abs().max().item())
    print("wrote", ROOT, {k: list(v.shape) for k, v in expected.items()})


if __name__ == "__main__":
    main()
