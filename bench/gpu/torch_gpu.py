"""PyTorch side of `npm run bench:gpu`: the same cases, on the same card, fp32.

The TypeScript harness (bench/gpu/run.ts) writes the case list (names, kinds, shapes) to a JSON
file and runs this script on it, so both sides always time the same shapes; it joins the rows
on `name`. Standalone (only torch): the bundle for the GPU machine embeds this file.

    python3 bench/gpu/torch_gpu.py --spec SPEC.json [--device cuda|cpu] [--reps N] [--json OUT]

Kinds: matmul {m,k,n} (torch.mm); attention {B,H,Hkv,Tq,Tk,dk,causal}
(F.scaled_dot_product_attention, enable_gqa, bottom-right causal); dem {n,h,d,heads} (the
official SpatialEmbed forward, batched windows, SDPA); clip {hiddenSize, ..., images, layer}
(a CLIP vision tower to hidden_states[layer], all images in one batch, SDPA); packed {format,m,k,n}
(F.linear in bf16 for every format: PyTorch's own decode path); llama {vocab, hidden, intermediate,
layers, heads, kvHeads, headDim, ropeTheta, eps, prefill, decode, ...} (a synthetic LLaMA in bf16:
our own torch model with a static KV cache, and transformers' LlamaForCausalLM if importable;
prefill and greedy decode timed, one `.item()` per step; the row's `variants`). packed and llama
are the bf16 cases; the rest is fp32.

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


# ---------------------------------------------------------------------------
# LLaMA (kind "llama"): the synthetic LLaMA-3-8B of bench/gpu/run.ts's llama8b group, bf16
# ---------------------------------------------------------------------------


def llama_prompt(n: int, vocab: int, bos: int) -> List[int]:
    """BOS, then the LCG of bench/gpu/run.ts llamaPrompt (the same ids)."""
    out, s = [bos], 12345
    while len(out) < n:
        s = (s * 1103515245 + 12345) % 2**31
        out.append(s % vocab)
    return out


class SynthLlama:
    """LLaMA written directly in torch, bf16: RMSNorm (fp32 statistics, as transformers), RoPE
    (rotate_half), GQA through SDPA, SwiGLU; q/k/v and gate/up fused into one matrix each; a static
    KV cache preallocated for `capacity` positions and written in place. Random weights uniform in
    ±0.02 (as the webgpu side's), norms ones."""

    def __init__(self, p: Dict[str, object], dev: torch.device, dtype: torch.dtype = torch.bfloat16):
        self.V, self.d, self.I = int(p["vocab"]), int(p["hidden"]), int(p["intermediate"])
        self.L, self.H, self.KV, self.hd = int(p["layers"]), int(p["heads"]), int(p["kvHeads"]), int(p["headDim"])
        self.eps, self.capacity, self.dev, self.dtype = float(p["eps"]), int(p["capacity"]), dev, dtype
        g = torch.Generator(device=dev).manual_seed(0)

        def u(*shape: int) -> torch.Tensor:
            w = torch.empty(*shape, device=dev, dtype=dtype)
            for r in range(0, shape[0], 8192):  # in row blocks: no float32 copy of lm_head
                blk = torch.rand(min(8192, shape[0] - r), *shape[1:], device=dev, generator=g)
                w[r:r + blk.shape[0]] = (blk * 0.04 - 0.02).to(dtype)
            return w

        qkv = (self.H + 2 * self.KV) * self.hd
        self.embed = u(self.V, self.d)
        self.layers = [dict(ln1=torch.ones(self.d, device=dev, dtype=dtype), wqkv=u(qkv, self.d), wo=u(self.d, self.H * self.hd),
                            ln2=torch.ones(self.d, device=dev, dtype=dtype), wgu=u(2 * self.I, self.d), wd=u(self.d, self.I))
                       for _ in range(self.L)]
        self.norm = torch.ones(self.d, device=dev, dtype=dtype)
        self.lm_head = u(self.V, self.d)
        inv = 1.0 / (float(p["ropeTheta"]) ** (torch.arange(0, self.hd, 2, device=dev, dtype=torch.float32) / self.hd))
        f = torch.outer(torch.arange(self.capacity, device=dev, dtype=torch.float32), inv)
        emb = torch.cat([f, f], -1)
        self.cos, self.sin = emb.cos().to(dtype), emb.sin().to(dtype)  # [capacity, hd]
        self.k = [torch.zeros(1, self.KV, self.capacity, self.hd, device=dev, dtype=dtype) for _ in range(self.L)]
        self.v = [torch.zeros_like(t) for t in self.k]
        try:
            kv = torch.zeros(1, 1, 1, 8, device=dev, dtype=dtype)
            F.scaled_dot_product_attention(torch.zeros(1, 2, 1, 8, device=dev, dtype=dtype), kv, kv, enable_gqa=True)
            self.gqa = True
        except (TypeError, RuntimeError):  # torch < 2.5: repeat the kv heads
            self.gqa = False

    def rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(self.dtype) * w

    @staticmethod
    def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:  # x [1, n, T, hd]
        h = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin

    def forward(self, ids: torch.Tensor, pos: int) -> torch.Tensor:
        """ids [1, T] at positions [pos, pos + T) → logits of the last position [1, V] (the cache written in place)."""
        T = ids.shape[1]
        H, KV, hd = self.H, self.KV, self.hd
        cos, sin = self.cos[pos:pos + T], self.sin[pos:pos + T]
        x = self.embed[ids]  # [1, T, d]
        for i, l in enumerate(self.layers):
            h = self.rms(x, l["ln1"])
            q, k, v = (h @ l["wqkv"].T).split([H * hd, KV * hd, KV * hd], -1)
            q = self.rope(q.view(1, T, H, hd).transpose(1, 2), cos, sin)
            self.k[i][:, :, pos:pos + T] = self.rope(k.view(1, T, KV, hd).transpose(1, 2), cos, sin)
            self.v[i][:, :, pos:pos + T] = v.view(1, T, KV, hd).transpose(1, 2)
            kc, vc = self.k[i][:, :, :pos + T], self.v[i][:, :, :pos + T]
            if not self.gqa:
                kc, vc = kc.repeat_interleave(H // KV, 1), vc.repeat_interleave(H // KV, 1)
            kw = {"enable_gqa": True} if self.gqa and H != KV else {}
            if T == 1:
                a = F.scaled_dot_product_attention(q, kc, vc, **kw)
            elif pos == 0:
                a = F.scaled_dot_product_attention(q, kc, vc, is_causal=True, **kw)
            else:  # bottom-right causal
                mask = torch.ones(T, pos + T, dtype=torch.bool, device=self.dev).tril(diagonal=pos)
                a = F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask, **kw)
            x = x + a.transpose(1, 2).reshape(1, T, H * hd) @ l["wo"].T
            g, up = (self.rms(x, l["ln2"]) @ l["wgu"].T).split(self.I, -1)
            x = x + (F.silu(g) * up) @ l["wd"].T
        return self.rms(x[:, -1], self.norm) @ self.lm_head.T  # [1, V]


def _hf_model(p: Dict[str, object], dev: torch.device):
    """transformers' LlamaForCausalLM from a config, random init, bf16 on `dev` (ImportError when absent)."""
    import transformers  # noqa: F401
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=int(p["vocab"]), hidden_size=int(p["hidden"]), intermediate_size=int(p["intermediate"]),
                      num_hidden_layers=int(p["layers"]), num_attention_heads=int(p["heads"]), num_key_value_heads=int(p["kvHeads"]),
                      head_dim=int(p["headDim"]), rms_norm_eps=float(p["eps"]), rope_theta=float(p["ropeTheta"]),
                      max_position_embeddings=int(p["maxPositions"]), tie_word_embeddings=False, bos_token_id=int(p["bos"]))
    cfg._attn_implementation = "sdpa"
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bf16 on the device: no 32 GB float32 detour
    try:
        with dev:
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    return model.to(device=dev, dtype=torch.bfloat16).eval(), transformers.__version__


def time_llama(case: Dict[str, object], dev: torch.device, reps: int) -> Dict[str, object]:
    """Prefill (median of `prefillReps` after one warm-up, logits read back) and greedy decode
    (`decode` steps after `decodeWarmup`, one `.item()` per step), for our own bf16 LLaMA and
    transformers' (if importable). One row per case; the two models in `variants`."""
    p = case["params"]
    T, steps, warm = int(p["prefill"]), int(p["decode"]), int(p["decodeWarmup"])
    n = max(1, min(reps, int(p.get("prefillReps", 3))))
    ids = torch.tensor([llama_prompt(T, int(p["vocab"]), int(p["bos"]))], device=dev)
    variants: List[Dict[str, object]] = []

    def mem() -> Dict[str, object]:
        return {"weight_bytes": torch.cuda.memory_allocated(dev) if dev.type == "cuda" else None}

    def run(label: str, build_fn, prefill_fn, step_fn) -> None:
        v: Dict[str, object] = {"label": label}
        try:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            t0 = time.perf_counter()
            state = build_fn()
            sync(dev)
            v["load_s"] = round(time.perf_counter() - t0, 3)
            v.update(mem())
            times = []
            for i in range(n + 1):
                t0 = time.perf_counter()
                logits, cache = prefill_fn(state)
                host = logits.float().cpu()
                times.append((time.perf_counter() - t0) * 1e3)
            v["first_prefill_ms"] = round(times[0], 3)
            v["prefill_times_ms"] = [round(t, 3) for t in times[1:]]
            v["prefill_ms"] = round(statistics.median(times[1:]), 3)
            finite = bool(torch.isfinite(host).all())
            out = [int(logits.argmax(-1).item())]
            pos = T
            for _ in range(warm):
                logits, cache = step_fn(state, out[-1], pos, cache)
                out.append(int(logits.argmax(-1).item()))
                pos += 1
            sync(dev)
            t0 = time.perf_counter()
            for _ in range(steps):
                logits, cache = step_fn(state, out[-1], pos, cache)
                out.append(int(logits.argmax(-1).item()))
                pos += 1
            v["decode_ms_per_token"] = round((time.perf_counter() - t0) * 1e3 / steps, 4)
            v["finite"] = finite and bool(torch.isfinite(logits).all())
            v["ids"], v["distinct_ids"], v["first_ids"] = len(out), len(set(out)), out[:8]
            v["peak_bytes"] = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
            log(f"    {label}: load {v['load_s']:.1f} s, prefill {T}: {v['prefill_ms']:.2f} ms (first {v['first_prefill_ms']:.0f}), "
                f"decode {v['decode_ms_per_token']:.2f} ms/token ({1e3 / v['decode_ms_per_token']:.1f} tok/s), "
                f"{'finite' if v['finite'] else 'NOT FINITE'}, ids {out[:8]}…")
            del state, logits, cache
        except Exception as e:  # noqa: BLE001  (one model failing, e.g. out of memory, is a note)
            v["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log(f"    {label}: FAILED {v['error']}")
        variants.append(v)
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    run("bf16 (own: fused qkv and gate/up, static KV cache, SDPA)",
        lambda: SynthLlama(p, dev),
        lambda m: (m.forward(ids, 0), None),
        lambda m, tok, pos, cache: (m.forward(torch.tensor([[tok]], device=dev), pos), None))

    try:
        import transformers  # noqa: F401
        have_hf = True
    except Exception as e:  # noqa: BLE001
        have_hf = False
        variants.append({"label": "transformers LlamaForCausalLM", "error": f"not importable ({type(e).__name__}: {e})"})
        log(f"    transformers: not importable ({type(e).__name__})")
    if have_hf:
        hf_version: List[str] = []

        def hf_build():
            m, ver = _hf_model(p, dev)
            hf_version.append(ver)
            return m

        def hf_call(m, x, cache):
            kw = {"use_cache": True, "past_key_values": cache}
            try:
                o = m(x, logits_to_keep=1, **kw)
            except TypeError:  # transformers < 4.50: num_logits_to_keep (or neither)
                o = m(x, **kw)
            return o.logits[:, -1], o.past_key_values

        run("bf16 transformers LlamaForCausalLM (sdpa, DynamicCache)",
            hf_build,
            lambda m: hf_call(m, ids, None),
            lambda m, tok, pos, cache: hf_call(m, torch.tensor([[tok]], device=dev), cache))
        if hf_version:
            variants[-1]["label"] = f"bf16 transformers {hf_version[0]} LlamaForCausalLM (sdpa, DynamicCache)"
    own = variants[0]
    return {"median_ms": own.get("prefill_ms"), "pipelined_ms": None, "readback_ms": None, "variants": variants,
            **({"error": own["error"]} if "error" in own else {})}


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
                if case["kind"] == "llama":
                    log(f"  [{i}/{len(spec['cases'])}] {case['name']}:")
                    row.update(time_llama(case, dev, reps))
                    rows.append(row)
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
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
