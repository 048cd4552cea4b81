#!/usr/bin/env bash
# Every Rust test of the workspace, in the release profile. The door scripts run this with
# --no-run to build the CLI and libsynapse they test: the same command builds the same
# units, so the suite compiles the workspace once, not once for the tests and again for
# the doors. The Python module and the two browser modules have no Rust tests: they are
# tested through their doors (pip and pytest, Node and Chromium), so their native test
# builds (pyo3, wasm-bindgen) are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release --workspace \
  --exclude synapse-py --exclude synapse-wasm --exclude synapse-wasm-chat "$@"
