#!/usr/bin/env bash
# The Python package as its users get it: installs ./crates/synapse-py with pip (maturin
# builds the abi3 wheel) into a virtual environment under target/, then runs its pytest
# tests against the default model and the CLI. The environment sees the system's
# packages, so that an installed llama-cpp-python is compared with live; without it that
# comparison is skipped (the shapes it returns are also recorded in tests/fixtures/python).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/py-venv
[[ -x $venv/bin/python ]] || python3 -m venv --system-site-packages "$venv"
./scripts/cargo-test.sh --no-run --quiet
echo "== pip install ./crates/synapse-py"
"$venv/bin/python" -m pip install --quiet "./crates/synapse-py[test]"
echo "== pytest crates/synapse-py/tests"
SYNAPSE_CLI="$PWD/target/release/synapse" "$venv/bin/python" -m pytest -q -rs crates/synapse-py/tests
