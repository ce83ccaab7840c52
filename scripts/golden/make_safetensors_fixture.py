"""Write safetensors fixtures with the official `safetensors` library, for the TS reader's tests.

Writes to test/fixtures/safetensors/:

- dtypes.safetensors: one tensor per dtype the reader supports (F32, F16, BF16, I32, I64, BOOL,
  U8), edge values included (f16 subnormals, +-inf, -0, nan; bf16 subnormal; int32 extremes),
  a scalar, an empty tensor and a __metadata__. Next to each `x.<dtype>` tensor is
  `expected.<dtype>`: the values as torch itself converts them (float32 for the float types,
  int32 for the integer types, uint8 0/1 for bool), so the test compares against torch, not
  against a second decoder written by us.
- i64_out_of_range.safetensors: an I64 tensor holding 2**31 (must be rejected by the reader).

Regenerate with:

    bash scripts/golden/setup-venv.sh && .venv/bin/python scripts/golden/make_safetensors_fixture.py

The values are fixed (no randomness). The bytes may still differ between runs: the official
writer keeps __metadata__ in a hash map, so its key order varies; readers must not care.
"""

from __future__ import annotations

import os
import sys

sys.dont_write_bytecode = True

import torch
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "test", "fixtures", "safetensors")

inf, nan = float("inf"), float("nan")


def main() -> None:
    os.makedirs(OUT, exist_ok=True)

    f32 = torch.tensor([[1.5, -0.0, inf], [-inf, nan, 1e-45], [3.4028234663852886e38, -2.5, 1.17549435e-38]], dtype=torch.float32)
    f16 = torch.tensor(
        [0.0, -0.0, 1.0, -2.0, 65504.0, 6.103515625e-05, 5.960464477539063e-08, 2.0 ** -20, -(2.0 ** -15),
         inf, -inf, nan, 1 / 3, 0.1],
        dtype=torch.float16,
    )
    bf16 = torch.tensor([1.0, -3.140625, 1e38, inf, -inf, nan, -0.0, 1e-40, 0.1, -7.0], dtype=torch.bfloat16).reshape(2, 5)
    i32 = torch.tensor([-(2 ** 31), 2 ** 31 - 1, 0, -1, 42], dtype=torch.int32)
    i64 = torch.tensor([[-(2 ** 31), 2 ** 31 - 1, 0], [5, -7, 123456789]], dtype=torch.int64)
    bools = torch.tensor([[True, False, True], [False, False, True]], dtype=torch.bool)
    u8 = torch.tensor([0, 1, 127, 128, 254, 255], dtype=torch.uint8)

    tensors = {
        "x.F32": f32,
        "x.F16": f16,
        "x.BF16": bf16,
        "x.I32": i32,
        "x.I64": i64,
        "x.BOOL": bools,
        "x.U8": u8,
        "x.scalar": torch.tensor(3.5, dtype=torch.float32),
        "x.empty": torch.zeros((0, 3), dtype=torch.float16),
        "expected.F32": f32.clone(),
        "expected.F16": f16.to(torch.float32),
        "expected.BF16": bf16.to(torch.float32),
        "expected.I32": i32.clone(),
        "expected.I64": i64.to(torch.int32),
        "expected.BOOL": bools.to(torch.uint8),
        "expected.U8": u8.to(torch.int32),
    }
    path = os.path.join(OUT, "dtypes.safetensors")
    save_file(tensors, path, metadata={"format": "pt", "generator": "make_safetensors_fixture.py", "note": "ünïcode ✓"})

    # Self-check: the official reader gives back what we wrote, dtypes included.
    with safe_open(path, framework="pt") as f:
        assert f.metadata()["format"] == "pt"
        for k, v in tensors.items():
            got = f.get_tensor(k)
            assert got.dtype == v.dtype and got.shape == v.shape, k
            assert torch.equal(got.nan_to_num(0.0) if got.is_floating_point() else got,
                               v.nan_to_num(0.0) if v.is_floating_point() else v), k

    save_file({"bad.I64": torch.tensor([1, 2 ** 31, 3], dtype=torch.int64)}, os.path.join(OUT, "i64_out_of_range.safetensors"))
    print("wrote", OUT, "with torch", torch.__version__)


if __name__ == "__main__":
    main()
