#!/usr/bin/env python3
"""llama.cpp's side of the comparison: the measurements of `synapse bench`, made through
llama-cpp-python's low-level C API.

Per repetition (one more warm-up repetition is discarded), on a cleared KV cache:
- prefill: llama_decode of P synthetic tokens (in n_batch chunks) from an empty cache;
- decode after the prompt: G single-token llama_decode calls right after it;
- decode from a short context: cache cleared, one untimed token, then G timed single-token calls.
The tokens are bench.rs's synthetic sequence (benchlib.synthetic_tokens), fed instead of
sampled ones, so no sampler or argmax is timed; llama.cpp computes the last token's logits
on every call, as Synapse does.

Prints one JSON object (--json) with the same keys as `synapse bench --json`, or a table.

Usage: python3 bench/llamacpp_bench.py --model M [-p 512] [-n 128] [-t THREADS] [-r 5] [--json]
"""
import argparse
import importlib.metadata
import json
import os
import sys
import time

import llama_cpp as L

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
# The llama.cpp model and context setup is shared with tools/reference's fixture scripts.
sys.path.insert(1, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "reference"))
from benchlib import TOKEN_SEED, cpu_info, read_peak_rss_bytes, stats, synthetic_tokens
from ggml_lib import load_model, new_context

_QUIET = L.llama_log_callback(lambda level, text, user_data: None)


class Bench:
    def __init__(self, path, threads, n_ctx, n_batch):
        self.model = load_model(path)
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        self.ctx = new_context(self.model, n_ctx, n_batch, threads)
        self.n_batch = n_batch

    def clear(self):
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)

    def decode(self, arr, n):
        """Evaluates n tokens held in the ctypes array `arr` (logits of the last one only)."""
        rc = L.llama_decode(self.ctx, L.llama_batch_get_one(arr, n))
        if rc != 0:
            raise SystemExit(f"llama_decode failed with code {rc}")

    def run_once(self, prompt_chunks, first, feed):
        self.clear()
        start = time.perf_counter()
        for arr, n in prompt_chunks:
            self.decode(arr, n)
        L.llama_synchronize(self.ctx)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for arr in feed:
            self.decode(arr, 1)
        L.llama_synchronize(self.ctx)
        decode_after_prompt = time.perf_counter() - start

        self.clear()
        self.decode(first, 1)
        L.llama_synchronize(self.ctx)
        start = time.perf_counter()
        for arr in feed:
            self.decode(arr, 1)
        L.llama_synchronize(self.ctx)
        decode = time.perf_counter() - start
        return prefill, decode_after_prompt, decode


def main():
    ap = argparse.ArgumentParser(description="llama.cpp prefill/decode throughput, as `synapse bench`")
    ap.add_argument("--model", "-m", required=True)
    ap.add_argument("--prompt-tokens", "-p", type=int, default=512)
    ap.add_argument("--gen-tokens", "-n", type=int, default=128)
    ap.add_argument("--threads", "-t", type=int, default=None, help="[default: physical cores]")
    ap.add_argument("--repetitions", "-r", type=int, default=5)
    ap.add_argument("--n-batch", type=int, default=512)
    ap.add_argument("--ctx-size", type=int, default=0, help="[default: prompt + gen tokens]")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="keep llama.cpp's log")
    args = ap.parse_args()
    p, g = args.prompt_tokens, args.gen_tokens
    if p < 1 or g < 1 or args.repetitions < 1:
        raise SystemExit("--prompt-tokens, --gen-tokens and --repetitions must be at least 1")
    threads = args.threads or cpu_info()["physical_cores"] or os.cpu_count() or 1
    if not args.verbose:
        L.llama_log_set(_QUIET, None)

    start = time.perf_counter()
    b = Bench(args.model, threads, args.ctx_size or p + g, args.n_batch)
    load_ms = (time.perf_counter() - start) * 1000

    tokens = synthetic_tokens(p + g, b.n_vocab, TOKEN_SEED)
    # Token arrays are built before timing so that the timed loops only call llama_decode.
    prompt = tokens[:p]
    prompt_chunks = []
    for i in range(0, p, args.n_batch):
        chunk = prompt[i:i + args.n_batch]
        prompt_chunks.append(((L.llama_token * len(chunk))(*chunk), len(chunk)))
    first = (L.llama_token * 1)(prompt[0])
    feed = [(L.llama_token * 1)(t) for t in tokens[p:]]

    times = []
    for i in range(args.repetitions + 1):
        if not args.json:
            what = "warm-up" if i == 0 else f"run {i}"
            print(f"\r[llamacpp_bench: {what} of {args.repetitions}]   ", end="", file=sys.stderr, flush=True)
        t = b.run_once(prompt_chunks, first, feed)
        if i > 0:
            times.append(t)
    if not args.json:
        print("\r" + " " * 40 + "\r", end="", file=sys.stderr, flush=True)

    prefill_runs = [p / t[0] for t in times]
    after_runs = [g / t[1] for t in times]
    decode_runs = [g / t[2] for t in times]
    s_pre, s_dec, s_aft = stats(prefill_runs), stats(decode_runs), stats(after_runs)
    spread = lambda s: {k: s[k] for k in ("min", "max", "mean", "stddev")}
    report = {
        "engine": "llama.cpp",
        "llama_cpp_python": importlib.metadata.version("llama_cpp_python"),
        "system_info": L.llama_print_system_info().decode().strip(),
        "model": args.model,
        "model_bytes": os.path.getsize(args.model),
        "threads": threads,
        "prompt_tokens": p,
        "gen_tokens": g,
        "repetitions": args.repetitions,
        "warmup_runs": 1,
        "context": L.llama_n_ctx(b.ctx),
        "batch": L.llama_n_ubatch(b.ctx),
        "kv_type": "f16",
        "flash_attn": "auto (llama.cpp default)",
        "token_seed": TOKEN_SEED,
        "load_ms": load_ms,
        "prefill_tok_s": s_pre["median"],
        "decode_tok_s": s_dec["median"],
        "decode_after_prompt_tok_s": s_aft["median"],
        "prefill_runs": prefill_runs,
        "decode_runs": decode_runs,
        "decode_after_prompt_runs": after_runs,
        "spread": {"prefill": spread(s_pre), "decode": spread(s_dec), "decode_after_prompt": spread(s_aft)},
        "peak_rss_bytes": read_peak_rss_bytes(),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"model: {args.model} ({report['model_bytes'] / (1 << 20):.1f} MiB)")
    print(f"llama.cpp (llama-cpp-python {report['llama_cpp_python']}), threads: {threads}, "
          f"batch: {args.n_batch}, context: {report['context']}, {args.repetitions} repetitions + 1 warm-up")
    print()
    print(f"| {'test':<14} | {'tok/s':>10} | {'min':>10} | {'max':>10} | {'stddev':>8} |")
    print(f"|{'-' * 16}|{'-' * 12}|{'-' * 12}|{'-' * 12}|{'-' * 10}|")
    for name, s in ((f"pp{p}", s_pre), (f"tg{g}", s_dec), (f"tg{g} @ pp{p}", s_aft)):
        print(f"| {name:<14} | {s['median']:>10.2f} | {s['min']:>10.2f} | {s['max']:>10.2f} | {s['stddev']:>8.2f} |")


if __name__ == "__main__":
    main()
