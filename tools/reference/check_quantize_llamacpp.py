#!/usr/bin/env python3
"""Quantize the default model with llama.cpp's own quantizer, for `synapse quantize` to match.

For every type `synapse quantize --type` offers, llama.cpp (llama-cpp-python's
`llama_model_quantize`, with `pure` so that every matrix gets the one type, as Synapse
does, and `allow_requantize`, since the source is Q4_1: each matrix is dequantized to f32
and quantized again) writes the model; tests/fixtures/quantize/llamacpp.json records, per
type, how many tensors of each type the file has and a digest of every tensor: the
sha256 of the lines `NAME TYPE SHA256-OF-ITS-BYTES`, one per tensor sorted by name. The
Rust test crates/synapse-cli/tests/quantize.rs runs `synapse quantize` and requires the
same digest: the same bytes as llama.cpp in every tensor (the metadata may differ:
llama.cpp adds its own keys). Without an importance matrix llama.cpp quantizes each row
with `quantize_row_*_ref`, deterministic C.

For q8_0, q4_0 and q4_k it also records the 16 tokens llama.cpp generates greedily
(argmax of the raw logits, EOS ignored) from its file after a fixed prompt; the Rust test
checks Synapse's first one.

With `--synapse PATH` it also runs that binary's `quantize` and prints, per type, the
tensors whose type or bytes differ from llama.cpp's (to see what a failing test means).

Run from the repo root:
  python3 tools/reference/check_quantize_llamacpp.py [--model PATH] [--synapse PATH]
"""
import argparse
import collections
import ctypes
import hashlib
import importlib.metadata
import os
import subprocess
import sys
import tempfile

import gguf
import numpy as np
import llama_cpp

from common import dump_json, sha256_file

DEFAULT_MODEL = os.path.expanduser("~/.cache/synapse/SmolLM2-135M-Instruct.Q4_1.gguf")
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
OUT_PATH = os.path.join("tests", "fixtures", "quantize", "llamacpp.json")
# `synapse quantize --type` names and llama.cpp's `llama_ftype` for them (the K types'
# "_S" variants: with `pure` every matrix gets the base type either way).
FTYPES = {
    "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
    "q4_1": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1,
    "q5_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_0,
    "q5_1": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_1,
    "q4_k": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_S,
    "q5_k": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_S,
    "q6_k": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K,
    "f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16,
    "bf16": llama_cpp.LLAMA_FTYPE_MOSTLY_BF16,
    "f32": llama_cpp.LLAMA_FTYPE_ALL_F32,
}
GREEDY_TYPES = ["q8_0", "q4_0", "q4_k"]
PROMPT = "The three primary colors are"
N_GENERATE = 16


def tensors(path):
    """{name: (type name, sha256 of the tensor's bytes)}."""
    reader = gguf.GGUFReader(path)
    return {
        t.name: (t.tensor_type.name, hashlib.sha256(np.asarray(t.data).tobytes()).hexdigest())
        for t in reader.tensors
    }


def digest(ts):
    lines = "".join(f"{name} {ty} {h}\n" for name, (ty, h) in sorted(ts.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def llama_quantize(src, dst, ftype):
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = 2
    params.ftype = ftype
    params.allow_requantize = True
    params.pure = True
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize {dst}: {rc}")


def greedy(model_path):
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=128, n_threads=2, n_batch=64,
                          verbose=False, logits_all=True)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model)))
    prompt = llm.tokenize(PROMPT.encode(), add_bos=add_bos, special=True)
    llm.eval(prompt)
    out = []
    for _ in range(N_GENERATE):
        logits = np.asarray(llm.scores[llm.n_tokens - 1])
        tok = int(np.argsort(-logits, kind="stable")[0])
        out.append(tok)
        llm.eval([tok])
    text = llm.detokenize(out).decode("utf-8", errors="replace")
    del llm
    return out, text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--synapse", help="also compare this synapse binary's quantize output")
    args = ap.parse_args()
    model_digest = sha256_file(args.model)
    if model_digest != MODEL_SHA256:
        sys.exit(f"{args.model}: sha256 {model_digest}, expected {MODEL_SHA256}")

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, ftype in FTYPES.items():
            out = os.path.join(tmp, f"llama-{name}.gguf")
            llama_quantize(args.model, out, ftype)
            ts = tensors(out)
            counts = collections.Counter(ty for ty, _ in ts.values())
            result = {
                "type": name,
                "tensor_types": dict(sorted(counts.items())),
                "tensors_digest": digest(ts),
            }
            print(f"{name}: {result['tensor_types']} {result['tensors_digest'][:16]}")
            if name in GREEDY_TYPES:
                result["tokens"], result["text"] = greedy(out)
                print(f"  llama.cpp greedy: {result['tokens']} {result['text']!r}")
            if args.synapse:
                mine = os.path.join(tmp, f"synapse-{name}.gguf")
                subprocess.run([args.synapse, "quantize", args.model, mine, "--type", name],
                               check=True, capture_output=True)
                theirs = tensors(mine)
                differ = [n for n in sorted(ts) if theirs.get(n) != ts[n]]
                if differ:
                    print(f"  synapse: {len(differ)} of {len(ts)} tensors differ: {differ[:8]}")
                else:
                    print(f"  synapse: all {len(ts)} tensors identical")
                os.remove(mine)
            os.remove(out)
            results.append(result)

    fixture = {
        "generator": "tools/reference/check_quantize_llamacpp.py",
        "llama_cpp_python_version": importlib.metadata.version("llama_cpp_python"),
        "model_sha256": MODEL_SHA256,
        "prompt": PROMPT,
        "n_generate": N_GENERATE,
        "outputs": results,
    }
    dump_json(fixture, OUT_PATH)
    print(f"wrote {OUT_PATH}")


if __name__ == "__main__":
    main()
