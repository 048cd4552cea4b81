#!/usr/bin/env bash
# Builds the browser module into web/pkg/: the engine's wasm (crates/synapse-wasm, SIMD128)
# through wasm-bindgen and wasm-opt, beside the JS of web/src (the module synapse.js, its
# worker and its types). Installs what it needs: the wasm32 target and the standard
# library's source (rustup), wasm-bindgen-cli (cargo, pinned to Cargo.lock's version) and
# wasm-opt (npm binaryen, pinned in web/tools).
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
tools=${SYNAPSE_WEB_TOOLS:-$(./scripts/install-web-tools.sh | tail -n 1)}

out=web/pkg
rm -rf "$out"
mkdir -p "$out"

# The standard library is rebuilt with the module (-Z build-std, allowed on the stable
# compiler by RUSTC_BOOTSTRAP, from its own rust-src) so that panics compile to a trap
# without the formatting machinery: the size budget (scripts/wasm-size.sh) needs it.
echo "== cargo build (wasm32, SIMD128)"
RUSTC_BOOTSTRAP=1 \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128 -Z unstable-options -C panic=immediate-abort" \
  cargo build --quiet --profile wasm --target wasm32-unknown-unknown -p synapse-wasm \
  --target-dir target/web -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size
"$bindgen" --target web --no-typescript --out-dir "$out" \
  target/web/wasm32-unknown-unknown/wasm/synapse_wasm.wasm
echo "== wasm-opt -Oz"
"$tools/.bin/wasm-opt" -Oz --enable-simd --enable-bulk-memory --enable-sign-ext \
  --enable-nontrapping-float-to-int --enable-mutable-globals --enable-reference-types \
  --enable-multivalue -o "$out/synapse_wasm_bg.wasm" "$out/synapse_wasm_bg.wasm"
cp web/src/*.js web/src/*.d.ts "$out/"
ls -l "$out"
