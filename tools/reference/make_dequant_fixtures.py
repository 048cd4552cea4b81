#!/usr/bin/env python3
"""Generate tests/fixtures/dequant.json: reference dequantization results.

For each GGML type below, 4 blocks of pseudo-random bytes (fixed seed) are
dequantized with gguf.quants.dequantize (the reference implementation that
ships with llama.cpp's gguf-py). Every f16 scale field (d, m, dmin) is
overwritten with a finite value of magnitude in [0.001, 2], random sign, so the
results contain no NaN/inf. F16/BF16 cases are 64 finite raw values.

Two extra cases take the first 4 blocks of real tensors from the SmolLM2 GGUF
(Q4_1 blk.0.attn_q.weight, Q8_0 token_embd.weight).

Run from the repo root:  python3 tools/reference/make_dequant_fixtures.py [--model PATH]
"""
import argparse
import importlib.metadata
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

DEFAULT_MODEL = os.path.expanduser("~/.cache/synapse/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT_PATH = os.path.join("tests", "fixtures", "dequant.json")
SEED = 20240531
N_BLOCKS = 4
N_FLOAT_VALUES = 64  # for F16 / BF16

# Byte offsets of the f16 scale fields inside one block (ggml block layouts).
SCALE_OFFSETS = {
    T.Q4_0: [0],         # d
    T.Q4_1: [0, 2],      # d, m
    T.Q5_0: [0],         # d
    T.Q5_1: [0, 2],      # d, m
    T.Q8_0: [0],         # d
    T.Q4_K: [0, 2],      # d, dmin
    T.Q5_K: [0, 2],      # d, dmin
    T.Q6_K: [208],       # d (at the end: ql[128] qh[64] scales[16] d)
}

TYPES = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]

MODEL_CASES = [
    (T.Q4_1, "blk.0.attn_q.weight"),
    (T.Q8_0, "token_embd.weight"),
]


def random_scale_f16(rng):
    mag = rng.uniform(0.001, 2.0)
    sign = -1.0 if rng.random() < 0.5 else 1.0
    return np.float16(sign * mag)


def synthetic_bytes(rng, qtype):
    if qtype == T.F16:
        bits = rng.integers(0, 1 << 16, size=N_FLOAT_VALUES, dtype=np.uint32).astype(np.uint16)
        exp_all_ones = (bits & 0x7C00) == 0x7C00
        bits[exp_all_ones] &= np.uint16(0xBFFF)  # clear top exponent bit -> finite
        # a few fixed edge values: +0, -0, smallest subnormal, largest finite
        bits[:4] = [0x0000, 0x8000, 0x0001, 0x7BFF]
        return bits.view(np.uint8).copy()
    if qtype == T.BF16:
        bits = rng.integers(0, 1 << 16, size=N_FLOAT_VALUES, dtype=np.uint32).astype(np.uint16)
        exp_all_ones = (bits & 0x7F80) == 0x7F80
        bits[exp_all_ones] &= np.uint16(0xBFFF)  # clear top exponent bit -> finite
        # +0, -0, 1.0, -2.5, smallest subnormal
        bits[:5] = [0x0000, 0x8000, 0x3F80, 0xC020, 0x0001]
        return bits.view(np.uint8).copy()
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(N_BLOCKS, type_size), dtype=np.uint16).astype(np.uint8)
    for b in range(N_BLOCKS):
        for off in SCALE_OFFSETS[qtype]:
            raw[b, off:off + 2] = np.frombuffer(random_scale_f16(rng).tobytes(), dtype=np.uint8)
    return raw.reshape(-1)


def dequant(raw, qtype):
    vals = gguf.quants.dequantize(raw, qtype)
    vals = np.asarray(vals, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(vals)):
        raise SystemExit(f"non-finite dequantized value for {qtype.name}")
    return vals


def make_case(qtype, raw, source):
    vals = dequant(raw, qtype)
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_expected = (raw.size // type_size) * block_size
    assert vals.size == n_expected, (qtype.name, vals.size, n_expected)
    return {
        "type": qtype.name,
        "source": source,
        "bytes_hex": raw.tobytes().hex(),
        # float(np.float32) is exactly representable as a Python float and
        # json.dumps prints the shortest repr that round-trips to that double,
        # so parsing as f64 and casting to f32 is exact.
        "values": [float(v) for v in vals],
    }


def model_cases(model_path):
    reader = gguf.GGUFReader(model_path)
    tensors = {t.name: t for t in reader.tensors}
    cases = []
    for qtype, name in MODEL_CASES:
        t = tensors[name]
        if t.tensor_type != qtype:
            raise SystemExit(f"{name}: expected {qtype.name}, found {t.tensor_type.name}")
        _, type_size = gguf.GGML_QUANT_SIZES[qtype]
        flat = np.asarray(t.data).view(np.uint8).reshape(-1)
        raw = np.array(flat[: N_BLOCKS * type_size], dtype=np.uint8)
        cases.append(make_case(qtype, raw, f"model:{name}"))
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="SmolLM2 Q4_1 GGUF path")
    ap.add_argument("--out", default=OUT_PATH)
    ap.add_argument("--no-model", action="store_true", help="skip the cases taken from the model file")
    args = ap.parse_args()

    rng = np.random.default_rng(SEED)
    cases = []
    for qtype in TYPES:
        raw = synthetic_bytes(rng, qtype)
        cases.append(make_case(qtype, raw, f"random:seed={SEED}"))
    if not args.no_model:
        cases.extend(model_cases(args.model))

    version = importlib.metadata.version("gguf")
    doc = {"generator": f"gguf {version} gguf.quants.dequantize", "cases": cases}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")

    # self-check: exact f32 round trip
    with open(args.out) as f:
        back = json.load(f)
    for c, c2 in zip(cases, back["cases"]):
        a = np.array(c["values"], dtype=np.float32)
        b = np.array(c2["values"], dtype=np.float64).astype(np.float32)
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), c["type"]
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {len(cases)} cases, {size} bytes", file=sys.stderr)
    for c in cases:
        print(f"  {c['type']:5s} {c['source']:32s} {len(c['bytes_hex']) // 2:5d} bytes -> {len(c['values'])} values",
              file=sys.stderr)


if __name__ == "__main__":
    main()
