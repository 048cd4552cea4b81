"""The PyTorch side of issue 15's training check: a tiny LLaMA (transformers'
LlamaForCausalLM, float32, CPU) trained 200 steps with AdamW on fixed batches.

Writes tests/fixtures/train/:
  tiny-llama/config.json, tiny-llama/model.safetensors  the initial weights (seed 0)
  first_step_grads.safetensors                           every parameter's gradient at step 1
  losses.json                                            the batch loss of each step, the settings

crates/synapse-train/tests/against_torch.rs trains the same model from the same files
with the same batches (the generator below, repeated there) and settings, and compares.

  python3 tools/reference/make_training_fixture.py      # ~1 min on 2 cores
"""

import json
import math
import pathlib

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests/fixtures/train"
STEPS, BATCH, SEQ = 200, 4, 16
SETTINGS = {
    "steps": STEPS, "batch": BATCH, "seq_len": SEQ,
    "peak_lr": 3e-3, "floor_lr": 3e-4, "warmup": 10,
    "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, "clip": 1.0,
}
CONFIG = LlamaConfig(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, vocab_size=64, max_position_embeddings=64, rms_norm_eps=1e-5,
    rope_theta=10000.0, tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
)


def batches():
    """Arithmetic progressions mod the vocabulary (a start and a step from an LCG), so the
    loss has something to learn: BATCH sequences of SEQ tokens per step."""
    state = 12345
    def lcg():
        nonlocal state
        state = (state * 1103515245 + 12345) % (1 << 31)
        return state >> 8
    for _ in range(STEPS):
        batch = []
        for _ in range(BATCH):
            start, step = lcg() % CONFIG.vocab_size, 1 + lcg() % 3
            batch.append([(start + i * step) % CONFIG.vocab_size for i in range(SEQ)])
        yield batch


def lr(step):
    s = SETTINGS
    if step < s["warmup"]:
        return s["peak_lr"] * (step + 1) / s["warmup"]
    progress = min((step - s["warmup"]) / max(STEPS - s["warmup"], 1), 1.0)
    return s["floor_lr"] + 0.5 * (s["peak_lr"] - s["floor_lr"]) * (1 + math.cos(math.pi * progress))


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = LlamaForCausalLM(CONFIG).float()
    model.train()
    (OUT / "tiny-llama").mkdir(parents=True, exist_ok=True)
    model.save_pretrained(OUT / "tiny-llama", safe_serialization=True)
    opt = torch.optim.AdamW(model.parameters(), lr=SETTINGS["peak_lr"], betas=tuple(SETTINGS["betas"]),
                            eps=SETTINGS["eps"], weight_decay=SETTINGS["weight_decay"])
    losses = []
    for step, batch in enumerate(batches()):
        ids = torch.tensor(batch)
        for group in opt.param_groups:
            group["lr"] = lr(step)
        opt.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if step == 0:
            grads = {n: p.grad.detach().clone().contiguous() for n, p in model.named_parameters()}
            save_file(grads, OUT / "first_step_grads.safetensors")
        torch.nn.utils.clip_grad_norm_(model.parameters(), SETTINGS["clip"])
        opt.step()
        losses.append(loss.item())
        if step % 20 == 0 or step == STEPS - 1:
            print(f"step {step:3d}  loss {loss.item():.4f}  lr {lr(step):.2e}")
    meta = {"torch": torch.__version__, "settings": SETTINGS, "losses": losses}
    (OUT / "losses.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
