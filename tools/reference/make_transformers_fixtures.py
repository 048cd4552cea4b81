#!/usr/bin/env python3
"""Generate tests/fixtures/smollm2-q4_1/transformers.json with HF transformers (float32, CPU).

transformers loads the same GGUF and dequantizes every tensor to f32. It is fed the *llama.cpp*
prompt ids and logit positions from tests/fixtures/smollm2-q4_1/llamacpp.json (transformers' GGUF
tokenizer lacks the `smollm` pre-tokenizer), so both references see identical input. Per prompt it
records the same fields as llamacpp.json (top-10 logits at each of `logit_positions` from one forward
pass over the whole prompt, 32 greedy tokens with EOS ignored, computed incrementally with the KV
cache, and top1-top2 gaps), plus a comparison with llama.cpp:
  llamacpp_max_abs_diff_top10   per logit position, max |llama.cpp - transformers| over transformers'
                                top-10 ids there (llama.cpp's distance to transformers)
  greedy_first_diff_vs_llamacpp the first step where the greedy ids differ (null if identical)

Requires make_llamacpp_fixtures.py to have run first in this checkout (it leaves llama.cpp's full
logits at the logit positions in tools/reference/.cache/llamacpp_logits.npz).

Run from the repo root:  python3 tools/reference/make_transformers_fixtures.py [--model PATH]
"""
import argparse
import importlib.metadata
import inspect
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from common import sha256_file
from smollm2_reference import f32, top_k, write_json

DEFAULT_MODEL = os.path.expanduser("~/.cache/synapse/SmolLM2-135M-Instruct.Q4_1.gguf")
LLAMACPP_JSON = os.path.join("tests", "fixtures", "smollm2-q4_1", "llamacpp.json")
OUT_PATH = os.path.join("tests", "fixtures", "smollm2-q4_1", "transformers.json")
LOGITS_NPZ = os.path.join("tools", "reference", ".cache", "llamacpp_logits.npz")
N_GEN = 32
TOP_K = 10
N_THREADS = 2


def byte_decoder_table():
    """Inverse of the GPT-2 byte-level BPE byte->printable-char mapping."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table = {}
    extra = 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


class GgufDetokenizer:
    """Minimal detokenizer from the GGUF vocab (byte-level BPE); special tokens render as their text."""

    def __init__(self, model_path):
        import gguf
        r = gguf.GGUFReader(model_path)
        f = r.fields["tokenizer.ggml.tokens"]
        self.tokens = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        ft = r.fields.get("tokenizer.ggml.token_type")
        self.types = [int(ft.parts[i][0]) for i in ft.data] if ft else [1] * len(self.tokens)
        self.bd = byte_decoder_table()

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            tok = self.tokens[i]
            if self.types[i] == 1:  # normal token: byte-level encoded
                out += bytes(self.bd[c] for c in tok)
            else:  # control / user-defined: literal text
                out += tok.encode("utf-8")
        return out.decode("utf-8", errors="replace")


def greedy_step(logits):
    order = np.argsort(-logits, kind="stable")[:2]
    return int(order[0]), f32(np.float32(logits[order[0]]) - np.float32(logits[order[1]]))


def cache_kwarg(model):
    # transformers >= 5.x renamed `past_key_values` to `cache` (old name deprecated)
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def get_cache(out):
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


@torch.no_grad()
def run_prompt(model, ids, positions):
    kw = cache_kwarg(model)
    inp = torch.tensor([ids], dtype=torch.long)
    out = model(input_ids=inp, use_cache=True)
    at = out.logits[0, positions].float().numpy().copy()
    logits = out.logits[0, -1].float().numpy().copy()
    past = get_cache(out)
    gen, gaps = [], []
    for step in range(N_GEN):
        tok, gap = greedy_step(logits)
        gen.append(tok)
        gaps.append(gap)
        if step + 1 < N_GEN:
            out = model(input_ids=torch.tensor([[tok]], dtype=torch.long), use_cache=True, **{kw: past})
            past = get_cache(out)
            logits = out.logits[0, -1].float().numpy().copy()
    return at, gen, gaps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=OUT_PATH)
    args = ap.parse_args()

    torch.set_num_threads(N_THREADS)
    with open(LLAMACPP_JSON, encoding="utf-8") as f:
        ref = json.load(f)
    if not os.path.exists(LOGITS_NPZ):
        sys.exit(f"{LOGITS_NPZ} missing: run tools/reference/make_llamacpp_fixtures.py first")
    ll_logits = np.load(LOGITS_NPZ)

    model_dir, model_file = os.path.split(os.path.abspath(args.model))
    # `dtype` is the transformers 5 name of `torch_dtype`
    dtype_kw = "dtype" if int(importlib.metadata.version("transformers").split(".")[0]) >= 5 else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=model_file, **{dtype_kw: torch.float32})
    model.eval()
    print(model.config, file=sys.stderr)
    detok = GgufDetokenizer(args.model)

    records, table = [], []
    for p in ref["prompts"]:
        ids, positions = p["prompt_ids"], p["logit_positions"]
        at, gen, gaps = run_prompt(model, ids, positions)
        ll = ll_logits[p["name"]]
        hf_tops, max_diffs = [], []
        for row, (hf_row, ll_row) in enumerate(zip(at, ll)):
            # consistency: the npz must match the llamacpp.json top-10
            for tid, lv in p["top_logits"][row]:
                assert np.float32(ll_row[tid]) == np.float32(lv), (p["name"], positions[row], tid)
            hf_top = top_k(hf_row, TOP_K)
            hf_tops.append(hf_top)
            max_diffs.append(f32(max(abs(np.float32(ll_row[tid]) - np.float32(v)) for tid, v in hf_top)))
        first_diff = next((i for i, (a, b) in enumerate(zip(gen, p["greedy_ids"])) if a != b), None)
        records.append({
            "name": p["name"],
            "text": p["text"],
            "prompt_ids": ids,
            "prompt_ids_no_special": p.get("prompt_ids_no_special"),
            "logit_positions": positions,
            "top_logits": hf_tops,
            "greedy_ids": gen,
            "greedy_gaps": gaps,
            "greedy_text": detok.decode(gen),
            "llamacpp_max_abs_diff_top10": max_diffs,
            "greedy_first_diff_vs_llamacpp": first_diff,
        })
        same_top1 = all(h[0][0] == l[0][0] for h, l in zip(hf_tops, p["top_logits"]))
        table.append((p["name"], len(ids), first_diff, float(np.mean(max_diffs)), max(max_diffs), same_top1))
        print(f"[{p['name']}] greedy: {records[-1]['greedy_text']!r}", file=sys.stderr)

    doc = {
        "generator": f"transformers {importlib.metadata.version('transformers')} / torch {torch.__version__} "
                     f"(GGUF dequantized to float32, CPU)",
        "model": os.path.basename(args.model),
        "model_sha256": sha256_file(args.model),
        "settings": {"dtype": "float32", "use_cache": True, "n_gen": N_GEN, "n_threads": N_THREADS,
                     "attn_implementation": getattr(model.config, "_attn_implementation", None),
                     "prompt_ids": "copied from llamacpp.json, as are logit_positions",
                     "greedy": "argmax of raw logits, ties -> lowest id, EOS ignored",
                     "greedy_gap": "logit(top1) - logit(top2) at each step",
                     "greedy_text": "byte-level decode of the GGUF vocab, special tokens as text"},
        "prompts": records,
    }
    write_json(doc, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)", file=sys.stderr)

    print(f"{'prompt':10s} {'tokens':>6s} {'first greedy diff':>17s} {'llama.cpp distance mean':>23s} "
          f"{'max':>8s} {'same top1':>9s}")
    for name, n, fd, mean, mx, same in table:
        print(f"{name:10s} {n:6d} {('none' if fd is None else str(fd)):>17s} {mean:23.5f} {mx:8.5f} {str(same):>9s}")


if __name__ == "__main__":
    main()
