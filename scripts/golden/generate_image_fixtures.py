"""Generate golden fixtures for the image front end (resizeBicubic, preprocessImage, decodeImage).

Writes test/fixtures/image/*.safetensors and test/fixtures/image/README.md. Regenerate with:

    bash scripts/golden/setup-venv.sh
    PIP_INDEX_URL=file:///opt/pypi/simple .venv/bin/pip install transformers pillow
    .venv/bin/python scripts/golden/generate_image_fixtures.py

Three groups:

* ``resize_<case>.safetensors``: ``torch.nn.functional.interpolate(x, size, mode='bicubic',
  align_corners=False)`` with ``antialias=False`` and ``antialias=True`` on float32 NCHW
  tensors, saved NHWC. Inputs are mulberry32 streams (the generator of test/oracle.ts's
  ``randomData``, reimplemented here bit for bit), so the large cases store only outputs
  (patches and per-channel means) and the tests regenerate the inputs.
* ``photo_<name>.safetensors``: for /work/shared/assets/<name>.jpg, Pillow's decoded RGB pixels
  and transformers' CLIP image processor run the way LLaVA runs it (``expand2square`` with
  the background ``tuple(int(x * 255) for x in image_mean)`` = (122, 116, 104), then
  ``CLIPImageProcessor`` with Pillow bicubic resampling) at 336 and at 1008.
* ``decode_cases.safetensors``: small images encoded by Pillow in formats and modes a decoder
  must handle (grayscale, alpha, palette, 16-bit, CMYK, EXIF orientation), with the pixels
  Pillow's ``Image.open(...).convert('RGB')`` gives (what LLaVA does).

All computation is on CPU, float32, 2 torch threads. Every file is reloaded and checked.
"""

from __future__ import annotations

import hashlib
import io
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
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(ROOT, "test", "fixtures", "image")
ASSETS = "/work/shared/assets"
REGEN = (
    "bash scripts/golden/setup-venv.sh && PIP_INDEX_URL=file:///opt/pypi/simple .venv/bin/pip install transformers pillow"
    " && .venv/bin/python scripts/golden/generate_image_fixtures.py"
)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
PAD_RGB = tuple(int(x * 255) for x in CLIP_MEAN)  # LLaVA: truncated, not rounded
assert PAD_RGB == (122, 116, 104), PAD_RGB

torch.set_num_threads(2)


def mulberry32(n: int, seed: int) -> np.ndarray:
    """test/oracle.ts randomData(n, seed): floats in [-1, 1), rounded to float32."""
    m = np.uint64(0xFFFFFFFF)
    i = np.arange(1, n + 1, dtype=np.uint64)
    s = (np.uint64(seed & 0xFFFFFFFF) + i * np.uint64(0x6D2B79F5)) & m
    t = s
    t = ((t ^ (t >> np.uint64(15))) * (t | np.uint64(1))) & m
    t = (t ^ ((t + (((t ^ (t >> np.uint64(7))) * (t | np.uint64(61))) & m)) & m)) & m
    u = (t ^ (t >> np.uint64(14))) & m
    return (u.astype(np.float64) / 2.0**31 - 1.0).astype(np.float32)


def nchw_to_nhwc(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.permute(0, 2, 3, 1).numpy())


# ----------------------------------------------------------------------------------------------
# (a) resize cases
# name, [B, H, W, C] (NHWC), [outH, outW], seed, store: "full" (input and outputs) or "patches"
RESIZE_CASES = [
    ("up_down_13x17_to_29x8", [2, 13, 17, 3], [29, 8], 101, "full"),
    ("down_up_40x30_to_12x20", [1, 40, 30, 4], [12, 20], 102, "full"),
    ("down_factor3_48x48_to_16x16", [1, 48, 48, 3], [16, 16], 103, "full"),
    ("down_factor2_32x24_to_16x12", [1, 32, 24, 2], [16, 12], 104, "full"),
    ("down_factor5_45x35_to_9x7", [2, 45, 35, 1], [9, 7], 105, "full"),
    ("up_factor3_8x8_to_24x24", [1, 8, 8, 3], [24, 24], 106, "full"),
    ("same_size_11x7", [1, 11, 7, 3], [11, 7], 107, "full"),
    ("one_pixel_1x1_to_5x4", [1, 1, 1, 3], [5, 4], 108, "full"),
    ("shrink_far_100x90_to_7x6", [1, 100, 90, 2], [7, 6], 109, "full"),
    ("to_one_pixel_9x6_to_1x1", [1, 9, 6, 3], [1, 1], 110, "full"),
    ("official_1008_to_336", [1, 1008, 1008, 3], [336, 336], 111, "patches"),
    ("official_336_to_1008", [1, 336, 336, 3], [1008, 1008], 112, "patches"),
]
PATCH = 32


def patch_corners(h: int, w: int):
    """Fixed patch origins: the four corners, the centre, and an off-grid interior point."""
    ys = [0, h - PATCH, (h - PATCH) // 2, 97 % (h - PATCH)]
    xs = [0, w - PATCH, (w - PATCH) // 2, 211 % (w - PATCH)]
    return [(ys[0], xs[0]), (ys[0], xs[1]), (ys[1], xs[0]), (ys[1], xs[1]), (ys[2], xs[2]), (ys[3], xs[3])]


def build_resize(name, shape, out, seed, store):
    B, H, W, C = shape
    x = mulberry32(B * H * W * C, seed).reshape(B, H, W, C)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # NCHW
    tensors = {}
    meta = {
        "kind": "resize",
        "case": name,
        "input_shape": json.dumps(shape),
        "size": json.dumps(out),
        "seed": str(seed),
        "input": "mulberry32(B*H*W*C, seed) in NHWC order (test/oracle.ts randomData)",
        "store": store,
    }
    if store == "full":
        tensors["input"] = x
    for aa in (False, True):
        y = F.interpolate(xt, size=tuple(out), mode="bicubic", align_corners=False, antialias=aa)
        y = nchw_to_nhwc(y)
        key = "antialias" if aa else "bicubic"
        if store == "full":
            tensors[key] = y
        else:
            corners = patch_corners(out[0], out[1])
            meta["patch_origins"] = json.dumps(corners)
            for p, (py, px) in enumerate(corners):
                tensors[f"{key}.patch{p}"] = np.ascontiguousarray(y[:, py : py + PATCH, px : px + PATCH, :])
            tensors[f"{key}.channel_mean"] = y.astype(np.float64).mean(axis=(0, 1, 2)).astype(np.float32)
            tensors[f"{key}.channel_absmax"] = np.abs(y).max(axis=(0, 1, 2)).astype(np.float32)
    return tensors, meta


# One-axis weight matrices [out, in] of F.interpolate, read off one-hot inputs (a W-only resize of
# an [in, 1, 1, in] identity batch; the H axis 1 -> 1 is the identity). Stored as a window per
# output row: weights[o, j] = M[o, start[o] + j] (columns outside every window are 0).
WEIGHT_SIZES = [
    (13, 29), (17, 8), (40, 12), (30, 20), (48, 16), (32, 16), (24, 12), (45, 9), (35, 7), (8, 24), (1, 5), (1, 4),
    (100, 7), (90, 6), (9, 1), (6, 1), (11, 11), (1008, 336), (336, 1008), (570, 1008), (1000, 1008), (570, 336), (1000, 336),
]


def build_weights():
    tensors = {}
    for i, o in WEIGHT_SIZES:
        for aa in (False, True):
            x = torch.eye(i, dtype=torch.float32).reshape(i, 1, 1, i)
            m = F.interpolate(x, size=(1, o), mode="bicubic", align_corners=False, antialias=aa)[:, 0, 0, :].T.numpy()  # [o, i]
            nz = m != 0
            start = np.where(nz.any(1), nz.argmax(1), 0).astype(np.int32)
            stop = np.where(nz.any(1), i - nz[:, ::-1].argmax(1), 0)
            width = int(max(1, (stop - start).max()))
            win = np.zeros((o, width), np.float32)
            for r in range(o):
                seg = m[r, start[r] : start[r] + width]
                win[r, : seg.shape[0]] = seg
            rebuilt = np.zeros_like(m)
            for r in range(o):
                seg = win[r, : min(width, i - start[r])]
                rebuilt[r, start[r] : start[r] + seg.shape[0]] = seg
            assert np.array_equal(rebuilt, m)
            key = f"{i}_to_{o}.{'antialias' if aa else 'bicubic'}"
            tensors[f"{key}.weights"] = win
            tensors[f"{key}.start"] = start
    meta = {
        "kind": "weights",
        "sizes": json.dumps(WEIGHT_SIZES),
        "note": (
            "<in>_to_<out>.<mode>.weights [out, width] float32 and .start [out] int32: row o of the [out, in] matrix of "
            "F.interpolate(mode='bicubic', align_corners=False, antialias=mode=='antialias') along one axis is "
            "weights[o] placed at columns start[o]...; read off one-hot inputs (clamped taps summed, as the kernel sums them)"
        ),
    }
    return tensors, meta


# ----------------------------------------------------------------------------------------------
# (b) photos through LLaVA's preprocessing


def expand2square(pil_img: Image.Image, background_color) -> Image.Image:
    """LLaVA's llava/mm_utils.py expand2square, verbatim."""
    width, height = pil_img.size
    if width == height:
        return pil_img
    elif width > height:
        result = Image.new(pil_img.mode, (width, width), background_color)
        result.paste(pil_img, (0, (width - height) // 2))
        return result
    else:
        result = Image.new(pil_img.mode, (height, height), background_color)
        result.paste(pil_img, ((height - width) // 2, 0))
        return result


def clip_processor(size: int):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        resample=3,  # PIL.Image.BICUBIC, as openai/clip-vit-large-patch14-336's preprocessor_config.json
        do_resize=True,
        do_center_crop=True,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        do_convert_rgb=True,
    )


def build_photo(name: str):
    path = os.path.join(ASSETS, f"{name}.jpg")
    img = Image.open(path).convert("RGB")  # LLaVA: Image.open(...).convert('RGB'); no EXIF transpose
    rgb = np.asarray(img)  # [H, W, 3] uint8
    H, W, _ = rgb.shape
    squared = expand2square(img, PAD_RGB)
    side = squared.size[0]
    tensors = {}
    meta = {
        "kind": "photo",
        "photo": f"{name}.jpg",
        "decoded_shape": json.dumps([H, W, 3]),
        "decoded_sha256": hashlib.sha256(rgb.tobytes()).hexdigest(),
        "pad_rgb": json.dumps(list(PAD_RGB)),
        "padded_side": str(side),
        "processor": f"transformers {transformers.__version__} {type(clip_processor(336)).__name__}, Pillow {PIL.__version__}",
        "clip_mean": json.dumps(CLIP_MEAN),
        "clip_std": json.dumps(CLIP_STD),
    }
    if name == "extreme_ironing":
        tensors["decoded"] = rgb  # full pixels, U8
        meta["decoded"] = "Pillow's decoded RGB pixels [H, W, 3], U8 (full image)"
    else:
        meta["decoded"] = "only decoded_sha256, decoded.row_sums and decoded.patch*: the full image is 2 MB"
    tensors["decoded.row_sums"] = rgb.astype(np.int32).sum(axis=1).astype(np.int32)  # [H, 3]
    for p, (py, px) in enumerate(patch_corners(H, W)):
        tensors[f"decoded.patch{p}"] = np.ascontiguousarray(rgb[py : py + PATCH, px : px + PATCH])
    meta["decoded_patch_origins"] = json.dumps(patch_corners(H, W))

    for size in (336, 1008):
        proc = clip_processor(size)
        pv = proc(images=squared, return_tensors="np")["pixel_values"]  # [1, 3, size, size] float32
        assert pv.shape == (1, 3, size, size) and pv.dtype == np.float32, (pv.shape, pv.dtype)
        pv = np.ascontiguousarray(pv.transpose(0, 2, 3, 1))  # NHWC
        # The same pipeline by hand: Pillow bicubic resize of the uint8 square image (rounded and
        # clipped to uint8 after each of its two passes), then (u8 * (1/255) - mean) / std.
        resized = np.asarray(squared.resize((size, size), resample=Image.BICUBIC))  # [size, size, 3] uint8
        rescaled = (resized.astype(np.float64) * (1 / 255)).astype(np.float32)
        by_hand = (rescaled - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
        diff = float(np.abs(by_hand - pv[0]).max())
        assert diff == 0.0, f"{name} {size}: processor differs from Pillow resize + normalise by {diff}"
        # The float (unrounded) reference of the same resize: torch antialiased bicubic on the
        # padded image as float32, which is what preprocessImage computes.
        sq = torch.from_numpy(np.asarray(squared).astype(np.float32)).permute(2, 0, 1)[None]
        fl = nchw_to_nhwc(F.interpolate(sq, size=(size, size), mode="bicubic", align_corners=False, antialias=True))[0]
        step = np.abs(fl - resized.astype(np.float32))
        meta[f"pil_vs_float_resize_{size}"] = json.dumps(
            {"max_abs_u8_steps": float(step.max()), "mean_abs_u8_steps": float(step.mean()),
             "max_after_clip_0_255": float(np.abs(np.clip(fl, 0, 255) - resized).max())}
        )
        prefix = f"clip{size}"
        corners = patch_corners(size, size)
        for p, (py, px) in enumerate(corners):
            tensors[f"{prefix}.pixel_values.patch{p}"] = np.ascontiguousarray(pv[:, py : py + PATCH, px : px + PATCH])
        tensors[f"{prefix}.pixel_values.channel_mean"] = pv.astype(np.float64).mean(axis=(0, 1, 2)).astype(np.float32)
        meta[f"{prefix}.patch_origins"] = json.dumps(corners)
        if size == 336:
            tensors[f"{prefix}.resized_u8"] = resized
            meta[f"{prefix}"] = (
                "resized_u8: Pillow's uint8 image after expand2square + BICUBIC resize [336, 336, 3] (the whole "
                "processor output is exactly (u8*(1/255) - mean)/std of it, float32, checked by the generator); "
                "pixel_values.patch*: 32x32 patches [1, 32, 32, 3] of the processor's NHWC output at patch_origins; "
                "pixel_values.channel_mean: its per-channel mean"
            )
        else:
            rows = list(range(0, size, 16)) + [size - 1]
            tensors[f"{prefix}.resized_u8_rows"] = np.ascontiguousarray(resized[rows])
            tensors[f"{prefix}.row_index"] = np.array(rows, np.int32)
            meta[f"{prefix}"] = (
                "resized_u8_rows: rows row_index (every 16th and the last) of Pillow's uint8 1008x1008 image; "
                "pixel_values.patch*: 32x32 patches of the processor's NHWC output at patch_origins; "
                "pixel_values.channel_mean: its per-channel mean over the whole image"
            )
    return tensors, meta


# ----------------------------------------------------------------------------------------------
# (c) decoder edge cases


def gradient_rgba(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 255 // (h + w - 2), 255 - x * 200 // w], -1)
    noise = rng.integers(-20, 21, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, format=fmt, **kw)
    return b.getvalue()


def build_decode_cases():
    h, w = 12, 17
    px = gradient_rgba(h, w, 7)
    cases = {}
    rgb = Image.fromarray(px[..., :3], "RGB")
    rgba = Image.fromarray(px, "RGBA")
    gray = Image.fromarray(px[..., 0], "L")
    cases["png_rgb"] = encode(rgb, "PNG")
    cases["png_rgba"] = encode(rgba, "PNG")  # convert('RGB') drops alpha, no compositing
    cases["png_gray"] = encode(gray, "PNG")
    cases["png_gray_alpha"] = encode(Image.fromarray(px[..., [0, 3]], "LA"), "PNG")
    cases["png_palette"] = encode(rgb.quantize(colors=16), "PNG")
    pal = rgb.quantize(colors=16)
    cases["png_palette_trns"] = encode(pal, "PNG", transparency=3)
    # 16-bit: RGB with 16-bit samples via raw PNG? Pillow writes "I;16" grayscale only.
    g16 = (px[..., 1].astype(np.uint16) * 256 + np.arange(w, dtype=np.uint16)[None, :] * 13).astype("<u2")
    cases["png_gray16"] = encode(Image.frombytes("I;16", (w, h), g16.tobytes()), "PNG")
    cases["jpeg_rgb_q95"] = encode(rgb, "JPEG", quality=95)
    cases["jpeg_gray"] = encode(gray, "JPEG", quality=95)
    cmyk = np.concatenate([255 - px[..., :3], (px[..., 3:4] // 2)], -1).astype(np.uint8)  # K != 0
    cases["jpeg_cmyk"] = encode(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=95)  # Adobe-inverted CMYK JPEG
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display; LLaVA (Pillow) ignores it
    cases["jpeg_exif_orientation6"] = encode(rgb, "JPEG", quality=95, exif=exif.tobytes())
    cases["webp_lossless_rgb"] = encode(rgb, "WEBP", lossless=True)
    cases["webp_lossless_rgba"] = encode(rgba, "WEBP", lossless=True)
    cases["webp_lossy"] = encode(rgb, "WEBP", quality=90)

    tensors = {}
    notes = {}
    for name, data in cases.items():
        im = Image.open(io.BytesIO(data))
        notes[name] = f"{im.format} mode {im.mode}"
        pixels = np.asarray(im.convert("RGB"))
        tensors[f"{name}.bytes"] = np.frombuffer(data, np.uint8).copy()
        tensors[f"{name}.pil_rgb"] = np.ascontiguousarray(pixels)
        if im.mode == "I;16":
            tensors[f"{name}.samples16"] = np.asarray(im).astype(np.int32)  # the stored 16-bit samples [H, W]
    meta = {
        "kind": "decode",
        "cases": json.dumps(notes),
        "note": (
            "<case>.bytes: the encoded file (U8); <case>.pil_rgb: Image.open(bytes).convert('RGB') as [H, W, 3] U8 "
            "(for I;16, Pillow clips samples above 255 to 255); png_gray16.samples16: its 16-bit samples [H, W] I32"
        ),
    }
    return tensors, meta


# ----------------------------------------------------------------------------------------------


def write(name: str, tensors, meta):
    path = os.path.join(OUT_DIR, f"{name}.safetensors")
    meta = {**meta, "generator": "scripts/golden/generate_image_fixtures.py", "torch": torch.__version__, "regenerate": REGEN}
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path, metadata=meta)
    os.chmod(path, 0o644)
    back = load_file(path)
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v), k
    return path


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for f in os.listdir(OUT_DIR):
        if f.endswith(".safetensors") or f.endswith(".jpg"):
            os.remove(os.path.join(OUT_DIR, f))
    rows = []
    for case in RESIZE_CASES:
        t, m = build_resize(*case)
        p = write(f"resize_{case[0]}", t, m)
        rows.append((os.path.basename(p), os.path.getsize(p), f"{case[1]} -> {case[2]}, {case[4]}"))
    t, m = build_weights()
    p = write("resize_weights", t, m)
    rows.append((os.path.basename(p), os.path.getsize(p), "one-axis weight matrices, both modes"))
    photo_notes = {}
    for name in ("extreme_ironing", "waterview"):
        t, m = build_photo(name)
        p = write(f"photo_{name}", t, m)
        photo_notes[name] = {k: v for k, v in m.items() if k.startswith("pil_vs_float")}
        rows.append((os.path.basename(p), os.path.getsize(p), f"{name}.jpg, padded side {m['padded_side']}"))
    # The tests decode the photos themselves, from byte-for-byte copies kept here (the repository's
    # own copy of extreme_ironing.jpg has moved before; Apache-2.0 attribution in README.md).
    for name in ("extreme_ironing", "waterview"):
        src = os.path.join(ASSETS, f"{name}.jpg")
        dst = os.path.join(OUT_DIR, f"{name}.jpg")
        with open(src, "rb") as fh:
            jpg = fh.read()
        with open(dst, "wb") as fh:
            fh.write(jpg)
        os.chmod(dst, 0o644)
        rows.append((f"{name}.jpg", len(jpg), f"copy of {src} (SHA-256 {hashlib.sha256(jpg).hexdigest()})"))
    t, m = build_decode_cases()
    p = write("decode_cases", t, m)
    rows.append((os.path.basename(p), os.path.getsize(p), "decoder edge cases"))
    total = sum(r[1] for r in rows)
    assert total < 3_000_000, f"fixtures total {total} bytes"
    write_readme(rows, total, photo_notes, json.loads(m["cases"]))
    for r in rows:
        print(f"{r[0]:50s} {r[1]:>9d}  {r[2]}")
    print(f"total {total} bytes")
    for k, v in photo_notes.items():
        print(k, v)


def write_readme(rows, total, photo_notes, decode_notes):
    lines = [
        "# Image golden fixtures",
        "",
        "Golden data for `resizeBicubic`, `preprocessImage` and `decodeImage` (src/image/).",
        "**Generated files: do not edit by hand.** Regenerate with",
        "",
        "```sh",
        "bash scripts/golden/setup-venv.sh",
        "PIP_INDEX_URL=file:///opt/pypi/simple .venv/bin/pip install transformers pillow",
        ".venv/bin/python scripts/golden/generate_image_fixtures.py",
        "```",
        "",
        f"(torch {torch.__version__}, transformers {transformers.__version__}, Pillow {PIL.__version__}, numpy {np.__version__}; CPU, 2 threads.)",
        "Every file's safetensors metadata says what each tensor is; all image tensors are NHWC / HWC.",
        "",
        "## resize_*.safetensors",
        "",
        "`F.interpolate(x, size, mode='bicubic', align_corners=False)` (`bicubic`) and the same with",
        "`antialias=True` (`antialias`) of `x = mulberry32(B*H*W*C, seed)` laid out NHWC (test/oracle.ts",
        "`randomData`, reimplemented bit for bit in the generator). `store: full` files hold `input` and both",
        "outputs; `store: patches` files (the official 1008 <-> 336 sizes) hold 32x32 patches at",
        "`patch_origins` plus per-channel means and max |y| of each output.",
        "",
        "## resize_weights.safetensors",
        "",
        "The one-axis `[out, in]` weight matrices of both modes for the sizes in its metadata, read off",
        "one-hot inputs, stored as a window of nonzero columns per output row (`.weights`, `.start`).",
        "",
        "## photo_*.safetensors",
        "",
        "LLaVA's preprocessing of /work/shared/assets/<name>.jpg: `Image.open().convert('RGB')` (no EXIF",
        "transpose), `expand2square` with (122, 116, 104) = `int(mean*255)` truncated, then",
        "`CLIPImageProcessor` (shortest_edge = crop = 336 or 1008, Pillow BICUBIC, rescale 1/255, CLIP",
        "mean/std). The generator checks that the processor output equals `(u8/255 - mean)/std` of Pillow's",
        "uint8 resize exactly, so storing the uint8 resized image is lossless.",
        "",
        "- `decoded` (extreme_ironing only): Pillow's decoded pixels; `decoded.row_sums`, `decoded.patch*`",
        "  and the metadata `decoded_sha256` for both photos.",
        "- `clip336.resized_u8`: the full 336x336 result (as uint8); `clip336.pixel_values.patch*`,",
        "  `clip336.pixel_values.channel_mean`: the processor's float output in part.",
        "- `clip1008.resized_u8_rows` (rows `clip1008.row_index`), `clip1008.pixel_values.patch*`,",
        "  `clip1008.pixel_values.channel_mean`: the 1008x1008 result in part (the whole is 12 MB).",
        "",
        "Pillow rounds and clips to uint8 after each pass; the float resize (torch, antialias=True, on the",
        "padded float image) differs from it by (in uint8 steps):",
        "",
    ]
    for k, v in photo_notes.items():
        for kk, vv in v.items():
            lines.append(f"- {k} {kk.replace('pil_vs_float_resize_', 'size ')}: {vv}")
    lines += [
        "",
        "## extreme_ironing.jpg, waterview.jpg",
        "",
        "Byte-for-byte copies of /work/shared/assets/{extreme_ironing,waterview}.jpg, which the tests decode",
        "(SHA-256 in the table below). Attribution as it was supplied with the photographs, verbatim:",
        "",
        "> Sample photographs from the LLaVA / INF-LLaVA repositories (Apache License 2.0):",
        "> `waterview.jpg` (1000×667, progressive JPEG) and `extreme_ironing.jpg` (570×380, baseline JPEG).",
        "> A project that ships one of them keeps this attribution next to it.",
        "",
        "## decode_cases.safetensors",
        "",
        "Small images (12x17) Pillow encoded: `<case>.bytes` (the file) and `<case>.pil_rgb`",
        "(`Image.open(bytes).convert('RGB')`).",
        "",
        "| case | Pillow reads it as |",
        "|---|---|",
    ]
    for k, v in decode_notes.items():
        lines.append(f"| `{k}` | {v} |")
    lines += ["", "## Files", "", "| file | bytes | content |", "|---|---:|---|"]
    for r in rows:
        lines.append(f"| `{r[0]}` | {r[1]} | {r[2]} |")
    lines += [f"| total | {total} | |", ""]
    with open(os.path.join(OUT_DIR, "README.md"), "w") as fh:
        fh.write("\n".join(lines))


if __name__ == "__main__":
    main()
