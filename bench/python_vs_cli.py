#!/usr/bin/env python3
"""Decode speed through the Python package against the `synapse` CLI, same model and threads.

Alternates `synapse run --json` (its own decode timing) with `synapse.Model.generate`
streamed in this process (timed from the first piece to the last, so that it includes
every per-token crossing of the Python boundary; the engine's own timing of the same
generations is reported beside it), `--rounds` times each; prints the medians and their
ratios as JSON, and with --append stores it as `python_rows` in
status/benchmark_matrix.json. Needs the package installed (`pip install ./crates/synapse-py`)
and the CLI built (`cargo build --release -p synapse-cli`).

  python3 bench/python_vs_cli.py [--rounds 5] [--tokens 128] [--threads 2] [--append]
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_info, stats  # noqa: E402

import synapse  # noqa: E402

PROMPT = "Once upon a time"
MATRIX = "status/benchmark_matrix.json"


def cli_decode(cli, tokens, threads):
    args = [cli, "run", "--prompt", PROMPT, "--temperature", "0", "--ignore-eos", "--json",
            "--max-tokens", str(tokens), "--threads", str(threads)]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["timings"]["decode_tok_s"]


def python_decode(model, tokens):
    """Decode tok/s as the Python caller sees it (wall time), and as the engine timed it."""
    model.reset()
    generation = model.generate(PROMPT, max_tokens=tokens, temperature=0, ignore_eos=True, stream=True)
    first = None
    for _ in generation:
        if first is None:
            first = (time.perf_counter(), generation.n_tokens)
    elapsed = time.perf_counter() - first[0]
    return (generation.n_tokens - first[1]) / elapsed, generation.n_tokens / generation.decode_ms * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cli", default="target/release/synapse")
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()
    model = synapse.Model(threads=args.threads, ctx_size=512)
    python_decode(model, 8)  # warm-up
    cli_runs, py_runs, engine_runs = [], [], []
    for _ in range(args.rounds):
        cli_runs.append(cli_decode(args.cli, args.tokens, args.threads))
        wall, engine = python_decode(model, args.tokens)
        py_runs.append(wall)
        engine_runs.append(engine)
    cli, py, engine = stats(cli_runs), stats(py_runs), stats(engine_runs)
    row = {
        "runtime": "python",
        "model": "smollm2-135m",
        "variant": "Q4_1",
        "cpu": cpu_info()["model"],
        "threads": args.threads,
        "gen_tokens": args.tokens,
        "cli_decode_tok_s": cli["median"],
        "cli_decode_runs": cli_runs,
        "python_decode_tok_s": py["median"],
        "python_decode_runs": py_runs,
        "python_over_cli": py["median"] / cli["median"],
        # The same generations as the engine timed them: what the Python boundary costs.
        "python_engine_decode_tok_s": engine["median"],
        "python_wall_over_engine": py["median"] / engine["median"],
    }
    print(json.dumps(row, indent=1))
    if args.append:
        with open(MATRIX) as f:
            matrix = json.load(f)
        matrix["python_rows"] = [r for r in matrix.get("python_rows", []) if r["threads"] != args.threads] + [row]
        with open(MATRIX, "w") as f:
            json.dump(matrix, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
