#!/usr/bin/env python3
"""Writes the GGUF seeds of the `gguf_model` fuzz target (fuzz/corpus/gguf_model/): tiny
LLaMA models (one layer, 32-wide, a 16-token GPT-2 vocabulary) that Synapse loads, in F32,
Q8_0 and Q4_0, so that the fuzzer starts from files that get past the parser into the
loader. Random weights, labelled as such; standard library only.

    python3 tools/make_fuzz_seeds.py
"""
import random
import struct
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "fuzz" / "corpus" / "gguf_model"
ALIGN = 32
DIM, FF, VOCAB, HEADS, KV_HEADS = 32, 64, 16, 2, 1
F32, Q4_0, Q8_0 = 0, 2, 8
STRING, U32, F32_VALUE, ARRAY = 8, 4, 6, 9


def string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def value(v):
    if isinstance(v, str):
        return struct.pack("<I", STRING) + string(v)
    if isinstance(v, float):
        return struct.pack("<If", F32_VALUE, v)
    if isinstance(v, int):
        return struct.pack("<II", U32, v)
    assert isinstance(v, list) and all(isinstance(x, str) for x in v)
    return struct.pack("<IIQ", ARRAY, STRING, len(v)) + b"".join(string(x) for x in v)


def f16(x):
    return struct.pack("<e", x)


def tensor_bytes(rng, n, dtype):
    if dtype == F32 or n < 32:
        return struct.pack(f"<{n}f", *(rng.uniform(-0.5, 0.5) for _ in range(n))), F32
    out = b""
    for _ in range(n // 32):
        if dtype == Q8_0:
            out += f16(0.01) + bytes(rng.randrange(256) for _ in range(32))
        else:
            out += f16(0.05) + bytes(rng.randrange(256) for _ in range(16))
    return out, dtype


def model(dtype, seed):
    rng = random.Random(seed)
    head = DIM // HEADS
    shapes = [("token_embd.weight", [DIM, VOCAB]), ("output_norm.weight", [DIM])]
    shapes += [
        ("blk.0.attn_norm.weight", [DIM]),
        ("blk.0.attn_q.weight", [DIM, DIM]),
        ("blk.0.attn_k.weight", [DIM, head * KV_HEADS]),
        ("blk.0.attn_v.weight", [DIM, head * KV_HEADS]),
        ("blk.0.attn_output.weight", [DIM, DIM]),
        ("blk.0.ffn_norm.weight", [DIM]),
        ("blk.0.ffn_gate.weight", [DIM, FF]),
        ("blk.0.ffn_up.weight", [DIM, FF]),
        ("blk.0.ffn_down.weight", [FF, DIM]),
    ]
    tokens = ["<s>", "</s>"] + [chr(c) for c in b"abcdeh Gl"] + ["ab", "cd", "he", "ll", "lo"]
    meta = {
        "general.architecture": "llama",
        "general.name": "random-weight fuzz seed",
        "llama.block_count": 1,
        "llama.context_length": 64,
        "llama.embedding_length": DIM,
        "llama.feed_forward_length": FF,
        "llama.attention.head_count": HEADS,
        "llama.attention.head_count_kv": KV_HEADS,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "llama.rope.freq_base": 10000.0,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.merges": ["a b", "c d", "h e", "l l", "l o"],
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.chat_template": "{% for m in messages %}<s>{{ m.role }}: {{ m.content }}</s>{% endfor %}",
    }
    assert len(tokens) == VOCAB
    infos, data = b"", b""
    for name, shape in shapes:
        n = 1
        for d in shape:
            n *= d
        blob, stored = tensor_bytes(rng, n, dtype)
        data += b"\0" * (-len(data) % ALIGN)
        infos += string(name) + struct.pack("<I", len(shape))
        infos += b"".join(struct.pack("<Q", d) for d in shape)
        infos += struct.pack("<IQ", stored, len(data))
        data += blob
    kv = b"".join(string(k) + value(v) for k, v in meta.items())
    header = b"GGUF" + struct.pack("<IQQ", 3, len(shapes), len(meta)) + kv + infos
    return header + b"\0" * (-len(header) % ALIGN) + data


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, dtype in [("f32", F32), ("q8_0", Q8_0), ("q4_0", Q4_0)]:
        blob = model(dtype, seed=len(name) + dtype)
        (OUT / f"tiny-llama-{name}.gguf").write_bytes(blob)
        print(f"{OUT / f'tiny-llama-{name}.gguf'}: {len(blob)} bytes")
