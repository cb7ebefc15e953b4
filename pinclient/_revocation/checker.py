"""The I/O side of revocation checking: fetch OCSP responses and CRLs, keep them in a disk cache,
and turn verdicts into refusals or warnings according to a :class:`RevocationPolicy`.

All judgement lives in :mod:`pinclient._revocation.verify`; this module only moves bytes. OCSP responders
and CRL distribution points are normally plain ``http://``. That is fine: every byte fetched is
signed by the issuer (or a delegate it authorised) and verified before it is believed, and the
freshness window bounds replay. Someone on the path can only *withhold* answers, and what happens
then is exactly what ``soft-fail`` versus ``hard-fail`` decides. For that to hold, a fetch follows no
redirect (a redirect could send the updater's requests to any host, port or scheme: a loopback
admin page, the intranet) and is bounded in time as a whole, not per read.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import urllib3
from cryptography import x509

from .._deadline import WATCHED_POOLS, deadline, expired, remaining
from .._paths import replace_file, user_cache_dir
from .._sizes import ascii_decimal
from .._version import USER_AGENT
from ..errors import CertificateRevoked, RevocationCheckFailed
from .verify import (
    CertStatus,
    CRLVerdict,
    OCSPVerdict,
    ResponseRejected,
    RevocationPolicy,
    RevocationSources,
    build_ocsp_request,
    describe_certificate,
    revocation_sources,
    verify_crl,
    verify_ocsp_response,
)

__all__ = ["RevocationChecker", "default_cache_dir"]

_log = logging.getLogger(__name__)
_V = TypeVar("_V", OCSPVerdict, CRLVerdict)

_USER_AGENT = f"{USER_AGENT} (revocation check)"
_CHUNK = 64 * 1024


def default_cache_dir() -> Path:
    """The per-user cache folder: ``$XDG_CACHE_HOME/pinclient/revocation`` (else
    ``~/.cache/…``), ``~/Library/Caches/pinclient/revocation`` on macOS,
    ``%LOCALAPPDATA%\\pinclient\\Cache\\revocation`` on Windows."""
    return user_cache_dir() / "revocation"


class _FetchFailed(Exception):
    """One source could not be fetched; the message says which URL and why."""


class RevocationChecker:
    """Checks a verified chain (leaf first, root last) against OCSP and CRLs.

    Which certificates: the leaf always (in hard-fail it must name a source); each intermediate
    that names a source; never the last certificate of a longer chain (the trust anchor the chain
    was verified against: nothing above it can vouch for it).

    Verified OCSP responses and CRLs are cached in ``cache_dir`` (``None``: :func:`default_cache_dir`)
    until their nextUpdate; a cached entry is verified again every time it is read, and one that is
    corrupt, tampered with or stale is ignored and refetched. Instances are thread-safe; concurrent
    checks of the same certificate share one fetch.

    ``http`` is the pool used for fetches; when omitted the checker makes (and :meth:`close` closes)
    its own. A shared pool must not be a pinning one: responders are other hosts; it should use
    :data:`pinclient._deadline.WATCHED_POOLS`, or a responder can drip its answer's head past the
    policy's timeout.
    """

    def __init__(
        self,
        policy: RevocationPolicy,
        *,
        cache_dir: Path | None,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        self.policy = policy
        self._cache = _DiskCache(cache_dir if cache_dir is not None else default_cache_dir())
        self._own_http = http is None
        if http is None:
            http = urllib3.PoolManager(num_pools=8, maxsize=2)
            http.pool_classes_by_scheme = dict(WATCHED_POOLS)  # so that _fetch's deadline holds
        self._http = http
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def close(self) -> None:
        """Close the connection pool if the checker created it."""
        if self._own_http:
            self._http.clear()

    def __enter__(self) -> RevocationChecker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def check(
        self, chain: Sequence[x509.Certificate], *, host: str, now: datetime | None = None
    ) -> list[str]:
        """Check every certificate of ``chain`` that needs it. Returns soft-fail warnings.

        Raises:
            CertificateRevoked: a certificate is revoked (in every mode but ``off``).
            RevocationCheckFailed: hard-fail only: a status could not be established (responder
                unreachable, response rejected, status unknown) or the leaf names no source.
            ValueError: ``chain`` is empty or ``now`` is naive.
        """
        if self.policy.mode == "off":
            return []
        if not chain:
            raise ValueError("empty chain")
        now = now if now is not None else datetime.now(timezone.utc)
        if now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        warnings: list[str] = []
        for index, cert in enumerate(chain):
            if index > 0 and index == len(chain) - 1:
                break  # the trust anchor
            problem = self._check_one(cert, _issuer_in(chain, index), index == 0, host, now)
            if problem is None:
                continue
            if self.policy.mode == "hard-fail":
                raise RevocationCheckFailed(problem)
            warnings.append(f"{problem} (soft-fail: continuing)")
        return warnings

    # --- one certificate ------------------------------------------------------------------------

    def _check_one(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate | None,
        is_leaf: bool,
        host: str,
        now: datetime,
    ) -> str | None:
        """None when the status is good (or the cert need not be checked), else why not.

        Raises CertificateRevoked.
        """
        who = describe_certificate(cert)
        try:
            sources = revocation_sources(cert)
        except ValueError as e:
            return f"cannot check revocation of {who} for {host}: unreadable extensions ({e})"
        if not sources:
            if not is_leaf:
                return None
            return (
                f"cannot check revocation of {who} for {host}: it names no OCSP responder "
                "(AIA) and no CRL distribution point"
            )
        if issuer is None or cert.issuer != issuer.subject:
            return f"cannot check revocation of {who} for {host}: its issuer is not next in the chain"
        attempts: list[str] = []
        for kind, url in self._attempt_order(sources):
            try:
                verdict = (
                    self._ocsp(cert, issuer, url, now)
                    if kind == "OCSP"
                    else self._crl(cert, issuer, url, now)
                )
            except (_FetchFailed, ResponseRejected) as e:
                attempts.append(f"{kind} {url}: {e}")
                continue
            if verdict.status is CertStatus.REVOKED:
                raise CertificateRevoked(
                    f"{who} is revoked {verdict.describe_revocation()} according to {kind} {url}; "
                    f"refusing to connect to {host}"
                )
            if verdict.status is CertStatus.GOOD:
                return None
            attempts.append(f"{kind} {url}: the responder does not know this certificate (unknown)")
        return f"cannot establish revocation status of {who} for {host}: {'; '.join(attempts)}"

    def _attempt_order(self, sources: RevocationSources) -> Iterator[tuple[str, str]]:
        ocsp = [("OCSP", url) for url in sources.ocsp]
        crl = [("CRL", url) for url in sources.crl]
        yield from (crl + ocsp) if self.policy.crl == "prefer" else (ocsp + crl)

    # --- OCSP and CRL, cache first --------------------------------------------------------------

    def _ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, url: str, now: datetime) -> OCSPVerdict:
        """Raises _FetchFailed, ResponseRejected."""
        key_hash = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
        path = self._cache.path("ocsp", key_hash + b"\0" + str(cert.serial_number).encode())

        def verify(der: bytes) -> OCSPVerdict:
            return verify_ocsp_response(
                der, cert, issuer, now, self.policy.skew,
                no_next_update_window=self.policy.no_next_update_window,
            )  # fmt: skip

        with self._locked(path.name):
            cached = self._cached(path, self.policy.max_ocsp_size, verify)
            if cached is not None:
                return cached
            der = self._fetch(
                "POST",
                url,
                body=build_ocsp_request(cert, issuer),
                headers={"Content-Type": "application/ocsp-request"},
                limit=self.policy.max_ocsp_size,
            )
            verdict = verify(der)
            if verdict.status is not CertStatus.UNKNOWN:  # "unknown" may change any moment
                self._cache.write(path, der)
            return verdict

    def _crl(self, cert: x509.Certificate, issuer: x509.Certificate, url: str, now: datetime) -> CRLVerdict:
        """Raises _FetchFailed, ResponseRejected."""
        path = self._cache.path("crl", url.encode())

        def verify(data: bytes) -> CRLVerdict:
            return verify_crl(
                data, cert, issuer, now, self.policy.skew,
                no_next_update_window=self.policy.no_next_update_window,
            )  # fmt: skip

        with self._locked(path.name):
            cached = self._cached(path, self.policy.max_crl_size, verify)
            if cached is not None:
                return cached
            data = self._fetch("GET", url, limit=self.policy.max_crl_size)
            verdict = verify(data)
            self._cache.write(path, data)
            return verdict

    def _cached(self, path: Path, limit: int, verify: Callable[[bytes], _V]) -> _V | None:
        data = self._cache.read(path, limit)
        if data is None:
            return None
        try:
            verdict = verify(data)
        except (ResponseRejected, ValueError) as e:
            # A corrupt, tampered-with or expired entry is just a cache miss.
            _log.debug("ignoring cached %s: %s", path, e)
            self._cache.discard(path)
            return None
        return verdict if verdict.status is not CertStatus.UNKNOWN else None

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield

    # --- HTTP -----------------------------------------------------------------------------------

    def _fetch(
        self,
        method: str,
        url: str,
        *,
        limit: int,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """The body of a 200 answer, at most ``limit`` bytes, within the policy's timeout for the
        whole exchange (connect, head and body: a watchdog, not a per-read timeout) and never past
        a deadline the caller is under (the fetch whose connection is being checked).

        No redirect is followed and no request retried: a responder or distribution point that
        answers 3xx gave no answer (issue 14: an on-path attacker answered OCSP with 503 and
        redirected the CRL GET to a loopback or intranet URL, and urllib3 followed it).

        Raises _FetchFailed.
        """
        timeout = self.policy.timeout
        with deadline(time.monotonic() + timeout) as exchange:
            try:
                data = self._exchange(method, url, limit=limit, body=body, headers=headers)
            except _FetchFailed as e:
                if expired():  # the watchdog shut the socket: say why
                    raise _FetchFailed(f"no complete answer in time ({timeout:g} s, or the fetch's "
                                       f"deadline): {e}") from e
                raise
            exchange.close()  # settle, then distrust a cut answer: http.client takes a shut-down
            if exchange.fired:  # socket's end for the end of the headers or of the body
                raise _FetchFailed(f"no complete answer in time ({timeout:g} s, or the fetch's deadline)")
            return data

    def _exchange(self, method: str, url: str, *, limit: int, body: bytes | None,
                  headers: dict[str, str] | None) -> bytes:
        """One request and its answer, under :meth:`_fetch`'s deadline. Raises _FetchFailed."""
        try:
            response = self._http.request(
                method,
                url,
                body=body,
                headers={"User-Agent": _USER_AGENT, **(headers or {})},
                preload_content=False,
                # No decompression: a small compressed body must not inflate past the cap.
                decode_content=False,
                retries=False,
                redirect=False,
                timeout=urllib3.Timeout(total=max(remaining() or 0.0, 0.001)),
            )
        except urllib3.exceptions.HTTPError as e:
            raise _FetchFailed(f"cannot reach the server: {_cause(e)}") from e
        complete = False
        try:
            if response.status != 200:
                raise _FetchFailed(f"the server answered HTTP {response.status}")
            declared = ascii_decimal(response.headers.get("Content-Length"))  # "²": no length
            if declared is not None and declared > limit:
                raise _FetchFailed(f"the answer is {declared} bytes, more than the {limit} bytes allowed")
            data = bytearray()
            # read1() returns after one socket read, so the deadline is also checked between reads
            # (the watchdog stops a read that blocks).
            while chunk := response.read1(_CHUNK, decode_content=False):
                data += chunk
                if len(data) > limit:
                    raise _FetchFailed(f"the answer is more than the {limit} bytes allowed")
                if expired():
                    raise _FetchFailed("the answer took too long")
            complete = True
            return bytes(data)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise _FetchFailed(f"reading the answer failed: {_cause(e)}") from e
        finally:
            if not complete:
                response.close()  # do not drain a body we gave up on
            response.release_conn()


class _DiskCache:
    """Raw verified responses, one file per key. Never trusted: callers verify what they read."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, kind: str, material: bytes) -> Path:
        digest = hashlib.sha256(kind.encode() + b"\0" + material).hexdigest()
        return self.folder / f"{kind}-{digest}.der"

    def read(self, path: Path, limit: int) -> bytes | None:
        """The entry's bytes, or None (a miss). Entry names are predictable, so anything may sit
        at one: it is opened without following a link and without blocking (a FIFO or a device
        would otherwise hold every fetch in ``open()``, past any deadline), and only a regular file
        owned by this user is read; anything else is a miss with a warning (issue 14)."""
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _BINARY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        except OSError as e:  # ELOOP: a symbolic link; ENXIO: a FIFO without a writer; ...
            _log.warning("ignoring revocation cache entry %s: cannot open it safely (%s)", path,
                         e.strerror or e)
            return None
        try:
            problem = _not_ours(os.fstat(fd))
            if problem is not None:
                _log.warning("ignoring revocation cache entry %s: %s", path, problem)
                return None
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(limit + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        return data if len(data) <= limit else None

    def write(self, path: Path, data: bytes) -> None:
        """Atomically replace ``path``. Failures are logged, never raised: a cache is optional."""
        tmp: str | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self._replaceable(path):
                return
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".der")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            replace_file(tmp, path)  # readers see the old file or the new one, never half of one
            tmp = None
        except OSError as e:
            _log.warning("cannot write revocation cache entry %s: %s", path, e)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def discard(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            if self._replaceable(path):
                path.unlink()

    @staticmethod
    def _replaceable(path: Path) -> bool:
        """Whether ``path`` is free or one of our entries: something else found at an entry's name
        (a link, a FIFO, another user's file) is left alone, with a warning."""
        try:
            problem = _not_ours(os.lstat(path))
        except FileNotFoundError:
            return True
        if problem is not None:
            _log.warning("not replacing revocation cache entry %s: %s", path, problem)
        return problem is None


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: a text-mode read stops at a 0x1A byte of the DER


def _not_ours(st: os.stat_result) -> str | None:
    """Why a cache entry with this status is not one pinclient wrote, or None."""
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    getuid = getattr(os, "getuid", None)  # POSIX; Windows has no owners to compare here
    if getuid is not None and st.st_uid != getuid():
        return f"it is owned by uid {st.st_uid}, not by this user (uid {getuid()})"
    return None


def _issuer_in(chain: Sequence[x509.Certificate], index: int) -> x509.Certificate | None:
    if index + 1 < len(chain):
        return chain[index + 1]
    cert = chain[index]
    return cert if cert.issuer == cert.subject else None


def _cause(error: Exception) -> str:
    reason = getattr(error, "reason", None)  # MaxRetryError wraps the real failure
    return str(reason if isinstance(reason, Exception) else error)
