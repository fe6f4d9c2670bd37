"""Exceptions raised by gpt_oss_native.

Every error the runtime reports is an instance of :class:`Error`. The
subclasses say what went wrong; where a standard Python exception fits too
(``ValueError`` for bad arguments, ``FileNotFoundError`` for a missing
checkpoint, ``MemoryError``) the class derives from it as well, so existing
``except`` clauses keep working.
"""

from __future__ import annotations


class Error(Exception):
    """Base class of every gpt_oss_native error."""


class InvalidArgumentError(Error, ValueError, TypeError):
    """An argument has a wrong value, type or shape."""


class TokenOutOfRangeError(InvalidArgumentError):
    """A token id is negative or not below the model's vocabulary size."""


class ContextOverflowError(Error):
    """More tokens than the context was created to hold."""


class CheckpointError(Error):
    """A checkpoint cannot be read (unreadable file, a directory where a file belongs, ...)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint directory, or a file it needs, does not exist."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is truncated or malformed, or a tensor has the wrong dtype or shape."""


class UnsupportedCheckpointError(CheckpointError):
    """A well-formed checkpoint that describes something this runtime does not run
    (another architecture, an unknown quantisation, ...)."""


class OutOfMemoryError(Error, MemoryError):
    """An allocation failed (for example a context too large for this machine)."""


class BackendUnavailableError(Error):
    """The requested device is not built into this installation or not present."""


class CancelledError(Error):
    """A call was cancelled (``Context.cancel()``, e.g. on Ctrl-C) before it finished.
    The context stays usable: tokens processed before the cancellation keep their cache."""


__all__ = [
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
]
