#!/usr/bin/env bash
# synapse-core's kernel tests (the SIMD128 kernels against the scalar oracle) and
# synapse-inference's unit tests of chat templates, generation, conversations, the
# sampler and stop strings, compiled for wasm32-unknown-unknown with SIMD128 and run
# under Node by wasm-bindgen-test-runner (the tests that read files or need threads stay
# native).
#
#   scripts/test-wasm.sh            run them (the runner from PATH or the tool cache)
#   scripts/test-wasm.sh --install  install the runner into the tool cache if missing
#
# The runner must be the wasm-bindgen version that Cargo.lock holds (pinned through
# wasm-bindgen-test in both crates' Cargo.toml). Without it the tests are
# skipped with a message, except under CI=true, where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p;}' Cargo.lock)
if [ -z "$version" ]; then
  echo "test-wasm: no wasm-bindgen in Cargo.lock" >&2
  exit 1
fi
cache="$HOME/.cache/synapse-tools/wasm-bindgen-$version"

if [ "${1:-}" = "--install" ]; then
  if [ ! -x "$cache/bin/wasm-bindgen-test-runner" ]; then
    echo "== installing wasm-bindgen-cli $version into $cache (once; a few minutes)"
    cargo install --quiet --locked wasm-bindgen-cli --version "$version" --root "$cache"
  fi
  exit 0
fi

# The runner of the right version: the tool cache first, then PATH.
runner=""
for candidate in "$cache/bin/wasm-bindgen-test-runner" "$(command -v wasm-bindgen-test-runner || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] &&
    [ "$("$candidate" --version 2>/dev/null)" = "wasm-bindgen-test-runner $version" ]; then
    runner=$candidate
    break
  fi
done
missing=""
[ -n "$runner" ] || missing="wasm-bindgen-test-runner $version (install: scripts/test-wasm.sh --install)"
command -v node >/dev/null || missing="${missing:+$missing and }node"
if [ -n "$missing" ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "test-wasm: FAILED: $missing not found, the wasm32 tests cannot run" >&2
    exit 1
  fi
  echo "test-wasm: SKIPPED the wasm32 tests under Node: $missing not found" >&2
  exit 0
fi

if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  rustup target add wasm32-unknown-unknown
fi
echo "== wasm32 unit tests under Node $(node --version) (wasm-bindgen-test-runner $version)"
# No debug info: a smaller test module, built and loaded faster. SIMD128 (the browser
# build's kernels; Node has had it since 16.4) for wasm32 only, so that native builds
# keep their flags and their cache.
export CARGO_PROFILE_TEST_DEBUG=false CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$runner"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128"
cargo test --target wasm32-unknown-unknown -p synapse-core --lib --no-default-features
cargo test --target wasm32-unknown-unknown -p synapse-inference --lib \
  --no-default-features --features hf,chat-template,unicode-tables
