"""FetchOptions: every setting of a fetch that is not *what* to fetch, in one frozen, validated value.

What to fetch (URL, DEST, hash, size, signature) stays in :func:`~pinclient.fetch_update`'s own
arguments; how to fetch it (timeouts, deadline, minimum rate, retries, resuming, redirects, proxy,
size cap, lock wait, extra headers, whether legacy signatures are accepted) lives here, defaulted
once, like python-tuf's ``UpdaterConfig``. The CLI builds one from its flags in one place, and
:mod:`pinclient.manifest` derives the manifest's own with :func:`dataclasses.replace`. Adding an
option is: a field here, its argparse line, its use.

Pure: no I/O. Construction validates every field and raises :class:`~pinclient.errors.UsageError`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from .._version import USER_AGENT
from ..config import UNPINNED_POLICIES, PinConfig, UnpinnedPolicy, override_unpinned
from ..errors import UsageError
from .retry import RetryPolicy

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MIN_RATE",
    "DEFAULT_RATE_WINDOW",
    "DEFAULT_READ_TIMEOUT",
    "FetchOptions",
    "expected_hash",
    "request_headers",
]

#: A hard cap on any body when neither ``size``, ``max_size`` nor pins.toml says otherwise (TUF's
#: endless-data attack).
DEFAULT_MAX_SIZE = 4 * 1024**3
#: Bytes per second a body must average over each ``rate_window`` (TUF's slow-retrieval attack).
DEFAULT_MIN_RATE = 1024
DEFAULT_RATE_WINDOW = 30.0  # seconds
DEFAULT_CONNECT_TIMEOUT = 15.0  # seconds
DEFAULT_READ_TIMEOUT = 30.0  # seconds without a byte
DEFAULT_LOCK_TIMEOUT = 60.0  # seconds

# Headers pinclient owns: a caller's Range would break resuming, an Accept-Encoding the hash.
_RESERVED_HEADERS = frozenset({"range", "if-range", "host", "accept-encoding", "content-length",
                               "transfer-encoding", "connection", "te", "upgrade"})
_NOT_IN_A_NAME = " \t\r\n:()<>@,;\\\"/[]?={}"


@dataclass(frozen=True)
class FetchOptions:
    """How :func:`~pinclient.fetch_update` fetches: network limits, resilience, transport, storage.

    Every field has a default; build one with the fields you change
    (``FetchOptions(deadline=300, retries=5)``) and derive others with :func:`dataclasses.replace`.
    ``retries`` may be given as a count; it is stored as a :class:`RetryPolicy`. ``headers`` are
    checked here (no line breaks, none that pinclient must control) and kept as a read-only copy.

    Raises:
        UsageError: a value out of range or of the wrong kind (the message names the field).
    """

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT  # seconds to connect, TLS handshake included
    read_timeout: float = DEFAULT_READ_TIMEOUT  # seconds: the longest gap between two bytes
    deadline: float | None = None  # seconds for the whole fetch, retries and waits included
    min_rate: float | None = DEFAULT_MIN_RATE  # bytes/s over each rate_window; None or 0: off
    rate_window: float = DEFAULT_RATE_WINDOW  # seconds
    max_rate: float | None = None  # bytes/s the body may average (--limit-rate); None or 0: no limit
    retries: RetryPolicy | int = field(default_factory=RetryPolicy)  # stored as a RetryPolicy
    resume: bool = True  # continue an interrupted body (.DEST.pinclient-part), in this call or the next
    max_redirects: int = 5  # https redirects, each checked against the pins
    proxy: str | bool | None = None  # a URL; False: direct; None: $HTTPS_PROXY / $NO_PROXY
    max_size: int | None = None  # bytes; None: the pinset's, else [defaults], else 4 GiB
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT  # seconds to wait for another fetch to the same DEST
    headers: Mapping[str, str] = field(default_factory=dict)  # added to every request
    # Accept legacy minisign signatures (Ed) by any signing key: unsafe, their algorithm bytes are
    # unsigned (docs/signing.md). False: only where the pinset allows them for its own keys.
    allow_legacy_signatures: bool = False
    # Hosts no pinset covers: "refuse", "allow" or "remember" (issuer continuity), overriding
    # [defaults] unpinned; None: as the pins file says.
    unpinned: str | None = None

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "rate_window"):
            _positive(name, getattr(self, name))
        if self.deadline is not None:
            _positive("deadline", self.deadline)
        if self.min_rate is not None and not (_number(self.min_rate) and self.min_rate >= 0):
            raise UsageError(f"min_rate cannot be negative, got {self.min_rate!r}")
        if self.max_rate is not None and not (_number(self.max_rate) and self.max_rate >= 0):
            raise UsageError(f"max_rate cannot be negative, got {self.max_rate!r}")
        if self.max_rate and self.min_rate and self.max_rate < self.min_rate:
            raise UsageError(f"max_rate ({self.max_rate:g} bytes/s) is below min_rate "
                             f"({self.min_rate:g} bytes/s): the download would be stopped as too slow; "
                             "lower min_rate too (--min-rate)")
        if not (_number(self.lock_timeout) and self.lock_timeout >= 0):
            raise UsageError("lock_timeout cannot be negative")
        if not _whole(self.max_redirects) or self.max_redirects < 0:
            raise UsageError(f"max_redirects must be a whole number >= 0, got {self.max_redirects!r}")
        if self.max_size is not None and not (_whole(self.max_size) and self.max_size > 0):
            raise UsageError(f"max_size must be a positive number of bytes, got {self.max_size!r}")
        for name in ("resume", "allow_legacy_signatures"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if (self.proxy is not None and not isinstance(self.proxy, (str, bool))) or self.proxy is True:
            raise UsageError(f"proxy must be a URL, False or None, got {self.proxy!r}")
        if self.unpinned not in (None, *UNPINNED_POLICIES):
            raise UsageError(f"unpinned must be one of {', '.join(UNPINNED_POLICIES)} or None, "
                             f"got {self.unpinned!r}")
        object.__setattr__(self, "retries", _retry_policy(self.retries))
        headers = {} if self.headers is None else self.headers  # None: none, as in 0.1.0
        request_headers(headers)  # raises on a bad one
        object.__setattr__(self, "headers", _ReadOnlyHeaders(headers))

    def pins(self, config: PinConfig) -> PinConfig:
        """``config`` as this fetch applies it: ``unpinned``, when set, replaces ``[defaults]``'s."""
        if self.unpinned is None or self.unpinned == config.defaults.unpinned:
            return config
        return override_unpinned(config, cast(UnpinnedPolicy, self.unpinned))

    @property
    def retry_policy(self) -> RetryPolicy:
        """``retries`` as the :class:`RetryPolicy` it always is after construction."""
        assert isinstance(self.retries, RetryPolicy)
        return self.retries

    def with_overrides(self, overrides: Mapping[str, Any]) -> FetchOptions:
        """A copy with the named fields replaced; ``timeout`` sets both connect and read timeouts
        (unless they are named too). This is how :func:`~pinclient.fetch_update`'s keyword
        arguments (``deadline=300``) apply on top of ``options=``.

        Raises:
            TypeError: a name that is not a field (as for an unknown keyword argument).
            UsageError: as the constructor.
        """
        changes = dict(overrides)
        if "timeout" in changes:
            timeout = changes.pop("timeout")
            if timeout is not None:
                _positive("timeout", timeout)
                changes.setdefault("connect_timeout", timeout)
                changes.setdefault("read_timeout", timeout)
        unknown = sorted(set(changes) - _FIELDS)
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r} (FetchOptions fields: "
                            f"{', '.join(sorted(_FIELDS))}, and timeout)")
        # None for a timeout means "the default", as the keyword arguments of 0.1.0 did.
        for name in ("connect_timeout", "read_timeout"):
            if name in changes and changes[name] is None:
                del changes[name]
        return dataclasses.replace(self, **changes) if changes else self


class _ReadOnlyHeaders(dict[str, str]):
    """A plain dict that refuses changes, so a frozen FetchOptions stays frozen (and prints as a dict)."""

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise TypeError("FetchOptions.headers is read-only; use dataclasses.replace(options, headers=…)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]


_FIELDS = frozenset(f.name for f in dataclasses.fields(FetchOptions))


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(name: str, value: object) -> None:
    if not (_number(value) and value > 0):  # type: ignore[operator]
        raise UsageError(f"{name} must be a positive number of seconds, not {value!r}.")


def _retry_policy(retries: RetryPolicy | int) -> RetryPolicy:
    if isinstance(retries, RetryPolicy):
        return retries
    if not _whole(retries):
        raise UsageError(f"retries must be a count or a RetryPolicy, got {retries!r}")
    try:
        return RetryPolicy(retries=retries)
    except ValueError as e:
        raise UsageError(f"retries: {e}") from None


def expected_hash(sha256: str | None) -> str | None:
    """``sha256`` as 64 lower-case hex digits (a ``sha256:`` prefix and case are forgiven).

    Raises:
        UsageError: anything else.
    """
    if sha256 is None:
        return None
    text = sha256.strip().lower().removeprefix("sha256:")
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise UsageError(f"--sha256 must be 64 hex digits, got {sha256!r}.")
    return text


def request_headers(extra: Mapping[str, str] | None) -> dict[str, str]:
    """``User-Agent: pinclient/<version>`` and ``Accept-Encoding: identity``, plus the caller's.

    Raises:
        UsageError: a malformed header, or one pinclient must control (Range, Host, …).
    """
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    for name, value in (extra or {}).items():
        key = str(name).strip()
        if not key or any(c in key for c in _NOT_IN_A_NAME) or not key.isascii():
            raise UsageError(f"{name!r} is not a valid HTTP header name.")
        if any(c in str(value) for c in "\r\n\0"):
            raise UsageError(f"the value of header {key!r} contains a line break or NUL.")
        if key.lower() in _RESERVED_HEADERS:
            raise UsageError(f"header {key!r} is set by pinclient itself and cannot be overridden.")
        for existing in [k for k in headers if k.lower() == key.lower()]:
            del headers[existing]
        headers[key] = str(value).strip()
    return headers
