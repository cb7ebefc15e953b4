"""A one-line progress bar for the command line: percentage, bar, bytes, rate and ETA, on stderr.

A compact bar of our own rather than tqdm or rich: it is some seventy lines, costs no dependency in a
security tool's install (rich alone brings pygments and markdown-it), starts no monitor thread, and
``fetch-update --version`` stays fast. The library never draws anything: it calls a ``progress``
callback, and :func:`progress_bar` returns this bar only when stderr is a terminal.

Terminals: the bar has no colours. Each line is cut to one column less than the terminal is wide
(a Windows console wraps a line that touches its last column, and a wrapped line breaks the ``\r``
redraw everywhere). The rest of the previous line is erased with ``ESC [ K`` on POSIX terminals; a
Windows console may not interpret escape sequences (conhost without virtual-terminal processing
prints them), so there the line is padded with spaces instead.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

from .. import _paths
from .._sizes import format_size

__all__ = ["ProgressBar", "progress_bar"]


def _clock_text(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressBar:
    """Call with ``(done, total)``; :meth:`close` ends the line. Redraws at most ten times a second."""

    def __init__(self, stream: TextIO, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self._start: tuple[float, int] | None = None
        self._last_draw = 0.0
        self._drawn = False
        self._last_len = 0  # characters drawn last time (padded over where ESC [ K is not used)

    def __call__(self, done: int, total: int | None) -> None:
        now = self.clock()
        if self._start is None:
            self._start = (now, done)  # a resumed download's rate counts this run's bytes only
        finished = total is not None and done >= total
        if not finished and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        fits = _columns(self.stream) - 1
        text = self.line(done, total, now)[:fits]
        if _paths.WINDOWS:
            self.stream.write("\r" + text.ljust(min(self._last_len, fits)))
        else:
            self.stream.write("\r" + text + "\x1b[K")
        self._last_len = len(text)
        self.stream.flush()
        self._drawn = True

    def line(self, done: int, total: int | None, now: float) -> str:
        assert self._start is not None
        elapsed = now - self._start[0]
        rate = (done - self._start[1]) / elapsed if elapsed > 0 else 0.0
        speed = f"{format_size(rate)}/s" if rate else "--/s"
        if total:
            eta = _clock_text((total - done) / rate) if rate else "--:--"
            info = f"{format_size(done)} / {format_size(total)}  {speed}  ETA {eta}"
            width = max(10, _columns(self.stream) - len(info) - 10)
            filled = int(width * min(done, total) / total)
            return f"{100 * min(done, total) // total:3d}% [{'=' * filled}{' ' * (width - filled)}] {info}"
        return f"{format_size(done)}  {speed}  {_clock_text(elapsed)}"

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _columns(stream: TextIO) -> int:
    """The width of the terminal the bar is drawn on: ``COLUMNS``, else the console's (Windows
    too), else 80. The bar's own stream is asked, not standard output as
    ``shutil.get_terminal_size`` does: with ``-o -`` standard output is a pipe."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdecimal() and int(columns) > 0:
        return max(20, int(columns))
    try:
        return max(20, os.get_terminal_size(stream.fileno()).columns)
    except (AttributeError, ValueError, OSError):  # no file descriptor, or not a terminal
        return max(20, shutil.get_terminal_size((80, 20)).columns)


def progress_bar(*, quiet: bool = False, stream: TextIO | None = None) -> ProgressBar | None:
    """A bar on ``stream`` (stderr) when it is a terminal and not ``quiet``; else None."""
    out = stream if stream is not None else sys.stderr
    if quiet or not out.isatty():
        return None
    return ProgressBar(out)
