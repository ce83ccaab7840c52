"""Independent PyTorch reference of INF-LLaVA's Dual-perspective Enhancement Module.

This mirrors the semantics of the official ``SpatialEmbed`` module as stated in
``docs/spec.md`` (sections DCM and DEM), generalised to

* a batch of images (sub-image index ``k = b*T + r*cols + c``: batch-major, row-major),
* non-square grids ``(rows, cols)`` and non-square sub-feature maps (``h != w``),
* the paper's alternatives (windowing, one-linear fusion, concatenation order,
  average-pool reduction) as options.

It is written for clarity, not speed: plain slicing and Python loops over windows.
All tensors are NHWC (``[batch, height, width, channels]``), as in the TypeScript library.

Used only to generate golden fixtures (see ``generate_dem_fixtures.py``); the
TypeScript tests never run Python.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

Grid = Union[int, Sequence[int]]

WEIGHT_PREFIX = "model.spatial_embed."


def as_grid(grid: Grid) -> Tuple[int, int]:
    if isinstance(grid, int):
        return grid, grid
    rows, cols = grid
    return int(rows), int(cols)


# ---------------------------------------------------------------------------
# DCM: crops and their inverses (NHWC)
# ---------------------------------------------------------------------------

def local_crop(x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """[B, H, W, C] -> [B*T, H/rows, W/cols, C]; tile (r, c) = x[b, r*h:(r+1)*h, c*w:(c+1)*w]."""
    rows, cols = as_grid(grid)
    B, H, W, C = x.shape
    assert H % rows == 0 and W % cols == 0, f"shape {tuple(x.shape)} not divisible by grid {(rows, cols)}"
    h, w = H // rows, W // cols
    tiles = []
    for b in range(B):
        for r in range(rows):
            for c in range(cols):
                tiles.append(x[b, r * h:(r + 1) * h, c * w:(c + 1) * w, :])
    return torch.stack(tiles, 0)


def global_stride_crop(x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """[B, H, W, C] -> [B*T, H/rows, W/cols, C]; tile (i, j) = x[b, i::rows, j::cols]."""
    rows, cols = as_grid(grid)
    B, H, W, C = x.shape
    assert H % rows == 0 and W % cols == 0, f"shape {tuple(x.shape)} not divisible by grid {(rows, cols)}"
    tiles = []
    for b in range(B):
        for i in range(rows):
            for j in range(cols):
                tiles.append(x[b, i::rows, j::cols, :])
    return torch.stack(tiles, 0)


def recombine_local(tiles: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Inverse of local_crop: [B*T, h, w, C] -> [B, rows*h, cols*w, C] (grid placement)."""
    rows, cols = as_grid(grid)
    N, h, w, C = tiles.shape
    T = rows * cols
    assert N % T == 0, f"{N} tiles is not a multiple of T={T}"
    B = N // T
    out = tiles.new_zeros(B, rows * h, cols * w, C)
    for b in range(B):
        for r in range(rows):
            for c in range(cols):
                out[b, r * h:(r + 1) * h, c * w:(c + 1) * w, :] = tiles[b * T + r * cols + c]
    return out


def recombine_global(tiles: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Inverse of global_stride_crop: tile (i, j) goes to out[b, i::rows, j::cols] (interleave)."""
    rows, cols = as_grid(grid)
    N, h, w, C = tiles.shape
    T = rows * cols
    assert N % T == 0, f"{N} tiles is not a multiple of T={T}"
    B = N // T
    out = tiles.new_zeros(B, rows * h, cols * w, C)
    for b in range(B):
        for i in range(rows):
            for j in range(cols):
                out[b, i::rows, j::cols, :] = tiles[b * T + i * cols + j]
    return out


# ---------------------------------------------------------------------------
# DEM
# ---------------------------------------------------------------------------

class MultiHeadAttention(nn.Module):
    """One MHA shared by both directions: linears.0..3 = query, key, value, output; ln = LayerNorm(d)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        assert d % heads == 0, f"d={d} not divisible by heads={heads}"
        self.d = d
        self.heads = heads
        self.linears = nn.ModuleList([nn.Linear(d, d) for _ in range(4)])
        self.ln = nn.LayerNorm(d, eps=1e-5)

    def forward(self, q_in: torch.Tensor, kv_in: torch.Tensor) -> torch.Tensor:
        # q_in, kv_in: [N, t, d]
        N, t, d = q_in.shape
        dk = d // self.heads
        q = self.linears[0](q_in)
        k = self.linears[1](kv_in)
        v = self.linears[2](kv_in)
        q = q.view(N, t, self.heads, dk).transpose(1, 2)  # [N, heads, t, dk]
        k = k.view(N, kv_in.shape[1], self.heads, dk).transpose(1, 2)
        v = v.view(N, kv_in.shape[1], self.heads, dk).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(dk)
        p = torch.softmax(scores, dim=-1)
        merged = torch.matmul(p, v).transpose(1, 2).reshape(N, t, d)
        o = self.linears[3](merged)
        return self.ln(o + q_in)  # residual with the UN-projected query input


def _contiguous_window(x: torch.Tensor, r: int, c: int, h: int, w: int) -> torch.Tensor:
    return x[:, r * h:(r + 1) * h, c * w:(c + 1) * w, :]


def _strided_window(x: torch.Tensor, i: int, j: int, rows: int, cols: int) -> torch.Tensor:
    return x[:, i::rows, j::cols, :]


class SpatialEmbedRef(nn.Module):
    """Reference DEM. ``variant='official'``: ffn_{crop,stride} = Linear(d,d/16)-GELU-Linear(d/16,d/2)
    and ln_fuse; ``variant='paper'``: ffn_{crop,stride} = Sequential(Linear(d,d/2)), no ln_fuse.
    ffn_crop is applied to the local map, ffn_stride to the global map (both variants)."""

    def __init__(self, d: int, heads: int, variant: str = "official"):
        super().__init__()
        assert variant in ("official", "paper"), variant
        assert d % 2 == 0, "d must be even"
        self.d = d
        self.heads = heads
        self.variant = variant
        self.attention = MultiHeadAttention(d, heads)
        if variant == "official":
            assert d % 16 == 0, "official fuse needs d divisible by 16"
            self.ffn_crop = nn.Sequential(nn.Linear(d, d // 16), nn.GELU(), nn.Linear(d // 16, d // 2))
            self.ffn_stride = nn.Sequential(nn.Linear(d, d // 16), nn.GELU(), nn.Linear(d // 16, d // 2))
            self.ln_fuse = nn.LayerNorm(d, eps=1e-5)
        else:
            self.ffn_crop = nn.Sequential(nn.Linear(d, d // 2))
            self.ffn_stride = nn.Sequential(nn.Linear(d, d // 2))
            self.ln_fuse = None

    # -- enhancement ---------------------------------------------------------
    def enhance(
        self,
        L: torch.Tensor,
        G: torch.Tensor,
        grid: Grid,
        windows: str = "official",
        mode: str = "both",
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns (L', G'). Both directions read the ORIGINAL L and G."""
        assert windows in ("official", "paper"), windows
        assert mode in ("both", "global", "local"), mode
        rows, cols = as_grid(grid)
        B, H, W, d = L.shape
        assert G.shape == L.shape
        assert H % rows == 0 and W % cols == 0
        h, w = H // rows, W // cols

        # global-as-query windows: contiguous (official) / strided (paper)
        # local-as-query windows:  strided (official)    / contiguous (paper)
        global_q_contiguous = windows == "official"

        def run(query_map: torch.Tensor, kv_map: torch.Tensor, contiguous: bool) -> torch.Tensor:
            out = torch.zeros_like(query_map)
            for r in range(rows):
                for c in range(cols):
                    if contiguous:
                        qw = _contiguous_window(query_map, r, c, h, w)
                        kw = _contiguous_window(kv_map, r, c, h, w)
                    else:
                        qw = _strided_window(query_map, r, c, rows, cols)
                        kw = _strided_window(kv_map, r, c, rows, cols)
                    y = self.attention(qw.reshape(B, h * w, d), kw.reshape(B, h * w, d)).reshape(B, h, w, d)
                    if contiguous:
                        out[:, r * h:(r + 1) * h, c * w:(c + 1) * w, :] = y
                    else:
                        out[:, r::rows, c::cols, :] = y
            return out

        G_new = run(G, L, global_q_contiguous) if mode in ("both", "global") else G
        L_new = run(L, G, not global_q_contiguous) if mode in ("both", "local") else L
        return L_new, G_new

    # -- fusion --------------------------------------------------------------
    def fuse(self, L: torch.Tensor, G: torch.Tensor, order: Optional[str] = None) -> torch.Tensor:
        if order is None:
            order = "local-first" if self.variant == "official" else "global-first"
        assert order in ("local-first", "global-first"), order
        a = self.ffn_crop(L)
        g = self.ffn_stride(G)
        cat = torch.cat([a, g], -1) if order == "local-first" else torch.cat([g, a], -1)
        if self.variant == "official":
            return self.ln_fuse(cat + L + G)
        return cat

    # -- token reduction -----------------------------------------------------
    @staticmethod
    def reduce(x: torch.Tensor, out_size: Tuple[int, int], method: str = "bilinear") -> torch.Tensor:
        oh, ow = out_size
        nchw = x.permute(0, 3, 1, 2)
        if method == "bilinear":
            y = F.interpolate(nchw, size=(oh, ow), mode="bilinear", align_corners=False)
        elif method == "avg":
            H, W = x.shape[1], x.shape[2]
            assert H % oh == 0 and W % ow == 0, f"avg reduce needs integer factors: {(H, W)} -> {(oh, ow)}"
            k = (H // oh, W // ow)
            y = F.avg_pool2d(nchw, kernel_size=k, stride=k)
        else:
            raise ValueError(method)
        return y.permute(0, 2, 3, 1).contiguous()

    # -- whole module --------------------------------------------------------
    def forward(
        self,
        local_tiles: torch.Tensor,
        global_tiles: torch.Tensor,
        grid: Grid,
        mode: str = "both",
        windows: str = "official",
        order: Optional[str] = None,
        reduce: str = "bilinear",
        out_size: Optional[Tuple[int, int]] = None,
    ) -> Dict[str, torch.Tensor]:
        """local_tiles, global_tiles: [B*T, h, w, d]. Returns every stage (NHWC)."""
        _, h, w, _ = local_tiles.shape
        L = recombine_local(local_tiles, grid)
        G = recombine_global(global_tiles, grid)
        L_e, G_e = self.enhance(L, G, grid, windows=windows, mode=mode)
        fused = self.fuse(L_e, G_e, order=order)
        out = self.reduce(fused, out_size if out_size is not None else (h, w), reduce)
        return {
            "L": L,
            "G": G,
            "enhanced_local": L_e,
            "enhanced_global": G_e,
            "fused": fused,
            "output": out,
        }


def prefixed_state_dict(module: SpatialEmbedRef) -> Dict[str, torch.Tensor]:
    return {WEIGHT_PREFIX + k: v for k, v in module.state_dict().items()}


# The cross-check against a literal transcription of the official forward is its own script,
# check_against_official.py (it imports this module; this module imports nothing back).
