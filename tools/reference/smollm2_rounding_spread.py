#!/usr/bin/env python3
"""How much luck is in an 8-bit path's distance to transformers (not a fixture generator).

A numpy forward pass of SmolLM2 over the GGUF's dequantized weights, in f32 or with the rounding steps
of llama.cpp's (and Synapse's default) CPU path: every Q4_1 matmul's activations quantized to Q8_1 as
GGML's x86 `quantize_row_q8_1` does (per 32 values d = max|x|/127 as f16, codes round-half-even of
x*127/max|x|, s = d*sum(codes) as f16), the output matmul's to Q8_0, keys and values stored as f16.
It then perturbs the token embeddings by 1e-7 (relative; a few float32 ulps) with several seeds and
prints the spread of the prompt's mean distance (max |logit - f32 logit| over the f32 top-10 ids) over
5 positions and over all positions. The f32 pass is checked against transformers.json first.

Run from the repo root:  python3 tools/reference/smollm2_rounding_spread.py [--prompts japanese,german] [--draws 10]
"""
import argparse
import json
import os

import gguf
import numpy as np

DEFAULT_MODEL = os.path.expanduser("~/.cache/synapse/SmolLM2-135M-Instruct.Q4_1.gguf")
TRANSFORMERS_JSON = os.path.join("tests", "fixtures", "smollm2-q4_1", "transformers.json")
MATRICES = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]


def f16(x):
    return x.astype(np.float16).astype(np.float32)


class Model:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        self.t = {t.name: t for t in r.tensors}
        meta = lambda k: r.fields[k].parts[r.fields[k].data[0]][0]
        self.layers = int(meta("llama.block_count"))
        self.heads, self.kv_heads = int(meta("llama.attention.head_count")), int(meta("llama.attention.head_count_kv"))
        self.eps, self.theta = float(meta("llama.attention.layer_norm_rms_epsilon")), float(meta("llama.rope.freq_base"))
        self.embd = self.deq("token_embd.weight")
        self.head_dim = self.embd.shape[1] // self.heads
        self.out_norm = self.deq("output_norm.weight")
        self.w = {(i, m): self.q4_1(f"blk.{i}.{m}.weight") for i in range(self.layers) for m in MATRICES}
        self.norms = {(i, n): self.deq(f"blk.{i}.{n}.weight") for i in range(self.layers) for n in ["attn_norm", "ffn_norm"]}

    def deq(self, name):
        t = self.t[name]
        return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)

    def q4_1(self, name):
        """The dequantized matrix and each block's offset `m` (w = d*q + m, blocks of 20 bytes)."""
        raw = self.t[name].data
        m = raw.reshape(raw.shape[0], -1, 20)[:, :, 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        return self.deq(name), m


def q8(x):
    """Q8_1 activations: the dequantized values and, per block, s minus the sum of those values."""
    b = x.reshape(-1, 32)
    amax = np.abs(b).max(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(127) / amax, 0).astype(np.float32)
    q = np.rint(b * inv)
    d = amax / np.float32(127)
    d16, s16 = f16(d), f16(d * q.sum(axis=1, keepdims=True))
    return (q * d16).reshape(x.shape), (s16 - d16 * q.sum(axis=1, keepdims=True)).reshape(x.shape[0], -1)


def forward(model, ids, eight_bit, embd):
    n, hd = len(ids), model.head_dim
    group = model.heads // model.kv_heads

    def linear(x, key):
        w, m = model.w[key]
        if not eight_bit:
            return x @ w.T
        xq, s_err = q8(x)
        return xq @ w.T + s_err @ m.T  # the offsets meet s, not the sum of the quantized values

    def norm(x, g):
        return x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + model.eps).astype(np.float32) * g

    angles = np.arange(n)[:, None] * model.theta ** (-np.arange(0, hd, 2) / hd)
    cos, sin = np.cos(angles).astype(np.float32)[:, None], np.sin(angles).astype(np.float32)[:, None]

    def rope(x):  # GGUF llama weights: rotate adjacent pairs
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
        return out

    mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
    x = embd[ids].copy()
    for i in range(model.layers):
        h = norm(x, model.norms[i, "attn_norm"])
        q = rope(linear(h, (i, "attn_q")).reshape(n, model.heads, hd))
        k = rope(linear(h, (i, "attn_k")).reshape(n, model.kv_heads, hd))
        v = linear(h, (i, "attn_v")).reshape(n, model.kv_heads, hd)
        if eight_bit:
            k, v = f16(k), f16(v)
        att = np.empty((n, model.heads, hd), dtype=np.float32)
        for j in range(model.heads):
            s = q[:, j] @ k[:, j // group].T / np.float32(np.sqrt(hd)) + mask
            p = np.exp(s - s.max(-1, keepdims=True))
            att[:, j] = (p @ v[:, j // group]) / p.sum(-1, keepdims=True)
        x = x + linear(att.reshape(n, -1), (i, "attn_output"))
        h = norm(x, model.norms[i, "ffn_norm"])
        g, u = linear(h, (i, "ffn_gate")), linear(h, (i, "ffn_up"))
        x = x + linear(g / (1 + np.exp(-g)) * u, (i, "ffn_down"))
    h = norm(x, model.out_norm)
    return (q8(h)[0] if eight_bit else h) @ model.embd.T  # Q8_0: the same codes and d, no s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--prompts", default="japanese,chinese,german")
    ap.add_argument("--draws", type=int, default=10)
    args = ap.parse_args()
    model = Model(args.model)
    with open(TRANSFORMERS_JSON, encoding="utf-8") as f:
        prompts = {p["name"]: p for p in json.load(f)["prompts"]}
    for name in args.prompts.split(","):
        p = prompts[name]
        ids, n = p["prompt_ids"], len(p["prompt_ids"])
        ref = forward(model, ids, False, model.embd)
        check = max(abs(float(ref[pos][i]) - v) for pos, top in zip(p["logit_positions"], p["top_logits"]) for i, v in top)
        tops = [np.argsort(-row, kind="stable")[:10] for row in ref]
        dist = []
        for seed in range(args.draws):
            noise = np.random.default_rng(seed).standard_normal(model.embd.shape[1]).astype(np.float32)
            embd = model.embd if seed == 0 else (model.embd * (1 + np.float32(1e-7) * noise)).astype(np.float32)
            logits = forward(model, ids, True, embd)
            dist.append([np.abs(logits[t][tops[t]] - ref[t][tops[t]]).max() for t in range(n)])
        dist = np.array(dist)
        five = dist[:, sorted({(n - 1) * i // 5 for i in range(1, 6)})].mean(1)
        every = dist.mean(1)
        print(f"{name}: f32 pass vs transformers.json {check:.1e}; mean 8-bit distance over {args.draws} draws: "
              f"5 positions {five.min():.3f}-{five.max():.3f}, all {n} positions {every.min():.3f}-{every.max():.3f}",
              flush=True)


if __name__ == "__main__":
    main()
