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
echo "== wasm32 build of synapse-core and synapse-inference"
cargo build --quiet --target wasm32-unknown-unknown -p synapse-core -p synapse-inference \
  --no-default-features --features synapse-inference/chat-template

./scripts/test-wasm.sh

echo "== cargo test"
cargo test --workspace

echo "== the C ABI from C and C++ (shared and static library, valgrind)"
./scripts/test-capi.sh

echo "== the Python package (pip install, pytest)"
./scripts/test-python.sh

echo "== synapse serve through the openai client (and a bounded load test)"
./scripts/test-server.sh

echo "== aarch64 NEON kernels under qemu"
./scripts/test-aarch64.sh

echo "== the GGUF reader, scalar kernels, weight layouts and thread pool under Miri"
./scripts/test-miri.sh

echo "== every fuzz target, briefly, on its corpus"
./scripts/fuzz.sh

echo "== browser tests (wasm in headless Chromium)"
./scripts/test-web.sh

echo "== one answer on every path: CLI kernels, library, C ABI, Python, server, browser"
./scripts/test-cross-path.sh
