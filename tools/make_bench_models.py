#!/usr/bin/env python3
"""Make the benchmark model variants in ~/.cache/synapse/bench/ ($SYNAPSE_HOME/bench).

- smollm2-135m.{Q4_0,Q8_0,Q4_K_M,F16}.gguf: SmolLM2-135M-Instruct requantized from the shipped
  Q4_1 file with llama.cpp's own quantizer (llama-cpp-python's llama_model_quantize, requantizing
  allowed; quality is that of the Q4_1 source, speed is what these are for);
- smollm2-135m.Q4_1.gguf: a symlink to the shipped file itself;
- random-1b.{Q8_0,Q4_K_M,Q5_K_M,Q6_K}.gguf: RANDOM weights (normal * 0.02, norms 1) in LLaMA-3.2-1B's shapes
  (hidden 2048, 16 layers, 32 query / 8 KV heads, FFN 8192, vocab 128256, tied embeddings),
  written as F16 with the `gguf` package (random-1b.F16.gguf, kept as the quantizer's source)
  and quantized by llama.cpp. Its tokenizer is SmolLM2's, padded to 128256 tokens with unique
  unused (type 5) dummies. It produces noise: it exists to time a 1B-sized forward pass.
- random-1b.{Q4_0,F16}.gguf: the same model as Q4_0, and its F16 source (the GPU benchmark's
  three types, bench/gpu_device.sh);
- random-smollm2-135m.{Q4_1,F16}.gguf: the same for SmolLM2-135M's own shapes, where the default
  model itself cannot go (the GPU benchmark's machine fetches nothing);
- random-qwen3-0.6b.{Q8_0,Q4_K_M}.gguf: the same for Qwen3-0.6B's shapes and architecture
  (configs/qwen3-0.6b.json: hidden 1024, 28 layers, 16 query / 8 KV heads of 128, FFN 3072,
  vocab 151936, per-head Q/K RMSNorm, tied embeddings, RoPE base 1e6).

Idempotent: files that exist are kept (outputs are written to a temporary name and renamed).
Prints what it made or found, with sizes, on stderr; --json also prints the list as one JSON line on stdout.

Run from anywhere:  python3 tools/make_bench_models.py [--only smollm2-135m.Q8_0,random-1b.Q8_0] [--json]
    [--source GGUF]       the default model (or any GGUF with SmolLM2's tokenizer, for the random ones)
    [--quantizer PATH]    llama.cpp's llama-quantize instead of llama-cpp-python
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SYNAPSE_HOME = os.environ.get("SYNAPSE_HOME") or os.path.expanduser("~/.cache/synapse")
SOURCE = os.path.join(SYNAPSE_HOME, "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(SYNAPSE_HOME, "bench")

# variant name -> (model family, quantization)
SMOLLM2 = "smollm2-135m"
RANDOM_1B = "random-1b"
RANDOM_QWEN3 = "random-qwen3-0.6b"
RANDOM_SMOLLM2 = "random-smollm2-135m"
VARIANTS = [
    (SMOLLM2, "Q4_1"),
    (SMOLLM2, "Q4_0"),
    (SMOLLM2, "Q8_0"),
    (SMOLLM2, "Q4_K_M"),
    (SMOLLM2, "F16"),
    (RANDOM_1B, "F16"),
    (RANDOM_1B, "Q4_0"),
    (RANDOM_1B, "Q8_0"),
    (RANDOM_1B, "Q4_K_M"),
    (RANDOM_1B, "Q5_K_M"),
    (RANDOM_1B, "Q6_K"),
    (RANDOM_SMOLLM2, "F16"),
    (RANDOM_SMOLLM2, "Q4_1"),
    (RANDOM_QWEN3, "Q8_0"),
    (RANDOM_QWEN3, "Q4_K_M"),
]

# Shapes of the random-weight models: GGUF architecture, hidden, layers, query heads, KV heads,
# head size, FFN, vocabulary, context, RoPE base, per-head Q/K norm.
RANDOM_SHAPES = {
    RANDOM_1B: dict(arch="llama", hidden=2048, layers=16, heads=32, kv_heads=8, head_dim=64,
                    ffn=8192, vocab=128256, context=8192, rope_base=500000.0, qk_norm=False),
    RANDOM_SMOLLM2: dict(arch="llama", hidden=576, layers=30, heads=9, kv_heads=3, head_dim=64,
                         ffn=1536, vocab=49152, context=8192, rope_base=100000.0, qk_norm=False),
    RANDOM_QWEN3: dict(arch="qwen3", hidden=1024, layers=28, heads=16, kv_heads=8, head_dim=128,
                       ffn=3072, vocab=151936, context=40960, rope_base=1000000.0, qk_norm=True),
}
R_SCALE = 0.02
R_SEED = 1234
TOKEN_TYPE_UNUSED = 5


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def mib(n):
    return f"{n / (1 << 20):.1f} MiB"


_QUIET = None


def quiet_llama_logs(L):
    """Drops llama.cpp's log lines (its per-tensor quantization report)."""
    global _QUIET
    if _QUIET is None:
        _QUIET = L.llama_log_callback(lambda level, text, user_data: None)
        L.llama_log_set(_QUIET, None)


# llama.cpp's llama-quantize, when given (--quantizer), else llama-cpp-python's binding.
QUANTIZER = None


def quantize(src, dst, quant):
    """Quantizes src into dst with llama.cpp (requantizing allowed)."""
    if QUANTIZER:
        tmp = dst + ".tmp"
        res = subprocess.run([QUANTIZER, "--allow-requantize", src, tmp, quant],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if res.returncode != 0:
            sys.stderr.write(res.stderr[-2000:])
            raise SystemExit(f"{QUANTIZER} {src} -> {quant} failed with code {res.returncode}")
        os.replace(tmp, dst)
        return
    import llama_cpp as L

    quiet_llama_logs(L)
    ftype = getattr(L, f"LLAMA_FTYPE_MOSTLY_{quant}", None)
    if ftype is None:
        raise SystemExit(f"llama-cpp-python has no LLAMA_FTYPE_MOSTLY_{quant}")
    params = L.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    tmp = dst + ".tmp"
    rc = L.llama_model_quantize(src.encode(), tmp.encode(), params)
    if rc != 0:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise SystemExit(f"llama_model_quantize({src} -> {quant}) failed with code {rc}")
    os.replace(tmp, dst)


def copy_tokenizer(reader, writer, vocab):
    """Copies every tokenizer.* key of reader, padding the token list to `vocab` entries."""
    import gguf

    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        value = field.contents()
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        if key == "tokenizer.ggml.tokens":
            pad = vocab - len(value)
            if pad < 0:
                raise SystemExit(f"source vocabulary ({len(value)}) exceeds {vocab}")
            value = list(value) + [f"<|bench_unused_{i}|>" for i in range(pad)]
        elif key == "tokenizer.ggml.token_type":
            value = list(value) + [TOKEN_TYPE_UNUSED] * (vocab - len(value))
        elif key == "tokenizer.ggml.scores":
            value = list(value) + [0.0] * (vocab - len(value))
        writer.add_key_value(key, value, vtype, sub)


def write_random_f16(dst, family):
    """Writes a random-weight model of `family`'s shapes as F16 (norm weights F32), tensor by tensor."""
    import gguf

    r = RANDOM_SHAPES[family]
    hidden, heads, kv_heads, hd = r["hidden"], r["heads"], r["kv_heads"], r["head_dim"]
    reader = gguf.GGUFReader(SOURCE)
    tmp = dst + ".tmp"
    w = gguf.GGUFWriter(tmp, r["arch"])
    w.add_name(f"RANDOM-WEIGHT benchmark model ({family} shapes, not a language model)")
    w.add_description(
        "Random normal*0.02 weights written by synapse tools/make_bench_models.py "
        "to time a forward pass of this size; its output is noise."
    )
    w.add_block_count(r["layers"])
    w.add_context_length(r["context"])
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(r["ffn"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(r["rope_base"])
    w.add_layer_norm_rms_eps(1e-6 if r["qk_norm"] else 1e-5)
    w.add_vocab_size(r["vocab"])
    w.add_file_type(1)  # mostly F16
    copy_tokenizer(reader, w, r["vocab"])

    q, kv = heads * hd, kv_heads * hd
    # (name, numpy shape (rows, row length)); 1-D tensors are norm weights.
    shapes = [("token_embd.weight", (r["vocab"], hidden)), ("output_norm.weight", (hidden,))]
    for i in range(r["layers"]):
        b = f"blk.{i}."
        shapes += [
            (b + "attn_norm.weight", (hidden,)),
            (b + "attn_q.weight", (q, hidden)),
            (b + "attn_k.weight", (kv, hidden)),
            (b + "attn_v.weight", (kv, hidden)),
            (b + "attn_output.weight", (hidden, q)),
            (b + "ffn_norm.weight", (hidden,)),
            (b + "ffn_gate.weight", (r["ffn"], hidden)),
            (b + "ffn_up.weight", (r["ffn"], hidden)),
            (b + "ffn_down.weight", (hidden, r["ffn"])),
        ]
        if r["qk_norm"]:
            shapes += [(b + "attn_q_norm.weight", (hd,)), (b + "attn_k_norm.weight", (hd,))]
    for name, shape in shapes:
        dtype = np.float32 if len(shape) == 1 else np.float16
        w.add_tensor_info(name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(R_SEED)
    for name, shape in shapes:
        if len(shape) == 1:
            data = np.ones(shape, dtype=np.float32)
        else:
            data = (rng.standard_normal(shape, dtype=np.float32) * R_SCALE).astype(np.float16)
        w.write_tensor_data(data)
        del data
    w.close()
    os.replace(tmp, dst)


def make(out_dir, family, quant):
    """Makes one variant if missing; returns (path, made)."""
    path = os.path.join(out_dir, f"{family}.{quant}.gguf")
    if os.path.exists(path):
        return path, False
    if family == SMOLLM2:
        if quant == "Q4_1":
            os.symlink(SOURCE, path)
        else:
            quantize(SOURCE, path, quant)
    else:
        f16 = os.path.join(out_dir, f"{family}.F16.gguf")
        if not os.path.exists(f16):
            log(f"writing {f16} (random weights) ...")
            write_random_f16(f16, family)
        if quant != "F16":
            quantize(f16, path, quant)
    return path, True


def main():
    global SOURCE, QUANTIZER
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"output folder [default: {DEFAULT_OUT}]")
    ap.add_argument("--only", default="", help="comma-separated variants, e.g. smollm2-135m.Q4_1 [default: all]")
    ap.add_argument("--json", action="store_true", help="print the variants as a JSON list on stdout")
    ap.add_argument("--list", action="store_true", help="list the known variants and exit")
    ap.add_argument("--source", default=SOURCE, help=f"the default model [default: {SOURCE}]")
    ap.add_argument("--quantizer", help="llama.cpp's llama-quantize [default: llama-cpp-python]")
    args = ap.parse_args()
    SOURCE, QUANTIZER = args.source, args.quantizer

    known = [f"{f}.{q}" for f, q in VARIANTS]
    if args.list:
        print("\n".join(known))
        return
    wanted = [v.strip() for v in args.only.split(",") if v.strip()] or known
    unknown = [v for v in wanted if v not in known]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if not os.path.exists(SOURCE):
        raise SystemExit(
            f"{SOURCE} is missing: run `synapse run --prompt hi` once (it fetches the default model)"
        )
    os.makedirs(args.out, exist_ok=True)

    rows = []
    for family, quant in VARIANTS:
        name = f"{family}.{quant}"
        if name not in wanted:
            continue
        start = time.time()
        path, made = make(args.out, family, quant)
        size = os.path.getsize(path)
        what = f"made in {time.time() - start:.0f} s" if made else "exists"
        log(f"{name:<22} {mib(size):>12}  {path}  ({what})")
        rows.append({
            "variant": name,
            "model": family,
            "quant": quant,
            "random_weights": family in RANDOM_SHAPES,
            "path": path,
            "file_bytes": size,
        })
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
