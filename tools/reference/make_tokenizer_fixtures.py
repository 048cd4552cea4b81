#!/usr/bin/env python3
"""Generate tests/fixtures/tokenizers/: Hugging Face tokenizer.json files and the ids that
the `tokenizers` library gives for a few thousand varied lines (read by
crates/synapse-inference/tests/tokenizer_hf.rs).

There is no model hub here, so the tokenizers are derived from llama.cpp's vocabulary files
(../shared/data/llama-vocab/ggml-vocab-NAME.gguf) with transformers' GGUF -> fast tokenizer
conversion, and saved with `save_pretrained`. Three edits make them like the published
files: llama-bpe takes a piece that is a whole token without merging (ignore_merges, as in
LLaMA 3's), qwen2 gets Qwen2/Qwen3's NFC normalizer, and phi-3's chat tokens (and </s>)
swallow the whitespace after them (rstrip), as in Phi-3's tokenizer.json. Each NAME/ folder gets:
  tokenizer.json.gz       the tokenizer, compact JSON, gzipped (gunzip it to get a model folder)
  tokenizer_config.json   bos/eos/unk/pad, chat_template (as transformers wrote it)
  chat_template.jinja     where transformers wrote one
  cases.json.gz           {"reference": "tokenizers VERSION", "parse_special": true,
                           "cases": [{"text", "ids", "decoded",
                           "ids_special"?}]}: ids = encode(text, add_special_tokens=False)
                           with added tokens recognised; decoded = decode(ids); every 7th
                           case also has ids_special = encode(text, add_special_tokens=True).
One more folder, llama-spm-model/, holds a SentencePiece tokenizer.model (BPE, written by
hand from llama-spm's pieces, scores and types, as Llama 2's) gzipped, with the ids that the
`sentencepiece` library gives (it reads no special-token text: "parse_special": false).

Run from the repo root:  python3 tools/reference/make_tokenizer_fixtures.py [--vocab-dir DIR]
"""
import argparse
import gzip
import importlib.metadata
import json
import os
import random
import shutil
import struct
import tempfile

import sentencepiece
import tokenizers
from gguf import GGUFReader
from transformers import AutoTokenizer

VOCABS = ["llama-bpe", "qwen2", "gpt-2", "llama-spm", "phi-3"]
N_LINES = 3000
OUT = "tests/fixtures/tokenizers"

WORDS = (
    "the of and to in is was for on that with as by at from his her it an were are which this be "
    "Hello world Synapse tokenizer don't I'm we'll they've she'd it's THE HELLO CamelCase snake_case "
    "naïve café résumé coöperate Straße façade déjà-vu"
).split()
CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "fn main() {\n\tprintln!(\"{}\", 42);\n}",
    "if x != None and y >= 3:\n        pass",
    "<div class=\"a\">&nbsp;</div>",
    "SELECT * FROM t WHERE id = 7;",
    "#include <stdio.h>\r\n",
    "    // indented comment\n\n\n",
    "let v: Vec<u8> = vec![0xFF, 0b1010, 1_000_000];",
    "x = {'k': [1, 2.5, -3e10], \"s\": None}",
]
UNICODE = [
    "日本語のテキスト", "中文分词测试", "한국어 문장", "Привет, мир", "Γειά σου Κόσμε", "مرحبا بالعالم",
    "שלום עולם", "हिन्दी पाठ", "ภาษาไทย", "Tiếng Việt có dấu", "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️",
    "∑∫√∞≠≤", "½ ¾ ² ³", "Ⅻ ⅷ", "①②③", "e\u0301", "\u00a0", "\u3000", "\u200b", "\u2028", "\ufeff",
    "ﬁ ﬂ", "ｆｕｌｌｗｉｄｔｈ", "A\u030a", "\u1112\u1161\u11ab", "o\u0308\u0301", "\u2581", "▁▁x", "Ġhello", "ĊĠ",
]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "--", "—", "“quoted”", "«»", "¿¡", "''", "'s", "'S"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "\r\n", "\t\t ", "        ", " \n\n\n  "]
SPECIALS = [
    "<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>",
    "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|user|>", "<|assistant|>", "<|end|>",
    "<|system|>", "<|fim_prefix|>", "[PAD151650]", "<0x0A>", "<|reserved_special_token_3|>",
]


def number(rng):
    kind = rng.randrange(5)
    if kind == 0:
        return str(rng.randrange(10 ** rng.randrange(1, 12)))
    if kind == 1:
        return f"{rng.uniform(-1e4, 1e4):.{rng.randrange(0, 6)}f}"
    if kind == 2:
        return "1,234,567"
    if kind == 3:
        return "٣٤٥ ४५६ ３４５"
    return f"{rng.randrange(1, 32)}/{rng.randrange(1, 13)}/20{rng.randrange(10, 30)}"


def fragment(rng):
    kind = rng.randrange(10)
    if kind < 3:
        return rng.choice(WORDS)
    if kind == 3:
        return rng.choice(CODE)
    if kind == 4:
        return rng.choice(UNICODE)
    if kind == 5:
        return rng.choice(PUNCT)
    if kind == 6:
        return rng.choice(SPACES)
    if kind == 7:
        return number(rng)
    if kind == 8:
        return rng.choice(SPECIALS)
    # Random code points from a few ranges, including rare ones (byte fallback).
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF), (0x10000, 0x1000F)]
    lo, hi = rng.choice(ranges)
    return "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randrange(1, 6)))


def make_lines(seed=20260101):
    rng = random.Random(seed)
    lines = ["", " ", "  ", "\n", "Hello world", " Hello world", "Hello World!", "  leading", "trailing  "]
    while len(lines) < N_LINES:
        n = rng.randrange(1, 12)
        sep = rng.choice(["", " ", " ", " ", "\n"])
        lines.append(sep.join(fragment(rng) for _ in range(n)))
    return lines


def patch(name, tokenizer):
    """The edits that make a converted tokenizer like the published one."""
    if name == "llama-bpe":
        tokenizer["model"]["ignore_merges"] = True
    if name == "qwen2":
        tokenizer["normalizer"] = {"type": "NFC"}
    if name == "phi-3":
        for token in tokenizer["added_tokens"]:
            if token["id"] >= 32000 and token["content"] != "<|endoftext|>" or token["content"] == "</s>":
                token["rstrip"] = True
    return tokenizer


def varint(n):
    n &= (1 << 64) - 1  # negative int32 values are sent as 64-bit two's complement
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_varint(number, value):
    return varint(number << 3) + varint(value)


def pb_bytes(number, data):
    return varint(number << 3 | 2) + varint(len(data)) + data


def sentencepiece_model(gguf_path):
    """A BPE ModelProto with the GGUF's pieces, scores and types (as Llama 2's tokenizer.model)."""
    reader = GGUFReader(gguf_path)
    field = lambda key: reader.fields[key]
    tokens = [bytes(field("tokenizer.ggml.tokens").parts[i]).decode() for i in field("tokenizer.ggml.tokens").data]
    scores = [float(field("tokenizer.ggml.scores").parts[i][0]) for i in field("tokenizer.ggml.scores").data]
    types = [int(field("tokenizer.ggml.token_type").parts[i][0]) for i in field("tokenizer.ggml.token_type").data]
    proto = bytearray()
    for text, score, kind in zip(tokens, scores, types):
        piece = pb_bytes(1, text.encode()) + varint(2 << 3 | 5) + struct.pack("<f", score)
        if kind != 1:
            piece += pb_varint(3, kind)
        proto += pb_bytes(1, piece)
    trainer = pb_varint(3, 2) + pb_varint(35, 1) + pb_varint(40, 0) + pb_varint(41, 1) + pb_varint(42, 2) + pb_varint(43, -1)
    proto += pb_bytes(2, trainer)
    normalizer = pb_bytes(1, b"identity") + pb_varint(3, 1) + pb_varint(4, 0) + pb_varint(5, 1)
    proto += pb_bytes(3, normalizer)
    return bytes(proto)


def write_cases(out, reference, parse_special, cases):
    with gzip.GzipFile(os.path.join(out, "cases.json.gz"), "wb", mtime=0) as f:
        data = {"reference": reference, "parse_special": parse_special, "cases": cases}
        f.write(json.dumps(data, ensure_ascii=False).encode())
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{os.path.basename(out)}: {len(cases)} cases, {size / 1e6:.2f} MB")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab-dir", default="../shared/data/llama-vocab")
    args = parser.parse_args()
    lines = make_lines()
    version = importlib.metadata.version("tokenizers")
    for name in VOCABS:
        with tempfile.TemporaryDirectory() as tmp:
            hf = AutoTokenizer.from_pretrained(args.vocab_dir, gguf_file=f"ggml-vocab-{name}.gguf")
            hf.save_pretrained(tmp)
            out = os.path.join(OUT, name)
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            with open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8") as f:
                compact = json.dumps(patch(name, json.load(f)), ensure_ascii=False, separators=(",", ":"))
            tok = tokenizers.Tokenizer.from_str(compact)
            with gzip.GzipFile(os.path.join(out, "tokenizer.json.gz"), "wb", mtime=0) as f:
                f.write(compact.encode())
            for extra in ["tokenizer_config.json", "chat_template.jinja"]:
                if os.path.exists(os.path.join(tmp, extra)):
                    shutil.copy(os.path.join(tmp, extra), out)
        cases = []
        for i, text in enumerate(lines):
            ids = tok.encode(text, add_special_tokens=False).ids
            case = {"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)}
            if i % 7 == 0:
                case["ids_special"] = tok.encode(text, add_special_tokens=True).ids
            cases.append(case)
        write_cases(out, f"tokenizers {version}", True, cases)

    proto = sentencepiece_model(os.path.join(args.vocab_dir, "ggml-vocab-llama-spm.gguf"))
    sp = sentencepiece.SentencePieceProcessor(model_proto=proto)
    out = os.path.join(OUT, "llama-spm-model")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    with gzip.GzipFile(os.path.join(out, "tokenizer.model.gz"), "wb", mtime=0) as f:
        f.write(proto)
    shutil.copy(os.path.join(OUT, "llama-spm", "tokenizer_config.json"), out)
    cases = []
    for text in lines:
        ids = sp.encode(text)
        cases.append({"text": text, "ids": ids, "decoded": sp.decode(ids)})
    write_cases(out, f"sentencepiece {importlib.metadata.version('sentencepiece')}", False, cases)


if __name__ == "__main__":
    main()
