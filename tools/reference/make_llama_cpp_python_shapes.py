#!/usr/bin/env python3
"""Record the shapes of llama-cpp-python's high-level results, for synapse.Llama to match.

Runs `llama_cpp.Llama` on the default model: `create_completion` and
`create_chat_completion`, each whole and streamed, and writes their shapes to
tests/fixtures/python/llama_cpp_python_shapes.json: every dict as its keys with the
shape of each value, a list as the shape of its first item, a scalar as its type name
("str", "int", "float", "bool", "null"). crates/synapse-py/tests/test_llama.py requires
synapse.Llama's results to have the same shapes (and compares with llama-cpp-python
itself where it is installed).

Run from the repo root:
  python3 tools/reference/make_llama_cpp_python_shapes.py [--model PATH]
"""
import argparse
import importlib.metadata
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import dump_json  # noqa: E402

OUT = "tests/fixtures/python/llama_cpp_python_shapes.json"
PROMPT = "The capital of France is"
MESSAGES = [{"role": "user", "content": "Hi! What is the capital of France?"}]


def shape(value):
    """The structure of an OpenAI-shaped result: keys and value types, not values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if value is None:
        return "null"
    return type(value).__name__


def stream_shapes(chunks):
    """The first, a middle and the last chunk's shapes (they differ for chat)."""
    chunks = list(chunks)
    return {"first": shape(chunks[0]), "middle": shape(chunks[len(chunks) // 2]), "last": shape(chunks[-1])}


def record(llm):
    return {
        "create_completion": shape(llm.create_completion(PROMPT, max_tokens=8, temperature=0)),
        "create_completion_stream": stream_shapes(
            llm.create_completion(PROMPT, max_tokens=8, temperature=0, stream=True)
        ),
        "create_chat_completion": shape(
            llm.create_chat_completion(MESSAGES, max_tokens=8, temperature=0)
        ),
        "create_chat_completion_stream": stream_shapes(
            llm.create_chat_completion(MESSAGES, max_tokens=8, temperature=0, stream=True)
        ),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/synapse/SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    from llama_cpp import Llama

    llm = Llama(model_path=args.model, n_ctx=512, n_threads=2, verbose=False)
    result = {"llama_cpp_python": importlib.metadata.version("llama-cpp-python"), **record(llm)}
    dump_json(result, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
