#!/usr/bin/env python3
"""`synapse serve` against llama.cpp's `llama-server`, side by side, on the same GGUF files,
threads and `--parallel`, with 1, 4 and 8 concurrent streaming clients.

llama-server is built from the llama-cpp-python==0.3.36 source distribution
(`vendor/llama.cpp`, cmake + ninja from pip) into ~/.cache/synapse-tools/llama-server-0.3.36,
with the CPU's extensions named one by one (GGML_NATIVE=OFF: the native build crashes in
its AMX path on the Intel VMs, see ../shared/NOTES.md). Each client sends its own
128-token prompt and streams 128 tokens (EOS ignored); the servers alternate, each run on
a fresh process. Per run: aggregate generated tok/s (all tokens over the wall time of the
whole burst), median time to first token and p99 time between tokens. Results go to
`server_rows` in status/benchmark_matrix.json with --append (replacing this CPU's rows).

  python3 bench/vs_llama_server.py [--models smollm2-135m.Q4_0.gguf,smollm2-135m.Q8_0.gguf]
      [--clients 1,4,8] [--rounds 2] [--threads 2] [--append]
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_info, synthetic_tokens  # noqa: E402

import openai  # noqa: E402

VERSION = "0.3.36"
TOOLS = os.path.expanduser(f"~/.cache/synapse-tools/llama-server-{VERSION}")
MODELS = os.path.expanduser("~/.cache/synapse/bench")
PROMPT_TOKENS, GEN_TOKENS = 128, 128
MATRIX = "status/benchmark_matrix.json"
FLAGS = {"avx": "AVX", "avx2": "AVX2", "fma": "FMA", "f16c": "F16C", "bmi2": "BMI2",
         "avx512f": "AVX512", "avx512vbmi": "AVX512_VBMI", "avx512_vnni": "AVX512_VNNI",
         "avx512_bf16": "AVX512_BF16", "avx_vnni": "AVX_VNNI"}


def build_llama_server():
    binary = os.path.join(TOOLS, "build/bin/llama-server")
    if os.path.exists(binary):
        return binary
    os.makedirs(TOOLS, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    # pip reads the source distribution's metadata with its build backend, installed here.
    subprocess.run(pip + ["install", "-q", "cmake", "ninja", "scikit-build-core"], check=True)
    subprocess.run(pip + ["download", "-q", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
                          f"llama-cpp-python=={VERSION}", "-d", TOOLS], check=True)
    sdist = next(f for f in os.listdir(TOOLS) if f.endswith(".tar.gz"))
    with tarfile.open(os.path.join(TOOLS, sdist)) as tar:
        tar.extractall(TOOLS, filter="data")
    source = os.path.join(TOOLS, sdist[: -len(".tar.gz")], "vendor/llama.cpp")
    flags = set(cpu_info()["flags"])
    defines = [f"-DGGML_{name}=ON" for flag, name in FLAGS.items() if flag in flags]
    bin_dir = os.path.dirname(sys.executable)
    cmake = shutil.which("cmake", path=bin_dir) or "cmake"
    subprocess.run([cmake, "-S", source, "-B", os.path.join(TOOLS, "build"), "-G", "Ninja",
                    f"-DCMAKE_MAKE_PROGRAM={shutil.which('ninja', path=bin_dir) or 'ninja'}",
                    "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", *defines], check=True)
    subprocess.run([cmake, "--build", os.path.join(TOOLS, "build"), "--target", "llama-server", "-j", "2"],
                   check=True)
    return binary


def start(engine, model, clients, threads, llama_server):
    if engine == "synapse":
        cmd = ["target/release/synapse", "serve", "-m", model, "--port", "0", "--parallel", str(clients),
               "-t", str(threads), "--ctx-size", "1024"]
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        url = re.search(r"(http://[\d.]+:\d+)", line).group(1)
    else:
        port = 18000 + clients
        # One shared context, split between the slots: 1024 tokens each, as Synapse's.
        cmd = [llama_server, "-m", model, "--port", str(port), "--parallel", str(clients), "-t", str(threads),
               "-c", str(1024 * clients), "--no-webui"]
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if openai.OpenAI(base_url=url + "/v1", api_key="x").models.list():
                    break
            except Exception:
                time.sleep(0.1)
    return proc, url


def burst(url, clients, vocab):
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=600)
    model = client.models.list().data[0].id

    def one(i):
        prompt = synthetic_tokens(PROMPT_TOKENS, vocab, seed=1000 + i)
        start = time.perf_counter()
        first, last, gaps, tokens = None, None, [], 0
        stream = client.completions.create(model=model, prompt=prompt, max_tokens=GEN_TOKENS, temperature=0.8,
                                           seed=i, stream=True, extra_body={"ignore_eos": True})
        for chunk in stream:
            now = time.perf_counter()
            if chunk.choices and chunk.choices[0].text:
                tokens += 1
                if first is None:
                    first = now - start
                else:
                    gaps.append(now - last)
                last = now
        return first, gaps, tokens

    one(10_000)  # warm-up
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(clients)))
    wall = time.perf_counter() - start
    gaps = sorted(g for r in results for g in r[1])
    return {
        "tok_s": sum(r[2] for r in results) / wall,
        "ttft_median_ms": statistics.median(r[0] for r in results) * 1000,
        "p99_gap_ms": gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))] * 1000 if gaps else 0.0,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="smollm2-135m.Q4_0.gguf,smollm2-135m.Q8_0.gguf")
    ap.add_argument("--clients", default="1,4,8")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()
    llama_server = build_llama_server()
    rows = []
    for name in args.models.split(","):
        model = os.path.join(MODELS, name)
        for clients in map(int, args.clients.split(",")):
            runs = {"synapse": [], "llama-server": []}
            for _ in range(args.rounds):
                for engine in runs:
                    proc, url = start(engine, model, clients, args.threads, llama_server)
                    try:
                        runs[engine].append(burst(url, clients, 49152))
                    finally:
                        proc.terminate()
                        proc.wait()
            med = {e: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for e, rs in runs.items()}
            row = {"model": "smollm2-135m", "variant": name.split(".")[1], "cpu": cpu_info()["model"],
                   "threads": args.threads, "clients": clients, "rounds": args.rounds,
                   "prompt_tokens": PROMPT_TOKENS, "gen_tokens": GEN_TOKENS, **med, "runs": runs,
                   "ratio_tok_s": med["synapse"]["tok_s"] / med["llama-server"]["tok_s"]}
            print(json.dumps({k: row[k] for k in ("variant", "clients", "synapse", "llama-server", "ratio_tok_s")}))
            rows.append(row)
    if args.append:
        with open(MATRIX) as f:
            matrix = json.load(f)
        # This CPU's rows replace its earlier ones; other CPUs' stay.
        cpu = cpu_info()["model"]
        matrix["server_rows"] = [r for r in matrix.get("server_rows", []) if r["cpu"] != cpu] + rows
        with open(MATRIX, "w") as f:
            json.dump(matrix, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
