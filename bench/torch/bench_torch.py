"""PyTorch side of the inf-llava microbenchmarks (CPU, float32, 2 threads).

Each case is timed as: warm-up run(s), then N repetitions (``--reps``, default 7;
``--quick`` -> 3), median reported in ms. Inputs are deterministic (seeded per case).
Case names are the join keys with the TypeScript harness: do not rename them.

    .venv/bin/python bench/torch/bench_torch.py [--quick] [--reps N] [--only a,b] [--json PATH]

Progress and a summary table go to stderr; the JSON report is always the LAST line of stdout.
See bench/torch/README.md.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the repository

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(REPO, "scripts", "golden"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fast_spatial_embed import (  # noqa: E402
    LAYOUTS,
    FastSpatialEmbed,
    combine_crop_features_n,
    combine_stride_features_n,
    dem_flops,
    global_stride_crop_view,
    local_crop_view,
    recombine_global_view,
    recombine_local_view,
)
from spatial_embed import SpatialEmbedRef  # noqa: E402  (scripts/golden: the reference semantics)

THREADS = 2
F32 = 4  # bytes per float32
N_GRID = 3
REL_TOL = 1e-4


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def numel(shape: Sequence[int]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def fmt_shape(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(int(s)) for s in shape) + "]"


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_snapshot() -> Optional[tuple]:
    """(wall s, machine busy CPU s incl. steal, this process's CPU s) from /proc/stat; None if unavailable."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in parts[1:9])
    except (OSError, ValueError):
        return None
    busy = (user + nice + system + irq + softirq + steal) / CLK_TCK
    return time.perf_counter(), busy, time.process_time()


def foreign_cpu_frac(a: Optional[tuple], b: Optional[tuple]) -> Optional[float]:
    """Fraction of the machine's CPU capacity used by OTHER processes (or stolen) between two snapshots.
    ~0 on a quiet machine; 0.5 on 2 cores means one core was busy elsewhere: timings are contended."""
    if a is None or b is None or b[0] - a[0] < 0.1:  # /proc/stat counts 10 ms jiffies: too coarse below 0.1 s
        return None
    wall = b[0] - a[0]
    foreign = (b[1] - a[1]) - (b[2] - a[2])
    return round(max(0.0, foreign) / (wall * (os.cpu_count() or 1)), 3)


def randn(shape: Sequence[int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float32)


@dataclass
class Case:
    name: str
    shape: str
    fn: Callable[[], object]
    bytes_read: int
    bytes_written: int
    flops: Optional[int] = None
    flops_detail: Optional[Dict[str, int]] = None
    heavy: bool = False  # one warm-up is enough
    check: Optional[Callable[[], str]] = None  # run once, outside timing; raises on mismatch
    notes: str = ""
    extra: Dict[str, object] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# DCM cases: crops and their inverses
# ---------------------------------------------------------------------------

def local_crop_loop(x: torch.Tensor, n: int) -> torch.Tensor:
    """The official way: a Python loop of slices, then torch.stack (contiguous result)."""
    B, H, W, C = x.shape
    h, w = H // n, W // n
    return torch.stack([x[b, r * h:(r + 1) * h, c * w:(c + 1) * w, :]
                        for b in range(B) for r in range(n) for c in range(n)], 0)


def global_stride_crop_loop(x: torch.Tensor, n: int) -> torch.Tensor:
    """x[:, i::n, j::n, :] for the n*n (i, j), stacked (contiguous result)."""
    B = x.shape[0]
    return torch.stack([x[b, i::n, j::n, :] for b in range(B) for i in range(n) for j in range(n)], 0)


def recombine_local_loop(tiles: torch.Tensor, n: int) -> torch.Tensor:
    """Official combine_crop_features_N: torch.cat of each row along width, then rows along height."""
    return combine_crop_features_n([tiles[k:k + 1] for k in range(n * n)], n)


def recombine_global_loop(tiles: torch.Tensor, n: int) -> torch.Tensor:
    """Official combine_stride_features_N: strided assignment into an empty tensor."""
    return combine_stride_features_n([tiles[k:k + 1] for k in range(n * n)], n)


def dcm_cases(kind: str, H: int, W: int, C: int, seed: int) -> List[Case]:
    n = N_GRID
    x = randn([1, H, W, C], seed)
    tiles_shape = [n * n, H // n, W // n, C]
    tiles_local = local_crop_loop(x, n).contiguous()
    tiles_global = global_stride_crop_loop(x, n).contiguous()
    nb = numel(x.shape) * F32
    tag = f"{kind} {H}x{W}x{C}"
    fwd = f"{fmt_shape(x.shape)} -> {fmt_shape(tiles_shape)}"
    inv = f"{fmt_shape(tiles_shape)} -> {fmt_shape(x.shape)}"

    def chk_crop_local() -> str:
        a, b = local_crop_loop(x, n), local_crop_view(x, n)
        assert a.is_contiguous() and b.is_contiguous() and torch.equal(a, b), "localCrop loop != view"
        return "loop == view (bit-exact)"

    def chk_crop_global() -> str:
        a, b = global_stride_crop_loop(x, n), global_stride_crop_view(x, n)
        assert a.is_contiguous() and b.is_contiguous() and torch.equal(a, b), "globalStrideCrop loop != view"
        return "loop == view (bit-exact)"

    def chk_rec_local() -> str:
        a, b = recombine_local_loop(tiles_local, n), recombine_local_view(tiles_local, n)
        assert torch.equal(a, x) and torch.equal(b, x), "recombine local is not the inverse of localCrop"
        return "round trip bit-exact (cat and view)"

    def chk_rec_global() -> str:
        a, b = recombine_global_loop(tiles_global, n), recombine_global_view(tiles_global, n)
        assert torch.equal(a, x) and torch.equal(b, x), "recombine global is not the inverse of globalStrideCrop"
        return "round trip bit-exact (strided assignment and view)"

    return [
        Case(f"localCrop {tag}", fwd, lambda: local_crop_loop(x, n), nb, nb, check=chk_crop_local,
             notes="python loop of slices + torch.stack"),
        Case(f"localCrop {tag} (view)", fwd, lambda: local_crop_view(x, n), nb, nb,
             notes="reshape/permute/contiguous"),
        Case(f"globalStrideCrop {tag}", fwd, lambda: global_stride_crop_loop(x, n), nb, nb, check=chk_crop_global,
             notes="x[:, i::3, j::3, :] for 9 (i,j) + torch.stack"),
        Case(f"globalStrideCrop {tag} (view)", fwd, lambda: global_stride_crop_view(x, n), nb, nb,
             notes="reshape [1,h,3,w,3,C] -> permute -> contiguous"),
        Case(f"recombine2D local {tag}", inv, lambda: recombine_local_loop(tiles_local, n), nb, nb,
             check=chk_rec_local, notes="official combine_crop_features_N (torch.cat of rows)"),
        Case(f"recombine2D global {tag}", inv, lambda: recombine_global_loop(tiles_global, n), nb, nb,
             check=chk_rec_global, notes="official combine_stride_features_N (strided assignment into empty)"),
        # extras (not joined by the TS harness unless it has them): the inverse in one reshape/permute/copy
        Case(f"recombine2D local {tag} (view)", inv, lambda: recombine_local_view(tiles_local, n), nb, nb,
             notes="extra: reshape/permute/contiguous"),
        Case(f"recombine2D global {tag} (view)", inv, lambda: recombine_global_view(tiles_global, n), nb, nb,
             notes="extra: reshape/permute/contiguous"),
    ]


# ---------------------------------------------------------------------------
# avgPool
# ---------------------------------------------------------------------------

def avg_pool_nhwc(x: torch.Tensor, k: int) -> torch.Tensor:
    # NHWC in, NHWC contiguous out: the honest equivalent of an NHWC op. The permute to NCHW is a
    # view with channels_last strides, so F.avg_pool2d runs its channels-last kernel and its output
    # is channels_last; the permute back is a view again and .contiguous() is then a no-op. Any
    # layout cost PyTorch would pay is inside the timed region.
    y = F.avg_pool2d(x.permute(0, 3, 1, 2), kernel_size=k, stride=k)
    return y.permute(0, 2, 3, 1).contiguous()


def avgpool_cases(seed: int) -> List[Case]:
    x = randn([1, 72, 72, 1024], seed)
    k = 3
    out_shape = [1, 72 // k, 72 // k, 1024]

    def chk() -> str:
        y = avg_pool_nhwc(x, k)
        ref = x.view(1, 24, 3, 24, 3, 1024).mean(dim=(2, 4))
        assert y.is_contiguous() and tuple(y.shape) == tuple(out_shape)
        e = rel_err(y, ref)
        assert e < 1e-5, f"avgPool mismatch {e}"
        return f"== block mean (rel {e:.1e})"

    return [Case("avgPool features 72x72x1024 /3", f"{fmt_shape(x.shape)} -> {fmt_shape(out_shape)}",
                 lambda: avg_pool_nhwc(x, k), numel(x.shape) * F32, numel(out_shape) * F32,
                 flops=numel(x.shape), check=chk,
                 notes="F.avg_pool2d incl. permute NHWC->NCHW and back to contiguous NHWC; flops = 1 add per input")]


# ---------------------------------------------------------------------------
# DEM cases
# ---------------------------------------------------------------------------

def dem_cases(size: str, H: int, d: int, heads: int, seed: int) -> List[Case]:
    n = N_GRID
    h = H // n
    torch.manual_seed(seed)  # PyTorch default init of every Linear / LayerNorm
    ref = SpatialEmbedRef(d, heads=heads, variant="official").eval()
    fast = FastSpatialEmbed(ref, n).eval()
    param_bytes = sum(p.numel() for p in ref.parameters()) * F32
    attn_param_bytes = sum(p.numel() for p in ref.attention.parameters()) * F32

    L = randn([1, H, H, d], seed + 1)
    G = randn([1, H, H, d], seed + 2)
    tiles = randn([2 * n * n, h, h, d], seed + 3)  # 9 local sub-features, then 9 global ones
    map_bytes = numel(L.shape) * F32
    enh_flops = dem_flops(1, H, H, d, n, heads, fuse=False)
    se_flops = dem_flops(1, H, H, d, n, heads, fuse=True)
    out_shape = [1, h, h, d]

    checked: Dict[str, str] = {}

    def chk_enhance() -> str:
        if "enh" not in checked:
            Lr, Gr = ref.enhance(L, G, n, windows="official", mode="both")
            msgs = []
            for layout in LAYOUTS:
                Lf, Gf = fast.enhance(L, G, layout)
                el, eg = rel_err(Lf, Lr), rel_err(Gf, Gr)
                assert el < REL_TOL and eg < REL_TOL, f"enhance [{layout}] differs from reference: {el:.2e} {eg:.2e}"
                msgs.append(f"{layout} rel {max(el, eg):.1e}")
            checked["enh"] = "== reference (" + ", ".join(msgs) + ")"
        return checked["enh"]

    def chk_forward() -> str:
        if "fwd" not in checked:
            yr = ref(tiles[:n * n], tiles[n * n:], grid=n, out_size=(h, h))["output"]
            msgs = []
            for layout in LAYOUTS:
                yf = fast(tiles, layout)
                assert tuple(yf.shape) == tuple(out_shape)
                e = rel_err(yf, yr)
                assert e < REL_TOL, f"spatialEmbed [{layout}] differs from reference: {e:.2e}"
                msgs.append(f"{layout} rel {e:.1e}")
            checked["fwd"] = "== reference (" + ", ".join(msgs) + ")"
        return checked["fwd"]

    heavy = d >= 1024
    cases = []
    for layout in LAYOUTS:
        cases.append(Case(
            f"dualPerspectiveEnhance {size} {H}x{H}x{d} n{n} h{heads} [{layout}]",
            f"L,G {fmt_shape(L.shape)} -> L',G' {fmt_shape(L.shape)}",
            (lambda lay=layout: fast.enhance(L, G, lay)),
            2 * map_bytes + attn_param_bytes, 2 * map_bytes,
            flops=enh_flops["total"], flops_detail=enh_flops, heavy=heavy, check=chk_enhance,
            notes=f"both directions, shared MHA, {layout} attention; bytes include the MHA weights"))
    for layout in LAYOUTS:
        cases.append(Case(
            f"spatialEmbed {size} {2 * n * n}x{h}x{h}x{d} n{n} h{heads} [{layout}]",
            f"{fmt_shape(tiles.shape)} -> {fmt_shape(out_shape)}",
            (lambda lay=layout: fast(tiles, lay)),
            numel(tiles.shape) * F32 + param_bytes, numel(out_shape) * F32,
            flops=se_flops["total"], flops_detail=se_flops, heavy=heavy, check=chk_forward,
            notes=f"recombine + enhance + fuse (MLP hidden {d // 16}) + bilinear {H}->{h}; {layout} attention; "
                  "bytes include all weights"))
    return cases


# ---------------------------------------------------------------------------
# Ceilings
# ---------------------------------------------------------------------------

def ceiling_cases(seed: int) -> List[Case]:
    img = randn([1, 1008, 1008, 3], seed)
    feat = randn([1, 72, 72, 1024], seed + 1)
    cases = [
        Case("copy image 1008x1008x3", fmt_shape(img.shape), lambda: img.clone(),
             numel(img.shape) * F32, numel(img.shape) * F32, notes="x.clone(): copy-bandwidth ceiling"),
        Case("copy features 72x72x1024", fmt_shape(feat.shape), lambda: feat.clone(),
             numel(feat.shape) * F32, numel(feat.shape) * F32, notes="x.clone(): copy-bandwidth ceiling"),
    ]
    for m, k, nn_ in ((1024, 1024, 1024), (5184, 1024, 1024)):
        a = randn([m, k], seed + m)
        b = randn([k, nn_], seed + m + 1)
        cases.append(Case(
            f"matMul {m}x{k}x{nn_}", f"{fmt_shape(a.shape)} @ {fmt_shape(b.shape)} -> {fmt_shape([m, nn_])}",
            (lambda a=a, b=b: torch.mm(a, b)), (m * k + k * nn_) * F32, m * nn_ * F32,
            flops=2 * m * k * nn_, notes="torch.mm: GEMM ceiling" +
            (" (tokens x d x d: the projection shape)" if m == 5184 else "")))
    return cases


# ---------------------------------------------------------------------------
# Attention (the op every model calls): F.scaled_dot_product_attention, float32, CPU
# ---------------------------------------------------------------------------

def attention_cases(seed: int) -> List[Case]:
    shapes = [
        ("square", 1, 8, 8, 1024, 1024, 64, False),
        ("DEM window", 1, 8, 8, 576, 576, 128, False),
        ("LLaMA-3-8B prefill", 1, 32, 8, 1024, 1024, 128, True),
        ("LLaMA-3-8B decode", 1, 32, 8, 1, 4096, 128, True),
    ]
    cases: List[Case] = []
    for label, B, H, Hkv, Tq, Tk, dk, causal in shapes:
        q = randn([B, H, Tq, dk], seed)
        k = randn([B, Hkv, Tk, dk], seed + 1)
        v = randn([B, Hkv, Tk, dk], seed + 2)
        # Bottom-right causal alignment (queries are the last Tq positions), as the tfjs op.
        mask = None
        if causal and Tq > 1:
            mask = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=Tk - Tq)

        def run(q=q, k=k, v=v, mask=mask, H=H, Hkv=Hkv):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=H != Hkv)

        name = f"attention {label} {B}x{H}:{Hkv}x{Tq}x{Tk}x{dk}{' causal' if causal else ''}"
        flops = 4 * B * H * Tq * Tk * dk // (2 if causal and Tq == Tk else 1)
        cases.append(Case(name, f"q {fmt_shape(q.shape)}, k/v {fmt_shape(k.shape)}", run,
                          (q.numel() + k.numel() + v.numel()) * F32, q.numel() * F32, flops=flops,
                          notes="F.scaled_dot_product_attention (enable_gqa), float32"))
    return cases


def build_cases() -> List[Case]:
    cases: List[Case] = []
    cases += dcm_cases("image", 1008, 1008, 3, seed=11)
    cases += dcm_cases("features", 72, 72, 1024, seed=12)
    cases += avgpool_cases(seed=13)
    cases += dem_cases("official", 72, 1024, 8, seed=14)
    cases += dem_cases("small", 36, 256, 8, seed=15)
    cases += attention_cases(seed=17)
    cases += ceiling_cases(seed=16)
    return cases


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

def time_case(case: Case, reps: int, quick: bool) -> Dict[str, object]:
    # warm-up: at least one run; light cases get more, until ~0.2 s (0.1 s with --quick) or 5 runs
    t0 = time.perf_counter()
    case.fn()
    first = time.perf_counter() - t0
    warmups = 1
    budget = 0.1 if quick else 0.2
    if not case.heavy:
        spent = first
        while warmups < 5 and spent < budget:
            t0 = time.perf_counter()
            case.fn()
            spent += time.perf_counter() - t0
            warmups += 1
    times = []
    snap0 = cpu_snapshot()
    for _ in range(reps):
        t0 = time.perf_counter()
        out = case.fn()
        times.append((time.perf_counter() - t0) * 1e3)
        del out
    foreign = foreign_cpu_frac(snap0, cpu_snapshot())
    med = statistics.median(times)
    moved = case.bytes_read + case.bytes_written
    row: Dict[str, object] = {
        "name": case.name,
        "shape": case.shape,
        "median_ms": round(med, 4),
        "min_ms": round(min(times), 4),
        "reps": reps,
        "warmups": warmups,
        "times_ms": [round(t, 4) for t in times],
        "bytes_read": case.bytes_read,
        "bytes_written": case.bytes_written,
        "bytes_moved": moved,
        "gb_per_s": round(moved / (med * 1e-3) / 1e9, 3),
        "flops": case.flops,
        "gflop_per_s": round(case.flops / (med * 1e-3) / 1e9, 3) if case.flops else None,
        "foreign_cpu_frac": foreign,
    }
    if case.flops_detail:
        row["flops_detail"] = case.flops_detail
    if case.notes:
        row["notes"] = case.notes
    row.update(case.extra)
    return row


def machine_info() -> Dict[str, object]:
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cap = None
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover - older torch
        pass
    return {
        "framework": "pytorch",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_capability": cap,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "platform": platform.platform(),
        "dtype": "float32",
        "device": "cpu",
    }


def probe_matmul_ms() -> float:
    """Median of 3 x (1024^3 matMul): a GEMM-rate probe taken at the start and end of the run, to spot drift."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1024, 1024, generator=g)
    b = torch.randn(1024, 1024, generator=g)
    torch.mm(a, b)
    torch.mm(a, b)
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        torch.mm(a, b)
        ts.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(ts), 3)


def print_table(rows: List[Dict[str, object]]) -> None:
    w = max(len(str(r["name"])) for r in rows)
    log("")
    log(f"{'case':<{w}}  {'median ms':>10}  {'min ms':>10}  {'GB/s':>8}  {'GFLOP/s':>8}  {'foreign':>7}")
    log("-" * (w + 53))
    for r in rows:
        gf = r["gflop_per_s"]
        fr = f"{r['foreign_cpu_frac']:.2f}" if r["foreign_cpu_frac"] is not None else "-"
        log(f"{r['name']:<{w}}  {r['median_ms']:>10.3f}  {r['min_ms']:>10.3f}  {r['gb_per_s']:>8.2f}  "
            f"{(f'{gf:.1f}' if gf is not None else '-'):>8}  "
            f"{fr:>7}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated substrings; run cases whose name contains any")
    ap.add_argument("--quick", action="store_true", help="3 repetitions (unless --reps) and shorter warm-ups")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per case (default 7, --quick 3)")
    ap.add_argument("--json", default=None, help="also write the JSON report to this path")
    ap.add_argument("--no-check", action="store_true", help="skip the one-off correctness asserts")
    ap.add_argument("--list", action="store_true", help="list case names and exit")
    args = ap.parse_args(argv)

    torch.set_num_threads(THREADS)
    reps = args.reps if args.reps is not None else (3 if args.quick else 7)
    assert reps >= 1, "--reps must be >= 1"

    t_start = time.perf_counter()
    cases = build_cases()  # inputs and modules (weights) are built outside inference mode
    if args.list:
        for c in cases:
            print(c.name)
        return 0
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        cases = [c for c in cases if any(k in c.name for k in keys)]
        if not cases:
            log(f"no case matches --only {args.only!r}")
            return 2
    with torch.inference_mode():
        log(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32 CPU; "
            f"{len(cases)} cases, {reps} reps each")

        run_snap0 = cpu_snapshot()
        probe_start = probe_matmul_ms()
        rows = []
        checks: Dict[str, str] = {}
        for i, case in enumerate(cases, 1):
            if case.check is not None and not args.no_check:
                t0 = time.perf_counter()
                msg = case.check()
                checks[case.name] = msg
                log(f"  check {case.name}: {msg} ({time.perf_counter() - t0:.1f} s, not timed)")
            row = time_case(case, reps, args.quick)
            rows.append(row)
            gf = f", {row['gflop_per_s']:.1f} GFLOP/s" if row["gflop_per_s"] is not None else ""
            log(f"[{i}/{len(cases)}] {case.name}: median {row['median_ms']:.3f} ms "
                f"(min {row['min_ms']:.3f}, {reps} reps, {row['warmups']} warm-up), "
                f"{row['gb_per_s']:.2f} GB/s{gf}"
                + (f", foreign CPU {row['foreign_cpu_frac']:.0%}" if row["foreign_cpu_frac"] else ""))
        probe_end = probe_matmul_ms()
        run_foreign = foreign_cpu_frac(run_snap0, cpu_snapshot())

    print_table(rows)
    elapsed = time.perf_counter() - t_start
    log(f"\ntotal {elapsed:.1f} s; matMul 1024^3 probe {probe_start:.2f} ms at start, {probe_end:.2f} ms at end; "
        f"other processes used {run_foreign if run_foreign is not None else float('nan'):.0%} of the CPUs")
    noisy = [r["name"] for r in rows if (r["foreign_cpu_frac"] or 0) > 0.1]
    if noisy:
        log(f"WARNING: {len(noisy)} case(s) were timed while other processes used >10% of the CPUs "
            f"(see foreign_cpu_frac); rerun them on a quiet machine: {', '.join(noisy)}")

    report = {
        "machine": machine_info(),
        "config": {"reps": reps, "quick": args.quick, "only": args.only or None,
                   "checks": checks, "wall_s": round(elapsed, 2),
                   "probe_matmul_1024_ms": {"start": probe_start, "end": probe_end},
                   "foreign_cpu_frac": run_foreign},
        "rows": rows,
    }
    line = json.dumps(report, separators=(",", ":"))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            f.write(json.dumps(report, indent=2) + "\n")
        log(f"wrote {args.json}")
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
