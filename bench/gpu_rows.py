#!/usr/bin/env python3
"""Adds bench/gpu_device.sh's results (its OUT/gpu_rows.json, from a device machine) to
status/benchmark_matrix.json as `gpu_rows`, with the date and the devices the run listed.

Usage: python3 bench/gpu_rows.py OUT/gpu_rows.json [--matrix status/benchmark_matrix.json]
"""
import argparse
import datetime
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
sys.path.insert(1, os.path.join(ROOT, "tools", "reference"))
from common import dump_json  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rows", help="gpu_rows.json written by bench/gpu_device.sh run")
    ap.add_argument("--matrix", default=os.path.join(ROOT, "status", "benchmark_matrix.json"))
    args = ap.parse_args()
    with open(args.rows) as f:
        report = json.load(f)
    report["date"] = datetime.date.today().isoformat()
    report["method"] = (
        "bench/gpu_device.sh: synapse bench --device gpu and llama.cpp's llama-bench "
        "(-DGGML_VULKAN=ON, -ngl 99) alternately, 3 timed runs each per pair; medians of the pooled runs"
    )
    with open(args.matrix) as f:
        matrix = json.load(f)
    matrix["gpu_rows"] = report
    dump_json(matrix, args.matrix)
    for row in report["rows"]:
        print(f"{row['model']:<28} prefill {row['prefill_ratio']:.2f}x  decode {row['decode_ratio']:.2f}x")


if __name__ == "__main__":
    main()
