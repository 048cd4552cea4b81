#!/usr/bin/env python3
"""Runs Synapse and llama.cpp alternately on each model variant and thread count and writes
the benchmark matrix (status/benchmark_matrix.json). Called by bench/vs_llamacpp.sh, which
installs llama-cpp-python and builds synapse first.

For each (variant, threads), `--pairs` times: `synapse bench --json`, then
bench/llamacpp_bench.py --json (A B A B ...), each with `--repetitions` timed runs after its
own warm-up. The runs of all pairs are pooled: the row's numbers are their medians.

Both engines run with the same prompt batch (512, llama.cpp's default ubatch) and the same
context (prompt + generated tokens rounded up to 256, as llama.cpp pads it).

decode_bandwidth_fraction = bytes read per decoded token (weights + the KV cache at the average
decode position) x decode tok/s / the machine's read bandwidth: `synapse bench
--memory-bandwidth` on all cores (wide loads into many accumulators, huge pages, best of 3),
measured before each pair (the host's bandwidth drifts from minute to minute); the row uses the
median of its pairs' measurements and stores them.
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "bench")
sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(1, os.path.join(ROOT, "tools", "reference"))  # common.py, shared with the fixture scripts
from benchlib import cpu_info, stats
from common import dump_json

FLAGS_OF_INTEREST = ("avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl",
                     "avx512dq", "avx512cd", "avx512ifma", "avx512vbmi", "avx512_vbmi2",
                     "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
                     "amx_bf16", "asimd", "asimddp", "i8mm", "sve")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, what, show_stderr=False):
    """Runs cmd; returns its stdout, or exits (showing its stderr) on failure."""
    res = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=None if show_stderr else subprocess.PIPE,
                         text=True)
    if res.returncode != 0:
        sys.stderr.write((res.stderr or "")[-4000:])
        raise SystemExit(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}")
    return res.stdout


def run_json(cmd, what, show_stderr=False):
    out = run(cmd, what, show_stderr)
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SystemExit(f"{what}: no JSON on stdout of {' '.join(cmd)}:\n{out[-2000:]}")


def machine():
    cpu = cpu_info()
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu["model"],
        "arch": platform.machine(),
        "physical_cores": cpu["physical_cores"] or cpu["logical_cpus"],
        "logical_cpus": cpu["logical_cpus"] or os.cpu_count(),
        "flags": [f for f in FLAGS_OF_INTEREST if f in cpu["flags"]],
        "memory_bytes": mem,
        "kernel": platform.release(),
    }


def versions(synapse_bin):
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "synapse_commit": git("rev-parse", "HEAD"),
        # Uncommitted changes to tracked files mean the numbers are not those of the commit
        # (the matrix and the README table this script itself writes do not count).
        "synapse_dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                  ":!status/benchmark_matrix.json", ":!README.md")),
        "synapse": run([synapse_bin, "--version"], "synapse --version").strip(),
        "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip(),
        "llama_cpp_python": importlib.metadata.version("llama_cpp_python"),
        "python": platform.python_version(),
    }


def load_average():
    """The 1-minute load average: how busy the machine was around a measurement."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def gguf_shape(path):
    """(n_layers, kv_dim) from a GGUF's llama.* metadata."""
    import gguf

    r = gguf.GGUFReader(path)
    arch = r.fields["general.architecture"].contents()
    get = lambda k: int(r.fields[f"{arch}.{k}"].contents())
    heads = get("attention.head_count")
    kv_heads = get("attention.head_count_kv") if f"{arch}.attention.head_count_kv" in r.fields else heads
    return get("block_count"), get("embedding_length") // heads * kv_heads


BATCH = 512


def context_for(p, g):
    """The context both engines get: llama.cpp pads its context to a multiple of 256."""
    return -(-(p + g) // 256) * 256


def read_bandwidth(synapse, threads, repetitions, buffer_mib):
    return run_json([synapse, "bench", "--memory-bandwidth", "--threads", str(threads), "--repetitions",
                     str(repetitions), "--buffer-mib", str(buffer_mib), "--json"], "bandwidth")


def pooled(results):
    """Merges several bench reports of one engine: runs pooled, medians and spread over them."""
    out = {}
    for key in ("prefill", "decode", "decode_after_prompt"):
        runs = [r for res in results for r in res[f"{key}_runs"]]
        s = stats(runs)
        out[f"{key}_tok_s"] = s["median"]
        out[f"{key}_runs"] = runs
        out.setdefault("spread", {})[key] = {k: s[k] for k in ("min", "max", "mean", "stddev")}
        out.setdefault("pair_medians", {})[key] = [res[f"{key}_tok_s"] for res in results]
    out["peak_rss_bytes"] = max((r.get("peak_rss_bytes") or 0 for r in results), default=None)
    out["load_ms"] = stats([r["load_ms"] for r in results])["median"]
    for key in ("kernel", "precision", "batch", "context", "kv_type", "flash_attn"):
        if key in results[0]:
            out[key] = results[0][key]
    return out


def main():
    ap = argparse.ArgumentParser(description="Synapse vs llama.cpp benchmark matrix")
    ap.add_argument("--variants", default=os.environ.get("BENCH_VARIANTS", "all"),
                    help="comma-separated (see tools/make_bench_models.py --list) or 'all' [env BENCH_VARIANTS]")
    ap.add_argument("--threads", default=os.environ.get("BENCH_THREADS", "1,2"),
                    help="comma-separated thread counts [env BENCH_THREADS; default 1,2]")
    ap.add_argument("--pairs", type=int, default=int(os.environ.get("BENCH_PAIRS", 3)),
                    help="alternating Synapse/llama.cpp pairs [env BENCH_PAIRS; default 3]")
    ap.add_argument("--repetitions", type=int, default=int(os.environ.get("BENCH_REPS", 5)),
                    help="timed runs per invocation [env BENCH_REPS; default 5]")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                    help="smoke run: P=64, G=16, 1 pair, 2 repetitions, written to target/bench/ [env BENCH_QUICK=1]")
    ap.add_argument("--out", default=None, help="[default: status/benchmark_matrix.json]")
    ap.add_argument("--synapse", default=os.path.join(ROOT, "target", "release", "synapse"))
    ap.add_argument("--buffer-mib", type=int, default=1024, help="bandwidth test buffer")
    ap.add_argument("--note", default=os.environ.get("BENCH_NOTE", ""), help="free text kept in the JSON")
    ap.add_argument("--append", action="store_true",
                    help="keep the output file's rows for variants/threads not measured now (each row "
                         "records its own date, commit and note)")
    args = ap.parse_args()
    if args.quick:
        args.prompt_tokens, args.gen_tokens, args.pairs, args.repetitions = 64, 16, 1, 2
    out_path = args.out or os.path.join(
        ROOT, "target/bench/benchmark_matrix.quick.json" if args.quick else "status/benchmark_matrix.json")
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    p, g = args.prompt_tokens, args.gen_tokens
    if not os.path.exists(args.synapse):
        raise SystemExit(f"{args.synapse} is missing: cargo build --release -p synapse-cli")

    only = [] if args.variants == "all" else ["--only", args.variants]
    log("== models")
    models = run_json([sys.executable, "tools/make_bench_models.py", "--json", *only], "make_bench_models",
                      show_stderr=True)

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "note": args.note,
        "machine": machine(),
        "versions": versions(args.synapse),
        "settings": {
            "prompt_tokens": p, "gen_tokens": g, "pairs": args.pairs,
            "repetitions_per_invocation": args.repetitions, "threads": threads,
            "batch": BATCH,
            "context": context_for(p, g),
            "method": "fresh cache per repetition, 1 discarded warm-up per invocation; prefill = P synthetic "
                      "tokens from an empty cache; decode = G single-token evals after 1 token; "
                      "decode_after_prompt = G single-token evals after the P-token prefill; synthetic "
                      "tokens fed (no sampling); medians over all pooled runs",
        },
        "bandwidth": {},
        "rows": [],
    }

    all_cores = os.cpu_count()
    log("== memory read bandwidth")
    for t in sorted(set(threads) | {all_cores}):
        bw = read_bandwidth(args.synapse, t, 5, args.buffer_mib)
        report["bandwidth"][str(t)] = bw
        log(f"   {t} thread(s): {bw['read_gb_s']:.2f} GB/s (best of 5)")

    common = ["--prompt-tokens", str(p), "--gen-tokens", str(g), "--repetitions", str(args.repetitions)]
    same_shape = ["--ctx-size", str(context_for(p, g))]
    for m in models:
        n_layers, kv_dim = gguf_shape(m["path"])
        for t in threads:
            log(f"== {m['variant']}, {t} thread(s)")
            syn, lcp, load, pair_bw = [], [], [], []
            for i in range(args.pairs):
                # The host's bandwidth drifts (other tenants): measured next to every pair.
                pair_bw.append(read_bandwidth(args.synapse, all_cores, 3, args.buffer_mib)["read_gb_s"])
                load.append(load_average())
                syn.append(run_json([args.synapse, "bench", "--model", m["path"], "--threads", str(t), *common,
                                     *same_shape, "--batch-size", str(BATCH), "--json"], "synapse bench"))
                load.append(load_average())
                lcp.append(run_json([sys.executable, os.path.join(HERE, "llamacpp_bench.py"), "--model", m["path"],
                                     "--threads", str(t), *common, *same_shape, "--n-batch", str(BATCH), "--json"],
                                    "llamacpp_bench"))
                for key in ("batch", "context"):
                    if syn[-1][key] != lcp[-1][key]:
                        raise SystemExit(f"{key} differs: synapse {syn[-1][key]}, llama.cpp {lcp[-1][key]}")
                log(f"   pair {i + 1}/{args.pairs}: synapse pp {syn[-1]['prefill_tok_s']:.1f} "
                    f"tg {syn[-1]['decode_tok_s']:.1f} | llama.cpp pp {lcp[-1]['prefill_tok_s']:.1f} "
                    f"tg {lcp[-1]['decode_tok_s']:.1f} | bandwidth {pair_bw[-1]:.1f} GB/s")
            s, l = pooled(syn), pooled(lcp)
            weights = syn[0]["weight_bytes_per_token"]
            kv_pos = {"synapse": syn[0]["kv_bytes_per_position"], "llamacpp": n_layers * kv_dim * 2 * 2}  # f16 K+V
            # Average positions attended per decode step: after 1 token, and after the P-token prompt.
            avg_pos = {"decode": 1 + (g + 1) / 2, "decode_after_prompt": p + (g + 1) / 2}
            bw = statistics.median(pair_bw) * 1e9
            fraction = {
                eng: {k: (weights + kv_pos[eng] * avg_pos[k]) * res[f"{k}_tok_s"] / bw for k in avg_pos}
                for eng, res in (("synapse", s), ("llamacpp", l))
            }
            ratio = {k: s[f"{k}_tok_s"] / l[f"{k}_tok_s"] for k in ("prefill", "decode", "decode_after_prompt")}
            report["rows"].append({
                "model": m["model"],
                "variant": m["quant"],
                "random_weights": m["random_weights"],
                "file": os.path.basename(m["path"]),
                "file_bytes": m["file_bytes"],
                "threads": t,
                "synapse": s,
                "llamacpp": l,
                "ratio": ratio,
                "weight_bytes_per_token": weights,
                "kv_bytes_per_position": kv_pos,
                "decode_bandwidth_fraction": fraction,
                # Read bandwidth on all cores (GB/s, best of 3) before each pair; the fractions use
                # the median.
                "pair_bandwidth_gb_s": pair_bw,
                "bandwidth_gb_s": statistics.median(pair_bw),
                "cpu": report["machine"]["cpu"],
                "cpu_flags": report["machine"]["flags"],
                # Before each invocation, in run order (Synapse, llama.cpp, Synapse, ...).
                "load_avg_1m_before": load,
                "measured": {"date": report["date"], "synapse_commit": report["versions"].get("synapse_commit"),
                             "settings": report["settings"], "note": args.note},
            })
            log(f"   synapse/llama.cpp: pp {ratio['prefill']:.2f}x, tg {ratio['decode']:.2f}x, "
                f"tg@pp {ratio['decode_after_prompt']:.2f}x")

    if args.append and os.path.exists(out_path):
        with open(out_path) as f:
            old = json.load(f)
        # A row is a (model file, threads, CPU): rows of other CPUs stay beside the new ones.
        key = lambda r: (r["file"], r["threads"], r["cpu"], tuple(r["cpu_flags"]))
        measured = {key(r) for r in report["rows"]}
        kept = [r for r in old.get("rows", []) if key(r) not in measured]
        report["rows"] = kept + report["rows"]
        for t, bw in old.get("bandwidth", {}).items():
            report["bandwidth"].setdefault(t, bw)
    # The browser rows (bench/vs_wllama.mjs) are another benchmark: a native run keeps them.
    if os.path.exists(out_path):
        with open(out_path) as f:
            browser_rows = json.load(f).get("browser_rows")
        if browser_rows:
            report["browser_rows"] = browser_rows
    dump_json(report, out_path)
    log(f"wrote {os.path.relpath(out_path, ROOT)}")


if __name__ == "__main__":
    main()
