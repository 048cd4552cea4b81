#!/usr/bin/env python3
"""Generate tests/fixtures/smollm2-q4_1/llamacpp.json with llama.cpp (via llama-cpp-python's low-level C API).

For each prompt of smollm2_reference.py: tokenize (no BOS, as the GGUF says add_bos_token=False;
special-token text parsed), decode the prompt in batches of 512 tokens (llama.cpp's default micro-batch),
record the top-10 raw logits at `logit_positions` (every position of prompts up to 64 tokens, else 64
evenly spread ones ending at the last), then greedy-generate exactly 32 tokens (argmax of raw logits, EOS
ignored, one token per decode), recording the chosen ids and the top1-top2 logit gaps. No sampler is
used anywhere.

Side output (not a fixture, git-ignored): tools/reference/.cache/llamacpp_logits.npz with the full
logits at those positions (one [positions x vocab] array per prompt); make_transformers_fixtures.py
reads it.

Run from the repo root:  python3 tools/reference/make_llamacpp_fixtures.py [--model PATH]
"""
import argparse
import ctypes
import importlib.metadata
import os
import sys

import numpy as np
import llama_cpp as L

from common import sha256_file
from ggml_lib import load_model, new_context
from smollm2_reference import PROMPTS, f32, logit_positions, top_k, write_json

DEFAULT_MODEL = os.path.expanduser("~/.cache/synapse/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT_PATH = os.path.join("tests", "fixtures", "smollm2-q4_1", "llamacpp.json")
CACHE_DIR = os.path.join("tools", "reference", ".cache")
LOGITS_NPZ = os.path.join(CACHE_DIR, "llamacpp_logits.npz")

N_CTX = 2048  # the longest prompt plus N_GEN must fit
N_BATCH = 512  # also the micro-batch: llama.cpp's default
N_THREADS = 2
N_GEN = 32
TOP_K = 10


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


def greedy_step(logits):
    order = np.argsort(-logits, kind="stable")[:2]
    return int(order[0]), f32(np.float32(logits[order[0]]) - np.float32(logits[order[1]]))


class Runner:
    def __init__(self, model_path):
        self.model = load_model(model_path)
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.ctx = None

    def new_context(self):
        if self.ctx:
            L.llama_free(self.ctx)
        self.ctx = new_context(self.model, N_CTX, N_BATCH, N_THREADS)

    def decode(self, ids, start_pos, want):
        """Decodes `ids` from `start_pos` in batches of N_BATCH; returns {index in ids: logits} for `want`."""
        out = {}
        for first in range(0, len(ids), N_BATCH):
            chunk = ids[first:first + N_BATCH]
            batch = L.llama_batch_init(len(chunk), 0, 1)
            try:
                for i, t in enumerate(chunk):
                    batch.token[i] = t
                    batch.pos[i] = start_pos + first + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = 1 if first + i in want else 0
                batch.n_tokens = len(chunk)
                rc = L.llama_decode(self.ctx, batch)
                if rc != 0:
                    raise RuntimeError(f"llama_decode returned {rc}")
            finally:
                L.llama_batch_free(batch)
            for i in range(len(chunk)):
                if first + i in want:
                    ptr = L.llama_get_logits_ith(self.ctx, i)
                    out[first + i] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float32).copy()
        return out

    def run_prompt(self, prompt):
        ids = tokenize(self.vocab, prompt["text"], self.add_bos, True)
        ids_no_special = tokenize(self.vocab, prompt["text"], self.add_bos, False)
        if len(ids) + N_GEN > N_CTX:
            raise RuntimeError(f"{prompt['name']}: {len(ids)} tokens + {N_GEN} exceed n_ctx {N_CTX}")
        positions = logit_positions(len(ids))
        self.new_context()  # fresh KV cache per prompt
        at = self.decode(ids, 0, set(positions))
        rec = {
            "name": prompt["name"],
            "text": prompt["text"],
            "prompt_ids": ids,
            "prompt_ids_no_special": ids_no_special,
            "logit_positions": positions,
            "top_logits": [top_k(at[p], TOP_K) for p in positions],
        }
        logits = at[len(ids) - 1]
        gen, gaps = [], []
        pos = len(ids)
        for step in range(N_GEN):
            tok, gap = greedy_step(logits)
            gen.append(tok)
            gaps.append(gap)
            if step + 1 < N_GEN:
                logits = self.decode([tok], pos, {0})[0]
                pos += 1
        rec["greedy_ids"] = gen
        rec["greedy_gaps"] = gaps
        rec["greedy_text"] = detokenize(self.vocab, gen, unparse_special=True)
        return rec, np.stack([at[p] for p in positions])

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
    records, logits = [], {}
    for p in PROMPTS:
        rec, at_positions = runner.run_prompt(p)
        records.append(rec)
        logits[p["name"]] = at_positions
        print(f"[{p['name']}] {len(rec['prompt_ids'])} prompt tokens, {len(rec['logit_positions'])} logit positions; "
              f"last top1={rec['top_logits'][-1][0]}; greedy: {rec['greedy_text']!r}", file=sys.stderr)
    runner.close()

    doc = {
        "generator": f"llama-cpp-python {version} (llama.cpp native build)",
        "model": os.path.basename(args.model),
        "model_sha256": sha256_file(args.model),
        "settings": {"n_ctx": N_CTX, "n_batch": N_BATCH, "n_ubatch": N_BATCH, "n_threads": N_THREADS,
                     "add_bos": runner.add_bos, "parse_special": True, "n_gen": N_GEN,
                     "logit_positions": "0-based prompt positions of top_logits (one top-10 list each)",
                     "greedy": "argmax of raw logits, ties -> lowest id, EOS ignored",
                     "greedy_gap": "logit(top1) - logit(top2) at each step",
                     "greedy_text": "llama_detokenize(remove_special=false, unparse_special=true)"},
        "prompts": records,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_json(doc, args.out)
    os.makedirs(CACHE_DIR, exist_ok=True)
    np.savez(LOGITS_NPZ, **logits)  # ~170 MB: float32 logits hardly compress
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) and {LOGITS_NPZ}", file=sys.stderr)


if __name__ == "__main__":
    main()
