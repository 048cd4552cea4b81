#!/usr/bin/env python3
"""Generate tests/fixtures/smollm2-q4_1/llamacpp.json with llama.cpp (via llama-cpp-python's low-level C API).

For each prompt: tokenize (no BOS, as the GGUF says add_bos_token=False; special-token text parsed),
decode the whole prompt in one batch, record the top-10 raw logits at the last prompt position, then
greedy-generate exactly 32 tokens (argmax of raw logits, EOS ignored, one token per decode), recording
the chosen ids and the top1-top2 logit gaps. No sampler is used anywhere.

Side output (not a fixture, git-ignored): tools/reference/.cache/llamacpp_last_logits.npz with the full
last-prompt-position logits of each prompt; make_transformers_fixtures.py reads it.

Run from the repo root:  python3 tools/reference/make_llamacpp_fixtures.py [--model PATH]
"""
import argparse
import ctypes
import hashlib
import importlib.metadata
import json
import os
import sys

import numpy as np
import llama_cpp as L

PROMPTS = [
    {"name": "plain", "text": "The capital of France is"},
    {"name": "code", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
    {"name": "chat", "text": "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2? Answer briefly.<|im_end|>\n<|im_start|>assistant\n"},
    {"name": "unicode", "text": "Café au lait, crème brûlée et 12 345 €: ça coûte cher! 日本語のテキスト 😀  \t  1234567"},
]

DEFAULT_MODEL = os.path.expanduser("~/.cache/synapse/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT_PATH = os.path.join("tests", "fixtures", "smollm2-q4_1", "llamacpp.json")
CACHE_DIR = os.path.join("tools", "reference", ".cache")
LOGITS_NPZ = os.path.join(CACHE_DIR, "llamacpp_last_logits.npz")

N_CTX = 512
N_BATCH = 512
N_THREADS = 2
N_GEN = 32
TOP_K = 10


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenize(vocab, text, add_special, parse_special):
    data = text.encode("utf-8")
    cap = len(data) + 16
    buf = (L.llama_token * cap)()
    n = L.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    if n < 0:
        raise RuntimeError(f"tokenize buffer too small ({-n} needed)")
    return [int(buf[i]) for i in range(n)]


def detokenize(vocab, ids, unparse_special=True):
    arr = (L.llama_token * max(1, len(ids)))(*ids)
    cap = 64 * len(ids) + 64
    buf = ctypes.create_string_buffer(cap)
    n = L.llama_detokenize(vocab, arr, len(ids), buf, cap, False, unparse_special)
    if n < 0:
        raise RuntimeError("detokenize buffer too small")
    return buf.raw[:n].decode("utf-8", errors="replace")


def top_k(logits, k):
    # sort by logit descending, ties by ascending id (stable argsort on -logits)
    order = np.argsort(-logits, kind="stable")[:k]
    return [[int(i), float(logits[i])] for i in order]


def greedy_step(logits):
    order = np.argsort(-logits, kind="stable")[:2]
    return int(order[0]), float(np.float32(logits[order[0]]) - np.float32(logits[order[1]]))


class Runner:
    def __init__(self, model_path):
        L.llama_backend_init()
        mparams = L.llama_model_default_params()
        mparams.n_gpu_layers = 0
        self.model = L.llama_model_load_from_file(model_path.encode(), mparams)
        if not self.model:
            raise RuntimeError(f"failed to load {model_path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.ctx = None

    def new_context(self):
        if self.ctx:
            L.llama_free(self.ctx)
        cparams = L.llama_context_default_params()
        cparams.n_ctx = N_CTX
        cparams.n_batch = N_BATCH
        cparams.n_ubatch = N_BATCH
        cparams.n_threads = N_THREADS
        cparams.n_threads_batch = N_THREADS
        self.ctx = L.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise RuntimeError("failed to create context")

    def decode(self, ids, start_pos, want_last_logits=True):
        n = len(ids)
        batch = L.llama_batch_init(n, 0, 1)
        try:
            for i, t in enumerate(ids):
                batch.token[i] = t
                batch.pos[i] = start_pos + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1 if (want_last_logits and i == n - 1) else 0
            batch.n_tokens = n
            rc = L.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
        finally:
            L.llama_batch_free(batch)
        ptr = L.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float32).copy()

    def run_prompt(self, prompt):
        ids = tokenize(self.vocab, prompt["text"], self.add_bos, True)
        ids_no_special = tokenize(self.vocab, prompt["text"], self.add_bos, False)
        self.new_context()  # fresh KV cache per prompt
        logits = self.decode(ids, 0)
        last_logits = logits.copy()
        rec = {
            "name": prompt["name"],
            "text": prompt["text"],
            "prompt_ids": ids,
            "prompt_ids_no_special": ids_no_special,
            "top_logits": top_k(logits, TOP_K),
        }
        gen, gaps = [], []
        pos = len(ids)
        for step in range(N_GEN):
            tok, gap = greedy_step(logits)
            gen.append(tok)
            gaps.append(gap)
            if step + 1 < N_GEN:
                logits = self.decode([tok], pos)
                pos += 1
        rec["greedy_ids"] = gen
        rec["greedy_gaps"] = gaps
        rec["greedy_text"] = detokenize(self.vocab, gen, unparse_special=True)
        return rec, last_logits

    def close(self):
        if self.ctx:
            L.llama_free(self.ctx)
        L.llama_model_free(self.model)
        L.llama_backend_free()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=OUT_PATH)
    args = ap.parse_args()

    version = importlib.metadata.version("llama_cpp_python")
    runner = Runner(args.model)
    print(f"add_bos={runner.add_bos} n_vocab={runner.n_vocab}", file=sys.stderr)
    records, last = [], {}
    for p in PROMPTS:
        rec, last_logits = runner.run_prompt(p)
        records.append(rec)
        last[p["name"]] = last_logits
        print(f"[{p['name']}] {len(rec['prompt_ids'])} prompt tokens; top1={rec['top_logits'][0]}; "
              f"greedy: {rec['greedy_text']!r}", file=sys.stderr)
    runner.close()

    doc = {
        "generator": f"llama-cpp-python {version} (llama.cpp native build)",
        "model": os.path.basename(args.model),
        "model_sha256": sha256_file(args.model),
        "settings": {"n_ctx": N_CTX, "n_batch": N_BATCH, "n_ubatch": N_BATCH, "n_threads": N_THREADS,
                     "add_bos": runner.add_bos, "parse_special": True, "n_gen": N_GEN,
                     "greedy": "argmax of raw logits, ties -> lowest id, EOS ignored",
                     "greedy_gap": "logit(top1) - logit(top2) at each step",
                     "greedy_text": "llama_detokenize(remove_special=false, unparse_special=true)"},
        "prompts": records,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.makedirs(CACHE_DIR, exist_ok=True)
    np.savez_compressed(LOGITS_NPZ, **last)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) and {LOGITS_NPZ}", file=sys.stderr)


if __name__ == "__main__":
    main()
