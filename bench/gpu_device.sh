#!/usr/bin/env bash
# Issue 14's GPU benchmark: `synapse bench --device gpu` against llama.cpp's llama-bench built
# with -DGGML_VULKAN=ON, alternately on the same GPU, the same models and the same prompt and
# generation lengths. Made for a lent device machine (the `device` tool's NVIDIA H100), which
# reaches no registry: `pack` gathers here what it needs, `run` does the rest there in one call.
#
#   bench/gpu_device.sh pack       here: fills .device/ (kept out of git; 27 MB, which with the
#                                  tree's 18 MB is under the 64 MiB a call carries): the synapse CLI (stripped),
#                                  llama.cpp's source (llama-cpp-python 0.3.36's, built for
#                                  the reference checks), Vulkan headers newer than Debian 12's
#                                  (llama.cpp needs 1.4; Debian 13's packages), glslc and the
#                                  Vulkan loader (Debian 12's), and SmolLM2's tokenizer
#   bench/gpu_device.sh run OUT    there, from the repository root (device tool: command
#                                  `bench/gpu_device.sh run $OUT`, carry [".device"]): builds
#                                  llama.cpp, writes the random-weight models, runs both
#                                  engines, and leaves OUT/gpu_rows.json and the logs
#   python3 bench/gpu_rows.py OUT/gpu_rows.json
#                                  here: adds the rows to status/benchmark_matrix.json
#
# The models (tools/make_bench_models.py, random weights: speed only, their output is noise):
# SmolLM2-135M's shapes as Q4_1 (the default model's own file, 98 MB, cannot travel) and
# LLaMA-3.2-1B's shapes as Q4_0, Q8_0 and F16. BENCH_MODELS overrides the list, e.g. to try the
# script on lavapipe here with `BENCH_MODELS=random-smollm2-135m.Q4_1 bench/gpu_device.sh run
# /tmp/gpu-out`.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=.device
llama_src=${LLAMA_CPP_SRC:-$HOME/.cache/synapse-tools/llama-server-0.3.36/llama_cpp_python-0.3.36/vendor/llama.cpp}
models=${BENCH_MODELS:-random-smollm2-135m.Q4_1,random-1b.Q4_0,random-1b.Q8_0,random-1b.F16}
p=${BENCH_PROMPT:-512}
g=${BENCH_GEN:-128}
pairs=${BENCH_PAIRS:-2}

pack() {
  [ -d "$llama_src" ] || { echo "$llama_src: llama.cpp's source is missing (bench/vs_llamacpp.sh fetches it)"; exit 1; }
  grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >>.git/info/exclude
  rm -rf "$dev" && mkdir -p "$dev/debs"
  ./scripts/cargo-test.sh --no-run --quiet # builds target/release/synapse with the tests' units
  strip -o "$dev/synapse" target/release/synapse
  tar -C "$llama_src" -cJf "$dev/llama.cpp.tar.xz" --exclude=./models --exclude=./docs \
    --exclude=./media --exclude=./examples --exclude=./.git .
  (cd "$dev/debs" && apt-get download -qq glslc libshaderc1 libvulkan1)
  local scratch
  scratch=$(mktemp -d)
  for f in pool/main/v/vulkan-loader/libvulkan-dev_1.4.309.0-1_amd64.deb \
    pool/main/s/spirv-headers/spirv-headers_1.6.1+1.4.309.0-1_all.deb; do
    curl -sSf -o "$scratch/$(basename "$f")" "http://deb.debian.org/debian/$f"
    dpkg -x "$scratch/$(basename "$f")" "$scratch/root"
  done
  tar -C "$scratch/root/usr" -cJf "$dev/vk.tar.xz" include share/cmake
  rm -rf "$scratch"
  # The random models copy SmolLM2's tokenizer; its keys alone, not the 98 MB of weights.
  local model
  model=$(target/release/synapse run --prompt hi -n 1 --json >/dev/null && python3 -c \
    'import os; print(os.environ.get("SYNAPSE_HOME") or os.path.expanduser("~/.cache/synapse"))')/SmolLM2-135M-Instruct.Q4_1.gguf
  PYTHONPATH="$llama_src/gguf-py" python3 - "$model" "$dev/smollm2-tokenizer.gguf" <<'EOF'
import sys, gguf
reader = gguf.GGUFReader(sys.argv[1])
writer = gguf.GGUFWriter(sys.argv[2], "llama")
for key, field in reader.fields.items():
    if key.startswith("tokenizer."):
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub)
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.close()
EOF
  du -sh "$dev"
}

run() {
  local out=$1
  mkdir -p "$out"
  # Debian 12's loader and glslc, where the machine has none (its libc is as new or newer).
  for deb in "$dev"/debs/*.deb; do dpkg -x "$deb" /; done
  ldconfig
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -e "$icd" ] && export VK_DRIVER_FILES=$icd
  { nvidia-smi -L 2>/dev/null || true; "$dev/synapse" inspect --devices; } | tee "$out/devices.txt"

  local build=/tmp/llama.cpp vk=/tmp/vulkan-1.4
  mkdir -p "$build/src" "$vk"
  tar -C "$build/src" -xJf "$dev/llama.cpp.tar.xz"
  tar -C "$vk" -xJf "$dev/vk.tar.xz"
  cmake -S "$build/src" -B "$build/out" -G Ninja -DGGML_VULKAN=ON -DGGML_NATIVE=OFF \
    -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DVulkan_INCLUDE_DIR="$vk/include" -DCMAKE_PREFIX_PATH="$vk" \
    -DVulkan_LIBRARY="$(ldconfig -p | awk '/libvulkan.so.1 .*x86-64/ {print $NF; exit}')" \
    >"$out/llama-build.log" 2>&1
  cmake --build "$build/out" --target llama-bench llama-quantize >>"$out/llama-build.log" 2>&1
  local bin=$build/out/bin

  local made=/tmp/bench-models
  PYTHONPATH="$build/src/gguf-py" python3 tools/make_bench_models.py --out "$made" \
    --source "$dev/smollm2-tokenizer.gguf" --quantizer "$bin/llama-quantize" --only "$models" \
    --json >"$out/models.json"

  # Alternate the engines, `pairs` times, 3 timed runs each after their own warm-up.
  local variant
  for variant in ${models//,/ }; do
    local model=$made/$variant.gguf i
    for ((i = 1; i <= pairs; i++)); do
      "$dev/synapse" bench --device gpu --model "$model" --prompt-tokens "$p" --gen-tokens "$g" \
        --repetitions 3 --json >"$out/synapse-$variant-$i.json"
      "$bin/llama-bench" -m "$model" -ngl 99 -p "$p" -n "$g" -r 3 -o json \
        >"$out/llamacpp-$variant-$i.json"
    done
  done
  python3 - "$out" "$models" <<'EOF'
import glob, json, os, statistics, sys
out, models = sys.argv[1], sys.argv[2].split(",")
devices = open(os.path.join(out, "devices.txt")).read().strip().splitlines()
rows = []
for variant in models:
    syn = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/synapse-{variant}-*.json"))]
    ll = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/llamacpp-{variant}-*.json"))]
    # llama-bench writes one record per test: n_prompt > 0 is prefill, n_gen > 0 decode.
    ll_pp = [t for r in ll for t in r if t["n_prompt"] > 0 and t["n_gen"] == 0]
    ll_tg = [t for r in ll for t in r if t["n_gen"] > 0 and t["n_prompt"] == 0]
    row = {
        "model": variant,
        "random_weights": variant.startswith("random-"),
        "synapse": {
            "kernel": syn[0]["kernel"],
            "prefill_tok_s": statistics.median(x for s in syn for x in s["prefill_runs"]),
            "decode_tok_s": statistics.median(x for s in syn for x in s["decode_runs"]),
        },
        "llamacpp": {
            "backends": ll_pp[0].get("backends"),
            "gpu": ll_pp[0].get("gpu_info"),
            "prefill_tok_s": statistics.median(t["avg_ts"] for t in ll_pp),
            "decode_tok_s": statistics.median(t["avg_ts"] for t in ll_tg),
        },
    }
    for k in ("prefill_tok_s", "decode_tok_s"):
        row[k.replace("tok_s", "ratio")] = row["synapse"][k] / row["llamacpp"][k]
    rows.append(row)
report = {"devices": devices, "prompt_tokens": int(os.environ.get("BENCH_PROMPT", 512)),
          "gen_tokens": int(os.environ.get("BENCH_GEN", 128)), "rows": rows}
json.dump(report, open(os.path.join(out, "gpu_rows.json"), "w"), indent=1)
print(json.dumps(report, indent=1))
EOF
}

case "${1:-}" in
  pack) pack ;;
  run) run "${2:?run OUT}" ;;
  *) sed -n '2,25p' "$0"; exit 2 ;;
esac
