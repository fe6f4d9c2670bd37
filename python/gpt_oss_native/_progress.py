"""A small byte-progress reporter for long operations (checkpoint writing, model loading).

Pure Python, no dependencies.  Usage::

    with Progress("writing", total=n_bytes) as p:
        for chunk in chunks:
            ...
            p.update(done_bytes)           # or p.update(done_bytes, new_total)

On a terminal it redraws one line with ``\\r`` (at most ``min_interval`` seconds apart), e.g.
``writing: 12.3/13.0 GB  450 MB/s  ETA 2s``; when stderr is not a terminal it prints a plain line
at most every ``log_interval`` seconds instead.  Leaving the ``with`` block prints a final line
(``writing: 13.0/13.0 GB  452 MB/s  done in 29s``, or ``... interrupted`` on an exception).

``enabled=False`` makes every call a no-op.  ``callback`` (a callable taking ``(done, total)``) is
called on every update, whether or not anything is printed.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

__all__ = ["Progress", "format_bytes", "format_duration"]


def _unit_for(total: float) -> tuple[str, float]:
    if total >= 1e9:
        return "GB", 1e9
    if total >= 1e6:
        return "MB", 1e6
    if total >= 1e3:
        return "KB", 1e3
    return "B", 1.0


def format_bytes(n: float, unit: Optional[str] = None) -> str:
    """``format_bytes(12.3e9) == '12.3 GB'`` (decimal units)."""
    if unit is None:
        unit, div = _unit_for(n)
    else:
        div = {"GB": 1e9, "MB": 1e6, "KB": 1e3, "B": 1.0}[unit]
    return f"{n / div:.1f} {unit}"


def format_duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class Progress:
    """Byte progress on stderr: ``label: 12.3/13.0 GB  450 MB/s  ETA 2s``."""

    def __init__(
        self,
        label: str,
        total: Optional[int] = None,
        *,
        enabled: bool = True,
        stream: Optional[TextIO] = None,
        min_interval: float = 0.25,
        log_interval: float = 10.0,
        callback: Optional[Callable[[int, int], None]] = None,
    ) -> None:
        self.label = label
        self.total = int(total) if total is not None else 0
        self.done = 0
        self.enabled = bool(enabled)
        self.stream = stream if stream is not None else sys.stderr
        self.callback = callback
        try:
            self._tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self._tty = False
        self.min_interval = min_interval if self._tty else log_interval
        self._t0 = time.monotonic()
        self._last_print = 0.0 if self._tty else self._t0
        self._printed = False
        self._closed = False
        self._last_len = 0

    # context manager -----------------------------------------------------------------------
    def __enter__(self) -> "Progress":
        self._t0 = time.monotonic()
        if not self._tty:  # plain logs: first line only after log_interval
            self._last_print = self._t0
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)

    # reporting -------------------------------------------------------------------------------
    def update(self, done: int, total: Optional[int] = None) -> None:
        """Set the absolute progress (``done`` bytes out of ``total``)."""
        self.done = int(done)
        if total is not None:
            self.total = int(total)
        if self.callback is not None:
            self.callback(self.done, self.total)
        if not self.enabled or self._closed:
            return
        now = time.monotonic()
        if now - self._last_print >= self.min_interval:
            self._last_print = now
            self._emit(self._line(now), final=False)

    def advance(self, n: int) -> None:
        """Add ``n`` bytes to the progress."""
        self.update(self.done + int(n))

    def close(self, ok: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        now = time.monotonic()
        elapsed = now - self._t0
        unit, div = _unit_for(max(self.total, self.done))
        rate = self.done / elapsed if elapsed > 0 else 0.0
        tail = f"done in {format_duration(elapsed)}" if ok else "interrupted"
        line = (f"{self.label}: {self.done / div:.1f}/{max(self.total, self.done) / div:.1f} {unit}"
                f"  {rate / 1e6:.0f} MB/s  {tail}")
        self._emit(line, final=True)

    # internals -------------------------------------------------------------------------------
    def _line(self, now: float) -> str:
        elapsed = now - self._t0
        total = max(self.total, self.done)
        unit, div = _unit_for(total)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if rate > 0 and total > self.done:
            eta = f"ETA {format_duration((total - self.done) / rate)}"
        elif total and self.done >= total:
            eta = "ETA 0s"
        else:
            eta = "ETA ?"
        return f"{self.label}: {self.done / div:.1f}/{total / div:.1f} {unit}  {rate / 1e6:.0f} MB/s  {eta}"

    def _emit(self, line: str, final: bool) -> None:
        try:
            if self._tty:
                pad = " " * max(0, self._last_len - len(line))
                self.stream.write("\r" + line + pad + ("\n" if final else ""))
                self._last_len = 0 if final else len(line)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # closed stream: progress is best effort
            pass
        self._printed = True
