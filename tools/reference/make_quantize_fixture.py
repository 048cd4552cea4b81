#!/usr/bin/env python3
"""Generate tests/fixtures/quantize/quantizers.json: reference quantization results.

Input rows (f32, stored as little-endian hex): synthetic rows with a fixed seed
(gaussian, heavy-tailed, uniform, all-positive, tiny magnitudes, a row of edge
blocks: zeros, constants, exact rounding ties, one outlier) and the first rows of
two real tensors of the SmolLM2 GGUF, dequantized to f32.

For each input, the bytes llama.cpp's own quantizer writes (`ggml_quantize_chunk`
from the libggml-base shipped with llama-cpp-python; without an importance matrix it
runs `quantize_row_*_ref`, deterministic C):
- Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, BF16 ("simple"): `gguf.quants.quantize` (gguf-py,
  llama.cpp's Python package) writes the same bytes; the script checks that.
- Q4_K, Q5_K, Q6_K ("k_quants"; gguf-py only dequantizes these).
Synapse must match them exactly.

Run from the repo root:  python3 tools/reference/make_quantize_fixture.py [--model PATH]
"""
import argparse
import ctypes
import importlib.metadata
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

from common import dump_json
from ggml_lib import load

DEFAULT_MODEL = os.path.expanduser("~/.cache/synapse/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT_PATH = os.path.join("tests", "fixtures", "quantize", "quantizers.json")
SEED = 20261126
COLS = 512
SIMPLE = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.F16, T.BF16]
K_TYPES = [T.Q4_K, T.Q5_K, T.Q6_K]
NAMES = {T.Q4_K: "Q4_K", T.Q5_K: "Q5_K", T.Q6_K: "Q6_K"}


def ggml_quantizer():
    g = load("ggml-base")
    g.ggml_quantize_chunk.restype = ctypes.c_size_t
    g.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                      ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                      ctypes.c_void_p]
    g.ggml_quantize_init.argtypes = [ctypes.c_int]

    def quantize(rows: np.ndarray, qtype: T) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        n_rows, cols = rows.shape
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        out = np.zeros(n_rows * cols // block * size, dtype=np.uint8)
        g.ggml_quantize_init(int(qtype))
        n = g.ggml_quantize_chunk(int(qtype), rows.ctypes.data, out.ctypes.data, 0,
                                  n_rows, cols, None)
        assert n == out.size, (n, out.size)
        return out.reshape(n_rows, -1)

    return quantize


def synthetic(rng: np.random.Generator) -> np.ndarray:
    rows = [
        rng.standard_normal(COLS) * 0.05,
        rng.standard_t(3, COLS) * 0.02,
        rng.uniform(-1, 1, COLS),
        rng.uniform(0.5, 2.0, COLS),
        -rng.uniform(0.5, 2.0, COLS),
        rng.standard_normal(COLS) * 1e-3,
    ]
    edge = rng.standard_normal(COLS) * 0.1
    edge[0:32] = 0.0                     # an all-zero block
    edge[32:64] = 0.75                   # a constant block
    # Ties: with max 8 (Q4_0 d = -1) or 16 (Q5_0), x * id + 8.5 lands on .0 exactly.
    edge[64:96] = np.array([8.0, -7.5, 6.5, -5.5, 4.5, 0.5, -0.5, 1.5] * 4)
    edge[96:128] = np.array([127.0, 63.5, -62.5, 0.5, -0.5, 1.5, 2.5, -3.5] * 4)
    edge[200] = 25.0                     # an outlier inside a K-quant sub-block
    edge[256:288] = -np.arange(32) / 31.0
    rows.append(edge)
    return np.array(rows, dtype=np.float32)


def real_rows(model: str):
    reader = gguf.GGUFReader(model)
    out = []
    for name in ["blk.0.ffn_down.weight", "blk.5.attn_v.weight"]:
        t = next(t for t in reader.tensors if t.name == name)
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        values = values.reshape(-1, int(t.shape[0]))
        cols = values.shape[1] // 256 * 256
        out.append((name, values[:4, :cols]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    quantize = ggml_quantizer()
    rng = np.random.default_rng(SEED)
    inputs = [("synthetic", synthetic(rng))]
    if os.path.exists(args.model):
        inputs += real_rows(args.model)

    cases = []
    for name, rows in inputs:
        case = {
            "name": name,
            "rows": int(rows.shape[0]),
            "cols": int(rows.shape[1]),
            "values_hex": rows.astype("<f4").tobytes().hex(),
            "simple": {},
            "k_quants": {},
        }
        for qtype in SIMPLE:
            q = quantize(rows, qtype).tobytes()
            py = np.ascontiguousarray(gguf.quants.quantize(rows, qtype)).view(np.uint8).tobytes()
            if py != q:
                sys.exit(f"{name} {qtype.name}: gguf-py and llama.cpp write different bytes")
            case["simple"][qtype.name] = q.hex()
        for qtype in K_TYPES:
            case["k_quants"][NAMES[qtype]] = quantize(rows, qtype).tobytes().hex()
        cases.append(case)

    fixture = {
        "generator": "tools/reference/make_quantize_fixture.py",
        "gguf_version": importlib.metadata.version("gguf"),
        "llama_cpp_python_version": importlib.metadata.version("llama_cpp_python"),
        "seed": SEED,
        "cases": cases,
    }
    dump_json(fixture, OUT_PATH)
    print(f"wrote {OUT_PATH}")


if __name__ == "__main__":
    main()
