#!/usr/bin/env bash
# The whole test suite: the wasm32 build of the core crates, the SIMD128 kernel tests and
# the chat-template and generation tests on wasm32 under Node, every Rust test, the C ABI
# from C and C++ under valgrind, the Python package installed with pip, the server through
# the openai client, the aarch64 kernels under qemu-user, synapse-core's unsafe code under
# Miri, and the browser module and demo page in headless Chromium.
# Tests that need the default model fetch it into ~/.cache/synapse on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  rustup target add wasm32-unknown-unknown
fi
# Each step's time is printed at the end, so a CI log shows where the suite's time goes.
times=()
step() { # title, command ...
  local title=$1 start=$SECONDS
  shift
  echo "== $title"
  "$@"
  times+=("$(printf '%6d s  %s' $((SECONDS - start)) "$title")")
}

step "wasm32 build of synapse-core and synapse-inference" \
  cargo build --quiet --target wasm32-unknown-unknown -p synapse-core -p synapse-inference \
  --no-default-features --features synapse-inference/chat-template
step "wasm32 tests under Node" ./scripts/test-wasm.sh
step "cargo test" ./scripts/cargo-test.sh
step "the C ABI from C and C++ (shared and static library, valgrind)" ./scripts/test-capi.sh
step "the Python package (pip install, pytest)" ./scripts/test-python.sh
step "synapse serve through the openai client (and a bounded load test)" ./scripts/test-server.sh
step "aarch64 NEON kernels under qemu" ./scripts/test-aarch64.sh
step "the GGUF reader, scalar kernels, weight layouts and thread pool under Miri" \
  ./scripts/test-miri.sh
step "every fuzz target, briefly, on its corpus" ./scripts/fuzz.sh
step "browser tests (wasm in headless Chromium)" ./scripts/test-web.sh
step "one answer on every path: CLI kernels, library, C ABI, Python, server, browser" \
  ./scripts/test-cross-path.sh

echo "== time per step"
printf '%s\n' "${times[@]}"
printf '%6d s  all\n' "$SECONDS"
