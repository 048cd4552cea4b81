#!/usr/bin/env bash
# Sizes of the browser module that scripts/build-web.sh left in web/pkg/, as JSON: raw and
# gzipped bytes of each engine .wasm (single-threaded, threaded, WebGPU) and of the
# JavaScript a page loads with each build
# (synapse.js, synapse-worker.js and that build's wasm-bindgen glue). The optional chat
# template module (synapse_chat*, synapse-chat.js) is reported but has no budget. Exits 1
# when a budget is exceeded: 160 KiB per engine .wasm, 32 KiB of JavaScript per page.
#
#   scripts/wasm-size.sh [pkg dir]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "${1:-web/pkg}" <<'EOF'
import glob, gzip, json, os, sys

pkg = sys.argv[1]
WASM_BUDGET, JS_BUDGET = 160 * 1024, 32 * 1024

def size(*paths):
    raw = b"".join(open(p, "rb").read() for p in paths)
    return {"raw": len(raw), "gzip": len(gzip.compress(raw, 9))}

report, over = {"wasm": {}, "page_js": {}, "chat": {}}, []
for build in ("synapse_wasm", "synapse_wasm_threads", "synapse_wasm_gpu"):
    wasm = os.path.join(pkg, f"{build}_bg.wasm")
    if not os.path.exists(wasm):
        sys.exit(f"wasm-size: {wasm} is missing (run scripts/build-web.sh)")
    report["wasm"][build] = s = size(wasm)
    if s["raw"] > WASM_BUDGET:
        over.append(f"{wasm}: {s['raw']} bytes > {WASM_BUDGET}")
    js = [os.path.join(pkg, f) for f in (f"{build}.js", "synapse.js", "synapse-worker.js")]
    report["page_js"][build] = s = size(*js)
    if s["raw"] > JS_BUDGET:
        over.append(f"JavaScript of a page with {build}: {s['raw']} bytes > {JS_BUDGET}")
for path in sorted(glob.glob(os.path.join(pkg, "synapse_chat*")) + glob.glob(os.path.join(pkg, "synapse-chat.js"))):
    report["chat"][os.path.basename(path)] = size(path)
report["budget"] = {"wasm": WASM_BUDGET, "page_js": JS_BUDGET, "exceeded": over}
print(json.dumps(report, indent=2))
for line in over:
    print(f"wasm-size: over budget: {line}", file=sys.stderr)
sys.exit(1 if over else 0)
EOF
