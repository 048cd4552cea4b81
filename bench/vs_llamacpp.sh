#!/usr/bin/env bash
# Synapse vs llama.cpp on the benchmark model variants, at 1 and 2 threads.
#
#   bench/vs_llamacpp.sh [--quick] [--variants smollm2-135m.Q4_1,...] [--threads 1,2] [--pairs 3]
#                        [--repetitions 5] [--note TEXT] [--no-readme]
#
# Same options by environment: BENCH_QUICK=1, BENCH_VARIANTS, BENCH_THREADS, BENCH_PAIRS, BENCH_REPS,
# BENCH_NOTE. Steps: install llama-cpp-python 0.3.36 (built for this CPU) if missing, make the model
# variants (tools/make_bench_models.py), build synapse --release, then bench/run_matrix.py measures
# memory read bandwidth and runs `synapse bench --json` and bench/llamacpp_bench.py alternately,
# writing status/benchmark_matrix.json (quick mode: target/bench/benchmark_matrix.quick.json);
# after a full run scripts/bench_table.py renders the README's Benchmarks table from it.
# Run it on an otherwise idle machine: the numbers are only as quiet as the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_PYTHON_VERSION=0.3.36

readme=1
quick=${BENCH_QUICK:-0}
args=()
for a in "$@"; do
  case "$a" in
    --no-readme) readme=0 ;;
    --quick) quick=1; args+=("$a") ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$a") ;;
  esac
done

installed=$(python3 -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))' 2>/dev/null || true)
if [ "$installed" != "$LLAMA_CPP_PYTHON_VERSION" ]; then
  echo "== installing llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION (native build; takes a while)" >&2
  CMAKE_ARGS="-DGGML_NATIVE=ON" python3 -m pip install --no-cache-dir \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" >&2
fi
python3 -c 'import gguf, numpy' 2>/dev/null || python3 -m pip install gguf numpy >&2

echo "== building synapse (release)" >&2
cargo build --release --quiet -p synapse-cli

python3 bench/run_matrix.py "${args[@]}"

if [ "$quick" != 1 ] && [ "$readme" = 1 ]; then
  python3 scripts/bench_table.py
fi
