"""Type stubs of the extension module synapse._synapse."""

from os import PathLike
from typing import Any, Iterator, Literal, Mapping, Optional, Sequence, Union, overload

__version__: str

class SynapseError(Exception): ...
class InvalidArgumentError(SynapseError): ...
class ModelFileError(SynapseError): ...
class BadFormatError(SynapseError): ...
class UnsupportedError(SynapseError): ...
class ContextFullError(SynapseError): ...
class InternalError(SynapseError): ...

class Generation(Iterator[str]):
    """A generation in progress: iterates over pieces of text."""

    n_prompt_tokens: int
    n_cached_tokens: int
    tokens: list[int]
    text: str
    finish_reason: Optional[Literal["stop", "length", "cancelled"]]
    prefill_ms: float
    decode_ms: float
    @property
    def n_tokens(self) -> int: ...
    def __iter__(self) -> "Generation": ...
    def __next__(self) -> str: ...

class Model:
    def __init__(
        self,
        path: Union[str, "PathLike[str]", None] = None,
        *,
        threads: Optional[int] = None,
        ctx_size: Optional[int] = None,
    ) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def architecture(self) -> str: ...
    @property
    def n_ctx(self) -> int: ...
    @property
    def n_ctx_train(self) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def n_params(self) -> int: ...
    @property
    def bos_id(self) -> Optional[int]: ...
    @property
    def eos_id(self) -> Optional[int]: ...
    @property
    def threads(self) -> int: ...
    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]: ...
    def detokenize(self, ids: Sequence[int]) -> str: ...
    def token_bytes(self, id: int) -> bytes: ...
    def apply_chat_template(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True
    ) -> str: ...
    def logits(self, ids: Sequence[int]) -> Any:
        """A NumPy array (len(ids), n_vocab) when NumPy is installed, else lists."""
    @overload
    def generate(
        self,
        prompt: Union[str, Sequence[int]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Optional[Sequence[str]] = None,
        ignore_eos: bool = False,
        stream: Literal[False] = False,
    ) -> str: ...
    @overload
    def generate(
        self,
        prompt: Union[str, Sequence[int]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Optional[Sequence[str]] = None,
        ignore_eos: bool = False,
        stream: Literal[True],
    ) -> Generation: ...
    @overload
    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Optional[Sequence[str]] = None,
        stream: Literal[False] = False,
    ) -> str: ...
    @overload
    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Optional[Sequence[str]] = None,
        stream: Literal[True],
    ) -> Generation: ...
    def reset(self) -> None: ...
