"""Golden data for the two preprocessing paths of the INF-LLaVA visual pipeline (docs/spec.md, "The official
visual pipeline", steps 1-5; docs/paper-vs-code.md).

The released code has ONE vision function, ``encode_images(images)`` (INF_llava/model/llava_arch.py):

    images_3x3 = F.interpolate(images, (336*3, 336*3), mode='bicubic', align_corners=False)
    9 crop_pixels_N + 9 extract_pixels_N sub-images of images_3x3, and
    F.interpolate(images, (336, 336), mode='bicubic', align_corners=False)      # the view
    -> CLIP (hidden_states[-2], CLS dropped) on all 19 -> SpatialEmbed on the 18 -> mean with the view's
    features -> mm_projector

and two ways its ``images`` are made (``process_images``: ``expand2square`` with the CLIP mean colour, then the
tower's ``CLIPImageProcessor``):

  native     the training run's processor, scaled by 3 (crop_size / size = 3*S): images are already 3S x 3S
             (Pillow bicubic, antialiased), the upsample is the identity and the view is a bicubic shrink by 3
             (which samples pixel 3i+1: the centre global tile). This library's default.
  upsampled  the released inference scripts (load_pretrained_model -> the tower's own S-pixel processor):
             images are S x S, F.interpolate upsamples the NORMALISED tensor by 3 (float bicubic, no
             antialiasing) and the view is the S x S image itself (a resize to the same size is the identity).

This script runs both on the bundled tiny checkpoint (assets/tiny-inf-llava with its embedded tower; S = 28,
patch 14, n = 3) for the bundled photo and a non-square (portrait) crop of it, with transformers'
CLIPImageProcessor, transformers' CLIPVisionModel, the DEM reference of spatial_embed.py and the checkpoint's
projector. It is independent of the TypeScript code. Writes test/fixtures/preprocess/expected.safetensors:

  <image>.input              the decoded RGB image [H, W, 3], uint8 (Pillow's pixels)
  <image>.<path>.pixels      [1, 3S, 3S, 3] NHWC: the tensor the crops are taken from (images_3x3)
  <image>.<path>.view        [1, S, S, 3] NHWC: the view CLIP sees as the 19th image
  <image>.<path>.tokens      [1, (S/patch)^2, hidden]: the projected visual tokens
  <image>.upsampled.processed [1, S, S, 3]: the S-pixel processor's output (= the upsampled view)

<image> is ``photo`` (assets/extreme_ironing.jpg, 570 x 380, landscape) and ``portrait`` (its rows 40..319,
columns 200..379: 280 x 180). The metadata records the measured differences (centre global tile vs view under
'upsampled', tokens with the centre tile reused vs a 19th pass) and the checkpoint's SHA-256.

Run: .venv/bin/python scripts/golden/generate_preprocess_fixtures.py
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the repo
import numpy as np
import PIL
import torch
import torch.nn.functional as F
import transformers
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModel

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from generate_image_fixtures import PAD_RGB, clip_processor, expand2square  # noqa: E402
from spatial_embed import WEIGHT_PREFIX, SpatialEmbedRef, global_stride_crop, local_crop  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CKPT = os.path.join(ROOT, "assets", "tiny-inf-llava")
TOWER = os.path.join(ROOT, "assets", "tiny-clip")
PHOTO = os.path.join(ROOT, "assets", "extreme_ironing.jpg")
OUT_DIR = os.path.join(ROOT, "test", "fixtures", "preprocess")
TOWER_PREFIX = "model.vision_tower.vision_tower."
N = 3
HEADS = 8
PORTRAIT_BOX = (200, 40, 380, 320)  # PIL crop box (left, upper, right, lower): 180 wide, 280 tall

torch.set_num_threads(2)


def load_vision():
    """The vision side of the bundled checkpoint, as LLaVA builds it: the embedded CLIP tower, SpatialEmbed, mm_projector."""
    with open(os.path.join(CKPT, "config.json")) as f:
        cfg = json.load(f)
    sd = load_file(os.path.join(CKPT, "model.safetensors"))
    clip = CLIPVisionModel(CLIPVisionConfig.from_pretrained(TOWER)).eval()
    tower = {k[len(TOWER_PREFIX):]: v for k, v in sd.items() if k.startswith(TOWER_PREFIX)}
    # Real CLIP checkpoints name the tensors vision_model.*; accept whichever the model's state dict uses.
    own = clip.state_dict()
    tower = {(k if k in own else k[len("vision_model."):]): v for k, v in tower.items()}
    tower = {k: v for k, v in tower.items() if k in own or not k.endswith("position_ids")}
    missing, unexpected = clip.load_state_dict(tower, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    assert not missing and not unexpected, (missing, unexpected)

    D = cfg["mm_hidden_size"]
    dem = SpatialEmbedRef(D, heads=HEADS).eval()
    dem.load_state_dict({k[len(WEIGHT_PREFIX):]: v for k, v in sd.items() if k.startswith(WEIGHT_PREFIX)}, strict=True)
    assert cfg["mm_projector_type"] == "mlp2x_gelu", cfg["mm_projector_type"]
    hidden = cfg["hidden_size"]
    projector = torch.nn.Sequential(torch.nn.Linear(D, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden)).eval()
    projector.load_state_dict({k[len("model.mm_projector."):]: v for k, v in sd.items() if k.startswith("model.mm_projector.")}, strict=True)
    return cfg, clip, dem, projector


def main() -> None:
    cfg, clip, dem, projector = load_vision()
    S = clip.config.image_size
    patch = clip.config.patch_size
    g = S // patch
    D = cfg["mm_hidden_size"]
    select = cfg["mm_vision_select_layer"]

    def features(nchw: torch.Tensor) -> torch.Tensor:  # LLaVA's CLIPVisionTower: hidden_states[select], CLS dropped
        out = clip(pixel_values=nchw, output_hidden_states=True)
        return out.hidden_states[select][:, 1:]

    def encode_images(images: torch.Tensor, reuse_centre: bool = False):
        """INF-LLaVA's encode_images, line by line, with S for 336 (images: NCHW, normalised)."""
        images_3x3 = F.interpolate(images.to(torch.float32), (S * N, S * N), mode="bicubic", align_corners=False)
        big = images_3x3.permute(0, 2, 3, 1)  # NHWC for the reference crops (crop_pixels_N / extract_pixels_N order)
        crops = local_crop(big, N).permute(0, 3, 1, 2)
        strides = global_stride_crop(big, N).permute(0, 3, 1, 2)
        view = F.interpolate(images.to(torch.float32), (S, S), mode="bicubic", align_corners=False)
        f_local, f_global = features(crops), features(strides)
        f_view = f_global[(N * N - 1) // 2:(N * N + 1) // 2] if reuse_centre else features(view)
        dem_out = dem(f_local.reshape(N * N, g, g, D), f_global.reshape(N * N, g, g, D), (N, N), out_size=(g, g))["output"]
        dem_out = dem_out.reshape(1, g * g, D)
        mean = torch.mean(torch.stack([f_view, dem_out], dim=-1), dim=-1)
        return images_3x3, view, projector(mean)

    nhwc = lambda t: t.permute(0, 2, 3, 1).contiguous()  # noqa: E731
    photo = Image.open(PHOTO).convert("RGB")  # LLaVA: Image.open(...).convert('RGB')
    images = {"photo": photo, "portrait": photo.crop(PORTRAIT_BOX)}
    tensors: dict[str, torch.Tensor] = {}
    meta = {
        "grid": str(N), "image_size": str(S), "patch_size": str(patch), "select_layer": str(select), "heads": str(HEADS),
        "pad_rgb": json.dumps(list(PAD_RGB)),
        "portrait_box": json.dumps(PORTRAIT_BOX),
        "checkpoint_sha256": hashlib.sha256(open(os.path.join(CKPT, "model.safetensors"), "rb").read()).hexdigest(),
        "versions": f"torch {torch.__version__}, transformers {transformers.__version__}, Pillow {PIL.__version__}",
    }
    with torch.no_grad():
        for name, img in images.items():
            tensors[f"{name}.input"] = torch.from_numpy(np.asarray(img).copy())  # uint8
            squared = expand2square(img, PAD_RGB)
            native_in = torch.from_numpy(clip_processor(N * S)(images=squared, return_tensors="np")["pixel_values"])
            up_in = torch.from_numpy(clip_processor(S)(images=squared, return_tensors="np")["pixel_values"])
            assert native_in.shape == (1, 3, N * S, N * S) and up_in.shape == (1, 3, S, S)
            results = {}
            for path, inp in (("native", native_in), ("upsampled", up_in)):
                big, view, tokens = encode_images(inp)
                results[path] = tokens
                tensors[f"{name}.{path}.pixels"] = nhwc(big)
                tensors[f"{name}.{path}.view"] = nhwc(view)
                tensors[f"{name}.{path}.tokens"] = tokens
                centre = big[:, :, 1::N, 1::N]
                tile_vs_view = (centre - view).abs().max().item()
                _, _, reused = encode_images(inp, reuse_centre=True)
                tok_diff = ((reused - tokens).abs().max() / tokens.abs().max()).item()
                meta[f"{name}.{path}.centre_tile_vs_view_max_abs"] = repr(tile_vs_view)
                meta[f"{name}.{path}.tokens_reused_centre_rel_diff"] = repr(tok_diff)
                print(f"{name} {path}: centre global tile vs view max|diff| {tile_vs_view:.3e}; "
                      f"tokens with the centre tile reused vs a 19th pass: max|diff|/max|ref| {tok_diff:.3e}")
            # Identities the composition relies on.
            assert torch.equal(F.interpolate(native_in, (N * S, N * S), mode="bicubic", align_corners=False), native_in)
            assert torch.equal(tensors[f"{name}.upsampled.view"], nhwc(up_in)), "the S view of 'upsampled' is the processor output"
            assert torch.equal(tensors[f"{name}.native.view"], tensors[f"{name}.native.pixels"][:, 1::N, 1::N]), "native view = centre tile"
            tensors[f"{name}.upsampled.processed"] = nhwc(up_in)
            diff = ((results["native"] - results["upsampled"]).abs().max() / results["native"].abs().max()).item()
            meta[f"{name}.native_vs_upsampled_tokens_rel_diff"] = repr(diff)
            print(f"{name}: native vs upsampled tokens max|diff|/max|ref| {diff:.3e}")
            assert diff > 1e-2, f"{name}: the two paths' tokens must differ clearly, got {diff}"

    os.makedirs(OUT_DIR, exist_ok=True)
    out = os.path.join(OUT_DIR, "expected.safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, out, metadata=meta)
    back = load_file(out)
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    print("wrote", out, {k: list(v.shape) for k, v in tensors.items()})


if __name__ == "__main__":
    main()
