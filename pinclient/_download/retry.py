"""When to try a download again, and how long to wait first. Pure: no clock, no sleeping, no I/O.

Retried: connection errors, a read error mid-body (the next attempt resumes), 429 and 5xx. Never
retried: a pin violation, a TLS validation failure, a 4xx other than 429, an integrity failure, a
storage error or a usage error; trying again cannot change those, and retrying a pin violation would
only knock on an attacker's door again.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from .._sizes import ascii_decimal
from ..errors import NetworkError, PinclientError

__all__ = ["RetryPolicy", "parse_retry_after", "retry_delay"]

_FOREVER = 10**12  # seconds: longer than any cap, small enough for a float


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently :func:`~pinclient.fetch_update` tries again.

    Attempt ``n`` (0 for the first retry) waits a uniformly random time between 0 and
    ``min(max_backoff, backoff * 2**n)`` seconds ("full jitter", so that many updaters knocked off
    by one outage do not return in step). A ``Retry-After`` from a 429 or 503 replaces that wait,
    capped at ``retry_after_cap`` seconds.
    """

    retries: int = 3  # further attempts after the first
    backoff: float = 0.5  # seconds, the first retry's upper bound
    max_backoff: float = 30.0  # seconds
    retry_after_cap: float = 60.0  # seconds; a longer Retry-After is shortened to this

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0 or self.retry_after_cap < 0:
            raise ValueError("retry settings cannot be negative")


def is_transient(err: BaseException) -> bool:
    """Whether trying again may help: only network errors that say so (see :class:`NetworkError`)."""
    return isinstance(err, NetworkError) and err.transient


def retry_delay(policy: RetryPolicy, attempt: int, err: PinclientError, rng: random.Random) -> float | None:
    """Seconds to wait before retry number ``attempt`` (0-based) after ``err``, or None to give up."""
    if attempt >= policy.retries or not is_transient(err):
        return None
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:
        return float(min(max(retry_after, 0.0), policy.retry_after_cap))
    return rng.uniform(0.0, min(policy.max_backoff, policy.backoff * 2**attempt))


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).

    Unparsable values give None (the caller falls back to its own backoff); dates in the past give 0.
    Delta-seconds are ASCII digits only (:func:`~pinclient._sizes.ascii_decimal`: ``¹`` is not 1);
    a huge value is kept huge (the policy's ``retry_after_cap`` shortens it), never an overflow.
    """
    if not value:
        return None
    text = value.strip()
    seconds = ascii_decimal(text)
    if seconds is not None:
        return float(min(seconds, _FOREVER))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())
