#!/usr/bin/env python3
"""Issue 15's LoRA checks: a short `synapse finetune` of the default model (SmolLM2 Q4_1) on
tests/fixtures/chat/house-style.jsonl, then
  peft      PEFT (pip `peft`) applies the adapter Synapse wrote to the Hugging Face form of the
            same model (transformers loading the GGUF, dequantized to float32) and records the
            logits of two chat prompts: the top-20 at every position, and the same model's
            logits without the adapter at those ids (to show how far the adapter moves them);
  llamacpp  llama.cpp (llama-cpp-python) loads the merged q8_0 GGUF Synapse wrote and records
            the top-10 logits at every position and 16 greedy tokens.
crates/synapse-train/tests/finetune.rs repeats the fine-tune from the same settings (read from
this fixture) and compares: its LoRA forward pass against PEFT's logits, and its merged file,
run by the engine, against llama.cpp's.

Three stages, each in the environment that has its tools:
  python3 tools/reference/make_finetune_fixture.py train --synapse target/release/synapse
  <torch venv>/bin/python tools/reference/make_finetune_fixture.py peft       # torch, transformers, peft, gguf
  <llama venv>/bin/python tools/reference/make_finetune_fixture.py llamacpp   # llama-cpp-python
The fine-tune's output goes to tools/reference/.cache/finetune/ (git-ignored); the fixtures to
tests/fixtures/finetune/{settings,peft,llamacpp}.json.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RUN_DIR = os.path.join(HERE, ".cache", "finetune")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "finetune")
MODEL = os.path.expanduser("~/.cache/synapse/SmolLM2-135M-Instruct.Q4_1.gguf")
DATA = os.path.join(ROOT, "tests", "fixtures", "chat", "house-style.jsonl")
# Large enough a learning rate that six steps move the logits by far more than the 1e-3 the
# PEFT check allows, so that an adapter read the wrong way round cannot pass.
SETTINGS = {
    "steps": 6, "batch": 2, "lr": 2e-3, "lora_rank": 8, "lora_alpha": 16.0, "seed": 0,
    "held_out": 0.1, "max_len": 512, "threads": 2,
}
PROMPTS = [
    "<|im_start|>user\nWhat is the capital of Peru?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nPlural of goose?<|im_end|>\n<|im_start|>assistant\nPlural of goose: geese. Done.<|im_end|>\n",
]
TOP_PEFT = 20
TOP_LLAMA = 10
N_GEN = 16


def write(name, obj):
    os.makedirs(FIXTURES, exist_ok=True)
    with open(os.path.join(FIXTURES, name), "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def read(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


def train(synapse):
    s = SETTINGS
    cmd = [synapse, "finetune", "--model", MODEL, "--data", DATA, "--out", RUN_DIR,
           "--steps", str(s["steps"]), "--batch", str(s["batch"]), "--lr", str(s["lr"]),
           "--lora-rank", str(s["lora_rank"]), "--lora-alpha", str(s["lora_alpha"]),
           "--seed", str(s["seed"]), "--held-out", str(s["held_out"]), "--max-len", str(s["max_len"]),
           "--threads", str(s["threads"]), "--merge", "--merge-type", "f32,q8_0"]
    subprocess.run(cmd, check=True)
    prompts = []
    for text in PROMPTS:
        out = subprocess.run([synapse, "tokenize", "--model", MODEL, "--json", text],
                             check=True, capture_output=True, text=True).stdout
        prompts.append({"text": text, "ids": json.loads(out)["ids"]})
    write("settings.json", {"settings": SETTINGS, "data": os.path.relpath(DATA, ROOT), "prompts": prompts})


def top(logits, k):
    import numpy as np
    order = np.argsort(-logits, kind="stable")[:k]
    return [[int(i), float(np.float32(logits[i]))] for i in order]


def peft():
    import numpy as np
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    import importlib.metadata as md
    torch.set_num_threads(2)
    base = AutoModelForCausalLM.from_pretrained(os.path.dirname(MODEL), gguf_file=os.path.basename(MODEL),
                                                dtype=torch.float32)
    model = PeftModel.from_pretrained(base, os.path.join(RUN_DIR, "adapter"))
    model.eval()
    records = []
    for p in read("settings.json")["prompts"]:
        ids = torch.tensor([p["ids"]])
        with torch.no_grad():
            adapted = model(input_ids=ids).logits[0].numpy()
            with model.disable_adapter():
                plain = model(input_ids=ids).logits[0].numpy()
        tops = [top(row, TOP_PEFT) for row in adapted]
        records.append({
            "ids": p["ids"],
            "top_logits": tops,
            "without_adapter": [[float(np.float32(row[i])) for i, _ in t] for row, t in zip(plain, tops)],
        })
        moved = max(abs(v - w) for t, ws in zip(tops, records[-1]["without_adapter"]) for (_, v), w in zip(t, ws))
        print(f"{len(p['ids'])} tokens: the adapter moves the top logits by up to {moved:.3f}", file=sys.stderr)
    versions = {k: md.version(k) for k in ("torch", "transformers", "peft", "gguf")}
    write("peft.json", {"versions": versions, "prompts": records})


def llamacpp():
    sys.path.insert(0, HERE)
    import numpy as np
    from make_llamacpp_fixtures import Runner, greedy_step
    runner = Runner(os.path.join(RUN_DIR, "merged-q8_0.gguf"))
    records = []
    for p in read("settings.json")["prompts"]:
        runner.new_context()
        ids = p["ids"]
        at = runner.decode(ids, 0, set(range(len(ids))))
        logits, gen, pos = at[len(ids) - 1], [], len(ids)
        for step in range(N_GEN):
            tok, _ = greedy_step(logits)
            gen.append(tok)
            if step + 1 < N_GEN:
                logits = runner.decode([tok], pos, {0})[0]
                pos += 1
        records.append({"ids": ids, "top_logits": [top(at[i], TOP_LLAMA) for i in range(len(ids))],
                        "greedy_ids": gen})
    runner.close()
    import llama_cpp
    write("llamacpp.json", {"llama_cpp_python": llama_cpp.__version__, "prompts": records})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["train", "peft", "llamacpp"])
    ap.add_argument("--synapse", default=os.path.join(ROOT, "target", "release", "synapse"))
    args = ap.parse_args()
    {"train": lambda: train(args.synapse), "peft": peft, "llamacpp": llamacpp}[args.stage]()


if __name__ == "__main__":
    main()
