"""The download API under its 0.1.0 name (the README documented ``pinclient.download.RetryPolicy``).

Everything here is also exported by :mod:`pinclient` itself, which is where new code should import
it from; the implementation lives in the private ``pinclient._download`` package.
"""

from __future__ import annotations

from ._download.fetch import FetchResult, Progress, fetch_update
from ._download.options import DEFAULT_MAX_SIZE, DEFAULT_MIN_RATE, FetchOptions
from ._download.retry import RetryPolicy
from ._names import normalize_url

__all__ = [
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MIN_RATE",
    "FetchOptions",
    "FetchResult",
    "Progress",
    "RetryPolicy",
    "fetch_update",
    "normalize_url",
]
