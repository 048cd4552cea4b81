#!/usr/bin/env bash
# Builds the browser module into web/pkg/: the engine's wasm (crates/synapse-wasm, SIMD128)
# through wasm-bindgen and wasm-opt, beside the JS of web/src (the module synapse.js, its
# worker and its types). Installs what it needs: the wasm32 target and the standard
# library's source (rustup), wasm-bindgen-cli (cargo, pinned to Cargo.lock's version) and
# wasm-opt and esbuild (npm binaryen and esbuild, pinned in web/tools). The JavaScript is
# minified, and each build's wasm-bindgen glue bundled with its snippets into one file.
#
#   scripts/build-web.sh
set -euo pipefail
cd "$(dirname "$0")/.."

installed=$(rustup component list --installed)
grep -q '^rust-std-wasm32-unknown-unknown' <<<"$installed" || rustup target add wasm32-unknown-unknown
grep -q '^rust-src' <<<"$installed" || rustup component add rust-src
./scripts/test-wasm.sh --install
version=$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p;}' Cargo.lock)
bindgen="$HOME/.cache/synapse-tools/wasm-bindgen-$version/bin/wasm-bindgen"
tools=$(./scripts/install-web-tools.sh | tail -n 1)

out=web/pkg
rm -rf "$out"
mkdir -p "$out"

# Two builds of the engine: single-threaded, for any page, and threaded (atomics, shared
# memory), for cross-origin isolated pages; synapse-worker.js picks one. The standard
# library is rebuilt with each (-Z build-std, allowed on the stable compiler by
# RUSTC_BOOTSTRAP, from its own rust-src): the threaded build needs std compiled with
# atomics, and both need panics that compile to a trap without the formatting machinery
# to stay within the size budget (scripts/wasm-size.sh). `--cfg synapse_wasm_size` has
# synapse-core's load-time code compiled for size (see its lib.rs).
build() { # name, extra target features, extra link arguments[, cargo features]
  local name=$1 features=$2 link=$3 cargo_features=${4:-}
  echo "== $name: cargo build (wasm32, SIMD128$features)"
  RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128$features \
    -Z unstable-options -C panic=immediate-abort --cfg synapse_wasm_size $link" \
    cargo build --quiet --profile wasm --target wasm32-unknown-unknown -p synapse-wasm \
    ${cargo_features:+--features "$cargo_features"} --target-dir "target/web-$name" -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size
  "$bindgen" --target web --no-typescript --out-dir "$out" --out-name "$name" \
    "target/web-$name/wasm32-unknown-unknown/wasm/synapse_wasm.wasm"
  echo "== $name: wasm-opt -Oz"
  "$tools/.bin/wasm-opt" -Oz --enable-simd --enable-bulk-memory --enable-sign-ext \
    --enable-nontrapping-float-to-int --enable-mutable-globals --enable-reference-types \
    --enable-multivalue --enable-threads -o "$out/${name}_bg.wasm" "$out/${name}_bg.wasm"
  "$tools/.bin/esbuild" --log-level=warning --bundle --format=esm --minify --allow-overwrite \
    --outfile="$out/$name.js" "$out/$name.js"
  rm -rf "$out/snippets"
}
build synapse_wasm "" ""
# Shared memory is imported (every Worker's instance gets the same) and may grow to
# wasm32's 4 GiB; the thread-local storage symbols are wasm-bindgen's to set up.
build synapse_wasm_threads ",+atomics,+bulk-memory,+mutable-globals" "-C link-arg=--shared-memory \
  -C link-arg=--import-memory -C link-arg=--max-memory=4294967296 \
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size \
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base"
# WebGPU (`device: 'gpu'`): the engine on the GPU backend, single-threaded (the GPU does
# the work), for browsers that have WebGPU. It is outside the size budget: a page loads it
# only when it asks for the GPU.
build synapse_wasm_gpu "" "" gpu
# The chat-template renderer, a fourth wasm that a page fetches on its first chat().
echo "== synapse_chat: cargo build"
cargo build --quiet --profile wasm --target wasm32-unknown-unknown -p synapse-wasm-chat \
  --target-dir target/web-chat
"$bindgen" --target web --no-typescript --out-dir "$out" --out-name synapse_chat \
  target/web-chat/wasm32-unknown-unknown/wasm/synapse_wasm_chat.wasm
"$tools/.bin/wasm-opt" -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
  --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
  -o "$out/synapse_chat_bg.wasm" "$out/synapse_chat_bg.wasm"
"$tools/.bin/esbuild" --log-level=warning --minify --allow-overwrite \
  --outfile="$out/synapse_chat.js" "$out/synapse_chat.js"
"$tools/.bin/esbuild" --log-level=warning --minify --outdir="$out" web/src/*.js
cp web/src/*.d.ts "$out/"
ls -l "$out"
./scripts/wasm-size.sh || echo "build-web: over the size budget (see above)" >&2
