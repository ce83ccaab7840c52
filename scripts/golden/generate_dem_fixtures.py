"""Generate golden fixtures for the Dual-perspective Enhancement Module (DEM).

Writes one safetensors file per case to test/fixtures/dem/<case>.safetensors and
test/fixtures/dem/README.md. Regenerate with:

    bash scripts/golden/setup-venv.sh && .venv/bin/python scripts/golden/generate_dem_fixtures.py

Every case is seeded on its own (torch.manual_seed(case seed)), so adding or editing one case
does not change the others. All computation is float32 on CPU with 2 threads. Before writing,
the generalised reference is cross-checked against a literal transcription of the official
forward (check_against_official.py); after writing, every file is reloaded and its stored
stages are recomputed from the stored weights and inputs.
"""

from __future__ import annotations

import copy
import json
import os
import struct
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the repo
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from check_against_official import main as official_self_check  # noqa: E402
from spatial_embed import WEIGHT_PREFIX, SpatialEmbedRef  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(ROOT, "test", "fixtures", "dem")
REGEN = "bash scripts/golden/setup-venv.sh && .venv/bin/python scripts/golden/generate_dem_fixtures.py"
STAGES = ["L", "G", "enhanced_local", "enhanced_global", "fused"]


@dataclass
class Case:
    name: str
    seed: int
    grid: Tuple[int, int]
    d: int
    heads: int
    batch: int
    h: int
    w: int
    mode: str = "both"
    windows: str = "official"
    variant: str = "official"
    order: Optional[str] = None  # None: variant default (official local-first, paper global-first)
    reduce: str = "bilinear"
    out_size: Optional[Tuple[int, int]] = None  # None: (h, w)
    weights_dtype: str = "F32"
    grad: bool = False
    note: str = ""

    def resolved_order(self) -> str:
        if self.order is not None:
            return self.order
        return "local-first" if self.variant == "official" else "global-first"

    def resolved_out_size(self) -> Tuple[int, int]:
        return self.out_size if self.out_size is not None else (self.h, self.w)


CASES: List[Case] = [
    Case("official_n3_d64", 101, (3, 3), 64, 8, 1, 4, 4,
         note="official configuration (n=3, 8 heads) at small size"),
    Case("official_n2_b2_d32", 102, (2, 2), 32, 4, 2, 4, 4,
         note="batch of 2 images, n=2"),
    Case("nonsquare_tiles_h4w6_n3_d48", 103, (3, 3), 48, 8, 1, 4, 6,
         note="non-square sub-feature maps (h=4, w=6)"),
    Case("grid_2x3_b2_d32", 104, (2, 3), 32, 4, 2, 4, 4,
         note="non-square grid rows=2, cols=3, batch 2"),
    Case("mode_global_n2_d32", 105, (2, 2), 32, 4, 1, 4, 4, mode="global",
         note="only global-as-query (enhanced_local == L)"),
    Case("mode_local_n2_d32", 106, (2, 2), 32, 4, 1, 4, 4, mode="local",
         note="only local-as-query (enhanced_global == G)"),
    Case("windows_paper_n3_d32", 107, (3, 3), 32, 4, 1, 3, 3, windows="paper",
         note="official weights/fuse, paper windowing (global-as-query strided, local-as-query contiguous)"),
    Case("paper_variant_n3_d32", 108, (3, 3), 32, 4, 1, 3, 3, windows="paper", variant="paper",
         order="global-first", reduce="avg",
         note="paper: one-linear fuse, no ln_fuse/residual, global first, avg-pool, paper windows"),
    Case("order_global_first_n2_d32", 109, (2, 2), 32, 4, 1, 4, 4, order="global-first",
         note="official fuse with concatenation order global-first"),
    Case("out_size_up_12x10_n2_d32", 110, (2, 2), 32, 4, 1, 4, 4, out_size=(12, 10),
         note="bilinear upsample 8x8 -> 12x10"),
    Case("out_size_2x3_n2_d32", 111, (2, 2), 32, 4, 1, 4, 4, out_size=(2, 3),
         note="bilinear downsample 8x8 -> 2x3 (non-integer width factor)"),
    Case("bf16_weights_n3_d64", 112, (3, 3), 64, 8, 1, 4, 4, weights_dtype="BF16",
         note="weights stored as BF16; reference = f32 compute with bf16-rounded weights"),
    Case("grad_n2_d32", 113, (2, 2), 32, 4, 1, 4, 4, grad=True,
         note="gradients of sum(output * input.dout) w.r.t. every weight and both inputs"),
]


def perturb_layernorms(module: nn.Module) -> None:
    """Make LayerNorm affine parameters non-trivial (uses the global, seeded RNG)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.add_(0.1 * torch.randn(m.weight.shape))
                m.bias.add_(0.1 * torch.randn(m.bias.shape))


def run_case(case: Case, module: SpatialEmbedRef, local_tiles: torch.Tensor, global_tiles: torch.Tensor):
    return module(
        local_tiles,
        global_tiles,
        grid=case.grid,
        mode=case.mode,
        windows=case.windows,
        order=case.resolved_order(),
        reduce=case.reduce,
        out_size=case.resolved_out_size(),
    )


def metadata(case: Case) -> Dict[str, str]:
    oh, ow = case.resolved_out_size()
    return {
        "case": case.name,
        "grid": json.dumps(list(case.grid), separators=(",", ":")),
        "heads": str(case.heads),
        "mode": case.mode,
        "windows": case.windows,
        "order": case.resolved_order(),
        "reduce": case.reduce,
        "out_size": json.dumps([oh, ow], separators=(",", ":")),
        "variant": case.variant,
        "weights_dtype": case.weights_dtype,
        "batch": str(case.batch),
        "d": str(case.d),
        "h": str(case.h),
        "w": str(case.w),
    }


def build_case(case: Case) -> Tuple[Dict[str, torch.Tensor], Dict[str, float]]:
    torch.manual_seed(case.seed)
    module = SpatialEmbedRef(case.d, case.heads, variant=case.variant)  # PyTorch default init
    perturb_layernorms(module)
    if case.weights_dtype == "BF16":
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(p.to(torch.bfloat16).to(torch.float32))
    else:
        assert case.weights_dtype == "F32"

    rows, cols = case.grid
    n_tiles = case.batch * rows * cols
    local_tiles = torch.randn(n_tiles, case.h, case.w, case.d)
    global_tiles = torch.randn(n_tiles, case.h, case.w, case.d)

    tensors: Dict[str, torch.Tensor] = {}
    store_dtype = torch.bfloat16 if case.weights_dtype == "BF16" else torch.float32
    for name, t in module.state_dict().items():
        tensors[WEIGHT_PREFIX + name] = t.detach().to(store_dtype).contiguous().clone()
    tensors["input.local_tiles"] = local_tiles.clone()
    tensors["input.global_tiles"] = global_tiles.clone()

    if case.grad:
        lt = local_tiles.clone().requires_grad_(True)
        gt = global_tiles.clone().requires_grad_(True)
        stages = run_case(case, module, lt, gt)
        dout = torch.randn(stages["output"].shape)
        module.zero_grad(set_to_none=True)
        (stages["output"] * dout).sum().backward()
        tensors["input.dout"] = dout
        for name, p in module.named_parameters():
            assert p.grad is not None, name
            tensors["grad." + WEIGHT_PREFIX + name] = p.grad.detach().contiguous().clone()
        tensors["grad.input.local_tiles"] = lt.grad.detach().contiguous().clone()
        tensors["grad.input.global_tiles"] = gt.grad.detach().contiguous().clone()
    else:
        with torch.no_grad():
            stages = run_case(case, module, local_tiles, global_tiles)

    for s in STAGES:
        tensors["stage." + s] = stages[s].detach().contiguous().clone()
    tensors["output"] = stages["output"].detach().contiguous().clone()

    # Sanity on shapes and the pass-through modes.
    B, (rh, rw) = case.batch, (rows * case.h, cols * case.w)
    oh, ow = case.resolved_out_size()
    for s in STAGES:
        assert tuple(tensors["stage." + s].shape) == (B, rh, rw, case.d), (s, tensors["stage." + s].shape)
    assert tuple(tensors["output"].shape) == (B, oh, ow, case.d)
    if case.mode == "global":
        assert torch.equal(tensors["stage.enhanced_local"], tensors["stage.L"])
    if case.mode == "local":
        assert torch.equal(tensors["stage.enhanced_global"], tensors["stage.G"])

    # Informational: how far float32 is from a float64 evaluation of the same reference
    # (a scale for the tolerances the TypeScript tests can use).
    m64 = copy.deepcopy(module).double()
    with torch.no_grad():
        s64 = run_case(case, m64, local_tiles.double(), global_tiles.double())
    err = {
        "fused": (s64["fused"] - stages["fused"].detach().double()).abs().max().item(),
        "output": (s64["output"] - stages["output"].detach().double()).abs().max().item(),
        "output_absmax": stages["output"].detach().abs().max().item(),
    }
    return tensors, err


def canonicalize_header(path: str) -> None:
    """safetensors serialises __metadata__ from a hash map, so its key order changes from run to
    run. Rewrite the JSON header with sorted keys (data bytes and offsets untouched) so that
    regenerating the fixtures is byte-for-byte reproducible."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", None)
    ordered = {}
    if meta is not None:
        ordered["__metadata__"] = {k: meta[k] for k in sorted(meta)}
    for k in sorted(header):
        ordered[k] = header[k]
    text = json.dumps(ordered, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)  # keep the data 8-byte aligned, as safetensors does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def verify_file(path: str, case: Case) -> float:
    """Reload the file, rebuild the module from the stored weights and recompute every stage."""
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    assert meta == metadata(case), (meta, metadata(case))
    module = SpatialEmbedRef(case.d, case.heads, variant=case.variant)
    sd = {k[len(WEIGHT_PREFIX):]: v.to(torch.float32) for k, v in tensors.items() if k.startswith(WEIGHT_PREFIX)}
    module.load_state_dict(sd, strict=True)
    for k, v in tensors.items():
        if k.startswith(WEIGHT_PREFIX):
            assert v.dtype == (torch.bfloat16 if case.weights_dtype == "BF16" else torch.float32), k
        else:
            assert v.dtype == torch.float32, k
    with torch.no_grad():
        stages = run_case(case, module, tensors["input.local_tiles"], tensors["input.global_tiles"])
    worst = 0.0
    for s in STAGES:
        worst = max(worst, (stages[s] - tensors["stage." + s]).abs().max().item())
    worst = max(worst, (stages["output"] - tensors["output"]).abs().max().item())
    return worst


def fmt_shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def write_readme(results: List[Tuple[Case, Dict[str, torch.Tensor], Dict[str, float], int]]) -> None:
    total = sum(r[3] for r in results)
    lines = [
        "# DEM golden fixtures",
        "",
        "Golden data for the Dual-perspective Enhancement Module (`dualPerspectiveEnhance`,",
        "`linearConcatFuse`, token reduction; `docs/spec.md`, section DEM), produced by the",
        "independent PyTorch reference `scripts/golden/spatial_embed.py`. That reference is",
        "checked against a literal transcription of the official INF-LLaVA `SpatialEmbed.forward`",
        "(`scripts/golden/check_against_official.py`, n = 3, d = 64, h = w = 8, 8 heads, B = 1 and 2:",
        "max abs diff < 1e-5) every time the fixtures are generated.",
        "",
        "**Generated files: do not edit by hand.** Regenerate with",
        "",
        "```sh",
        REGEN,
        "```",
        "",
        "(seeded per case, float32 on CPU, 2 threads; this README is written by the generator too.)",
        "",
        "## Layout of every file",
        "",
        "All tensors are float32 and NHWC unless stated. `B` = batch, `T = rows*cols`,",
        "sub-image `k = b*T + r*cols + c` (batch-major, row-major), maps are `[B, rows*h, cols*w, d]`.",
        "",
        "| name | shape | meaning |",
        "|---|---|---|",
        "| `model.spatial_embed.attention.linears.{0,1,2,3}.{weight,bias}` | `[d, d]`, `[d]` | query, key, value, output projections (PyTorch layout `[out, in]`) |",
        "| `model.spatial_embed.attention.ln.{weight,bias}` | `[d]` | LayerNorm after the residual (eps 1e-5) |",
        "| `model.spatial_embed.ffn_crop.{0,2}.{weight,bias}` | `[d/16, d]`, `[d/16]`, `[d/2, d/16]`, `[d/2]` | official: MLP on the local map (Linear, GELU(erf), Linear) |",
        "| `model.spatial_embed.ffn_stride.{0,2}.{weight,bias}` | as above | official: MLP on the global map |",
        "| `model.spatial_embed.ln_fuse.{weight,bias}` | `[d]` | official only: LayerNorm(concat + L' + G') |",
        "| `model.spatial_embed.ffn_crop.0.{weight,bias}`, `ffn_stride.0.*` | `[d/2, d]`, `[d/2]` | paper variant only (no `ln_fuse`, no residual) |",
        "| `input.local_tiles`, `input.global_tiles` | `[B*T, h, w, d]` | per-sub-image features (random normal) |",
        "| `stage.L`, `stage.G` | `[B, rows*h, cols*w, d]` | `recombine2D(local, 'local')`, `recombine2D(global, 'global')` |",
        "| `stage.enhanced_local`, `stage.enhanced_global` | map | L', G' after enhancement (case's `mode`, `windows`) |",
        "| `stage.fused` | map | after the fuse (case's `variant`, `order`) |",
        "| `output` | `[B, oh, ow, d]` | after the reduction (case's `reduce`, `out_size`) |",
        "| `input.dout` (gradient case) | shape of `output` | upstream gradient |",
        "| `grad.<weight name>` (gradient case) | shape of the weight | d sum(output * dout) / d weight, e.g. `grad.model.spatial_embed.attention.linears.0.weight` |",
        "| `grad.input.local_tiles`, `grad.input.global_tiles` (gradient case) | `[B*T, h, w, d]` | gradients w.r.t. the inputs |",
        "",
        "BF16 cases store the weight tensors as BF16; the golden stages were computed in float32",
        "with those BF16 values upcast exactly (inputs and outputs stay F32).",
        "",
        "`__metadata__` (all strings): `case`, `grid` (JSON `[rows,cols]`), `heads`, `mode`",
        "(`both`|`global`|`local`), `windows` (`official`|`paper`), `order` (`local-first`|`global-first`),",
        "`reduce` (`bilinear`|`avg`), `out_size` (JSON `[oh,ow]`), `variant` (`official`|`paper`),",
        "`weights_dtype` (`F32`|`BF16`), `batch`, `d`, `h`, `w`.",
        "",
        "Semantics: `windows: official` = global-as-query over contiguous windows, local-as-query over",
        "strided windows (the released code); `paper` swaps them. `reduce: bilinear` =",
        "`F.interpolate(..., align_corners=False)` (no antialiasing); `avg` = average pool with",
        "kernel = stride = (H/oh, W/ow).",
        "",
        "## Cases",
        "",
        "| case | grid | B | h×w | d | heads | mode | windows | variant | order | reduce → out | weights | grad | f32 vs f64 max abs diff: fused / output (max abs output) | bytes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, tensors, err, size in results:
        oh, ow = case.resolved_out_size()
        lines.append(
            f"| `{case.name}` | {case.grid[0]}×{case.grid[1]} | {case.batch} | {case.h}×{case.w} | {case.d} | "
            f"{case.heads} | {case.mode} | {case.windows} | {case.variant} | {case.resolved_order()} | "
            f"{case.reduce} → {oh}×{ow} | {case.weights_dtype} | {'yes' if case.grad else ''} | "
            f"{err['fused']:.1e} / {err['output']:.1e} ({err['output_absmax']:.2f}) | {size} |"
        )
    lines += ["", "Notes:", ""]
    for case, _, _, _ in results:
        lines.append(f"- `{case.name}`: {case.note}.")
    lines += ["", f"Total: {total} bytes in {len(results)} files.", ""]
    with open(os.path.join(OUT_DIR, "README.md"), "w") as f:
        f.write("\n".join(lines))


def main() -> int:
    torch.set_num_threads(2)
    print("== self-check against the official transcription")
    if official_self_check() != 0:
        print("self-check FAILED: not writing fixtures", file=sys.stderr)
        return 1

    os.makedirs(OUT_DIR, exist_ok=True)
    names = {c.name for c in CASES}
    assert len(names) == len(CASES), "duplicate case names"
    for fname in os.listdir(OUT_DIR):  # drop stale fixtures of removed cases
        if fname.endswith(".safetensors") and fname[: -len(".safetensors")] not in names:
            os.remove(os.path.join(OUT_DIR, fname))

    print("== generating")
    results = []
    for case in CASES:
        tensors, err = build_case(case)
        path = os.path.join(OUT_DIR, case.name + ".safetensors")
        save_file(tensors, path, metadata=metadata(case))
        canonicalize_header(path)
        os.chmod(path, 0o644)
        recheck = verify_file(path, case)
        assert recheck < 1e-6, f"{case.name}: reloaded file does not reproduce its stages ({recheck})"
        size = os.path.getsize(path)
        results.append((case, tensors, err, size))
        print(f"{case.name:32s} {size:8d} B  {len(tensors):3d} tensors  reload max diff {recheck:.1e}  "
              f"f32 vs f64 output {err['output']:.1e}")
    write_readme(results)
    total = sum(r[3] for r in results)
    print(f"total {total} bytes ({total / 1e6:.2f} MB) in {len(results)} files -> {os.path.relpath(OUT_DIR, ROOT)}")
    assert total < 5_000_000
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
