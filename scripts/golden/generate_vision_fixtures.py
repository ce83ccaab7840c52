"""Golden data for the INF-LLaVA visual path (docs/spec.md, "The official visual pipeline", steps 2-6).

Writes assets/tiny-clip/, assets/tiny-inf-llava/ (the bundled tiny checkpoint) and test/fixtures/infllava/:
  tiny-clip/            a tiny random CLIPVisionModel (save_pretrained, safetensors)
  tiny-inf-llava/       LLaVA-format checkpoint: config.json (LLaMA keys + mm_*), model.safetensors with
                        model.spatial_embed.*, model.mm_projector.*, a tiny LLaMA (model.layers.*, model.embed_tokens,
                        model.norm, lm_head) and the vision tower embedded under model.vision_tower.vision_tower.*,
                        plus the tiny LLaMA-3-style tokenizer of test/fixtures/tokenizer
  expected.safetensors  two deterministic normalised pixel inputs [1, n*S, n*S, 3] (NHWC): input.pixels with every
                        stage (the S x S view's pixels; CLIP features of the 9 local, 9 global sub-images and the view;
                        the DEM output; the mean; the projected visual tokens), and input.pixels_b (a different image)
                        with its visual tokens
  generation.json       greedy decoding with transformers' LLaMA fed with inputs_embeds (the official prompt, tokenised
                        as LLaVA's tokenizer_image_token does, the visual tokens replacing the -200 slot), each case with
                        its prompt ids, the last prompt position's logits, the greedy ids and text and the stop reason:
                          main          the fixture image + QUESTION; MAX_NEW tokens, no stop token
                          image_b       input.pixels_b + QUESTION: a different image changes the answer
                          eos           the fixture image + a question searched (first of EOS_CANDIDATES) so that
                                        greedy decoding emits a stop id (<|eot_id|> / <|end_of_text|>) within MAX_NEW
                          perturbations the main case with the visual tokens zeroed, negated, reversed in order, and
                                        moved after the question (before the <|eot_id|> that ends the user turn)

The language model. With transformers' default init (every weight N(0, 0.02)) attention is uniform and the
residual stream barely moves, so the greedy ids were the same for zeroed, negated or reordered visual tokens: the
end-to-end test could not see where, or in which order, the visual tokens were spliced. Here the LLaMA's weights
are redrawn from their own seeded generator with larger scales (LLM_SCALE: q/k x14 so attention is peaked and
position-dependent, v/o x5 so attention moves the residual stream, embeddings x4), and the norms get non-trivial
weights. LLM_SEED is the first seed from 0 for which every property below holds; the script asserts them all:
  - main: MAX_NEW ids, no stop token; each perturbation and image_b change at least MIN_CHANGED of them;
  - every greedy step of every stored sequence has a top-1 / top-2 logit gap of at least MIN_MARGIN standard
    deviations of that step's logits, so float32 differences between backends cannot flip an id;
  - some EOS_CANDIDATES question stops (len >= 3, so the answer has text) within MAX_NEW.
The vision side (CLIP, DEM, projector) and the pixels are drawn from the global generator (seed 7) exactly as
before, so assets/tiny-clip and model.vision_tower.*, model.spatial_embed.*, model.mm_projector.* are unchanged.

The composition is written from docs/spec.md with transformers' own CLIP and LLaMA and the DEM reference in
spatial_embed.py; it is independent of the TypeScript code. Run:
  bash scripts/golden/setup-venv.sh && .venv/bin/pip install transformers && .venv/bin/python scripts/golden/generate_vision_fixtures.py
"""
import copy
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
IMAGE_TOKEN_INDEX = -200

QUESTION = "What is unusual about this image?"
MAX_NEW = 12
# Standard deviation multipliers over transformers' initializer_range (0.02) for the language model's weights.
LLM_SCALE = {"embed_tokens": 4.0, "q_proj": 14.0, "k_proj": 14.0, "v_proj": 5.0, "o_proj": 5.0, "mlp": 1.0, "lm_head": 1.0}
NORM_NOISE = 0.1  # RMSNorm weights 1 + 0.1 * N(0, 1)
MIN_CHANGED = 8  # of the MAX_NEW main ids, at least this many differ under each perturbation and for image_b
MIN_MARGIN = 0.01  # top-1 minus top-2 logit, in standard deviations of the step's logits, at every stored step
EOS_CANDIDATES = [a.format(s) for a in ["Describe {}.", "What is in {}?", "What color is {}?", "Where is {}?",
                                        "What is happening in {}?", "Tell me about {}."]
                  for s in ["the image", "the man", "the photo", "the scene", "the background", "the sky"]]
PIXELS_B_SEED = 1234


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

    tok_dir = os.path.join(ROOT, "..", "tokenizer", "tiny-llama3-tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    vocab = len(tokenizer)
    llm_cfg = LlamaConfig(vocab_size=vocab, hidden_size=LLM_HIDDEN, intermediate_size=96, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=500000.0,
                          max_position_embeddings=256, tie_word_embeddings=False,
                          bos_token_id=tokenizer.convert_tokens_to_ids("<|begin_of_text|>"),
                          eos_token_id=[tokenizer.convert_tokens_to_ids("<|end_of_text|>"), tokenizer.convert_tokens_to_ids("<|eot_id|>")])
    # Built with the default init only to draw from the global generator as before (the pixels below come after it);
    # its weights are redrawn by llm_with_seed.
    base_llm = LlamaForCausalLM(llm_cfg).eval()

    # A deterministic normalised image at n*S: smooth structure plus noise; and a second, different one.
    H = N * S
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, H), indexing="ij")
    img = torch.stack([torch.sin(3 * xx + yy), torch.cos(2 * yy - xx), xx * yy], -1) + 0.3 * torch.randn(H, H, 3)
    pixels = img[None].float()  # [1, nS, nS, 3] NHWC
    gen_b = torch.Generator().manual_seed(PIXELS_B_SEED)
    img_b = torch.stack([torch.cos(2 * xx - 3 * yy), torch.sin(4 * xx * yy), yy - 0.5 * xx], -1) + 0.3 * torch.randn(H, H, 3, generator=gen_b)
    pixels_b = img_b[None].float()

    def features(nhwc: torch.Tensor) -> torch.Tensor:  # [B, S, S, 3] -> [B, g*g, D] (LLaVA: hidden_states[-2], CLS dropped)
        out = clip(pixel_values=nhwc.permute(0, 3, 1, 2).contiguous(), output_hidden_states=True)
        return out.hidden_states[SELECT_LAYER][:, 1:]

    def encode(px: torch.Tensor) -> dict:
        local = local_crop(px, N)  # [9, S, S, 3]
        glob = global_stride_crop(px, N)
        view = F.interpolate(px.permute(0, 3, 1, 2), size=(S, S), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
        f_local, f_global, f_view = features(local), features(glob), features(view)
        g = S // PATCH
        stages = dem(f_local.reshape(N * N, g, g, D), f_global.reshape(N * N, g, g, D), (N, N), out_size=(g, g))
        dem_out = stages["output"].reshape(1, g * g, D)
        mean = torch.mean(torch.stack([f_view, dem_out], dim=-1), dim=-1)
        return {"view": view, "center": glob[4:5], "f_local": f_local, "f_global": f_global, "f_view": f_view,
                "dem": dem_out, "mean": mean, "tokens": projector(mean)}

    with torch.no_grad():
        a = encode(pixels)
        tokens = a["tokens"]
        tokens_b = encode(pixels_b)["tokens"]
    expected = {
        "input.pixels": pixels, "stage.view_pixels": a["view"],
        "stage.features_local": a["f_local"], "stage.features_global": a["f_global"], "stage.features_view": a["f_view"],
        "stage.dem": a["dem"], "stage.mean": a["mean"], "output.tokens": tokens,
        "input.pixels_b": pixels_b, "output.tokens_b": tokens_b,
    }
    meta = {"grid": str(N), "image_size": str(S), "patch_size": str(PATCH), "select_layer": str(SELECT_LAYER),
            "note": "view = bicubic(align_corners=False) resize of the input to S x S; for n = 3 it equals global tile (1,1); "
                    "input.pixels_b: a second image (seed 1234), output.tokens_b its visual tokens"}
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(ROOT, "expected.safetensors"), metadata=meta)

    # The official prompt, tokenised as LLaVA's tokenizer_image_token does (-200 marks the image slot).
    def prompt_ids(question: str) -> list:
        text = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nA chat between a curious user and an artificial "
                "intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\n<image>\n" + question + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
        chunks = [tokenizer(c).input_ids for c in text.split("<image>")]
        offset = 1 if chunks[0] and chunks[0][0] == tokenizer.bos_token_id else 0
        ids = [chunks[0][0]] if offset else []
        for i, c in enumerate(chunks):
            if i:
                ids.append(IMAGE_TOKEN_INDEX)
            ids.extend(c[offset:])
        return ids

    stops = set(llm_cfg.eos_token_id)
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")

    def greedy(llm, text_ids: list, visual: torch.Tensor, insert_at: int) -> dict:
        """Greedy decoding from embed(text_ids[:insert_at]) ++ visual ++ embed(text_ids[insert_at:]) (text_ids without
        the -200 slot), until a stop id or MAX_NEW tokens; each step's top-1 / top-2 gap in logit standard deviations."""
        with torch.no_grad():
            emb = llm.model.embed_tokens
            embeds = torch.cat([emb(torch.tensor([text_ids[:insert_at]])), visual, emb(torch.tensor([text_ids[insert_at:]]))], dim=1)
            out = llm(inputs_embeds=embeds, use_cache=True)
            prefill = out.logits[0, -1]
            logits, past, ids, margins = prefill, out.past_key_values, [], []
            while True:
                top = torch.topk(logits, 2).values
                margins.append(float((top[0] - top[1]) / logits.std()))
                ids.append(int(torch.argmax(logits)))
                if ids[-1] in stops or len(ids) >= MAX_NEW:
                    break
                out = llm(input_ids=torch.tensor([[ids[-1]]]), past_key_values=past, use_cache=True)
                past, logits = out.past_key_values, out.logits[0, -1]
        return {"greedy_ids": ids, "prefill_last_logits": prefill, "min_margin": min(margins),
                "stop_reason": "eos" if ids[-1] in stops else "max_tokens"}

    def llm_with_seed(seed: int):
        llm = copy.deepcopy(base_llm)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in llm.named_parameters():  # named_parameters order is fixed: the draw is deterministic
                if "norm" in name:
                    p.copy_(1 + NORM_NOISE * torch.randn(p.shape, generator=gen))
                else:
                    scale = next(s for k, s in LLM_SCALE.items() if k in name)
                    p.copy_(llm_cfg.initializer_range * scale * torch.randn(p.shape, generator=gen))
        return llm

    def changed(a_ids: list, b_ids: list) -> int:
        return sum(1 for x, y in zip(a_ids, b_ids) if x != y) + abs(len(a_ids) - len(b_ids))

    ids = prompt_ids(QUESTION)
    slot = ids.index(IMAGE_TOKEN_INDEX)
    text_ids = ids[:slot] + ids[slot + 1:]
    after_question = text_ids.index(eot, slot)  # the <|eot_id|> that ends the user turn
    perturbed = {"zeroed": (torch.zeros_like(tokens), slot), "negated": (-tokens, slot),
                 "reversed": (tokens.flip(1), slot), "after_question": (tokens, after_question)}

    def try_seed(seed: int):
        llm = llm_with_seed(seed)
        main_case = greedy(llm, text_ids, tokens, slot)
        if main_case["stop_reason"] != "max_tokens" or main_case["min_margin"] < MIN_MARGIN:
            return None
        cases = {"image_b": greedy(llm, text_ids, tokens_b, slot)}
        cases.update({k: greedy(llm, text_ids, vis, at) for k, (vis, at) in perturbed.items()})
        if any(c["min_margin"] < MIN_MARGIN or changed(main_case["greedy_ids"], c["greedy_ids"]) < MIN_CHANGED for c in cases.values()):
            return None
        for q in EOS_CANDIDATES:
            e_ids = prompt_ids(q)
            e_slot = e_ids.index(IMAGE_TOKEN_INDEX)
            e = greedy(llm, e_ids[:e_slot] + e_ids[e_slot + 1:], tokens, e_slot)
            if e["stop_reason"] == "eos" and len(e["greedy_ids"]) >= 3 and e["min_margin"] >= MIN_MARGIN:
                return llm, main_case, cases, {**e, "question": q, "prompt_ids": e_ids}
        return None

    for llm_seed in range(1000):
        found = try_seed(llm_seed)
        if found:
            break
    else:
        raise SystemExit("no LLM seed below 1000 satisfies the properties; relax MIN_MARGIN / MIN_CHANGED or change LLM_SCALE")
    llm, main_case, cases, eos_case = found

    # The properties, asserted on what is written.
    assert len(main_case["greedy_ids"]) == MAX_NEW and not stops & set(main_case["greedy_ids"])
    for name, c in cases.items():
        n = changed(main_case["greedy_ids"], c["greedy_ids"])
        assert c["greedy_ids"] != main_case["greedy_ids"] and n >= MIN_CHANGED, (name, n)
    assert eos_case["greedy_ids"][-1] in stops and eos_case["stop_reason"] == "eos" and len(eos_case["greedy_ids"]) <= MAX_NEW
    assert min(c["min_margin"] for c in [main_case, eos_case, *cases.values()]) >= MIN_MARGIN

    # The checkpoint: vision side as drawn above, the language model of llm_seed.
    tensors = dict(prefixed_state_dict(dem))
    tensors.update({f"model.mm_projector.{k}": v for k, v in projector.state_dict().items()})
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

    def case_json(c: dict) -> dict:
        return {"greedy_ids": c["greedy_ids"], "greedy_text": tokenizer.decode(c["greedy_ids"], skip_special_tokens=True),
                "stop_reason": c["stop_reason"], "prefill_last_logits": [float(v) for v in c["prefill_last_logits"]]}

    generation = {
        "max_new_tokens": MAX_NEW, "stop_ids": sorted(stops),
        "llm_seed": llm_seed, "llm_scale": LLM_SCALE, "min_margin": MIN_MARGIN, "min_changed": MIN_CHANGED,
        # main: expected.safetensors input.pixels + question
        "question": QUESTION, "prompt_ids": ids, **case_json(main_case),
        # the same prompt, input.pixels_b
        "image_b": case_json(cases["image_b"]),
        # input.pixels + another question; ends on a stop id
        "eos": {"question": eos_case["question"], "prompt_ids": eos_case["prompt_ids"], **case_json(eos_case)},
        # input.pixels + question with the visual tokens changed ("visual") or moved: the embeddings are
        # embed(text[:insert_at]) ++ visual ++ embed(text[insert_at:]), text = prompt_ids without the -200 slot
        "perturbations": {k: {"visual": {"zeroed": "zeros", "negated": "negated", "reversed": "reversed"}.get(k, "tokens"),
                              "insert_at": at, **case_json(cases[k]),
                              "changed": changed(main_case["greedy_ids"], cases[k]["greedy_ids"])}
                          for k, (_, at) in perturbed.items()},
    }
    with open(os.path.join(ROOT, "generation.json"), "w") as f:
        json.dump(generation, f, indent=1)

    print("LLM seed", llm_seed, "prompt ids", len(ids), "slot", slot, "after question", after_question)
    print("main    ", main_case["greedy_ids"], "min margin %.4f" % main_case["min_margin"])
    for name, c in cases.items():
        print(f"{name:15s}", c["greedy_ids"], "changed %d/%d" % (changed(main_case["greedy_ids"], c["greedy_ids"]), MAX_NEW),
              "min margin %.4f" % c["min_margin"])
    print("eos     ", repr(eos_case["question"]), eos_case["greedy_ids"], "min margin %.4f" % eos_case["min_margin"])
    print("view == global tile (1,1):", torch.equal(a["view"], a["center"]), "max diff", (a["view"] - a["center"]).abs().max().item())
    print("wrote", ROOT, {k: list(v.shape) for k, v in expected.items()})


if __name__ == "__main__":
    main()
