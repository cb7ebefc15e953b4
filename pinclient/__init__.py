"""pinclient: a certificate-pinning HTTPS update client.

An update is accepted only when the *verified* TLS chain of its connection contains a CA pinned for
the host in pins.toml, so a certificate that is valid but issued by an unexpected CA (the 2011
Comodo case) is refused before a request byte is sent.

Public names are imported lazily (PEP 562) so that ``fetch-update --version`` does not pay for
urllib3 and cryptography.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    CertificateRevoked,
    ChainEntry,
    HashMismatch,
    HTTPStatusError,
    IntegrityError,
    NetworkError,
    PinclientError,
    PinsFileError,
    PinViolation,
    RevocationCheckFailed,
    RevocationError,
    RollbackError,
    SignatureError,
    SizeError,
    StorageError,
    TLSError,
    UsageError,
)

if TYPE_CHECKING:
    from ._download.fetch import FetchResult, Progress, fetch_update
    from ._download.options import FetchOptions
    from ._download.retry import RetryPolicy
    from ._pinsupdate import PinsUpdateResult, update_pins
    from ._probe import CheckResult, check
    from .config import PinConfig, Pinset, load_pins, parse_pins
    from .policy import Verdict, evaluate
    from .transport import PinGuard, PinningPoolManager, PinningProxyManager, pinning_manager

__all__ = [
    "CertificateRevoked",
    "ChainEntry",
    "CheckResult",
    "FetchOptions",
    "FetchResult",
    "HTTPStatusError",
    "HashMismatch",
    "IntegrityError",
    "NetworkError",
    "PinConfig",
    "PinGuard",
    "PinViolation",
    "PinclientError",
    "PinningPoolManager",
    "PinningProxyManager",
    "PinsFileError",
    "PinsUpdateResult",
    "Pinset",
    "Progress",
    "RetryPolicy",
    "RevocationCheckFailed",
    "RevocationError",
    "RollbackError",
    "SignatureError",
    "SizeError",
    "StorageError",
    "TLSError",
    "UsageError",
    "Verdict",
    "__version__",
    "check",
    "evaluate",
    "fetch_update",
    "load_pins",
    "parse_pins",
    "pinning_manager",
    "update_pins",
]

_LAZY = {
    "PinConfig": "config",
    "Pinset": "config",
    "load_pins": "config",
    "parse_pins": "config",
    "FetchResult": "_download.fetch",
    "Progress": "_download.fetch",
    "fetch_update": "_download.fetch",
    "FetchOptions": "_download.options",
    "RetryPolicy": "_download.retry",
    "Verdict": "policy",
    "evaluate": "policy",
    "PinGuard": "transport",
    "PinningPoolManager": "transport",
    "PinningProxyManager": "transport",
    "pinning_manager": "transport",
    "CheckResult": "_probe",
    "check": "_probe",
    "PinsUpdateResult": "_pinsupdate",
    "update_pins": "_pinsupdate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pinclient' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
