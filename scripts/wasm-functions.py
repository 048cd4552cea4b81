#!/usr/bin/env python3
"""Where the bytes of a wasm module go: the code size of each function, largest first, and
the totals per crate path, read from the module's name section. For the browser module's
size budget (scripts/wasm-size.sh): build it with names kept, e.g.

  RUSTC_BOOTSTRAP=1 CARGO_PROFILE_WASM_STRIP=false \\
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128 -Z unstable-options -C panic=immediate-abort --cfg synapse_wasm_size" \\
    cargo build --profile wasm --target wasm32-unknown-unknown -p synapse-wasm --target-dir target/web-names \\
    -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size
  wasm-bindgen --target web --out-dir target/web-names/pkg target/web-names/wasm32-unknown-unknown/wasm/synapse_wasm.wasm
  wasm-opt -Oz -g --enable-simd --enable-bulk-memory ... -o named.wasm target/web-names/pkg/synapse_wasm_bg.wasm

(the flags of scripts/build-web.sh; `-g` keeps the names through wasm-opt), then

  scripts/wasm-functions.py named.wasm [--top 40] [--depth 3]
"""
import argparse
import collections
import re


def leb(data, i):
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def sections(data):
    i = 8  # magic and version
    while i < len(data):
        sid = data[i]
        size, i = leb(data, i + 1)
        yield sid, i, size
        i += size


def imported_functions(data, off):
    count, i = leb(data, off)
    functions = 0
    for _ in range(count):
        for _ in range(2):  # module and field names
            n, i = leb(data, i)
            i += n
        kind = data[i]
        i += 1
        if kind == 0:  # function: type index
            _, i = leb(data, i)
            functions += 1
        elif kind == 1:  # table: element type and limits
            flags, i = leb(data, i + 1)
            _, i = leb(data, i)
            if flags & 1:
                _, i = leb(data, i)
        elif kind == 2:  # memory: limits
            flags, i = leb(data, i)
            _, i = leb(data, i)
            if flags & 1:
                _, i = leb(data, i)
        elif kind == 3:  # global: type and mutability
            i += 2
    return functions


def function_names(data, off, size):
    n, i = leb(data, off)
    if data[i:i + n] != b"name":
        return {}
    i += n
    end, names = off + size, {}
    while i < end:
        sub = data[i]
        length, i = leb(data, i + 1)
        if sub == 1:  # function names
            count, j = leb(data, i)
            for _ in range(count):
                index, j = leb(data, j)
                n, j = leb(data, j)
                names[index] = data[j:j + n].decode("utf-8", "replace")
                j += n
        i += length
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wasm")
    ap.add_argument("--top", type=int, default=40, help="functions to list")
    ap.add_argument("--depth", type=int, default=3, help="path segments a total groups by")
    args = ap.parse_args()
    data = open(args.wasm, "rb").read()
    imports, bodies, names, totals = 0, [], {}, collections.Counter()
    for sid, off, size in sections(data):
        totals[sid] += size
        if sid == 2:
            imports = imported_functions(data, off)
        elif sid == 10:
            count, i = leb(data, off)
            for _ in range(count):
                n, j = leb(data, i)
                bodies.append(j - i + n)
                i = j + n
        elif sid == 0:
            names.update(function_names(data, off, size))
    rows = sorted(((size, re.sub(r"\[[0-9a-f]{16}\]", "", names.get(imports + k, f"<function {imports + k}>")))
                   for k, size in enumerate(bodies)), reverse=True)
    print(f"{len(data)} bytes: code {totals[10]}, data {totals[11]}, names and other custom sections {totals[0]}")
    groups = collections.Counter()
    for size, name in rows:
        path = re.search(r"[A-Za-z_][\w]*(?:::[A-Za-z_][\w]*)*", name)
        groups["::".join(path.group(0).split("::")[:args.depth]) if path else name] += size
    print(f"\ncode by path ({args.depth} segments):")
    for path, size in groups.most_common(args.top):
        print(f"{size:8d}  {path}")
    print("\nlargest functions:")
    for size, name in rows[:args.top]:
        print(f"{size:8d}  {name[:160]}")


if __name__ == "__main__":
    main()
