"""pinclient's one exception tree.

Every failure pinclient reports is a :class:`PinclientError`. The subclasses are split by *what went
wrong*, and each carries the CLI exit code for that kind of failure::

    PinclientError
    ├── UsageError              2  bad arguments, refused unsafe options
    │   └── PinsFileError       2  pins.toml cannot be used
    ├── PinViolation            3  unexpected issuer, blocked certificate, unpinned host
    ├── RevocationError         4  a certificate is revoked, or (hard-fail) status unknown
    │   ├── CertificateRevoked
    │   └── RevocationCheckFailed
    ├── IntegrityError          5  size, hash or signature of the payload is wrong
    │   ├── SizeError
    │   ├── HashMismatch
    │   ├── SignatureError
    │   └── RollbackError       a signed manifest older than installed, or expired
    ├── NetworkError            6  connection, TLS validation, timeout, HTTP status
    │   ├── TLSError
    │   └── HTTPStatusError
    └── StorageError            7  the destination cannot be written (disk full, permissions)

None of them derives from :class:`OSError` or :class:`ssl.SSLError`: urllib3 retries and rewraps
those, and a pin violation must neither be retried nor hidden inside another error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CertificateRevoked",
    "ChainEntry",
    "HTTPStatusError",
    "HashMismatch",
    "IntegrityError",
    "NetworkError",
    "PinViolation",
    "PinclientError",
    "PinsFileError",
    "RevocationCheckFailed",
    "RevocationError",
    "RollbackError",
    "SignatureError",
    "SizeError",
    "StorageError",
    "TLSError",
    "UsageError",
]


class PinclientError(Exception):
    """Root of every error pinclient raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, object]:
        """A JSON-ready description (used by ``--json``)."""
        return {"error": type(self).__name__, "exit_code": self.exit_code, "message": self.message}


class UsageError(PinclientError):
    """The caller asked for something pinclient will not do (bad arguments, unsafe options)."""

    exit_code = 2


class PinsFileError(UsageError):
    """pins.toml cannot be loaded. The message names the file, the pinset and the key."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        pinset: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        where = []
        if path is not None:
            where.append(path if line is None else f"{path}:{line}")
        if pinset is not None:
            where.append(f"pinset {pinset}")
        if key is not None:
            where.append(f"key {key!r}")
        full = f"{', '.join(where)}: {message}" if where else message
        super().__init__(full)
        self.path = path
        self.pinset = pinset
        self.key = key
        self.line = line


@dataclass(frozen=True)
class ChainEntry:
    """One certificate of a chain, as shown in errors and reports."""

    subject: str
    spki_sha256: str  # base64, as written in pins.toml
    issuer: str = ""
    serial: str = ""  # colon-separated hex
    not_after: str = ""  # ISO 8601

    def describe(self) -> str:
        return f"sha256/{self.spki_sha256}: {self.subject}"


class PinViolation(PinclientError):
    """The verified chain does not satisfy the host's pins, holds a blocked certificate, or the host
    is covered by no pinset while ``unpinned = "refuse"``, or (``unpinned = "remember"``) keeps
    none of the CA keys recorded for it.

    Attributes carry everything the message says: ``host``, ``port``, ``pinset`` (name or None),
    ``reason`` (``"unexpected-issuer"``, ``"blocked"``, ``"unpinned"``, ``"no-verified-chain"``,
    ``"insecure-redirect"``, ``"invalid-host"``, ``"issuer-changed"``), ``chain`` (verified chain,
    leaf first, as :class:`ChainEntry`), ``expected`` (the pins, or the recorded issuers, as text)
    and ``blocked_by`` (the matching blocklist entry, as text).
    """

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        host: str,
        port: int | None = None,
        pinset: str | None = None,
        reason: str = "unexpected-issuer",
        chain: Sequence[ChainEntry] = (),
        expected: Sequence[str] = (),
        blocked_by: str | None = None,
    ) -> None:
        super().__init__(message)
        self.host = host
        self.port = port
        self.pinset = pinset
        self.reason = reason
        self.chain = tuple(chain)
        self.expected = tuple(expected)
        self.blocked_by = blocked_by

    def to_json(self) -> dict[str, object]:
        data = super().to_json()
        data.update(
            host=self.host,
            port=self.port,
            pinset=self.pinset,
            reason=self.reason,
            chain=[
                {"subject": c.subject, "spki_sha256": c.spki_sha256, "issuer": c.issuer,
                 "serial": c.serial, "not_after": c.not_after}
                for c in self.chain
            ],
            expected=list(self.expected),
            blocked_by=self.blocked_by,
        )
        return data


class RevocationError(PinclientError):
    """Revocation checking refused the connection."""

    exit_code = 4


class CertificateRevoked(RevocationError):
    """A certificate of the verified chain is revoked (refused in every mode)."""


class RevocationCheckFailed(RevocationError):
    """In hard-fail mode, the revocation status could not be established."""


class IntegrityError(PinclientError):
    """The payload is not the one expected (size, hash, signature, manifest)."""

    exit_code = 5


class SizeError(IntegrityError):
    """The body is larger than allowed or differs from the declared size."""


class HashMismatch(IntegrityError):
    """The body's SHA-256 is not the expected one."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class SignatureError(IntegrityError):
    """A signature is missing, malformed, or not by a trusted key."""


class RollbackError(IntegrityError):
    """A genuinely signed manifest that must not be acted on: its version is older than the one
    installed (``reason="rollback"``), or it is past its ``expires`` (``reason="expired"``: a freeze
    attack replays an old manifest so that no update is ever seen).

    Attributes: ``reason``, ``version`` (the manifest's), ``installed`` (or None) and ``expires``
    (ISO 8601, or None).
    """

    def __init__(self, message: str, *, reason: str, version: str, installed: str | None = None,
                 expires: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.version = version
        self.installed = installed
        self.expires = expires

    def to_json(self) -> dict[str, object]:
        data = super().to_json()
        data.update(reason=self.reason, version=self.version, installed=self.installed,
                    expires=self.expires)
        return data


class NetworkError(PinclientError):
    """The update could not be fetched: connection, timeout, TLS validation or HTTP status.

    ``transient`` says whether trying again may help (a dropped connection, a timeout, a 503); it is
    False for failures that would repeat (a redirect loop, an unexpected status, TLS validation).
    """

    exit_code = 6

    def __init__(self, message: str, *, url: str | None = None, transient: bool = True) -> None:
        super().__init__(message)
        self.url = url
        self.transient = transient


class TLSError(NetworkError):
    """Ordinary TLS validation failed (untrusted, expired or wrong-host certificate). Never transient."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message, url=url, transient=False)


class HTTPStatusError(NetworkError):
    """The server answered with an HTTP error status.

    Transient for 429 and 5xx only. ``retry_after`` is the server's Retry-After in seconds, if any.
    """

    def __init__(self, message: str, *, url: str | None = None, status: int,
                 retry_after: float | None = None) -> None:
        super().__init__(message, url=url, transient=status == 429 or 500 <= status <= 599)
        self.status = status
        self.retry_after = retry_after


class StorageError(PinclientError):
    """The payload could not be written where it belongs (disk full, read-only, permissions).

    The old destination file is untouched and no temporary file is left behind.
    """

    exit_code = 7

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path
