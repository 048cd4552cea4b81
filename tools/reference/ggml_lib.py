"""The native side of llama-cpp-python for the scripts that call it directly: the ggml
libraries it ships (in `lib/` beside its Python package), loaded with ctypes, and a llama.cpp
model and context on the CPU through its low-level C API."""
import ctypes
import os

import llama_cpp as L


def load(name: str) -> ctypes.CDLL:
    """`name`: "ggml-base" (the reference quantizers, ggml_quantize_chunk) or "ggml-cpu"
    (the CPU backend's SIMD quantizers of activations)."""
    return ctypes.CDLL(os.path.join(os.path.dirname(L.__file__), "lib", f"lib{name}.so"))


def load_model(path):
    """Initialises the backend and loads the GGUF at `path` with every layer on the CPU."""
    L.llama_backend_init()
    mparams = L.llama_model_default_params()
    mparams.n_gpu_layers = 0
    model = L.llama_model_load_from_file(path.encode(), mparams)
    if not model:
        raise SystemExit(f"llama.cpp could not load {path}")
    return model


def new_context(model, n_ctx, n_batch, threads):
    """A context whose micro-batch is the whole batch, with `threads` for single tokens and
    batches alike."""
    cparams = L.llama_context_default_params()
    cparams.n_ctx = n_ctx
    cparams.n_batch = n_batch
    cparams.n_ubatch = n_batch
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    cparams.no_perf = True  # llama.cpp's own timers: nothing here reads them
    ctx = L.llama_init_from_model(model, cparams)
    if not ctx:
        raise SystemExit("llama.cpp could not create a context")
    return ctx
