"""What the command line shares: option checks made before any work, Ctrl-C that
cancels the running work, output made safe for a terminal, closed pipes.

* :class:`UsageError` is a bad option: ``error: ...`` on one line, status 2,
  raised before a model is loaded.
* :func:`run_cancellable` runs the work (a prefill, a generation) on a worker
  thread while the main thread waits: Ctrl-C (KeyboardInterrupt, delivered to
  the main thread) calls :meth:`Context.cancel`, which stops the work before its
  next forward pass (between prefill chunks of ``max_batch_tokens``), so even a
  prefill of thousands of tokens stops within a fraction of a second.
* :func:`for_terminal` drops ``<|reserved_...|>`` tokens and control bytes from
  text bound for a terminal (a byte-level vocabulary or random weights produce
  both).
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
from typing import Any, Callable, Optional, TextIO, TypeVar

T = TypeVar("T")

#: Exit statuses: a usage error, Ctrl-C (128 + SIGINT) and a closed pipe (128 + SIGPIPE),
#: as shells report them for programs killed by those signals.
EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 2, 130, 141

#: ANSI dim and reset.
DIM, RESET = "\x1b[2m", "\x1b[0m"


class UsageError(Exception):
    """A bad option or environment setting, found before any work: ``error: <message>``, status 2."""


def is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


# ---- option checks ----------------------------------------------------------------------

def max_threads() -> int:
    """The most --threads accepted: 4 per core this machine has."""
    return 4 * (os.cpu_count() or 1)


def check_options(args: Any, *, min_max_tokens: int = 0) -> None:
    """Checks the options a command has (those it lacks are skipped); raises UsageError."""
    get = lambda name: getattr(args, name, None)  # noqa: E731
    t = get("temperature")
    if t is not None and not (math.isfinite(t) and t >= 0):
        raise UsageError(f"--temperature must be a number >= 0 (0 = greedy), got {t:g}")
    p = get("top_p")
    if p is not None and not (math.isfinite(p) and 0 < p <= 1):
        raise UsageError(f"--top-p must be in (0, 1] (1 = no nucleus cut), got {p:g}")
    s = get("seed")
    if s is not None and not 0 <= s < 2**64:
        raise UsageError(f"--seed must be an integer in [0, 2**64), got {s}")
    n = get("max_tokens")
    if n is not None and n < min_max_tokens:
        raise UsageError(f"--max-tokens must be >= {min_max_tokens}, got {n}")
    c = get("context_length")
    if c is not None and c < 1:
        raise UsageError(f"--context-length must be >= 1, got {c}")
    b = get("max_batch_tokens")
    if b is not None and b < 1:
        raise UsageError(f"--max-batch-tokens must be >= 1, got {b}")
    th = get("threads")
    if th is not None and not 1 <= th <= max_threads():
        raise UsageError(f"--threads must be between 1 and {max_threads()} (4 per core of this machine's "
                         f"{os.cpu_count() or 1}), got {th}")
    device = get("device")
    if device is None or device in ("cpu", "auto"):
        check_cpu_kernels()


def check_cpu_kernels() -> None:
    """GON_MATMUL_ISA names a kernel set this CPU and build run (or is unset)."""
    if not os.environ.get("GON_MATMUL_ISA"):
        return
    from . import _core
    from .errors import Error

    try:
        _core.cpu_kernel_isa()
    except Error as e:
        raise UsageError(str(e)) from None


def check_cache_writable() -> None:
    """When the embedded default model must still be written, its cache directory must be
    writable: checked by creating the directory and a file in it. The trained default
    ships inside the package, so nothing is written for it and the check passes."""
    import tempfile

    from ._default import cache_dir, default_model_path

    if (default_model_path() / "config.json").exists():
        return
    where = cache_dir()
    hint = "set GPT_OSS_NATIVE_CACHE to a writable directory" if os.environ.get("GPT_OSS_NATIVE_CACHE") else \
        "set GPT_OSS_NATIVE_CACHE to a writable directory, or give a MODEL"
    try:
        (where / "models").mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=where / "models", prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UsageError(f"the cache directory {where} is not writable ({reason}); the embedded default model "
                         f"is written there: {hint}") from None


# ---- text for a terminal -----------------------------------------------------------------

_RESERVED = re.compile(r"<\|reserved_\d+\|>")
# C0 controls but tab and newline, DEL, C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def for_terminal(text: str) -> str:
    """`text` without <|reserved_...|> tokens and with control characters (escape
    sequences, bells, carriage returns, ...) replaced by U+FFFD, so that model output
    cannot move the cursor, recolour or otherwise drive the terminal."""
    text = _RESERVED.sub("", text)
    text = text.replace("\r\n", "\n")
    return _CONTROL.sub("\ufffd", text)


def note_for_terminal(text: str) -> str:
    """A message of the program's own that quotes model output (a parser warning): reserved
    tokens are named rather than printed, control characters replaced."""
    text = _RESERVED.sub(lambda m: m.group(0)[2:-2], text)  # <|reserved_200025|> -> reserved_200025
    return for_terminal(text)


class TerminalText:
    """Writes model text to `out`, sanitised (for_terminal) when `out` is a terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = is_tty(out)

    def __call__(self, text: str) -> str:
        return for_terminal(text) if self.tty else text


# ---- Ctrl-C ---------------------------------------------------------------------------

def run_cancellable(ctx: Any, fn: Callable[[], T], *, poll_s: float = 0.05) -> T:
    """Runs ``fn()`` on a worker thread; Ctrl-C in the meantime cancels `ctx`'s work.

    Call from the main thread. Returns what `fn` returns and raises what it raises: work
    that Ctrl-C stopped raises :class:`~gpt_oss_native.CancelledError` out of `fn` (or `fn`
    handles it). A cancel that arrived after the work had finished is withdrawn, so it does
    not stop the next call on `ctx`."""
    box: dict = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the main thread
            box["error"] = e
        finally:
            done.set()

    # (Not Thread.join: a join interrupted by KeyboardInterrupt may mark a running thread stopped.)
    threading.Thread(target=work, name="gpt_oss_native-work", daemon=True).start()
    while True:
        try:
            if done.wait(poll_s):
                break
        except KeyboardInterrupt:
            ctx.cancel()
    ctx.clear_cancel()
    if "error" in box:
        err = box.pop("error")
        try:
            raise err
        finally:
            del err
    return box["value"]


def quiet_broken_pipe() -> int:
    """After a BrokenPipeError on stdout: points stdout at /dev/null so that the interpreter's
    last flush does not complain, and returns the exit status of a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE
