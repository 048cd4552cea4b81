"""llama-cpp-python's high-level API over Synapse.

``Llama`` takes the arguments of ``llama_cpp.Llama`` that matter on a CPU and returns the
same OpenAI-shaped dicts and stream chunks from ``create_completion`` and
``create_chat_completion``, so that ``from llama_cpp import Llama`` can become
``from synapse import Llama``. Arguments that Synapse does not implement (grammars, logit
biases, mirostat, echo, penalties other than the repetition penalty, tools) raise
``NotImplementedError`` when set to anything but their default, instead of being ignored.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from ._synapse import Generation, Model

# Arguments accepted for compatibility, and the values that mean "not used".
_INERT = {
    "suffix": None,
    "typical_p": 1.0,
    "logprobs": None,
    "top_logprobs": None,
    "echo": False,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "tfs_z": 1.0,
    "mirostat_mode": 0,
    "mirostat_tau": 5.0,
    "mirostat_eta": 0.1,
    "stopping_criteria": None,
    "logits_processor": None,
    "grammar": None,
    "logit_bias": None,
    "functions": None,
    "function_call": None,
    "tools": None,
    "tool_choice": None,
    "response_format": None,
}

# Constructor arguments of llama_cpp.Llama that have no meaning on Synapse's CPU engine.
_IGNORED_INIT = {
    "n_gpu_layers", "split_mode", "main_gpu", "tensor_split", "vocab_only", "use_mmap",
    "use_mlock", "n_batch", "n_ubatch", "n_threads_batch", "logits_all", "embedding",
    "offload_kqv", "flash_attn", "last_n_tokens_size", "numa", "chat_format",
    "chat_handler", "verbose", "type_k", "type_v", "rope_freq_base", "rope_freq_scale",
}


def _check_inert(args: Dict[str, Any]) -> None:
    for name, value in args.items():
        if value != _INERT[name] and not (name == "logprobs" and value is False):
            raise NotImplementedError(f"synapse.Llama does not implement {name}={value!r}")


class Llama:
    """A model, as ``llama_cpp.Llama`` exposes one."""

    def __init__(
        self,
        model_path: Optional[str] = None,
        *,
        seed: Optional[int] = None,
        n_ctx: int = 512,
        n_threads: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        """``model_path`` None: Synapse's default model. ``n_ctx`` 0: the model's own."""
        unknown = set(kwargs) - _IGNORED_INIT
        if unknown:
            raise TypeError(f"unexpected arguments for synapse.Llama: {sorted(unknown)}")
        self._model = Model(model_path, threads=n_threads, ctx_size=n_ctx)
        self.model_path = self._model.path
        self._seed = seed

    @property
    def model(self) -> Model:
        """The underlying ``synapse.Model``."""
        return self._model

    def n_ctx(self) -> int:
        return self._model.n_ctx

    def n_vocab(self) -> int:
        return self._model.n_vocab

    def token_bos(self) -> int:
        return -1 if self._model.bos_id is None else self._model.bos_id

    def token_eos(self) -> int:
        return -1 if self._model.eos_id is None else self._model.eos_id

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> List[int]:
        return self._model.tokenize(text.decode("utf-8"), add_bos=add_bos, special=special)

    def detokenize(
        self, tokens: Sequence[int], prev_tokens: Optional[Sequence[int]] = None, special: bool = False
    ) -> bytes:
        return b"".join(self._model.token_bytes(t) for t in tokens)

    def reset(self) -> None:
        self._model.reset()

    def _sampling(
        self,
        max_tokens: Optional[int],
        temperature: float,
        top_k: int,
        top_p: float,
        min_p: float,
        repeat_penalty: float,
        seed: Optional[int],
        stop: Optional[Union[str, List[str]]],
    ) -> Dict[str, Any]:
        """The arguments of a streamed ``Model.generate`` or ``Model.chat``."""
        return {
            # None or <= 0: up to the end of the context, as llama-cpp-python does.
            "max_tokens": self._model.n_ctx if max_tokens is None or max_tokens <= 0 else max_tokens,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "min_p": min_p,
            "repeat_penalty": repeat_penalty,
            "seed": self._seed if seed is None else seed,
            "stop": [stop] if isinstance(stop, str) else list(stop or []),
            "stream": True,
        }

    def create_completion(
        self,
        prompt: Union[str, List[int]],
        suffix: Optional[str] = None,
        max_tokens: Optional[int] = 16,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        logprobs: Optional[int] = None,
        echo: bool = False,
        stop: Optional[Union[str, List[str]]] = None,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        top_k: int = 40,
        stream: bool = False,
        seed: Optional[int] = None,
        tfs_z: float = 1.0,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        model: Optional[str] = None,
        stopping_criteria: Any = None,
        logits_processor: Any = None,
        grammar: Any = None,
        logit_bias: Optional[Dict[int, float]] = None,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """An OpenAI-shaped text completion (a dict), or its chunks with ``stream``."""
        _check_inert(dict(
            suffix=suffix, typical_p=typical_p, logprobs=logprobs, echo=echo,
            frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            tfs_z=tfs_z, mirostat_mode=mirostat_mode, mirostat_tau=mirostat_tau,
            mirostat_eta=mirostat_eta, stopping_criteria=stopping_criteria,
            logits_processor=logits_processor, grammar=grammar, logit_bias=logit_bias,
        ))
        generation = self._model.generate(
            prompt,
            **self._sampling(max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, seed, stop),
        )
        head = {
            "id": f"cmpl-{uuid.uuid4()}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model or self.model_path,
        }
        if stream:
            return self._completion_chunks(head, generation)
        text = "".join(generation)
        return {
            **head,
            "choices": [
                {"text": text, "index": 0, "logprobs": None, "finish_reason": generation.finish_reason}
            ],
            "usage": _usage(generation),
        }

    __call__ = create_completion

    @staticmethod
    def _completion_chunks(head: Dict[str, Any], generation: Generation) -> Iterator[Dict[str, Any]]:
        for piece in generation:
            yield {**head, "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": None}]}
        yield {
            **head,
            "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": generation.finish_reason}],
        }

    def create_chat_completion(
        self,
        messages: List[Dict[str, Any]],
        functions: Any = None,
        function_call: Any = None,
        tools: Any = None,
        tool_choice: Any = None,
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        stream: bool = False,
        stop: Optional[Union[str, List[str]]] = None,
        seed: Optional[int] = None,
        response_format: Any = None,
        max_tokens: Optional[int] = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        tfs_z: float = 1.0,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        model: Optional[str] = None,
        logits_processor: Any = None,
        grammar: Any = None,
        logit_bias: Optional[Dict[int, float]] = None,
        logprobs: Optional[bool] = None,
        top_logprobs: Optional[int] = None,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """An OpenAI-shaped chat completion with the model's chat template, or its chunks
        with ``stream``. The cache keeps what the conversation shares with the last call."""
        _check_inert(dict(
            functions=functions, function_call=function_call, tools=tools,
            tool_choice=tool_choice, typical_p=typical_p, response_format=response_format,
            presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
            tfs_z=tfs_z, mirostat_mode=mirostat_mode, mirostat_tau=mirostat_tau,
            mirostat_eta=mirostat_eta, logits_processor=logits_processor, grammar=grammar,
            logit_bias=logit_bias, logprobs=logprobs, top_logprobs=top_logprobs,
        ))
        generation = self._model.chat(
            messages,
            **self._sampling(max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, seed, stop),
        )
        head = {
            "id": f"chatcmpl-{uuid.uuid4()}",
            "created": int(time.time()),
            "model": model or self.model_path,
        }
        if stream:
            return self._chat_chunks(head, generation)
        text = "".join(generation)
        return {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": generation.finish_reason,
                }
            ],
            "usage": _usage(generation),
        }

    @staticmethod
    def _chat_chunks(head: Dict[str, Any], generation: Generation) -> Iterator[Dict[str, Any]]:
        def chunk(delta: Dict[str, str], finish_reason: Optional[str] = None) -> Dict[str, Any]:
            return {
                **head,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }

        yield chunk({"role": "assistant"})
        for piece in generation:
            yield chunk({"content": piece})
        yield chunk({}, generation.finish_reason)


def _usage(generation: Generation) -> Dict[str, int]:
    return {
        "prompt_tokens": generation.n_prompt_tokens,
        "completion_tokens": generation.n_tokens,
        "total_tokens": generation.n_prompt_tokens + generation.n_tokens,
    }
