"""Writes tests/fixtures/safetensors/: safetensors files produced by the Python
`safetensors` library (0.8.0, torch backend) for crates/synapse-inference/tests/safetensors.rs.

  small.safetensors                       F32/F16/BF16 weights, a 1-D norm, an I64 buffer,
                                          a 3-D tensor, `__metadata__`
  sharded/model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json
                                          a two-shard checkpoint as transformers writes it
  expected.json                           per file and tensor: dtype, shape, and the values
                                          as torch reads them back, widened to f32

Values are pseudo-random (fixed seed) plus edge cases (-0.0, subnormals, the largest
finite F16). Deterministic: rerunning gives identical files. Run from the repo root:

  python3 tools/reference/make_safetensors_fixture.py
"""

import json
import os

import torch
from safetensors.torch import save_file

OUT = "tests/fixtures/safetensors"


def values(seed, shape, dtype, extra=()):
    g = torch.Generator().manual_seed(seed)
    t = (torch.randn(shape, generator=g) * 3).flatten()
    t[: len(extra)] = torch.tensor(extra, dtype=torch.float32)
    return t.reshape(shape).to(dtype)


def describe(tensors):
    out = {}
    for name, t in tensors.items():
        entry = {
            "dtype": {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}[t.dtype],
            "shape": list(t.shape),
        }
        if t.is_floating_point():
            entry["values"] = t.float().flatten().tolist()
        else:
            entry["values"] = t.flatten().tolist()
        out[name] = entry
    return out


def main():
    os.makedirs(f"{OUT}/sharded", exist_ok=True)
    small = {
        "w_f32": values(1, (3, 5), torch.float32, [-0.0, 1e-40, 3.4e38]),
        "w_f16": values(2, (4, 6), torch.float16, [-0.0, 2.0**-24, 65504.0, -65504.0, 6.1e-5]),
        "w_bf16": values(3, (2, 7), torch.bfloat16, [-0.0, 1e38, -1e-38, 0.1]),
        "norm": values(4, (5,), torch.float32),
        "norm_bf16": values(5, (9,), torch.bfloat16),
        "position_ids": torch.arange(4, dtype=torch.int64),
        "conv3d": values(6, (2, 3, 4), torch.float32),
    }
    save_file(small, f"{OUT}/small.safetensors", metadata={"format": "pt"})

    shards = [
        {
            "model.embed_tokens.weight": values(10, (8, 4), torch.bfloat16),
            "model.norm.weight": values(11, (4,), torch.float16),
        },
        {
            "lm_head.weight": values(12, (8, 4), torch.float32),
            "model.layers.0.mlp.up_proj.weight": values(13, (3, 4), torch.float16),
        },
    ]
    weight_map = {}
    total = 0
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, f"{OUT}/sharded/{name}", metadata={"format": "pt"})
        for tensor, t in shard.items():
            weight_map[tensor] = name
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(f"{OUT}/sharded/model.safetensors.index.json", "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")

    expected = {"small.safetensors": describe(small), "sharded": describe({k: v for s in shards for k, v in s.items()})}
    with open(f"{OUT}/expected.json", "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
