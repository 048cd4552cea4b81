"""Synapse: local LLM inference in Rust.

``Model`` is Synapse's own API; ``Llama`` mirrors llama-cpp-python's ``llama_cpp.Llama``
(``create_completion``, ``create_chat_completion``), so that its users can switch by
changing an import. Both run the same engine as the ``synapse`` command.
"""

from ._synapse import (
    BadFormatError,
    ContextFullError,
    Generation,
    InternalError,
    InvalidArgumentError,
    Model,
    ModelFileError,
    SynapseError,
    UnsupportedError,
    __version__,
)
from .llama import Llama

__all__ = [
    "BadFormatError",
    "ContextFullError",
    "Generation",
    "InternalError",
    "InvalidArgumentError",
    "Llama",
    "Model",
    "ModelFileError",
    "SynapseError",
    "UnsupportedError",
    "__version__",
]
