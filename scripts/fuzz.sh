#!/usr/bin/env bash
# libFuzzer over every parser that a stranger's file or request reaches (fuzz/fuzz_targets:
# GGUF model loading, safetensors and sharded indexes, tokenizer.json, SentencePiece
# models, tokenization, chat templates, the sampler, server request bodies, the C ABI's
# inputs). Each target starts from its committed seeds in fuzz/corpus/<target>; what it
# finds new goes to target/fuzz-corpus/<target>, and a crash, a hang (over 10 s) or an
# allocation over 2 GB stops it with the input saved under fuzz/artifacts/.
#
#   scripts/fuzz.sh                      every target for 10 s (what CI runs)
#   scripts/fuzz.sh TARGET [ARGS ...]    one target with libFuzzer arguments, such as
#                                        -runs=10000000 or -max_total_time=3600
set -euo pipefail
cd "$(dirname "$0")/.."

# libfuzzer-sys compiles libFuzzer itself, which takes a C++ compiler.
command -v g++ >/dev/null || { apt-get update -qq && apt-get install -y -qq g++; }
# The nightly that scripts/test-miri.sh pins (sanitizers need one), and cargo-fuzz pinned.
toolchain=nightly-2026-05-20
rustup run "$toolchain" rustc --version >/dev/null 2>&1 ||
  rustup toolchain install "$toolchain" --profile minimal --component rust-src
fuzz_root="$HOME/.cache/synapse-tools/cargo-fuzz-0.13.1"
[ -x "$fuzz_root/bin/cargo-fuzz" ] ||
  cargo install --quiet --locked cargo-fuzz --version 0.13.1 --root "$fuzz_root"
export PATH="$fuzz_root/bin:$PATH"
# The tokenize target reads llama.cpp's test vocabularies from ../shared; the C ABI
# target's model is a seed of gguf_model.
# The build (the product with sanitizers, and its dependencies) is kept under ~/.cache,
# so that CI rebuilds only what changed.
cd fuzz
build=(--target-dir "$HOME/.cache/synapse-tools/fuzz-target")
cargo +"$toolchain" fuzz build -O "${build[@]}"

run() { # target, libFuzzer arguments
  local target=$1 status=0
  shift
  mkdir -p "../target/fuzz-corpus/$target"
  local log="../target/fuzz-corpus/$target.log"
  echo "== fuzz $target $*"
  cargo +"$toolchain" fuzz run -O "${build[@]}" "$target" "../target/fuzz-corpus/$target" "corpus/$target" -- \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@" >"$log" 2>&1 || status=$?
  # libFuzzer's summary and, on a finding, its report (the whole log is in $log).
  grep -E '^(INFO: seed|Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|Test unit written|.*panicked at)' "$log" || true
  echo "corpus: $(ls "corpus/$target" "../target/fuzz-corpus/$target" | grep -vc -e '^$' -e ':$') inputs; exit status $status"
  return "$status"
}

if [ $# -gt 0 ]; then
  run "$@"
  exit
fi
for target in $(cargo +"$toolchain" fuzz list); do
  run "$target" -max_total_time=10
done
