#!/usr/bin/env bash
# The browser tests (tests/web/browser.test.mjs) in headless Chromium: the wasm builds'
# greedy output against the native CLI (single-threaded and with 2 wasm threads), clear
# errors for bad model files, and the demo page (web/index.html). Installs Chromium and the
# pinned npm tools (scripts/install-web-tools.sh), builds web/pkg (scripts/build-web.sh) and
# the release CLI, and fetches the default model if missing.
#
#   scripts/test-web.sh             build everything, then run the tests
#   scripts/test-web.sh --no-build  reuse web/pkg and target/release/synapse as they are
#
# Without node, or when the tools cannot be installed, the tests are skipped with a message,
# except under CI=true, where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  if [ "${CI:-}" = "true" ]; then
    echo "test-web: FAILED: $1, the browser tests cannot run" >&2
    exit 1
  fi
  echo "test-web: SKIPPED the browser tests: $1" >&2
  exit 0
}

command -v node >/dev/null || skip "node not found"
tools=$(./scripts/install-web-tools.sh | tail -n 1) || skip "scripts/install-web-tools.sh failed"
[ -x /usr/bin/chromium ] && [ -d "$tools/playwright-core" ] || skip "chromium or playwright-core missing"

if [ "${1:-}" != "--no-build" ] || [ ! -f web/pkg/synapse.js ]; then
  ./scripts/build-web.sh
fi
if [ "${1:-}" != "--no-build" ] || [ ! -x target/release/synapse ]; then
  echo "== the CLI (scripts/cargo-test.sh --no-run)"
  ./scripts/cargo-test.sh --no-run --quiet
fi
# The default model, fetched by the CLI on first use.
[ -f "${SYNAPSE_HOME:-$HOME/.cache/synapse}/SmolLM2-135M-Instruct.Q4_1.gguf" ] ||
  target/release/synapse run --prompt hi -n 1 >/dev/null

echo "== browser tests in headless Chromium ($(/usr/bin/chromium --version 2>/dev/null || echo chromium))"
SYNAPSE_WEB_TOOLS="$tools" node --test tests/web/browser.test.mjs
