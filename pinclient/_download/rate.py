"""Deadline and minimum transfer rate: the defences against slow retrieval. Pure: callers pass the
time (``time.monotonic()``), so tests can drive it without waiting.

A server that sends one byte just before every read timeout keeps a connection alive forever; the
read-gap timeout alone cannot see it (TUF's "slow retrieval" attack). :class:`TransferBudget` checks,
each time data arrives, that the average rate over the last ``window`` seconds is at least
``min_rate``, and that the overall deadline has not passed. :func:`rate_limit_pause` is the other
direction, ``max_rate`` (``--limit-rate``): how long to wait so a body stays under the cap; the sync
stream sleeps it with ``time.sleep``, :mod:`pinclient.aio` with ``anyio.sleep``.
"""

from __future__ import annotations

import math

__all__ = ["TransferBudget", "rate_limit_pause"]


class TransferBudget:
    """Tracks one download's deadline (over all attempts) and the rate of the current body."""

    __slots__ = ("_window_bytes", "_window_start", "deadline_at", "min_rate", "window")

    def __init__(self, *, now: float, deadline: float | None, min_rate: float | None,
                 window: float) -> None:
        self.deadline_at = None if deadline is None else now + deadline
        self.min_rate = min_rate or None
        self.window = window
        self._window_start = now
        self._window_bytes = 0

    def remaining(self, now: float) -> float | None:
        """Seconds left before the deadline (never negative), or None without a deadline."""
        return None if self.deadline_at is None else max(0.0, self.deadline_at - now)

    def expired(self, now: float) -> bool:
        return self.deadline_at is not None and now >= self.deadline_at

    def start_body(self, now: float, received: int) -> None:
        """A body starts arriving: the first rate window begins now."""
        self._window_start = now
        self._window_bytes = received

    def too_slow(self, now: float, received: int) -> float | None:
        """The average rate (bytes/s) of the window that just ended, if it was below ``min_rate``.

        ``received`` counts the body's bytes so far. Returns None while the rate is fine or the
        window has not ended yet; a fine window starts the next one.
        """
        if self.min_rate is None:
            return None
        elapsed = now - self._window_start
        if elapsed < self.window:
            return None
        rate = (received - self._window_bytes) / elapsed
        if rate < self.min_rate:
            return rate
        self._window_start, self._window_bytes = now, received
        return None

    def next_check(self) -> float:
        """When :meth:`too_slow` can next find anything (``math.inf`` without a minimum rate)."""
        return math.inf if self.min_rate is None else self._window_start + self.window


def rate_limit_pause(*, now: float, start: float, start_bytes: int, received: int, max_rate: float,
                     left: float | None) -> tuple[float, bool]:
    """``max_rate`` pacing: the pause that brings the body's average since ``start`` (when it had
    ``start_bytes``) down to ``max_rate`` bytes/s now that ``received`` bytes arrived, and whether
    the deadline (``left`` seconds away; None: none) comes first. Then the pause is ``left``, and
    the caller raises its deadline error after it.
    """
    wait = start + (received - start_bytes) / max_rate - now
    if wait <= 0:
        return 0.0, False
    if left is not None and left <= wait:
        return left, True
    return wait, False
