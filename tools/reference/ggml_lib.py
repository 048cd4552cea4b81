"""The ggml libraries that llama-cpp-python ships (in `lib/` beside its Python package),
loaded with ctypes, for the scripts that call llama.cpp's quantizers directly."""
import ctypes
import os

import llama_cpp


def load(name: str) -> ctypes.CDLL:
    """`name`: "ggml-base" (the reference quantizers, ggml_quantize_chunk) or "ggml-cpu"
    (the CPU backend's SIMD quantizers of activations)."""
    return ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", f"lib{name}.so"))
