"""The official INF-LLaVA ``SpatialEmbed`` forward in two attention layouts, for benchmarking.

Both layouts compute exactly what ``scripts/golden/spatial_embed.py`` (``SpatialEmbedRef``,
``variant='official'``, ``windows='official'``) computes, with the reference module's own
weights (the wrapper holds the reference module; nothing is copied):

* ``per-window``: the structure of the released code. Grid assembly with
  ``combine_crop_features_N`` (``torch.cat`` of rows) and ``combine_stride_features_N``
  (strided assignment into an empty tensor); then, per direction, a Python loop over the
  ``n*n`` windows, each one sliced out of the map, flattened (a copy) and sent through the
  shared multi-head attention on its own (3 projections of ``h*w`` tokens, one small matmul
  per head-batch, output projection, residual LayerNorm); window results reassembled the same
  way. 2 * n*n attention calls per forward.

* ``batched``: data movement vectorised with reshape/permute (one copy per rearrangement),
  the Q/K/V projections done once per map over all ``H*W`` tokens (a per-token linear
  commutes with any re-ordering of the tokens) with the three weights concatenated into one
  ``[3d, d]`` GEMM, then ONE ``baddbmm`` (scores, scale folded in) + softmax + ONE ``bmm``
  (P·V) per direction over all ``windows x heads``, heads merged straight back into map
  layout, output projection + residual + LayerNorm on the whole map.

Everything is NHWC (``[batch, height, width, channels]``), float32. Sub-image order is
batch-major, then row-major (``k = b*T + r*cols + c``), as in the reference.
"""

from __future__ import annotations

import math
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

LAYOUTS = ("per-window", "batched")


# ---------------------------------------------------------------------------
# Grid assembly / window extraction, both ways
# ---------------------------------------------------------------------------

def combine_crop_features_n(tensors: List[torch.Tensor], n: int) -> torch.Tensor:
    """Official ``combine_crop_features_N``: n*n tiles (b, h, w, d), row-major -> (b, n*h, n*w, d)."""
    rows = [torch.cat(tensors[i * n:(i + 1) * n], dim=2) for i in range(n)]
    return torch.cat(rows, dim=1)


def combine_stride_features_n(tensors: List[torch.Tensor], n: int) -> torch.Tensor:
    """Official ``combine_stride_features_N``: tile (i, j) -> out[:, i::n, j::n] (strided assignment)."""
    b, h, w, d = tensors[0].shape
    out = torch.empty(b, n * h, n * w, d, dtype=tensors[0].dtype)
    for i in range(n):
        for j in range(n):
            out[:, i::n, j::n, :] = tensors[i * n + j]
    return out


def recombine_local_view(tiles: torch.Tensor, n: int) -> torch.Tensor:
    """[B*n*n, h, w, C] -> [B, n*h, n*w, C] (grid placement) with one reshape/permute/copy."""
    N, h, w, C = tiles.shape
    B = N // (n * n)
    return tiles.view(B, n, n, h, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B, n * h, n * w, C)


def recombine_global_view(tiles: torch.Tensor, n: int) -> torch.Tensor:
    """[B*n*n, h, w, C] -> [B, h*n, w*n, C] (interleave: tile (i, j) -> out[b, i::n, j::n])."""
    N, h, w, C = tiles.shape
    B = N // (n * n)
    return tiles.view(B, n, n, h, w, C).permute(0, 3, 1, 4, 2, 5).reshape(B, h * n, w * n, C)


def local_crop_view(x: torch.Tensor, n: int) -> torch.Tensor:
    """[B, H, W, C] -> [B*n*n, H/n, W/n, C]; tile (r, c) = x[b, r*h:(r+1)*h, c*w:(c+1)*w]."""
    B, H, W, C = x.shape
    h, w = H // n, W // n
    return x.view(B, n, h, n, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B * n * n, h, w, C)


def global_stride_crop_view(x: torch.Tensor, n: int) -> torch.Tensor:
    """[B, H, W, C] -> [B*n*n, H/n, W/n, C]; tile (i, j) = x[b, i::n, j::n]."""
    B, H, W, C = x.shape
    h, w = H // n, W // n
    return x.view(B, h, n, w, n, C).permute(0, 2, 4, 1, 3, 5).reshape(B * n * n, h, w, C)


def _windows_heads(x: torch.Tensor, n: int, m: int, heads: int, contiguous: bool) -> torch.Tensor:
    """Projected map [B, H, W, m*d] (may be a channel-slice view) -> [m, B*n*n*heads, h*w, dk]:
    window-major, then head, then the window's tokens row-major. One copy."""
    B, H, W, C = x.shape
    h, w = H // n, W // n
    dk = C // (m * heads)
    if contiguous:  # window (r, c) = x[b, r*h:(r+1)*h, c*w:(c+1)*w]
        v = x.view(B, n, h, n, w, m, heads, dk).permute(5, 0, 1, 3, 6, 2, 4, 7)
    else:  # window (i, j) = x[b, i::n, j::n]
        v = x.view(B, h, n, w, n, m, heads, dk).permute(5, 0, 2, 4, 6, 1, 3, 7)
    return v.reshape(m, B * n * n * heads, h * w, dk)


def _merge_heads_to_map(o: torch.Tensor, B: int, n: int, h: int, w: int, contiguous: bool) -> torch.Tensor:
    """[B*n*n*heads, h*w, dk] -> map [B, n*h, n*w, heads*dk]; inverse of _windows_heads. One copy."""
    _, _, dk = o.shape
    heads = o.shape[0] // (B * n * n)
    v = o.view(B, n, n, heads, h, w, dk)  # (b, r, c, head, u, v, k)
    if contiguous:  # -> (b, r, u, c, v, head, k)
        v = v.permute(0, 1, 4, 2, 5, 3, 6)
    else:  # -> (b, u, r, v, c, head, k)
        v = v.permute(0, 4, 1, 5, 2, 3, 6)
    return v.reshape(B, n * h, n * w, heads * dk)


# ---------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------

class FastSpatialEmbed(nn.Module):
    """Wraps a ``SpatialEmbedRef(variant='official')``; official windows, n x n square grid."""

    def __init__(self, ref: nn.Module, n: int):
        super().__init__()
        assert getattr(ref, "variant", "official") == "official", "only the official variant"
        self.ref = ref
        self.n = n
        self.d = ref.d
        self.heads = ref.heads

    # -- recombination -------------------------------------------------------
    def recombine(self, local_tiles: torch.Tensor, global_tiles: torch.Tensor, layout: str
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
        n = self.n
        if layout == "per-window":
            T = n * n
            B = local_tiles.shape[0] // T
            Ls, Gs = [], []
            for b in range(B):
                lt = [local_tiles[b * T + k:b * T + k + 1] for k in range(T)]
                gt = [global_tiles[b * T + k:b * T + k + 1] for k in range(T)]
                Ls.append(combine_crop_features_n(lt, n))
                Gs.append(combine_stride_features_n(gt, n))
            if B == 1:
                return Ls[0], Gs[0]
            return torch.cat(Ls, 0), torch.cat(Gs, 0)
        return recombine_local_view(local_tiles, n), recombine_global_view(global_tiles, n)

    # -- enhancement ---------------------------------------------------------
    def enhance(self, L: torch.Tensor, G: torch.Tensor, layout: str = "batched"
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns (L', G'): G' = global as query over contiguous windows,
        L' = local as query over strided windows; both read the original L and G."""
        assert layout in LAYOUTS, layout
        if layout == "per-window":
            return self._enhance_per_window(L, G)
        return self._enhance_batched(L, G)

    def _enhance_per_window(self, L: torch.Tensor, G: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        n, attn = self.n, self.ref.attention
        B, H, W, d = L.shape
        h, w = H // n, W // n
        hw = h * w
        # global as query, contiguous windows (official crop_pixels_N), reassembled with torch.cat
        g_out = []
        for i in range(n):
            for j in range(n):
                gi = G[:, i * h:(i + 1) * h, j * w:(j + 1) * w, :].reshape(B, hw, d)
                li = L[:, i * h:(i + 1) * h, j * w:(j + 1) * w, :].reshape(B, hw, d)
                g_out.append(attn(gi, li).reshape(B, h, w, d))
        G_new = combine_crop_features_n(g_out, n)
        # local as query, strided windows (official extract_pixels_N), reassembled by strided assignment
        l_out = []
        for i in range(n):
            for j in range(n):
                li = L[:, i::n, j::n, :].reshape(B, hw, d)
                gi = G[:, i::n, j::n, :].reshape(B, hw, d)
                l_out.append(attn(li, gi).reshape(B, h, w, d))
        L_new = combine_stride_features_n(l_out, n)
        return L_new, G_new

    def _enhance_batched(self, L: torch.Tensor, G: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        n, heads, attn = self.n, self.heads, self.ref.attention
        B, H, W, d = L.shape
        h, w = H // n, W // n
        dk = d // heads
        lin = attn.linears
        w_qkv = torch.cat([lin[0].weight, lin[1].weight, lin[2].weight], 0)  # [3d, d]
        b_qkv = torch.cat([lin[0].bias, lin[1].bias, lin[2].bias], 0)
        P_L = F.linear(L, w_qkv, b_qkv)  # [B, H, W, 3d]: q | k | v of every local token
        P_G = F.linear(G, w_qkv, b_qkv)
        scale = 1.0 / math.sqrt(dk)

        def direction(P_q: torch.Tensor, P_kv: torch.Tensor, q_in: torch.Tensor, contiguous: bool) -> torch.Tensor:
            q = _windows_heads(P_q[..., :d], n, 1, heads, contiguous)[0]        # [Nw*heads, t, dk]
            kv = _windows_heads(P_kv[..., d:], n, 2, heads, contiguous)         # [2, Nw*heads, t, dk]
            k, v = kv[0], kv[1]
            scores = torch.baddbmm(q.new_zeros(()), q, k.transpose(1, 2),
                                   beta=0.0, alpha=scale)                        # one bmm
            p = torch.softmax(scores, dim=-1)
            del scores
            o = torch.bmm(p, v)                                                  # one bmm
            del p
            merged = _merge_heads_to_map(o, B, n, h, w, contiguous)              # [B, H, W, d]
            out = F.linear(merged, lin[3].weight, lin[3].bias)
            out += q_in                                                          # residual: un-projected query
            return F.layer_norm(out, (d,), attn.ln.weight, attn.ln.bias, attn.ln.eps)

        G_new = direction(P_G, P_L, G, contiguous=True)
        L_new = direction(P_L, P_G, L, contiguous=False)
        return L_new, G_new

    # -- fusion + reduction ----------------------------------------------------
    def fuse(self, L: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        r = self.ref
        fused = torch.cat([r.ffn_crop(L), r.ffn_stride(G)], dim=-1)
        return r.ln_fuse(fused + G + L)

    @staticmethod
    def reduce(x: torch.Tensor, out_size: Tuple[int, int]) -> torch.Tensor:
        y = F.interpolate(x.permute(0, 3, 1, 2), size=out_size, mode="bilinear", align_corners=False)
        return y.permute(0, 2, 3, 1).contiguous()

    def forward(self, tiles: torch.Tensor, layout: str = "batched") -> torch.Tensor:
        """tiles: [2*B*T, h, w, d], the B*T local sub-features then the B*T global ones
        (the official input order: n*n crop features, then n*n stride features).
        Returns [B, h, w, d] (bilinear down from [B, n*h, n*w, d])."""
        assert layout in LAYOUTS, layout
        N2, h, w, d = tiles.shape
        half = N2 // 2
        L, G = self.recombine(tiles[:half], tiles[half:], layout)
        L_e, G_e = self.enhance(L, G, layout)
        return self.reduce(self.fuse(L_e, G_e), (h, w))


# ---------------------------------------------------------------------------
# Cost model (from the shapes; docs/spec.md "Cost at the official size")
# ---------------------------------------------------------------------------

def dem_flops(B: int, H: int, W: int, d: int, n: int, heads: int, fuse: bool) -> dict:
    """Multiply-adds x 2 of the enhancement (both directions) and, with ``fuse``, the fusion MLPs.
    Elementwise work (softmax, LayerNorm, GELU, bias, bilinear) is not counted."""
    tokens = B * H * W
    t = (H // n) * (W // n)            # tokens per window
    windows = B * n * n                # per direction
    projections = 2 * 4 * 2 * tokens * d * d                 # 2 directions x (q, k, v, o) linears
    attention = 2 * windows * 2 * (2 * t * t * d)            # 2 directions x (QK^T, PV), all heads
    hidden = d // 16
    fusion = (2 * 2 * tokens * (d * hidden + hidden * (d // 2))) if fuse else 0
    return {"projections": projections, "attention": attention, "fusion": fusion,
            "total": projections + attention + fusion}
