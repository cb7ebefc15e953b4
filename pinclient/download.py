"""fetch_update: a bounded, verified, atomic download over the pinned transport.

The body streams into a temporary file in DEST's folder while it is hashed; nothing reaches DEST
until the size and hash are verified and the file is fsynced, then ``os.replace`` swaps it in and the
folder is fsynced (python-tuf's ``_persist_metadata`` pattern). On every failure DEST keeps its old
bytes and the temporary file is removed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from ._hosts import normalize_host
from ._version import __version__
from .config import PinConfig
from .errors import (
    ChainEntry,
    HashMismatch,
    HTTPStatusError,
    NetworkError,
    PinViolation,
    SizeError,
    StorageError,
    TLSError,
    UsageError,
)

__all__ = ["DEFAULT_MAX_SIZE", "FetchResult", "fetch_update", "normalize_url"]

log = logging.getLogger("pinclient")

#: A hard cap on any body when no ``size`` is given (endless-data attack, TUF's list).
DEFAULT_MAX_SIZE = 4 * 1024**3
CHUNK = 1024 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchResult:
    """A verified download: where it came from (after redirects), where it is, and what it is."""

    url: str
    dest: Path
    size: int
    sha256: str
    status: int = 200
    pinset: str | None = None
    chain: tuple[ChainEntry, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        return {
            "ok": True,
            "url": self.url,
            "dest": str(self.dest),
            "size": self.size,
            "sha256": self.sha256,
            "pinset": self.pinset,
            "chain": [{"subject": c.subject, "spki_sha256": c.spki_sha256} for c in self.chain],
        }


def normalize_url(url: str) -> str:
    """Check that ``url`` is https:// with a host, and normalise the host (case, trailing dot, IDNA).

    Raises:
        UsageError: not an https URL, or no valid host.
    """
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "https":
        raise UsageError(f"{url!r} is not an https:// URL; pinclient fetches over HTTPS only.")
    if not parts.hostname:
        raise UsageError(f"{url!r} has no host name.")
    try:
        host = normalize_host(parts.hostname)
        port = parts.port
    except ValueError as e:
        raise UsageError(f"{url!r}: {e}") from None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit(("https", netloc, parts.path or "/", parts.query, ""))


def _expected_hash(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    text = sha256.strip().lower().removeprefix("sha256:")
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise UsageError(f"--sha256 must be 64 hex digits, got {sha256!r}.")
    return text


@contextmanager
def _temp_beside(dest: Path) -> Iterator[tuple[IO[bytes], Path]]:
    """A new temporary file in DEST's folder (so os.replace is atomic), removed unless kept."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".pinclient-tmp", dir=dest.parent)
    except OSError as e:
        raise StorageError(f"cannot create a temporary file in {str(dest.parent)!r}: "
                           f"{e.strerror or e}", path=str(dest)) from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh, tmp
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _network_error(e: Exception, url: str) -> NetworkError:
    """Convert urllib3's exceptions at one boundary into pinclient's tree."""
    from urllib3 import exceptions as u3

    reason: BaseException = e
    if isinstance(e, u3.MaxRetryError) and e.reason is not None:
        reason = e.reason
    if isinstance(reason, u3.SSLError):
        return TLSError(f"TLS validation failed for {url}: {reason}", url=url)
    if isinstance(reason, u3.ConnectTimeoutError):
        return NetworkError(f"connecting to {url} timed out", url=url)
    if isinstance(reason, u3.ReadTimeoutError):
        return NetworkError(f"reading from {url} timed out", url=url)
    if isinstance(reason, u3.NewConnectionError):
        return NetworkError(f"cannot connect to {url}: {reason}", url=url)
    if isinstance(reason, u3.ProtocolError):
        return NetworkError(f"the connection to {url} broke: {reason}", url=url)
    return NetworkError(f"fetching {url} failed: {reason}", url=url)


def fetch_update(
    url: str,
    dest: str | os.PathLike[str],
    *,
    config: PinConfig,
    sha256: str | None = None,
    size: int | None = None,
    max_size: int | None = None,
    manager: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    max_redirects: int = 5,
) -> FetchResult:
    """Fetch ``url`` over the pinned transport into ``dest``, verified and atomically.

    ``size`` is the exact expected length; ``max_size`` caps the body when no size is known
    (default :data:`DEFAULT_MAX_SIZE`). ``manager`` may be a shared :class:`PinningPoolManager`.

    Raises:
        UsageError: bad URL, hash or destination.
        PinViolation: the pins refused a connection (any hop), or a redirect to http://.
        SizeError / HashMismatch: the body is not the expected one (DEST untouched).
        NetworkError / TLSError / HTTPStatusError: the body could not be fetched (DEST untouched).
        StorageError: the file could not be written (DEST untouched).
    """
    from urllib3 import exceptions as u3

    from .transport import PinningPoolManager

    url = normalize_url(url)
    expected = _expected_hash(sha256)
    limit = size if size is not None else (max_size or DEFAULT_MAX_SIZE)
    if size is not None and size < 0:
        raise UsageError("size must not be negative")
    target = Path(dest)
    if target.is_dir():
        raise UsageError(f"destination {str(target)!r} is a folder; give a file name.")
    if not target.parent.is_dir():
        raise UsageError(f"destination folder {str(target.parent)!r} does not exist.")
    pm = manager if manager is not None else PinningPoolManager(config)
    request_headers = {"User-Agent": f"pinclient/{__version__}", **(headers or {})}

    with _temp_beside(target) as (fh, tmp):
        hops = 0
        while True:
            try:
                resp = pm.urlopen("GET", url, redirect=False, retries=False, preload_content=False,
                                  headers=request_headers, timeout=timeout)
            except (PinViolation, UsageError):
                raise
            except u3.HTTPError as e:
                raise _network_error(e, url) from e
            if resp.status in REDIRECTS and resp.headers.get("Location"):
                hops += 1
                resp.drain_conn()
                resp.release_conn()
                if hops > max_redirects:
                    raise NetworkError(f"more than {max_redirects} redirects, last to {url}", url=url)
                location = urljoin(url, resp.headers["Location"])
                if urlsplit(location).scheme.lower() != "https":
                    raise PinViolation(
                        f"Refusing the redirect from {url} to {location}: pinclient follows only "
                        "https:// redirects, each one checked against the pins.",
                        host=urlsplit(location).hostname or "", reason="insecure-redirect")
                url = normalize_url(location)
                log.info("redirect %d to %s", hops, url)
                continue
            break
        verdict = getattr(resp.connection, "verdict", None)
        try:
            result = _receive(resp, fh, tmp, url=url, limit=limit, exact=size, expected=expected)
        except u3.HTTPError as e:
            raise _network_error(e, url) from e
        except OSError as e:
            # urllib3 wraps socket errors in its HTTPError family while reading, so an OSError
            # here comes from writing the file (ENOSPC, EIO, quota).
            raise StorageError(f"cannot write {str(target)!r}: {e.strerror or e}",
                               path=str(target)) from e
        finally:
            resp.release_conn()
        try:
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except OSError as e:
            raise StorageError(f"cannot move the verified file into place at {str(target)!r}: "
                               f"{e.strerror or e}", path=str(target)) from e
    chain = tuple(c.entry() for c in verdict.chain) if verdict else ()
    pinset = verdict.pinset.name if verdict and verdict.pinset else None
    return FetchResult(url=url, dest=target, size=result[0], sha256=result[1], status=resp.status,
                       pinset=pinset, chain=chain)


def _receive(resp: Any, fh: IO[bytes], tmp: Path, *, url: str, limit: int, exact: int | None,
             expected: str | None) -> tuple[int, str]:
    if resp.status >= 400:
        raise HTTPStatusError(f"{url} answered HTTP {resp.status} {resp.reason or ''}".rstrip(),
                              url=url, status=resp.status)
    if resp.status != 200:
        raise NetworkError(f"{url} answered HTTP {resp.status}; expected 200 with the update", url=url)
    declared = resp.headers.get("Content-Length")
    if declared is not None and declared.isdigit():
        length = int(declared)
        if exact is not None and length != exact:
            raise SizeError(f"{url} declares {length} bytes; expected exactly {exact}.")
        if length > limit:
            raise SizeError(f"{url} declares {length} bytes, over the limit of {limit}.")
    digest = hashlib.sha256()
    received = 0
    while True:
        chunk = resp.read(CHUNK, decode_content=False)
        if not chunk:
            break
        received += len(chunk)
        if received > limit:
            # Stop at once: an endless body must not be read to its end.
            what = f"exactly {exact}" if exact is not None else f"at most {limit}"
            raise SizeError(f"{url} sent more than {limit} bytes; expected {what}. Download stopped.")
        digest.update(chunk)
        fh.write(chunk)
    if exact is not None and received != exact:
        raise SizeError(f"{url} sent {received} bytes; expected exactly {exact}.")
    actual = digest.hexdigest()
    if expected is not None and not hmac.compare_digest(actual, expected):
        raise HashMismatch(f"SHA-256 mismatch for {url}: expected {expected}, got {actual}. "
                           "The file was not saved.", expected=expected, actual=actual)
    fh.flush()
    os.fsync(fh.fileno())
    return received, actual
