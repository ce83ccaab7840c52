"""Self-check: the generalised reference (spatial_embed.py) equals a literal transcription of
the official INF-LLaVA ``SpatialEmbed.forward`` for the official configuration (n = 3, square,
8 heads), at a small size (d = 64, h = w = 8, output resized to (8, 8) instead of (24, 24)).

The transcription below follows the official code's structure: a list of 2*n*n per-sub-image
tensors of shape (b, h*w, d) (the n*n local ones, then the n*n stride ones), grid assembly with
``combine_crop_features_N`` (torch.cat) and ``combine_stride_features_N`` (strided assignment),
window extraction on NCHW with ``crop_pixels_N`` / ``extract_pixels_N``, one shared multi-head
attention, ffn_crop/ffn_stride, ln_fuse and a bilinear resize (align_corners=False).

Run: .venv/bin/python scripts/golden/check_against_official.py
"""

from __future__ import annotations

import math
import os
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the repo
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spatial_embed import (  # noqa: E402
    SpatialEmbedRef,
    global_stride_crop,
    local_crop,
    recombine_global,
    recombine_local,
)

TOL = 1e-5


# ---- transcription of the official helpers (written from their description) -------------

def combine_crop_features_N(tensors: List[torch.Tensor], n: int) -> torch.Tensor:
    # tensors: n*n of (b, h, w, d), row-major; concatenate each row along width, rows along height
    rows = [torch.cat(tensors[i * n:(i + 1) * n], dim=2) for i in range(n)]
    return torch.cat(rows, dim=1)


def combine_stride_features_N(tensors: List[torch.Tensor], n: int) -> torch.Tensor:
    b, h, w, d = tensors[0].shape
    out = torch.zeros(b, n * h, n * w, d, dtype=tensors[0].dtype)
    for i in range(n):
        for j in range(n):
            out[:, i::n, j::n, :] = tensors[i * n + j]
    return out


def crop_pixels_N(x_nchw: torch.Tensor, n: int) -> List[torch.Tensor]:
    _, _, H, W = x_nchw.shape
    assert H % n == 0 and W % n == 0
    bh, bw = H // n, W // n
    return [x_nchw[:, :, i * bh:(i + 1) * bh, j * bw:(j + 1) * bw] for i in range(n) for j in range(n)]


def extract_pixels_N(x_nchw: torch.Tensor, n: int) -> List[torch.Tensor]:
    return [x_nchw[:, :, i::n, j::n] for i in range(n) for j in range(n)]


class OfficialMHA(nn.Module):
    def __init__(self, h: int, d_model: int):
        super().__init__()
        self.d_k = d_model // h
        self.h = h
        self.linears = nn.ModuleList([nn.Linear(d_model, d_model) for _ in range(4)])
        self.ln = nn.LayerNorm(d_model)

    def forward(self, q, k, v):
        nb = q.size(0)
        query, key, value = [
            lin(x).view(nb, -1, self.h, self.d_k).transpose(1, 2) for lin, x in zip(self.linears, (q, k, v))
        ]
        scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(query.size(-1))
        p = F.softmax(scores, dim=-1)
        x = torch.matmul(p, value)
        x = x.transpose(1, 2).contiguous().view(nb, -1, self.h * self.d_k)
        return self.ln(self.linears[-1](x) + q)


class OfficialSpatialEmbed(nn.Module):
    def __init__(self, channel: int, out_hw: int):
        super().__init__()
        self.out_hw = out_hw
        self.attention = OfficialMHA(8, channel)
        self.ffn_crop = nn.Sequential(nn.Linear(channel, channel // 16), nn.GELU(), nn.Linear(channel // 16, channel // 2))
        self.ffn_stride = nn.Sequential(nn.Linear(channel, channel // 16), nn.GELU(), nn.Linear(channel // 16, channel // 2))
        self.ln_fuse = nn.LayerNorm(channel)

    def forward(self, img_feats: List[torch.Tensor], n: int) -> torch.Tensor:
        b, hw, d = img_feats[0].shape
        h = w = int(hw ** 0.5)
        img_feats = [f.reshape(b, h, w, d) for f in img_feats]
        crop_feats = img_feats[:n * n]
        stride_feats = img_feats[n * n:2 * n * n]
        scale_crop = combine_crop_features_N(crop_feats, n)
        scale_stride = combine_stride_features_N(stride_feats, n)

        # global as query over contiguous windows (crop_pixels_N)
        lw = crop_pixels_N(scale_crop.permute(0, 3, 1, 2), n)
        gw = crop_pixels_N(scale_stride.permute(0, 3, 1, 2), n)
        local_enhanced_global = []
        for i in range(n * n):
            li = lw[i].permute(0, 2, 3, 1).reshape(b, hw, d)
            gi = gw[i].permute(0, 2, 3, 1).reshape(b, hw, d)
            local_enhanced_global.append(self.attention(gi, li, li).reshape(b, h, w, d))

        # local as query over strided windows (extract_pixels_N)
        ls = extract_pixels_N(scale_crop.permute(0, 3, 1, 2), n)
        gs = extract_pixels_N(scale_stride.permute(0, 3, 1, 2), n)
        global_enhanced_local = []
        for i in range(n * n):
            li = ls[i].permute(0, 2, 3, 1).reshape(b, hw, d)
            gi = gs[i].permute(0, 2, 3, 1).reshape(b, hw, d)
            global_enhanced_local.append(self.attention(li, gi, gi).reshape(b, h, w, d))

        new_stride = combine_crop_features_N(local_enhanced_global, n)
        new_crop = combine_stride_features_N(global_enhanced_local, n)
        fused = torch.cat([self.ffn_crop(new_crop), self.ffn_stride(new_stride)], dim=-1)
        fused = self.ln_fuse(fused + new_stride + new_crop)
        out = F.interpolate(fused.permute(0, 3, 1, 2).to(torch.float32), size=(self.out_hw, self.out_hw),
                            mode="bilinear", align_corners=False)
        return out.permute(0, 2, 3, 1).reshape(b, self.out_hw * self.out_hw, d)


# ---- the check --------------------------------------------------------------------------

def perturb_layernorms(module: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.add_(0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.add_(0.1 * torch.randn(m.bias.shape, generator=gen))


def check_official_equivalence(batch: int, d: int = 64, hw_side: int = 8, n: int = 3, seed: int = 1234) -> float:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    ref = SpatialEmbedRef(d, heads=8, variant="official")
    perturb_layernorms(ref, gen)
    official = OfficialSpatialEmbed(d, out_hw=hw_side)
    missing = official.load_state_dict(ref.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    assert sorted(official.state_dict().keys()) == sorted(ref.state_dict().keys())

    T = n * n
    h = w = hw_side
    local_tiles = torch.randn(batch * T, h, w, d, generator=gen)
    global_tiles = torch.randn(batch * T, h, w, d, generator=gen)

    # official input: list of 2*T tensors (b, h*w, d); sub-image k of image b = tiles[b*T + k]
    lt = local_tiles.view(batch, T, h, w, d)
    gt = global_tiles.view(batch, T, h, w, d)
    img_feats = [lt[:, k].reshape(batch, h * w, d) for k in range(T)] + \
                [gt[:, k].reshape(batch, h * w, d) for k in range(T)]

    with torch.no_grad():
        y_off = official(img_feats, n).reshape(batch, h, w, d)
        y_ref = ref(local_tiles, global_tiles, grid=n)["output"]
    return (y_off - y_ref).abs().max().item()


def check_has_teeth(d: int = 64, hw_side: int = 8, n: int = 3, seed: int = 99) -> float:
    """Negative control: the paper windowing must NOT match the official forward."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    ref = SpatialEmbedRef(d, heads=8, variant="official")
    official = OfficialSpatialEmbed(d, out_hw=hw_side)
    official.load_state_dict(ref.state_dict(), strict=True)
    T = n * n
    lt = torch.randn(T, hw_side, hw_side, d, generator=gen)
    gt = torch.randn(T, hw_side, hw_side, d, generator=gen)
    feats = [lt[k].reshape(1, -1, d) for k in range(T)] + [gt[k].reshape(1, -1, d) for k in range(T)]
    with torch.no_grad():
        y_off = official(feats, n).reshape(1, hw_side, hw_side, d)
        y_paper = ref(lt, gt, grid=n, windows="paper")["output"]
    return (y_off - y_paper).abs().max().item()


def check_roundtrips() -> None:
    gen = torch.Generator().manual_seed(7)
    for grid, (B, H, W, C) in [((3, 3), (2, 12, 12, 5)), ((2, 3), (2, 8, 9, 3)), ((3, 1), (1, 6, 4, 2))]:
        x = torch.randn(B, H, W, C, generator=gen)
        assert torch.equal(recombine_local(local_crop(x, grid), grid), x)
        assert torch.equal(recombine_global(global_stride_crop(x, grid), grid), x)
        rows, cols = grid
        t = global_stride_crop(x, grid)
        # pixel (u, v) of global tile (i, j) of image b is x[b, i + u*rows, j + v*cols]
        b, i, j, u, v = B - 1, rows - 1, cols - 1, 1, 2 % (W // cols)
        assert torch.equal(t[b * rows * cols + i * cols + j, u, v], x[b, i + u * rows, j + v * cols])


def main() -> int:
    torch.set_num_threads(2)
    check_roundtrips()
    print("round trips (local/global crop <-> recombine): bit-exact OK")
    ok = True
    for batch in (1, 2):
        diff = check_official_equivalence(batch)
        status = "OK" if diff < TOL else "FAIL"
        ok &= diff < TOL
        print(f"official transcription vs reference (n=3, d=64, h=w=8, heads=8, B={batch}, size=(8,8)): "
              f"max abs diff {diff:.3e} [{status}, tol {TOL:g}]")
    teeth = check_has_teeth()
    ok &= teeth > 1e-2
    print(f"negative control (reference with windows='paper' vs official): max abs diff {teeth:.3e} "
          f"[{'OK, differs' if teeth > 1e-2 else 'FAIL: check cannot tell the windowings apart'}]")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
