#!/usr/bin/env bash
# Installs what the browser benchmarks and tests need: Debian's chromium (when /usr/bin/chromium
# is missing) and web/tools's pinned npm packages (playwright-core, @wllama/wllama).
#
# The packages go to ~/.cache/synapse-tools/web-<hash of the lockfile>/node_modules, outside the
# work tree, so CI can cache that folder and a second run is a no-op. The folder is printed on
# stdout; when this script is sourced it also exports SYNAPSE_WEB_TOOLS and NODE_PATH.
#
#   scripts/install-web-tools.sh            # install (or check), print the node_modules folder
#   source scripts/install-web-tools.sh     # same, and export SYNAPSE_WEB_TOOLS / NODE_PATH
#
# `npx playwright install` is not used: its browser downloads need more than the npm registry.

# The work runs in a subshell so that `set -e` does not leak into a shell that sources this.
_swt_dir="$(
    set -euo pipefail
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    src="$root/web/tools"
    if [ ! -x /usr/bin/chromium ]; then
        echo "install-web-tools: installing Debian's chromium" >&2
        sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2
    fi
    hash="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16)"
    dir="${SYNAPSE_TOOLS_CACHE:-$HOME/.cache/synapse-tools}/web-$hash"
    if [ ! -f "$dir/.installed" ]; then
        echo "install-web-tools: npm ci into $dir" >&2
        rm -rf "$dir"
        mkdir -p "$dir"
        cp "$src/package.json" "$src/package-lock.json" "$dir/"
        # No install scripts: neither package needs one, and playwright's would fetch browsers.
        (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund >&2)
        touch "$dir/.installed"  # written last: a broken install is redone next time
    fi
    echo "$dir/node_modules"
)" || { echo "install-web-tools: failed" >&2; return 1 2>/dev/null || exit 1; }

export SYNAPSE_WEB_TOOLS="$_swt_dir"
case ":${NODE_PATH:-}:" in *":$_swt_dir:"*) ;; *) export NODE_PATH="$_swt_dir${NODE_PATH:+:$NODE_PATH}" ;; esac
unset _swt_dir
echo "$SYNAPSE_WEB_TOOLS"
