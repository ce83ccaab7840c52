"""Write a synthetic LLaMA-3-8B checkpoint: the real shapes and names, random bf16 weights.

    .venv/bin/python scripts/make-synthetic-llama8b.py [OUT_DIR]      # default /tmp/llama8b-synthetic

For bench/llama-8b-synthetic.ts (memory and speed at the real size without downloading the
real weights). 8.03 B parameters = 16.06 GB of bf16 in 4 shards (~5 GB each, as Meta's) plus
model.safetensors.index.json and a transformers-4.x-style config.json (LLaMA-3-8B-Instruct:
rope_theta 500000 at the top level, no rope scaling). Needs ~16.1 GB free on OUT_DIR's disk;
delete the directory afterwards.

Weights are random bf16 bit patterns drawn directly (no float32 detour): random sign and
mantissa, exponent 119..122, i.e. |w| in [2^-8, 2^-4), std ≈ 0.03 — finite activations through
32 layers. Norm weights are 1.0. Uses only numpy (fast: the bits come from one RNG byte stream).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import numpy as np

OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/llama8b-synthetic"
V, D, I, L, H, KV = 128256, 4096, 14336, 32, 32, 8
HD = D // H
SHARD_BYTES = 5_000_000_000
CHUNK = 1 << 26  # elements generated per step (128 MB of bf16)

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128009,
    "hidden_act": "silu",
    "hidden_size": D,
    "initializer_range": 0.02,
    "intermediate_size": I,
    "max_position_embeddings": 8192,
    "model_type": "llama",
    "num_attention_heads": H,
    "num_hidden_layers": L,
    "num_key_value_heads": KV,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.0.dev0",
    "use_cache": True,
    "vocab_size": V,
    "_synthetic": "random bf16 weights with LLaMA-3-8B's shapes (scripts/make-synthetic-llama8b.py)",
}


def tensors() -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes in Meta's order: embeddings, layers, norm, lm_head."""
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (V, D))]
    for i in range(L):
        p = f"model.layers.{i}"
        out += [
            (f"{p}.input_layernorm.weight", (D,)),
            (f"{p}.self_attn.q_proj.weight", (H * HD, D)),
            (f"{p}.self_attn.k_proj.weight", (KV * HD, D)),
            (f"{p}.self_attn.v_proj.weight", (KV * HD, D)),
            (f"{p}.self_attn.o_proj.weight", (D, H * HD)),
            (f"{p}.post_attention_layernorm.weight", (D,)),
            (f"{p}.mlp.gate_proj.weight", (I, D)),
            (f"{p}.mlp.up_proj.weight", (I, D)),
            (f"{p}.mlp.down_proj.weight", (D, I)),
        ]
    out += [("model.norm.weight", (D,)), ("lm_head.weight", (V, D))]
    return out


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def write_shard(path: str, items: list[tuple[str, tuple[int, ...]]], rng: np.random.Generator) -> None:
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in items:
        nbytes = 2 * numel(shape)
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * (-len(hjson) % 8)
    with open(path, "wb") as f:
        f.write(len(hjson).to_bytes(8, "little"))
        f.write(hjson)
        for name, shape in items:
            n = numel(shape)
            if name.endswith("norm.weight"):
                f.write(np.full(n, 0x3F80, dtype="<u2").tobytes())  # 1.0
                continue
            done = 0
            while done < n:
                m = min(CHUNK, n - done)
                r = np.frombuffer(rng.bytes(2 * m), dtype="<u2")
                bits = (r & np.uint16(0x807F)) | ((np.uint16(119) + ((r >> np.uint16(7)) & np.uint16(3))) << np.uint16(7))
                f.write(bits.astype("<u2", copy=False).tobytes())
                done += m


def main() -> None:
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(OUT)) or "/").free
    total = sum(2 * numel(s) for _, s in tensors())
    print(f"{sum(numel(s) for _, s in tensors()) / 1e9:.3f} B parameters, {total / 1e9:.2f} GB of bf16; {free / 1e9:.1f} GB free")
    if free < total + 500_000_000:
        sys.exit("not enough free disk space")
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in tensors():
        nbytes = 2 * numel(shape)
        if size + nbytes > SHARD_BYTES and shards[-1]:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    rng = np.random.default_rng(0)
    weight_map = {}
    t0 = time.time()
    for k, items in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        write_shard(os.path.join(OUT, fname), items, rng)
        for name, _ in items:
            weight_map[name] = fname
        print(f"  {fname}: {len(items)} tensors, {os.path.getsize(os.path.join(OUT, fname)) / 1e9:.2f} GB ({time.time() - t0:.0f} s)")
    with open(os.path.join(OUT, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    print(f"wrote {OUT} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
