"""gpt-oss-native: a C++ runtime for OpenAI's gpt-oss models.

    import gpt_oss_native as gon
    model = gon.Model("/path/to/gpt-oss-20b")
    ctx = gon.Context(model, context_length=4096, max_batch_tokens=128)
    ctx.append(prompt_tokens)
    ctx.process()
    token, logprob = ctx.sample(temperature=0.0)

    for piece in model.generate("Why is the sky blue?", max_tokens=64):
        print(piece, end="", flush=True)

Command line: ``python -m gpt_oss_native --help``.
"""

from __future__ import annotations

from . import _core
from .errors import (
    BackendUnavailableError,
    CancelledError,
    CheckpointError,
    CheckpointNotFoundError,
    ContextOverflowError,
    CorruptCheckpointError,
    Error,
    InvalidArgumentError,
    OutOfMemoryError,
    TokenOutOfRangeError,
    UnsupportedCheckpointError,
)
from . import harmony
from .runtime import DEFAULT_TEMPERATURE, Context, Generation, GenerationChunk, Model
from .engine import Engine, Request
from .tokenizer import StreamDecoder, Tokenizer

__version__ = _core.__version__

__all__ = [
    "Model",
    "Context",
    "Engine",
    "Request",
    "DEFAULT_TEMPERATURE",
    "Generation",
    "GenerationChunk",
    "Tokenizer",
    "StreamDecoder",
    "harmony",
    "Error",
    "InvalidArgumentError",
    "TokenOutOfRangeError",
    "ContextOverflowError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "UnsupportedCheckpointError",
    "OutOfMemoryError",
    "BackendUnavailableError",
    "CancelledError",
    "__version__",
]
