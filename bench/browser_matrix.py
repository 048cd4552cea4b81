#!/usr/bin/env python3
"""Python side of bench/vs_wllama.mjs, so that its rows describe the machine and are written
the way run_matrix.py writes the matrix.

  browser_matrix.py machine                    # run_matrix.machine() as JSON on stdout
  browser_matrix.py append ROWS.json [MATRIX]  # merge browser rows into the matrix

Browser rows live in the matrix's own `browser_rows` list, beside the native `rows`: they have
other engines and fields, and run_matrix.py and scripts/bench_table.py read `rows` only. A new
row replaces an old one of the same (file, threads, CPU, CPU flags, browser engines).
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
sys.path[:0] = [os.path.join(ROOT, "bench"), os.path.join(ROOT, "tools", "reference")]
from common import dump_json


def key(r):
    return (r["file"], r["threads"], r["cpu"], tuple(r["cpu_flags"]), tuple(r["engines"]))


def main():
    if sys.argv[1:2] == ["machine"]:
        from run_matrix import machine
        print(json.dumps(machine()))
    elif sys.argv[1:2] == ["append"] and len(sys.argv) in (3, 4):
        out = sys.argv[3] if len(sys.argv) == 4 else os.path.join(ROOT, "status", "benchmark_matrix.json")
        with open(sys.argv[2]) as f:
            new = json.load(f)
        with open(out) as f:
            matrix = json.load(f)
        fresh = {key(r) for r in new}
        matrix["browser_rows"] = [r for r in matrix.get("browser_rows", []) if key(r) not in fresh] + new
        dump_json(matrix, out)
        print(f"appended {len(new)} browser row(s) to {os.path.relpath(out, ROOT)}", file=sys.stderr)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
