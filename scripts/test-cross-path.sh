#!/usr/bin/env bash
# One answer on every path (tests/cross_path/check.py): the default model's greedy tokens
# for the same prompts from the CLI on every kernel path of this CPU, the Rust library, the
# C ABI, the Python package, the server and the browser module, against the CLI's, up to
# near-ties. Run after the doors' own tests (scripts/test-all.sh), which build them.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/cargo-test.sh --no-run --quiet
python3 tests/cross_path/check.py
