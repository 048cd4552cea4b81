#!/usr/bin/env bash
# `synapse serve` as OpenAI clients use it: builds the CLI, installs the official openai
# client (pinned) into target/py-venv, and runs crates/synapse-server/tests, which start
# the server on free ports with the default model.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/py-venv
[[ -x $venv/bin/python ]] || python3 -m venv --system-site-packages "$venv"
./scripts/cargo-test.sh --no-run --quiet
"$venv/bin/python" -m pip install --quiet openai==3.51.0 httpx==0.29.0 jsonschema==4.26.0 pytest
echo "== pytest crates/synapse-server/tests"
SYNAPSE_CLI="$PWD/target/release/synapse" "$venv/bin/python" -m pytest -q -rs -s crates/synapse-server/tests
