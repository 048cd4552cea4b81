"""synapse.Llama: llama-cpp-python's high-level API, with the same result shapes.

The shapes (keys and value types) of llama-cpp-python 0.3.36's results are recorded in
tests/fixtures/python/llama_cpp_python_shapes.json by
tools/reference/make_llama_cpp_python_shapes.py; where llama-cpp-python is installed the
tests also compare with it live.
"""

import json
import sys

import pytest

import synapse
from conftest import REPO

sys.path.insert(0, str(REPO / "tools/reference"))
# The reference script's own calls and shape function, run on synapse.Llama here.
from make_llama_cpp_python_shapes import MESSAGES, OUT, PROMPT, record  # noqa: E402

RECORDED = json.loads((REPO / OUT).read_text())


@pytest.fixture(scope="module")
def llm():
    return synapse.Llama(n_ctx=512)


def test_results_have_llama_cpp_pythons_shapes(llm):
    ours = record(llm)
    for call, recorded in RECORDED.items():
        if call != "llama_cpp_python":
            assert ours[call] == recorded, call


def test_results_match_llama_cpp_python_live(llm):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    theirs = llama_cpp.Llama(model_path=llm.model_path, n_ctx=512, n_threads=2, verbose=False)
    assert record(llm) == record(theirs)


def test_completion_values(llm):
    out = llm.create_completion(PROMPT, max_tokens=8, temperature=0)
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-")
    assert out["model"] == llm.model_path
    choice = out["choices"][0]
    assert choice["finish_reason"] == "length" and choice["index"] == 0
    usage = out["usage"]
    assert usage == {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}
    streamed = list(llm.create_completion(PROMPT, max_tokens=8, temperature=0, stream=True))
    assert "".join(c["choices"][0]["text"] for c in streamed) == choice["text"]
    assert {c["id"] for c in streamed} == {streamed[0]["id"]}
    assert [c["choices"][0]["finish_reason"] for c in streamed][-2:] == [None, "length"]
    assert llm(PROMPT, max_tokens=8, temperature=0)["choices"][0]["text"] == choice["text"]


def test_chat_completion_values(llm):
    out = llm.create_chat_completion(MESSAGES, max_tokens=32, temperature=0)
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    message = out["choices"][0]["message"]
    assert message["role"] == "assistant" and "Paris" in message["content"]
    assert out["choices"][0]["finish_reason"] == "stop"
    chunks = list(llm.create_chat_completion(MESSAGES, max_tokens=32, temperature=0, stream=True))
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == message["content"]


def test_tokenizer_methods_take_and_give_bytes(llm):
    ids = llm.tokenize(PROMPT.encode())
    assert llm.detokenize(ids) == PROMPT.encode()
    assert (llm.n_ctx(), llm.n_vocab(), llm.token_bos(), llm.token_eos()) == (512, 49152, 1, 2)


def test_unimplemented_arguments_are_refused_not_ignored(llm):
    with pytest.raises(NotImplementedError, match="grammar"):
        llm.create_completion(PROMPT, grammar=object())
    with pytest.raises(NotImplementedError, match="presence_penalty"):
        llm.create_chat_completion(MESSAGES, presence_penalty=0.5)
    with pytest.raises(TypeError, match="n_frobnicate"):
        synapse.Llama(n_frobnicate=1)
    # GPU and memory-map settings mean nothing here, and are accepted as llama_cpp does.
    assert synapse.Llama(n_ctx=64, n_gpu_layers=-1, use_mmap=True, verbose=False).n_ctx() == 64
