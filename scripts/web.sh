#!/usr/bin/env bash
# Builds the browser module (scripts/build-web.sh) and serves the demo page, web/index.html,
# at http://127.0.0.1:8080/ (cross-origin isolated, so that wasm threads work).
#
#   scripts/web.sh [--no-build] [serve.mjs options: --port N, --no-isolation, --models DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
if [ "${1:-}" = "--no-build" ]; then build=0; shift; fi
[ "$build" = 0 ] && [ -f web/pkg/synapse.js ] || ./scripts/build-web.sh

# The page's "default model" button loads /models/<default file> from ~/.cache/synapse
# (or $SYNAPSE_HOME); the CLI fetches it there on first use.
model="${SYNAPSE_HOME:-$HOME/.cache/synapse}/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$model" ]; then
  echo "== fetching the default model into $model"
  cargo run --quiet --release -p synapse-cli -- run --prompt hi -n 1 >/dev/null
fi
models=()
[ -n "${SYNAPSE_HOME:-}" ] && models=(--models "$SYNAPSE_HOME")
exec node web/serve.mjs "${models[@]}" "$@"
