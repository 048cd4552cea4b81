#!/usr/bin/env python3
"""Generate tests/fixtures/activations.json: llama.cpp's quantizers of activations.

Input: a few rows of 512 f32 values (fixed seed) with the cases quantizers trip on:
gaussian, large (1e3) and tiny (1e-6, whose scale is an f16 subnormal) magnitudes,
all-negative values, and an edge row with an all-zero 256-value block, a block whose
largest value is 127 (scale 1, so x * (1 / d) lands exactly on halves: rounding ties),
a block of one outlier, and a K block whose largest magnitude is negative; plus the
first row of SmolLM2's token_embd.weight, dequantized.

For each row, the bytes of llama.cpp's (llama-cpp-python 0.3.36) quantizers:
- `quantize_row_q8_0_ref`, `quantize_row_q8_1_ref`, `quantize_row_q8_K_ref` from
  libggml-base.so (block_q8_0: f16 d, 32 codes; block_q8_1: f16 d, f16 s = d * sum(q),
  32 codes; block_q8_K: f32 d, 256 codes, 16 i16 sums of 16 codes), and
- `quantize_row_q8_0`, `quantize_row_q8_1`, `quantize_row_q8_K` from libggml-cpu.so:
  what llama.cpp's CPU matmuls actually run on activations (its `vec_dot_type`
  `from_float`). This build (GGML_NATIVE=ON on an AMD EPYC Zen 3: AVX2, FMA, F16C, no
  AVX-512) runs the AVX2 versions of q8_0 and q8_1; q8_K is the reference one.

Run from the repo root:  python3 tools/reference/make_activation_fixture.py [--model PATH]
"""
import argparse
import ctypes
import importlib.metadata
import os

import gguf
import numpy as np

from common import dump_json
from ggml_lib import load

DEFAULT_MODEL = os.path.expanduser("~/.cache/synapse/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT_PATH = os.path.join("tests", "fixtures", "activations.json")
SEED = 20261207
COLS = 512
# Bytes per block (and values per block) of each activation type.
BLOCKS = {"q8_0": (34, 32), "q8_1": (36, 32), "q8_K": (292, 256)}


def rows(model: str) -> list:
    rng = np.random.default_rng(SEED)
    out = [
        ("gaussian", rng.standard_normal(COLS)),
        ("large", rng.uniform(-1e3, 1e3, COLS)),
        ("tiny", rng.standard_normal(COLS) * 1e-6),
        ("negative", -rng.uniform(0.1, 4.0, COLS)),
    ]
    edge = rng.standard_normal(COLS) * 0.5
    edge[0:256] = 0.0                                   # an all-zero K block (and 8 Q8_0 blocks)
    edge[256:288] = np.array([127.0, 2.5, -3.5, 0.5, -0.5, 1.5, 126.5, -126.5] * 4)
    edge[288:320] = 0.01
    edge[300] = 50.0                                    # one outlier in a block
    edge[400] = -200.0                                  # the K block's largest magnitude is negative
    edge[448:480] = np.array([-127.0, 63.5, -62.5, 3.5, -4.5, 0.0, 1e-9, -1e-9] * 4)
    out.append(("edge", edge))
    if os.path.exists(model):
        reader = gguf.GGUFReader(model)
        t = next(t for t in reader.tensors if t.name == "token_embd.weight")
        first = np.asarray(t.data)[:1]
        out.append(("token_embd.weight row 0", gguf.quants.dequantize(first, t.tensor_type)[0][:COLS]))
    return [(name, np.ascontiguousarray(x, dtype=np.float32)) for name, x in out]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    base, cpu = load("ggml-base"), load("ggml-cpu")
    cpu.ggml_cpu_init()
    quantizers = {}
    for kind, (size, block) in BLOCKS.items():
        for lib, suffix, label in [(base, "_ref", "ref"), (cpu, "", "cpu")]:
            f = getattr(lib, f"quantize_row_{kind}{suffix}")
            f.restype = None
            f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            quantizers[f"{kind}_{label}"] = (f, size, block)

    cases = []
    for name, x in rows(args.model):
        case = {"name": name, "values_hex": x.astype("<f4").tobytes().hex()}
        for key, (f, size, block) in quantizers.items():
            out = np.zeros(COLS // block * size, dtype=np.uint8)
            f(x.ctypes.data, out.ctypes.data, COLS)
            case[key] = out.tobytes().hex()
        for kind in BLOCKS:
            same = case[f"{kind}_ref"] == case[f"{kind}_cpu"]
            print(f"{name}: {kind} reference and CPU quantizers {'agree' if same else 'differ'}")
        cases.append(case)

    fixture = {
        "generator": "tools/reference/make_activation_fixture.py",
        "llama_cpp_python_version": importlib.metadata.version("llama_cpp_python"),
        "build": "GGML_NATIVE=ON, AMD EPYC Zen 3 (AVX2, FMA, F16C; no AVX-512)",
        "cols": COLS,
        "cases": cases,
    }
    dump_json(fixture, OUT_PATH)
    print(f"wrote {OUT_PATH} ({os.path.getsize(OUT_PATH)} bytes)")


if __name__ == "__main__":
    main()
