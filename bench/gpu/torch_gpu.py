"""PyTorch side of `npm run bench:gpu`: the same cases, on the same card, fp32.

The TypeScript harness (bench/gpu/run.ts) writes the case list (names, kinds, shapes) to a JSON
file and runs this script on it, so both sides always time the same shapes; it joins the rows
on `name`. Standalone (only torch): the bundle for the GPU machine embeds this file.

    python3 bench/gpu/torch_gpu.py --spec SPEC.json [--device cuda|cpu] [--reps N] [--json OUT]

Kinds: matmul {m,k,n} (torch.mm); attention {B,H,Hkv,Tq,Tk,dk,causal}
(F.scaled_dot_product_attention, enable_gqa, bottom-right causal); dem {n,h,d,heads} (the
official SpatialEmbed forward, batched windows, SDPA); clip {hiddenSize, ..., images, layer}
(a CLIP vision tower to hidden_states[layer], all images in one batch, SDPA); packed {format,m,k,n}
(F.linear in bf16 for every format: PyTorch's own decode path; the only non-fp32 case).

fp32 strictly: TF32 off for matmul and cuDNN. Per case: warm-up, then `reps` calls, each followed
by torch.cuda.synchronize() (median: `median_ms`); `reps` calls with the result copied to the host
(`readback_ms`); and `reps` calls queued back to back with one synchronize (`pipelined_ms`, per call).
Progress to stderr; the report is the last line of stdout (one line of JSON) and, with --json, a file.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True

import argparse
import json
import math
import platform
import statistics
import time
from typing import Callable, Dict, List


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fail(reason: str) -> None:
    """Unavailable, not crashed: one JSON line the harness reports as the reason."""
    sys.stdout.write(json.dumps({"unavailable": reason}) + "\n")
    sys.stdout.flush()
    raise SystemExit(3)


try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001
    fail(f"import torch failed: {type(e).__name__}: {e}")


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


class Dem(nn.Module):
    """The official SpatialEmbed (scripts/golden/spatial_embed.py, variant 'official', official windows),
    batched: Q/K/V as one [3d, d] GEMM per map, all windows x heads in one SDPA call per direction."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.d, self.heads = d, heads
        self.qkv = nn.Linear(d, 3 * d)
        self.o = nn.Linear(d, d)
        self.ln = nn.LayerNorm(d, eps=1e-5)
        self.ffn_crop = nn.Sequential(nn.Linear(d, d // 16), nn.GELU(), nn.Linear(d // 16, d // 2))
        self.ffn_stride = nn.Sequential(nn.Linear(d, d // 16), nn.GELU(), nn.Linear(d // 16, d // 2))
        self.ln_fuse = nn.LayerNorm(d, eps=1e-5)

    @staticmethod
    def _windows(x: torch.Tensor, n: int, m: int, heads: int, contiguous: bool) -> torch.Tensor:
        """[B, H, W, m*d] -> [m, B*n*n, heads, h*w, dk]: window-major, the window's tokens row-major."""
        B, H, W, C = x.shape
        h, w = H // n, W // n
        dk = C // (m * heads)
        if contiguous:  # window (r, c) = x[b, r*h:(r+1)*h, c*w:(c+1)*w]
            v = x.view(B, n, h, n, w, m, heads, dk).permute(5, 0, 1, 3, 6, 2, 4, 7)
        else:  # window (i, j) = x[b, i::n, j::n]
            v = x.view(B, h, n, w, n, m, heads, dk).permute(5, 0, 2, 4, 6, 1, 3, 7)
        return v.reshape(m, B * n * n, heads, h * w, dk)

    @staticmethod
    def _merge(o: torch.Tensor, B: int, n: int, h: int, w: int, contiguous: bool) -> torch.Tensor:
        """[B*n*n, heads, h*w, dk] -> [B, n*h, n*w, heads*dk] (inverse of _windows)."""
        _, heads, _, dk = o.shape
        v = o.view(B, n, n, heads, h, w, dk)
        v = v.permute(0, 1, 4, 2, 5, 3, 6) if contiguous else v.permute(0, 4, 1, 5, 2, 3, 6)
        return v.reshape(B, n * h, n * w, heads * dk)

    def enhance(self, L: torch.Tensor, G: torch.Tensor, n: int):
        B, H, W, d = L.shape
        h, w = H // n, W // n
        P_L, P_G = self.qkv(L), self.qkv(G)

        def direction(P_q, P_kv, q_in, contiguous):
            q = self._windows(P_q[..., :d], n, 1, self.heads, contiguous)[0]
            kv = self._windows(P_kv[..., d:], n, 2, self.heads, contiguous)
            o = F.scaled_dot_product_attention(q, kv[0], kv[1])
            out = self.o(self._merge(o, B, n, h, w, contiguous))
            return F.layer_norm(out + q_in, (d,), self.ln.weight, self.ln.bias, self.ln.eps)

        G_new = direction(P_G, P_L, G, True)  # global as query, contiguous windows
        L_new = direction(P_L, P_G, L, False)  # local as query, strided windows
        return L_new, G_new

    def forward(self, local_tiles: torch.Tensor, global_tiles: torch.Tensor, n: int) -> torch.Tensor:
        N, h, w, d = local_tiles.shape
        B = N // (n * n)
        L = local_tiles.view(B, n, n, h, w, d).permute(0, 1, 3, 2, 4, 5).reshape(B, n * h, n * w, d)
        G = global_tiles.view(B, n, n, h, w, d).permute(0, 3, 1, 4, 2, 5).reshape(B, h * n, w * n, d)
        L, G = self.enhance(L, G, n)
        fused = self.ln_fuse(torch.cat([self.ffn_crop(L), self.ffn_stride(G)], -1) + L + G)
        y = F.interpolate(fused.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False)
        return y.permute(0, 2, 3, 1).contiguous()


class ClipLayer(nn.Module):
    def __init__(self, d: int, inter: int, heads: int, eps: float, act: str):
        super().__init__()
        self.heads = heads
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)
        self.fc1, self.fc2 = nn.Linear(d, inter), nn.Linear(inter, d)
        self.act = (lambda x: x * torch.sigmoid(1.702 * x)) if act == "quick_gelu" else F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        hd = d // self.heads
        h = self.layer_norm1(x)
        split = lambda t: t.view(B, T, self.heads, hd).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(split(self.q_proj(h)), split(self.k_proj(h)), split(self.v_proj(h)))
        x = x + self.out_proj(a.transpose(1, 2).reshape(B, T, d))
        return x + self.fc2(self.act(self.fc1(self.layer_norm2(x))))


class ClipTower(nn.Module):
    """transformers' CLIPVisionModel to hidden_states[layer] (only the layers needed), CLS dropped."""

    def __init__(self, c: Dict[str, object], layer: int):
        super().__init__()
        d, p, S, C = int(c["hiddenSize"]), int(c["patchSize"]), int(c["imageSize"]), int(c["numChannels"])
        L = int(c["numHiddenLayers"])
        used = layer if layer >= 0 else L + 1 + layer
        self.patch = nn.Conv2d(C, d, p, p, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(d) * 0.02)
        self.position_embedding = nn.Parameter(torch.randn((S // p) ** 2 + 1, d) * 0.02)
        self.pre_layrnorm = nn.LayerNorm(d, eps=float(c["layerNormEps"]))
        self.layers = nn.ModuleList(ClipLayer(d, int(c["intermediateSize"]), int(c["numAttentionHeads"]),
                                              float(c["layerNormEps"]), str(c["hiddenAct"])) for _ in range(used))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # [B, C, S, S]
        x = self.patch(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], 1) + self.position_embedding
        x = self.pre_layrnorm(x)
        for layer in self.layers:
            x = layer(x)
        return x[:, 1:]


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


def build(case: Dict[str, object], dev: torch.device) -> Callable[[], torch.Tensor]:
    kind, p = case["kind"], case["params"]
    g = torch.Generator(device="cpu").manual_seed(0)
    rn = lambda *s: torch.randn(*s, generator=g).to(dev)  # noqa: E731
    if kind == "matmul":
        a, b = rn(p["m"], p["k"]), rn(p["k"], p["n"])
        return lambda: torch.mm(a, b)
    if kind == "attention":
        B, H, Hkv, Tq, Tk, dk = (int(p[x]) for x in ("B", "H", "Hkv", "Tq", "Tk", "dk"))
        q, k, v = rn(B, H, Tq, dk), rn(B, Hkv, Tk, dk), rn(B, Hkv, Tk, dk)
        gqa = {"enable_gqa": True} if H != Hkv else {}
        if p.get("causal") and Tq == Tk:
            return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa)
        if p.get("causal") and Tq > 1:  # bottom-right: the queries are the last Tq positions
            mask = torch.ones(Tq, Tk, dtype=torch.bool, device=dev).tril(diagonal=Tk - Tq)
            return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **gqa)
        return lambda: F.scaled_dot_product_attention(q, k, v, **gqa)
    if kind == "dem":
        n, h, d, heads = (int(p[x]) for x in ("n", "h", "d", "heads"))
        torch.manual_seed(0)
        m = Dem(d, heads).to(dev).eval()
        lt, gt = rn(n * n, h, h, d), rn(n * n, h, h, d)
        return lambda: m(lt, gt, n)
    if kind == "packed":  # PyTorch's own decode path: bf16 F.linear, whatever our format (no q8/q4 GEMV in torch)
        x = rn(int(p["m"]), int(p["k"])).to(torch.bfloat16)
        w = rn(int(p["n"]), int(p["k"])).to(torch.bfloat16)
        return lambda: F.linear(x, w)
    if kind == "clip":
        torch.manual_seed(0)
        m = ClipTower(p, int(p["layer"])).to(dev).eval()
        S = int(p["imageSize"])
        px = rn(int(p["images"]), int(p["numChannels"]), S, S)
        return lambda: m(px)
    raise ValueError(f"unknown kind {kind!r}")


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_case(fn: Callable[[], torch.Tensor], dev: torch.device, reps: int, warmup: int, pipeline: bool) -> Dict[str, object]:
    for _ in range(warmup):
        fn()
    sync(dev)
    synced, readback = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        y = fn()
        sync(dev)
        synced.append((time.perf_counter() - t0) * 1e3)
        del y
    for _ in range(reps):
        t0 = time.perf_counter()
        fn().cpu()
        readback.append((time.perf_counter() - t0) * 1e3)
    row: Dict[str, object] = {
        "median_ms": round(statistics.median(synced), 4),
        "min_ms": round(min(synced), 4),
        "readback_ms": round(statistics.median(readback), 4),
        "times_ms": [round(t, 4) for t in synced],
        "reps": reps,
        "pipelined_ms": None,
    }
    if pipeline:
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(reps):
            y = fn()
        sync(dev)
        row["pipelined_ms"] = round((time.perf_counter() - t0) * 1e3 / reps, 4)
        del y
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", required=True, help="JSON: {cases: [{name, kind, params, pipeline}], reps, warmup}")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the report to this path")
    args = ap.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    reps = args.reps or int(spec.get("reps", 5))
    warmup = int(spec.get("warmup", 2))

    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            fail(f"torch {torch.__version__}: CUDA not available (torch.cuda.is_available() is False)")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    dev = torch.device(args.device)
    machine = {
        "framework": "pytorch", "torch": torch.__version__, "python": platform.python_version(),
        "device": args.device, "dtype": "float32", "tf32": False,
        "cuda": torch.version.cuda,
        "card": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    log(f"torch {torch.__version__} on {machine['card']} ({args.device}), fp32 (TF32 off); "
        f"{len(spec['cases'])} cases, {reps} reps")
    rows: List[Dict[str, object]] = []
    t_start = time.perf_counter()
    with torch.inference_mode():
        for i, case in enumerate(spec["cases"], 1):
            row: Dict[str, object] = {"name": case["name"]}
            try:
                fn = build(case, dev)
                row.update(time_case(fn, dev, reps, warmup, bool(case.get("pipeline", True))))
                del fn
                log(f"  [{i}/{len(spec['cases'])}] {case['name']}: {row['median_ms']:.3f} ms"
                    + (f", pipelined {row['pipelined_ms']:.3f}" if row["pipelined_ms"] is not None else "")
                    + f", read back {row['readback_ms']:.3f}")
            except Exception as e:  # noqa: BLE001  (one case failing, e.g. out of memory, is a row note)
                row.update({"median_ms": None, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
                log(f"  [{i}/{len(spec['cases'])}] {case['name']}: FAILED {row['error']}")
            rows.append(row)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    report = {"machine": machine, "reps": reps, "warmup": warmup,
              "wall_s": round(time.perf_counter() - t_start, 2), "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            f.write(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(json.dumps(report, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
