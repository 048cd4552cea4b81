"""synapse.Model: the engine's own Python API, checked against the CLI."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import synapse

PROMPT = "The capital of France is"


def test_greedy_generation_gives_the_cli_tokens(model, cli):
    want = cli("run", "--prompt", PROMPT, "--temperature", "0", "--max-tokens", "24", "--ignore-eos")
    generation = model.generate(PROMPT, max_tokens=24, temperature=0, ignore_eos=True, stream=True)
    text = "".join(generation)
    assert generation.tokens == want["tokens"]
    assert text == want["text"]
    assert generation.n_prompt_tokens == len(want["prompt_tokens"])
    assert generation.finish_reason == "length"
    # The whole text at once is the same.
    assert model.generate(PROMPT, max_tokens=24, temperature=0, ignore_eos=True) == text


def test_token_ids_as_prompt(model):
    ids = model.tokenize(PROMPT)
    assert model.generate(ids, max_tokens=8, temperature=0) == model.generate(
        PROMPT, max_tokens=8, temperature=0
    )


def test_model_facts(model):
    assert model.architecture == "llama"
    assert (model.n_vocab, model.n_ctx_train, model.n_ctx) == (49152, 8192, 512)
    assert model.n_params == 134_515_008
    assert (model.bos_id, model.eos_id) == (1, 2)
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in repr(model)


def test_tokenize_and_detokenize(model, cli):
    ids = model.tokenize(PROMPT)
    assert ids == cli("run", "--prompt", PROMPT, "--max-tokens", "0")["prompt_tokens"]
    assert model.detokenize(ids) == PROMPT
    assert model.tokenize("<|im_start|>") == [1]
    assert len(model.tokenize("<|im_start|>", special=False)) > 1
    assert b"".join(model.token_bytes(i) for i in ids) == PROMPT.encode()
    with pytest.raises(synapse.InvalidArgumentError, match="outside the vocabulary"):
        model.detokenize([49152])


def test_logits_match_generation(model):
    ids = model.tokenize(PROMPT)
    logits = model.logits(ids)
    assert isinstance(logits, np.ndarray)
    assert logits.shape == (len(ids), 49152) and logits.dtype == np.float32
    first = model.generate(PROMPT, max_tokens=1, temperature=0, stream=True)
    list(first)
    assert first.tokens == [int(logits[-1].argmax())]


def test_stop_strings_end_the_text(model):
    text = model.generate(PROMPT, max_tokens=16, temperature=0, stop=["Paris"])
    assert "Paris" not in text
    generation = model.generate(PROMPT, max_tokens=16, temperature=0, stop=["Paris"], stream=True)
    list(generation)
    assert generation.finish_reason == "stop"


def test_seeded_sampling_repeats(model):
    a = model.generate(PROMPT, max_tokens=16, temperature=1.0, seed=7)
    b = model.generate(PROMPT, max_tokens=16, temperature=1.0, seed=7)
    assert a == b


def test_chat_uses_the_template_and_keeps_the_cache(model):
    messages = [{"role": "user", "content": "Hi! What is the capital of France?"}]
    first = model.chat(messages, max_tokens=32, temperature=0, stream=True)
    reply = "".join(first)
    assert "Paris" in reply
    messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And of Italy?"}]
    second = model.chat(messages, max_tokens=32, temperature=0, stream=True)
    assert "Rome" in "".join(second)
    # The second turn evaluates only past the first turn's prompt and reply, cached.
    assert first.n_cached_tokens == 0
    assert second.n_cached_tokens >= first.n_prompt_tokens + len(first.tokens) - 1
    assert second.n_prompt_tokens > second.n_cached_tokens
    rendered = model.apply_chat_template(messages)
    assert rendered.endswith("<|im_start|>assistant\n")


def test_errors_are_typed(tmp_path):
    with pytest.raises(synapse.ModelFileError, match="nonexistent.gguf"):
        synapse.Model("/nonexistent.gguf")
    png = tmp_path / "picture.gguf"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(synapse.BadFormatError, match="picture.gguf"):
        synapse.Model(png)
    assert issubclass(synapse.ContextFullError, synapse.SynapseError)


def test_a_prompt_over_the_context_is_refused():
    small = synapse.Model(ctx_size=16)
    with pytest.raises(synapse.ContextFullError, match="context of 16 tokens"):
        small.generate(" one" * 40, max_tokens=4)
    # The model is still usable.
    assert small.generate(PROMPT, max_tokens=2, temperature=0)


def test_a_later_generation_overtakes_a_stream(model):
    stream = model.generate(PROMPT, max_tokens=16, temperature=0, stream=True)
    next(stream)
    model.generate(PROMPT, max_tokens=2, temperature=0)
    with pytest.raises(RuntimeError, match="overtaken"):
        next(stream)


def test_the_gil_is_released_while_generating(model):
    done = threading.Event()
    counts = 0

    def generate():
        model.generate(PROMPT, max_tokens=48, temperature=0, ignore_eos=True)
        done.set()

    worker = threading.Thread(target=generate)
    worker.start()
    while not done.is_set():
        counts += 1
    worker.join()
    # Holding the GIL through the generation would leave this thread a handful of turns.
    assert counts > 10_000


def test_ctrl_c_stops_a_generation(tmp_path):
    script = textwrap.dedent(
        """
        import os, signal, threading, time, synapse
        # Python leaves SIGINT alone where its parent ignored it (a job started in the
        # background, say): take it back, as an interactive session has it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        model = synapse.Model(ctx_size=4096)
        threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        start = time.time()
        try:
            model.generate("Once upon a time", max_tokens=4000, ignore_eos=True)
            print("finished")
        except KeyboardInterrupt:
            print(f"interrupted after {time.time() - start:.1f} s")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.stdout.startswith("interrupted after"), out.stdout + out.stderr
    assert float(out.stdout.split()[2]) < 10
