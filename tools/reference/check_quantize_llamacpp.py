#!/usr/bin/env python3
"""Check that GGUF files written by `synapse quantize` load and run in llama.cpp.

Quantizes the default model (SmolLM2-135M-Instruct Q4_1, whose weights are
dequantized and requantized) to q8_0, q4_0 and q4_k with the Synapse CLI, loads each
output with llama-cpp-python, greedy-generates 16 tokens (argmax of the raw logits,
EOS ignored) for a fixed prompt, and records in tests/fixtures/quantize/llamacpp.json
the tokens, their text and the sha256 of each file Synapse wrote. The Rust test
crates/synapse-cli/tests/quantize.rs re-runs `synapse quantize` and checks the
sha256, so the recorded llama.cpp result applies to exactly those bytes.

Run from the repo root:
  python3 tools/reference/check_quantize_llamacpp.py [--synapse PATH] [--model PATH]
Without --synapse it builds the CLI with cargo and uses target/debug/synapse.
"""
import argparse
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import llama_cpp

DEFAULT_MODEL = os.path.expanduser("~/.cache/synapse/SmolLM2-135M-Instruct.Q4_1.gguf")
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
OUT_PATH = os.path.join("tests", "fixtures", "quantize", "llamacpp.json")
TYPES = ["q8_0", "q4_0", "q4_k"]
PROMPT = "The three primary colors are"
N_GENERATE = 16


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_cli():
    subprocess.run(["cargo", "build", "-p", "synapse-cli"], check=True)
    return os.path.join("target", "debug", "synapse")


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
    return prompt, out, text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--synapse", help="path of the synapse binary (default: build it)")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    digest = sha256_file(args.model)
    if digest != MODEL_SHA256:
        sys.exit(f"{args.model}: sha256 {digest}, expected {MODEL_SHA256}")
    synapse = args.synapse or build_cli()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        prompt_ids, tokens, text = greedy(args.model)
        print(f"source Q4_1: {tokens} {text!r}")
        source = {"prompt_ids": prompt_ids, "tokens": tokens, "text": text}
        for t in TYPES:
            out = os.path.join(tmp, f"smollm2-{t}.gguf")
            run = subprocess.run([synapse, "quantize", args.model, out, "--type", t],
                                 check=True, capture_output=True, text=True)
            print(run.stdout.strip())
            _, tokens, text = greedy(out)
            agree = sum(1 for a, b in zip(tokens, source["tokens"]) if a == b)
            print(f"{t}: {tokens} {text!r} ({agree}/{N_GENERATE} as the source model)")
            results.append({
                "type": t,
                "sha256": sha256_file(out),
                "bytes": os.path.getsize(out),
                "tokens": tokens,
                "text": text,
            })

    fixture = {
        "generator": "tools/reference/check_quantize_llamacpp.py",
        "llama_cpp_python_version": importlib.metadata.version("llama_cpp_python"),
        "model_sha256": MODEL_SHA256,
        "prompt": PROMPT,
        "n_generate": N_GENERATE,
        "source_model": source,
        "outputs": results,
    }
    os.makedirs(os.path.dirname(OUT_PATH), exist_ok=True)
    with open(OUT_PATH, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT_PATH}")


if __name__ == "__main__":
    main()
