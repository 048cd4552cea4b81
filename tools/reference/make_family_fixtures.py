#!/usr/bin/env python3
"""Build tiny random-weight reference checkpoints for 7 model families (tests/fixtures/families/).

For each family: a float32 Hugging Face directory (hf/), the transformers reference (reference.json: full
logits of 16 fixed token ids, 20 greedy tokens with the KV cache on and their top1-top2 gaps), a float32
GGUF written by llama.cpp's own convert_hf_to_gguf.py (model.gguf), and a llama.cpp sanity check of that
GGUF (llamacpp_* fields). Deterministic: a rerun writes byte-identical files.

Run from the repo root:
  python3 tools/reference/make_family_fixtures.py [--llama-cpp DIR] [--only FAMILY ...]
DIR is vendor/llama.cpp of the llama-cpp-python 0.3.36 source distribution (see tools/reference/README.md);
the default is where the README's commands unpack it.
"""
import argparse
import ctypes
import io
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np

OUT_ROOT = os.path.join("tests", "fixtures", "families")
VOCAB = 320
N_PROMPT = 16
N_GEN = 20
# Seed search: the first seed whose 20 greedy top1-top2 gaps all exceed MIN_GAP and whose greedy run has at
# least MIN_DISTINCT different tokens (random tied models like to repeat one token, which tests the KV cache poorly).
MIN_GAP = 0.05
MIN_DISTINCT = 8
MAX_SEEDS = 200
N_THREADS = 2
EMB_STD = {"gemma": 0.2}  # gemma multiplies the embeddings by sqrt(hidden_size) = 8
MAT_STD = 0.2

# Common tiny dimensions (gemma overrides the KV head count, gpt2 the MLP width).
DIMS = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            intermediate_size=128, vocab_size=VOCAB)

BPE_SPECIALS = {
    "gpt2": ["<|endoftext|>"],
    "qwen": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    "llama3": ["<|begin_of_text|>", "<|end_of_text|>"],
}


def llama3_config():
    return dict(DIMS, max_position_embeddings=1024, tie_word_embeddings=True, rms_norm_eps=1e-5,
                rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                                     high_freq_factor=4.0, original_max_position_embeddings=64))


def qwen2_config():
    return dict(DIMS, max_position_embeddings=1024, tie_word_embeddings=False, rms_norm_eps=1e-6,
                rope_parameters=dict(rope_type="default", rope_theta=1000000.0))


def qwen3_config():
    return dict(DIMS, max_position_embeddings=1024, tie_word_embeddings=True, rms_norm_eps=1e-6,
                rope_parameters=dict(rope_type="default", rope_theta=1000000.0))


def qwen3_yarn_config():
    # YaRN: with theta 1e4 and an original context of 64 the ramp spans the first two frequency pairs,
    # so extrapolated, ramped and interpolated frequencies all occur, and the attention factor applies.
    return dict(DIMS, max_position_embeddings=1024, tie_word_embeddings=True, rms_norm_eps=1e-6,
                rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                                     original_max_position_embeddings=64))


def mistral_config():
    return dict(DIMS, max_position_embeddings=1024, tie_word_embeddings=False, rms_norm_eps=1e-5,
                sliding_window=8, rope_parameters=dict(rope_type="default", rope_theta=1000000.0))


def phi3_config(rng):
    half = DIMS["head_dim"] // 2
    factors = lambda: [round(float(x), 4) for x in rng.uniform(1.0, 3.0, half)]  # noqa: E731
    short, long = factors(), factors()
    # original 256 >= llama.cpp's padded n_ctx (256), so both sides pick the short factors; max/orig = 4 makes
    # the attention factor sqrt(1 + ln 4 / ln 256) apply.
    return dict(DIMS, max_position_embeddings=1024, original_max_position_embeddings=256,
                tie_word_embeddings=False, rms_norm_eps=1e-5, pad_token_id=0,
                rope_parameters=dict(rope_type="longrope", rope_theta=10000.0, short_factor=short,
                                     long_factor=long, original_max_position_embeddings=256))


def gemma_config():
    # llama.cpp's gemma converter writes no rope.freq_base, so it must be the default 10000.
    return dict(DIMS, num_key_value_heads=1, max_position_embeddings=1024, tie_word_embeddings=True,
                rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh", pad_token_id=0,
                rope_parameters=dict(rope_type="default", rope_theta=10000.0))


def gpt2_config():
    # n_inner None (= 4 * n_embd): llama.cpp's gpt2 converter writes feed_forward_length = 4 * n_embd.
    return dict(n_embd=64, n_layer=2, n_head=4, n_inner=None, n_positions=64, vocab_size=VOCAB,
                activation_function="gelu_new", layer_norm_epsilon=1e-5, tie_word_embeddings=True,
                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


# family -> (HF class, config class, config builder, tokenizer kind, tokenizer style, pinned tokenizer.ggml.pre)
FAMILIES = {
    "llama3": ("LlamaForCausalLM", "LlamaConfig", llama3_config, "bpe", "llama3", "llama-bpe"),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2Config", qwen2_config, "bpe", "qwen", "qwen2"),
    "qwen3": ("Qwen3ForCausalLM", "Qwen3Config", qwen3_config, "bpe", "qwen", "qwen2"),
    "qwen3-yarn": ("Qwen3ForCausalLM", "Qwen3Config", qwen3_yarn_config, "bpe", "qwen", "qwen2"),
    "mistral": ("MistralForCausalLM", "MistralConfig", mistral_config, "spm", "llama", None),
    "phi3": ("Phi3ForCausalLM", "Phi3Config", phi3_config, "spm", "phi3", None),
    "gemma": ("GemmaForCausalLM", "GemmaConfig", gemma_config, "spm", "gemma", None),
    "gpt2": ("GPT2LMHeadModel", "GPT2Config", gpt2_config, "bpe", "gpt2", "gpt-2"),
}

# SentencePiece special ids: (pad, unk, bos, eos); -1 = absent. Extra user-defined pieces: llama.cpp looks up
# "<|endoftext|>" by text when general.name contains "phi3" and fails to load without it.
SPM_IDS = {"llama": (-1, 0, 1, 2), "phi3": (-1, 0, 1, 2), "gemma": (0, 3, 2, 1)}
SPM_USER_SYMBOLS = {"phi3": ["<|endoftext|>"]}

CORPUS = """The quick brown fox jumps over the lazy dog. A tiny model is used to check the engine.
Every layer has attention and a feed forward network; the residual stream carries the hidden state.
Rotary position embeddings rotate pairs of query and key values by an angle that grows with the position.
Numbers like 1, 12, 123 and 2024 appear in text, and so do symbols such as (), [], {}, +, -, * and /.
She sells sea shells by the sea shore, and the shells she sells are surely sea shells.
def add(a, b):\n    return a + b\nprint(add(2, 3))
In the beginning the weights were random, and the logits were spread out over the whole vocabulary."""


def family_seed(name):
    # stable across runs and Python versions (unlike hash())
    return sum((i + 1) * b for i, b in enumerate(name.encode())) * 1000


def sig7(x):
    return float(f"{float(x):.7g}")


# ---------------------------------------------------------------- tokenizers

def write_bpe_tokenizer(hf_dir, specials):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.splitlines() * 4, trainer=trainer)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=specials[0], eos_token=specials[-1])
    fast.save_pretrained(hf_dir)
    return tok.token_to_id(specials[0]), tok.token_to_id(specials[-1])


def write_spm_tokenizer(hf_dir, style):
    import sentencepiece as spm

    pad, unk, bos, eos = SPM_IDS[style]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS.splitlines() * 4), model_writer=buf, vocab_size=VOCAB, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, num_threads=1, pad_id=pad, unk_id=unk, bos_id=bos, eos_id=eos,
        user_defined_symbols=SPM_USER_SYMBOLS.get(style, []), minloglevel=2,
        # identity normalization (as llama's tokenizer.model) keeps the file small: no NFKC charsmap
        normalization_rule_name="identity", remove_extra_whitespaces=False)
    with open(os.path.join(hf_dir, "tokenizer.model"), "wb") as f:
        f.write(buf.getvalue())
    return bos, eos


# ---------------------------------------------------------------- model

def randomize(model, seed, family):
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if p.ndim == 1 and name.endswith(".weight"):  # norm gains
                # gemma stores w and multiplies by (1 + w); the others multiply by w
                p.copy_(0.2 * noise if family == "gemma" else 1.0 + 0.2 * noise)
            elif p.ndim == 1:  # biases
                p.copy_(0.1 * noise)
            elif "embed_tokens" in name or "lm_head" in name or name.endswith("wte.weight"):
                p.copy_(EMB_STD.get(family, 0.3) * noise)
            else:
                p.copy_(MAT_STD * noise)


def build(family, seed, cfg_rng, bos, eos):
    import torch
    import transformers

    hf_class, cfg_class, cfg_fn, *_ = FAMILIES[family]
    cfg_kwargs = cfg_fn(cfg_rng) if family == "phi3" else cfg_fn()
    cfg_kwargs.update(bos_token_id=bos, eos_token_id=eos)
    config = getattr(transformers, cfg_class)(**cfg_kwargs)
    config._attn_implementation = "eager"  # honours mistral's sliding window; same code path for every family
    torch.manual_seed(seed)
    model = getattr(transformers, hf_class)(config).to(torch.float32).eval()
    randomize(model, seed, family)
    model.tie_weights()
    return model


def hf_forward(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def hf_greedy(model, ids):
    import torch
    from transformers import GenerationConfig

    gen_cfg = GenerationConfig(do_sample=False, max_new_tokens=N_GEN, min_new_tokens=N_GEN, eos_token_id=None,
                               pad_token_id=0, use_cache=True, return_dict_in_generate=True, output_logits=True)
    # generate() fills unset fields from model.generation_config (which names the EOS id), so swap it out whole
    saved, model.generation_config = model.generation_config, gen_cfg
    try:
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]))
    finally:
        model.generation_config = saved
    tokens = out.sequences[0, len(ids):].tolist()
    gaps = []
    for step, logits in enumerate(out.logits):
        row = logits[0].float().numpy()
        order = np.argsort(-row, kind="stable")
        # no logits processor may have changed the choice: the token must be the argmax of the raw logits
        assert int(order[0]) == tokens[step], (step, int(order[0]), tokens[step])
        gaps.append(float(row[order[0]] - row[order[1]]))
    return tokens, gaps


# ---------------------------------------------------------------- llama.cpp

def convert_main(argv):
    """Child process: run llama.cpp's converter with the BPE pre-tokenizer detection pinned."""
    llama_cpp_dir, hf_dir, out, pre, name = argv
    sys.path.insert(0, llama_cpp_dir)
    sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outtype", "f32", "--outfile", out, "--model-name", name]
    import convert_hf_to_gguf
    from conversion import base

    if pre != "-":
        # The tiny tokenizer's hash of chktxt is unknown to the converter; pin the pre-tokenizer name.
        base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
    convert_hf_to_gguf.main()


def convert(llama_cpp_dir, hf_dir, out, pre, name):
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("NO_LOCAL_GGUF", None)
    subprocess.run([sys.executable, os.path.abspath(__file__), "--convert-child", llama_cpp_dir, hf_dir, out,
                    pre or "-", name], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


_LOG_CB = None


def llamacpp_run(gguf_path, ids):
    """Per-position logits of ids and 20 greedy tokens (argmax of raw logits) with llama.cpp."""
    global _LOG_CB
    import llama_cpp as L
    from ggml_lib import load_model, new_context

    if _LOG_CB is None:
        _LOG_CB = L.llama_log_callback(lambda level, text, user: None)
        L.llama_log_set(_LOG_CB, ctypes.c_void_p(0))
    model = load_model(gguf_path)
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    # n_ctx 256: llama.cpp pads n_ctx to 256 anyway; phi3's factor choice depends on it.
    ctx = new_context(model, 256, 64, N_THREADS)

    def decode(toks, start, all_logits):
        batch = L.llama_batch_init(len(toks), 0, 1)
        try:
            for i, t in enumerate(toks):
                batch.token[i] = t
                batch.pos[i] = start + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1 if (all_logits or i == len(toks) - 1) else 0
            batch.n_tokens = len(toks)
            if L.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
        finally:
            L.llama_batch_free(batch)
        rows = range(len(toks)) if all_logits else [len(toks) - 1]
        return np.stack([np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,)).copy()
                         for i in rows])

    logits = decode(ids, 0, True)
    greedy, row, pos = [], logits[-1], len(ids)
    for step in range(N_GEN):
        tok = int(np.argsort(-row, kind="stable")[0])
        greedy.append(tok)
        if step + 1 < N_GEN:
            row = decode([tok], pos, False)[0]
            pos += 1
    L.llama_free(ctx)
    L.llama_model_free(model)
    return logits, greedy


def gguf_summary(path, llama_cpp_dir):
    sys.path.insert(0, os.path.join(llama_cpp_dir, "gguf-py"))
    from gguf import GGUFReader

    r = GGUFReader(path)
    meta = {}
    for f in r.fields.values():
        if f.name.startswith("tokenizer.ggml.") and f.name not in ("tokenizer.ggml.model", "tokenizer.ggml.pre"):
            if not f.name.endswith("_id") and not f.name.startswith("tokenizer.ggml.add_"):
                continue
        v = f.contents()
        if isinstance(v, list) and len(v) > 16:
            v = f"[{len(v)} items]"
        meta[f.name] = v
    tensors = {t.name: [list(map(int, t.shape)), t.tensor_type.name] for t in r.tensors}
    return meta, tensors


# ---------------------------------------------------------------- main

def make_family(family, llama_cpp_dir):
    import torch
    import transformers

    hf_class, _, _, tok_kind, tok_style, pre = FAMILIES[family]
    fam_dir = os.path.join(OUT_ROOT, family)
    hf_dir = os.path.join(fam_dir, "hf")
    shutil.rmtree(fam_dir, ignore_errors=True)
    os.makedirs(hf_dir)

    rng = np.random.default_rng(family_seed(family))
    ids = [int(x) for x in rng.integers(0, VOCAB, N_PROMPT)]
    cfg_seed = int(rng.integers(0, 2**31))

    if tok_kind == "bpe":
        bos, eos = write_bpe_tokenizer(hf_dir, BPE_SPECIALS[tok_style])
    else:
        bos, eos = write_spm_tokenizer(hf_dir, tok_style)

    base_seed = family_seed(family)
    for attempt in range(MAX_SEEDS):
        seed = base_seed + attempt
        model = build(family, seed, np.random.default_rng(cfg_seed), bos, eos)
        greedy, gaps = hf_greedy(model, ids)
        if min(gaps) > MIN_GAP and len(set(greedy)) >= MIN_DISTINCT:
            break
    else:
        raise RuntimeError(f"{family}: no seed in {MAX_SEEDS} meets the greedy gap/diversity criteria")
    print(f"{family}: seed {seed} after {attempt + 1} tries", file=sys.stderr)
    logits = hf_forward(model, ids)
    # generate() with the KV cache must agree with the full forward at the first step
    assert int(np.argmax(logits[-1])) == greedy[0]
    model.save_pretrained(hf_dir)
    if family == "gpt2":
        # llama.cpp's gpt2 converter reads hparams["n_ctx"], which transformers 5 no longer writes
        cfg_path = os.path.join(hf_dir, "config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg["n_ctx"] = cfg["n_positions"]
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")

    # The saved directory must reload to the same logits.
    reloaded = getattr(transformers, hf_class).from_pretrained(hf_dir, dtype=torch.float32,
                                                               attn_implementation="eager").eval()
    assert np.array_equal(hf_forward(reloaded, ids), logits), f"{family}: reload changed the logits"

    ref = {
        "family": family,
        "hf_class": hf_class,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "seed": seed,
        "n_params": sum(p.numel() for p in model.parameters()),
        "tied_embeddings": bool(model.config.tie_word_embeddings),
        "attn_implementation": "eager",
        "input_ids": ids,
        "logits": [[sig7(x) for x in row] for row in logits],
        "greedy": greedy,
        "greedy_gaps": [sig7(g) for g in gaps],
        "notes": {},
    }
    notes = ref["notes"]
    prompt_sorted = np.sort(logits, axis=1)
    ref["prompt_gaps"] = [sig7(g) for g in prompt_sorted[:, -1] - prompt_sorted[:, -2]]

    if family == "mistral":
        model.config.sliding_window = None
        no_window = hf_forward(model, ids)
        model.config.sliding_window = 8
        diff = float(np.abs(no_window - logits).max())
        first = int(np.argmax(np.abs(no_window - logits).max(axis=1) > 0))
        assert diff > 1e-2, f"sliding window did not change the logits ({diff})"
        notes["sliding_window"] = ("window 8: query position i attends to key positions j with i-8 < j <= i "
                                   "(the last 8 tokens including itself), on every layer")
        notes["no_window_max_abs_logit_diff"] = sig7(diff)
        notes["first_position_changed_by_window"] = first
        ref["_no_window_logits"] = no_window
    if family == "phi3":
        rp = model.config.rope_parameters
        orig = rp["original_max_position_embeddings"]
        scale = model.config.max_position_embeddings / orig
        attn_factor = math.sqrt(1 + math.log(scale) / math.log(orig))
        notes["longrope"] = (
            f"transformers uses short_factor: it picks long_factor only while max(position_ids)+1 > "
            f"original_max_position_embeddings ({orig}); the test reaches {N_PROMPT + N_GEN} positions. "
            f"inv_freq[i] = 1 / (short_factor[i] * theta^(2i/d)). cos and sin are multiplied by attention_factor = "
            f"sqrt(1 + ln({scale:g}) / ln({orig})) = {attn_factor:.7f}. llama.cpp picks rope_factors_short "
            f"because its (padded) n_ctx 256 <= n_ctx_orig {orig}.")
        notes["attention_factor"] = sig7(attn_factor)
        notes["short_factor"] = rp["short_factor"]
        notes["long_factor"] = rp["long_factor"]
    if family == "llama3":
        rp = model.config.rope_parameters
        d = DIMS["head_dim"]
        freqs = 1.0 / (rp["rope_theta"] ** (np.arange(0, d, 2) / d))
        rot = model.model.rotary_emb
        notes["llama3_inv_freq_divisors"] = [sig7(x) for x in (freqs / rot.inv_freq.numpy())]
        notes["llama3"] = ("inv_freq_divisors[i] = default inv_freq / llama3 inv_freq per pair: 1 (high freq, "
                           "wavelen < orig/high_freq_factor), factor (low freq), smooth in between")
    if family == "gemma":
        notes["gemma"] = ("embeddings scaled by sqrt(hidden_size) (as a float32 value cast to the hidden dtype); "
                          "RMSNorm weight applied as (1 + w); MQA (1 KV head); tied lm_head")
    if family == "gpt2":
        notes["gpt2"] = "MLP width 4*n_embd = 256 (n_inner None); Conv1D weights stored [in, out]"

    gguf_path = os.path.join(fam_dir, "model.gguf")
    convert(llama_cpp_dir, hf_dir, gguf_path, pre, f"tiny-{family}")
    lc_logits, lc_greedy = llamacpp_run(gguf_path, ids)
    ref["llamacpp_greedy"] = lc_greedy
    ref["llamacpp_greedy_agree_prefix"] = next((i for i, (a, b) in enumerate(zip(lc_greedy, greedy)) if a != b),
                                               N_GEN)
    ref["llamacpp_max_abs_logit_diff"] = sig7(np.abs(lc_logits - logits).max())
    if "_no_window_logits" in ref:
        notes["llamacpp_max_abs_logit_diff_vs_no_window"] = sig7(np.abs(lc_logits - ref["_no_window_logits"]).max())
        del ref["_no_window_logits"]
    meta, tensors = gguf_summary(gguf_path, llama_cpp_dir)
    ref["gguf"] = {"converter": "llama.cpp convert_hf_to_gguf.py from llama-cpp-python 0.3.36, --outtype f32",
                   "tokenizer_pre_pinned": pre, "metadata": meta, "tensors": tensors}
    ref["hf_tensors"] = {k: list(v.shape) for k, v in model.state_dict().items()}

    with open(os.path.join(fam_dir, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    return ref


def dir_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--convert-child":
        return convert_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-cpp", default=os.path.join("tools", "reference", ".cache", "llama_cpp_python-0.3.36",
                                                         "vendor", "llama.cpp"),
                    help="vendor/llama.cpp directory of the llama-cpp-python 0.3.36 sdist")
    ap.add_argument("--only", nargs="*", choices=sorted(FAMILIES), help="families to rebuild (default: all)")
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.llama_cpp, "convert_hf_to_gguf.py")):
        sys.exit(f"no convert_hf_to_gguf.py under {args.llama_cpp}")
    import torch

    torch.set_num_threads(N_THREADS)
    rows = []
    for family in args.only or FAMILIES:
        ref = make_family(family, os.path.abspath(args.llama_cpp))
        g = ref["greedy_gaps"]
        rows.append((family, ref["n_params"], min(g), float(np.median(g)), ref["llamacpp_max_abs_logit_diff"],
                     ref["llamacpp_greedy_agree_prefix"], dir_size(os.path.join(OUT_ROOT, family))))
        print(f"done {family}", file=sys.stderr)
    print(f"{'family':8} {'params':>7} {'min gap':>8} {'med gap':>8} {'lcpp diff':>9} {'lcpp agree':>10} {'bytes':>8}")
    for r in rows:
        print(f"{r[0]:8} {r[1]:7d} {r[2]:8.4f} {r[3]:8.4f} {r[4]:9.4f} {r[5]:7d}/{N_GEN} {r[6]:8d}")


if __name__ == "__main__":
    main()
