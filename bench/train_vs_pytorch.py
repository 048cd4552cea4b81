#!/usr/bin/env python3
"""Training speed, Synapse against PyTorch (CPU), on the same machine, model, batch and thread
count: tokens a second of whole training steps (forward, backward, clipping, AdamW update).

Synapse: `synapse train` from scratch on the README's corpus (each step's time comes from its
log.jsonl). PyTorch: transformers' LlamaForCausalLM built from the same config.json, the same
AdamW settings and clipping, random token ids of the same shape (a step's cost does not depend
on which ids). Both run `--threads` threads; the runs alternate, `--pairs` times, and each
reports the median of its steps after the first (a warm-up). With --append the row is stored
as `train_rows` in status/benchmark_matrix.json.

  python3 bench/train_vs_pytorch.py --torch-python /path/to/venv-with-torch/bin/python [--append]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MATRIX = os.path.join(ROOT, "status", "benchmark_matrix.json")

TORCH_STEP = r"""
import json, sys, time, torch
from transformers import LlamaConfig, LlamaForCausalLM
config, batch, seq, steps, threads = sys.argv[1], *map(int, sys.argv[2:6])
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = LlamaConfig(**{k: v for k, v in json.load(open(config)).items() if k != "model_type"})
model = LlamaForCausalLM(cfg).float()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
ids = torch.randint(0, cfg.vocab_size, (batch, seq))
times = []
for _ in range(steps):
    start = time.perf_counter()
    opt.zero_grad()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    times.append(time.perf_counter() - start)
print(json.dumps({"torch": torch.__version__, "step_seconds": times}))
"""


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def synapse_steps(args, corpus):
    with tempfile.TemporaryDirectory() as out:
        cmd = [args.synapse, "train", "--config", args.config, "--data", corpus, "--out", out,
               "--steps", str(args.steps), "--batch", str(args.batch), "--seq-len", str(args.seq_len),
               "--threads", str(args.threads), "--eval-every", "1000000", "--save-every", "1000000",
               "--export", "f32"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(out, "log.jsonl")) as f:
            entries = [json.loads(line) for line in f]
    # A step trains seq_len - 1 targets a sequence; its time is that over tokens_per_s.
    trained = args.batch * (args.seq_len - 1)
    return [trained / e["tokens_per_s"] for e in entries if "tokens_per_s" in e]


def torch_steps(args):
    out = subprocess.run([args.torch_python, "-c", TORCH_STEP, args.config, str(args.batch),
                          str(args.seq_len), str(args.steps), str(args.threads)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["torch"], result["step_seconds"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synapse", default=os.path.join(ROOT, "target", "release", "synapse"))
    ap.add_argument("--torch-python", required=True, help="a python with torch and transformers")
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "shakespeare-17m.json"))
    ap.add_argument("--corpus", default=os.path.expanduser("~/.cache/synapse/shakespeare.txt"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()

    tokens = args.batch * args.seq_len
    runs = {"synapse": [], "pytorch": []}
    version = None
    for pair in range(args.pairs):
        s = synapse_steps(args, args.corpus)[1:]
        version, t = torch_steps(args)
        t = t[1:]
        runs["synapse"].append(tokens / statistics.median(s))
        runs["pytorch"].append(tokens / statistics.median(t))
        print(f"pair {pair + 1}: synapse {runs['synapse'][-1]:.0f} tok/s, pytorch {runs['pytorch'][-1]:.0f} tok/s",
              file=sys.stderr)
    with open(args.config) as f:
        config = json.load(f)
    row = {
        "runtime": "training",
        "model": os.path.basename(args.config),
        "parameters_note": "LLaMA, tied embeddings, f32 weights and activations",
        "cpu": cpu_name(),
        "threads": args.threads,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "vocab_size": config["vocab_size"],
        "peer": f"pytorch {version} (transformers LlamaForCausalLM, torch.optim.AdamW)",
        "synapse_tok_s": statistics.median(runs["synapse"]),
        "synapse_runs": runs["synapse"],
        "pytorch_tok_s": statistics.median(runs["pytorch"]),
        "pytorch_runs": runs["pytorch"],
        "method": f"whole steps (forward, backward, clip, AdamW), median over steps 2-{args.steps} of a run; "
                  f"runs alternate, {args.pairs} each; tok/s = batch x seq_len / step time",
    }
    row["ratio"] = row["synapse_tok_s"] / row["pytorch_tok_s"]
    print(json.dumps(row, indent=1))
    if args.append:
        with open(MATRIX) as f:
            matrix = json.load(f)
        matrix["train_rows"] = [r for r in matrix.get("train_rows", [])
                                if (r["model"], r["cpu"], r["threads"]) != (row["model"], row["cpu"], row["threads"])] + [row]
        with open(MATRIX, "w") as f:
            json.dump(matrix, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
