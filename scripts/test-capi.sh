#!/usr/bin/env bash
# The C ABI as C and C++ programs use it: builds libsynapse (shared and static), compiles
# crates/synapse-capi's C test program and its C and C++ examples against include/synapse.h
# with each library, checks that the examples' greedy output equals the CLI's, and runs
# the C test program (every error path, two threads on one model) under valgrind.
# Installs gcc, g++ and valgrind with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in gcc g++ valgrind; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi

capi=crates/synapse-capi
out=target/capi
lib=$out/lib
mkdir -p "$lib"
# libsynapse.so and libsynapse.a as `cargo test` builds them (see scripts/cargo-test.sh),
# found through cargo's artifact messages; the CLI beside them.
./scripts/cargo-test.sh --no-run --quiet --message-format=json |
  python3 -c 'import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "synapse" \
            and "cdylib" in m["target"]["crate_types"]:
        for f in m["filenames"]:
            if f.endswith((".so", ".a")):
                shutil.copy(f, sys.argv[1])' "$lib"
cli=target/release/synapse
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# The default model (fetched on first use), and the CLI's greedy tokens for a prompt.
prompt="The capital of France is"
"$cli" run --prompt "$prompt" --temperature 0 --max-tokens 24 --ignore-eos --json \
  >"$scratch/cli.json"
model=$(python3 -c 'import os; print(os.environ.get("SYNAPSE_HOME") or os.path.expanduser("~/.cache/synapse"))')/SmolLM2-135M-Instruct.Q4_1.gguf
python3 -c 'import json,sys; print("\n".join(map(str, json.load(open(sys.argv[1]))["tokens"])))' \
  "$scratch/cli.json" >"$scratch/cli.ids"

cflags=(-I"$capi/include" -Wall -Wextra -Werror -O2)
static_libs=("$lib/libsynapse.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl)
for kind in shared static; do
  if [[ $kind == shared ]]; then link=(-L"$lib" -Wl,-rpath,"$PWD/$lib" -lsynapse -lpthread); else link=("${static_libs[@]}"); fi
  echo "== C and C++ against the $kind library"
  gcc -std=c11 "${cflags[@]}" -o "$out/test_capi-$kind" "$capi/tests/c/test_capi.c" "${link[@]}"
  gcc -std=c11 "${cflags[@]}" -o "$out/generate-$kind" "$capi/examples/c/generate.c" "${link[@]}"
  g++ -std=c++17 "${cflags[@]}" -o "$out/chat-$kind" "$capi/examples/cpp/chat.cpp" "${link[@]}"

  "$out/test_capi-$kind" "$model" "$scratch"
  # The default model (a NULL path), greedy: the CLI's tokens.
  "$out/generate-$kind" --temperature 0 -n 24 --ignore-eos --ids "$prompt" >"$scratch/c.ids"
  diff -u "$scratch/cli.ids" "$scratch/c.ids"
  echo "generate.c ($kind): the CLI's 24 greedy tokens"
  # A two-turn chat, greedy: what `synapse chat` says to the same two messages.
  "$out/chat-$kind" --temperature 0 -n 32 "Hi! What is the capital of France?" "And of Italy?" \
    >"$scratch/cpp.txt"
  printf 'Hi! What is the capital of France?\nAnd of Italy?\n' |
    "$cli" chat --temperature 0 -n 32 >"$scratch/cli-chat.txt"
  diff -u "$scratch/cli-chat.txt" "$scratch/cpp.txt"
  echo "chat.cpp ($kind): the CLI's two greedy replies"
done

echo "== the C test program under valgrind"
valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect \
  --show-leak-kinds=definite,indirect --error-exitcode=99 \
  "$out/test_capi-shared" "$model" "$scratch" 2>&1 | tee "$out/valgrind.log"
echo "valgrind: no errors, no bytes definitely or indirectly lost (log: $out/valgrind.log)"
