"""fetch_update: a bounded, verified, atomic and resumable download over the pinned transport.

One call holds the destination's lock (:mod:`._lock`), streams the body into ``DEST.part`` while
hashing it (:mod:`._partfile`), resumes an interrupted part with ``Range``/``If-Range``
(:mod:`._resume`), retries what may pass with backoff (:mod:`._retry`), and aborts endless or slow
bodies (size limit, read-gap timeout, :mod:`._rate`). Only after the size and hash check out is the
part fsynced and renamed over DEST, and the folder fsynced. On any failure DEST keeps its old bytes;
the only thing ever left behind is a resumable ``DEST.part`` with its sidecar ``DEST.part.json``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from ._body import body_reader
from ._hosts import normalize_host
from ._lock import dest_lock
from ._partfile import PartFile
from ._pipeline import Pipeline
from ._rate import TransferBudget
from ._resume import PartInfo, range_headers, resume_offset, resume_verdict, validator_of
from ._retry import RetryPolicy, parse_retry_after, retry_delay
from ._version import __version__
from .config import PinConfig
from .errors import (
    ChainEntry,
    HashMismatch,
    HTTPStatusError,
    NetworkError,
    PinclientError,
    PinViolation,
    SizeError,
    StorageError,
    TLSError,
    UsageError,
)

if TYPE_CHECKING:
    from ._signed import SignatureSource
    from .minisign import PublicKey, VerifiedSignature

__all__ = [
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MIN_RATE",
    "FetchResult",
    "Progress",
    "RetryPolicy",
    "fetch_update",
    "normalize_url",
]

log = logging.getLogger("pinclient")

#: A hard cap on any body when neither ``size``, ``max_size`` nor pins.toml says otherwise (TUF's
#: endless-data attack).
DEFAULT_MAX_SIZE = 4 * 1024**3
#: Bytes per second a body must average over each ``rate_window`` (TUF's slow-retrieval attack).
DEFAULT_MIN_RATE = 1024
DEFAULT_RATE_WINDOW = 30.0  # seconds
DEFAULT_CONNECT_TIMEOUT = 15.0  # seconds
DEFAULT_READ_TIMEOUT = 30.0  # seconds without a byte
DEFAULT_LOCK_TIMEOUT = 60.0  # seconds
#: Longest a partly filled buffer waits before it goes to be hashed and written (slow bodies).
HANDOFF_INTERVAL = 0.25  # seconds
PROGRESS_INTERVAL = 0.1  # seconds between progress callbacks
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_REDIRECT_BODY_DRAIN = 64 * 1024  # a larger (or endless) redirect body closes the connection instead
# Headers pinclient owns: a caller's Range would break resuming, an Accept-Encoding the hash.
_RESERVED_HEADERS = frozenset({"range", "if-range", "host", "accept-encoding", "content-length",
                               "transfer-encoding", "connection", "te", "upgrade"})
# Dropped on a redirect to another host, as browsers and requests do: credentials stay with their host.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

#: ``progress(done, total)``: bytes on disk so far, and the whole size when known.
Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class FetchResult:
    """A verified download: where it came from (after redirects), where it is, and what it is.

    ``attempts`` counts the requests that carried a body or failed (1 without retries);
    ``resumed_from`` is how many bytes were kept from an earlier attempt or run; ``signature`` is
    the verified minisign signature, when one was required. ``report_only`` is True when the pins
    were *violated* but the pinset is in report-only mode (``pin_result`` says how).
    """

    url: str
    dest: Path
    size: int
    sha256: str
    status: int = 200
    pinset: str | None = None
    chain: tuple[ChainEntry, ...] = field(default=())
    attempts: int = 1
    resumed_from: int = 0
    signature: VerifiedSignature | None = None
    #: How the pins judged the final connection: "pinned", "unpinned-allowed", or — only when
    #: ``report_only`` is True — the violation that report-only mode let through.
    pin_result: str = "pinned"
    report_only: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "ok": True,
            "url": self.url,
            "dest": str(self.dest),
            "size": self.size,
            "sha256": self.sha256,
            "pinset": self.pinset,
            "chain": [{"subject": c.subject, "spki_sha256": c.spki_sha256} for c in self.chain],
            "pin_result": self.pin_result,
            "report_only": self.report_only,
            "attempts": self.attempts,
            "resumed_from": self.resumed_from,
            "signature": None if self.signature is None else {
                "key_id": self.signature.key_id_hex, "trusted_comment": self.signature.trusted_comment,
                "prehashed": self.signature.prehashed},
        }


def normalize_url(url: str) -> str:
    """Check that ``url`` is https:// with a host, and normalise the host (case, trailing dot, IDNA).

    Raises:
        UsageError: not an https URL, or no valid host.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError as e:  # "https://[::1/" (found by fuzz/fuzz_cli.py)
        raise UsageError(f"{url!r} is not a URL: {e}") from None
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


def _request_headers(extra: Mapping[str, str] | None) -> dict[str, str]:
    """``User-Agent: pinclient/<version>`` and ``Accept-Encoding: identity``, plus the caller's.

    Raises:
        UsageError: a malformed header, or one pinclient must control (Range, Host, …).
    """
    headers = {"User-Agent": f"pinclient/{__version__}", "Accept-Encoding": "identity"}
    for name, value in (extra or {}).items():
        key = name.strip()
        if not key or any(c in key for c in " \t\r\n:()<>@,;\\\"/[]?={}") or not key.isascii():
            raise UsageError(f"{name!r} is not a valid HTTP header name.")
        if any(c in str(value) for c in "\r\n\0"):
            raise UsageError(f"the value of header {key!r} contains a line break or NUL.")
        if key.lower() in _RESERVED_HEADERS:
            raise UsageError(f"header {key!r} is set by pinclient itself and cannot be overridden.")
        for existing in [k for k in headers if k.lower() == key.lower()]:
            del headers[existing]
        headers[key] = str(value).strip()
    return headers


def _positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise UsageError(f"{name} must be a positive number of seconds, not {value!r}.")


# --------------------------------------------------------------------------- the job


@dataclass
class _Job:
    """Everything one fetch_update call fixed up front, and the state its attempts share."""

    url: str
    target: Path
    config: PinConfig
    pm: Any
    expected: str | None
    size: int | None
    max_size: int | None
    headers: dict[str, str]
    connect_timeout: float
    read_timeout: float
    max_redirects: int
    retry: RetryPolicy
    resume: bool
    deadline: float | None
    min_rate: float | None
    rate_window: float
    progress: Progress | None
    # Mutable state across attempts:
    budget: TransferBudget = field(init=False)
    offset: int = 0  # bytes of the part to keep and ask the rest of
    digest: Any = None  # SHA-256 of those bytes
    validator: str | None = None  # If-Range value for them
    attempts: int = 0
    # Body checks beside the SHA-256 (a signature: pinclient._signed): update(chunk) for every body
    # chunk, restart(offset) when the part restarts from byte offset, finish(path) before the move.
    sinks: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.start_clock()

    def start_clock(self) -> None:
        """Start the deadline now (called once the lock is held: waiting for it does not count)."""
        self.budget = TransferBudget(now=time.monotonic(), deadline=self.deadline,
                                     min_rate=self.min_rate, window=self.rate_window)

    def limit_for(self, host: str) -> tuple[int, str]:
        """The size limit for a body served by ``host``, and where it comes from."""
        pinset = self.config.pinset_for(host)
        cap, why = DEFAULT_MAX_SIZE, "the default max_size"
        if self.max_size is not None:
            cap, why = self.max_size, "max_size"
        elif pinset is not None and pinset.max_size is not None:
            cap, why = pinset.max_size, f'max_size of pinset "{pinset.name}"'
        elif self.config.defaults.max_size is not None:
            cap, why = self.config.defaults.max_size, "max_size in [defaults]"
        if self.size is not None and self.size <= cap:
            return self.size, "the expected size"
        return cap, why

    def timeout(self) -> Any:
        """Connect and read-gap timeouts for the next request, shortened to fit the deadline.

        Raises:
            NetworkError: the deadline has passed.
        """
        from urllib3 import Timeout

        left = self.budget.remaining(time.monotonic())
        if left is not None and left <= 0:
            raise _deadline_error(self)
        cap = float("inf") if left is None else left
        return Timeout(connect=min(self.connect_timeout, cap), read=min(self.read_timeout, cap))


def _deadline_error(job: _Job) -> NetworkError:
    assert job.deadline is not None
    return NetworkError(f"fetching {job.url} did not finish within the deadline of {job.deadline:g} s "
                        f"({job.attempts} attempt(s)).", url=job.url, transient=False)


class _Restart(Exception):
    """The server's answer to a Range request cannot be appended: ask again from byte 0."""


# --------------------------------------------------------------------------- public entry point


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
    timeout: float | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    deadline: float | None = None,
    min_rate: float | None = DEFAULT_MIN_RATE,
    rate_window: float = DEFAULT_RATE_WINDOW,
    retries: int | RetryPolicy = 3,
    resume: bool = True,
    max_redirects: int = 5,
    progress: Progress | None = None,
    proxy: str | bool | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    signature: SignatureSource | None = None,
    signing_keys: Sequence[str | PublicKey] | None = None,
) -> FetchResult:
    """Fetch ``url`` over the pinned transport into ``dest``, verified and atomically.

    Integrity: ``sha256`` (hex) and ``size`` (exact bytes) are checked before DEST is touched. The
    body may never exceed ``max_size``, else the host's pinset ``max_size``, else ``[defaults]``
    ``max_size``, else :data:`DEFAULT_MAX_SIZE` (and never ``size``); a larger Content-Length aborts
    before the body, a longer body is cut off at the limit.

    Signature: with ``signing_keys`` (minisign public keys), or else the ``signing_keys`` of the
    pinset covering the URL's host, the payload must carry a minisign signature by one of them:
    ``URL.minisig``, fetched through the same pins, or ``signature`` (an https URL, a file path or
    the ``.minisig`` bytes). It is parsed and its key checked before the payload is requested, and
    verified before DEST is touched. ``signature=False`` skips this (for a payload authenticated
    otherwise, such as by the hash of a signed manifest). See :mod:`pinclient._signed`.

    Time: ``connect_timeout`` and ``read_timeout`` (the longest gap between bytes; ``timeout`` sets
    both at once), ``deadline`` (seconds for the whole fetch, retries and waits included; default
    none), and ``min_rate`` (bytes/s averaged over each ``rate_window`` seconds; None or 0 turns it
    off).

    Resilience: ``retries`` (a count or a :class:`RetryPolicy`) retries connection errors, broken
    bodies, 429 and 5xx with jittered backoff or the server's Retry-After. With ``resume`` an
    interrupted body continues where it stopped, in this call or the next one (``DEST.part``). Up to
    ``max_redirects`` https redirects are followed, each re-checked against the pins; a redirect to
    a host no pinset covers is refused unless ``unpinned = "allow"``.

    Transport: ``manager`` is a shared :class:`~pinclient.PinningPoolManager` (thread-safe);
    otherwise one is built with ``proxy`` (a URL, False for none, None for ``HTTPS_PROXY`` and
    ``NO_PROXY`` from the environment). ``headers`` are added to every request (a cross-host redirect
    drops Authorization and Cookie). ``progress(done, total)`` is called as bytes arrive, at most
    ten times a second and once at the end. Another process fetching to the same DEST is waited
    for up to ``lock_timeout`` seconds.

    Raises:
        UsageError: bad URL, hash, header, number or destination.
        PinViolation: the pins refused a connection (any hop), or a redirect to http:// or to an
            unpinned host.
        SizeError / HashMismatch: the body is not the expected one.
        SignatureError: a required signature is missing (HTTP 4xx), malformed, by another key, or
            does not match the body or its trusted comment.
        NetworkError / TLSError / HTTPStatusError: the body could not be fetched (after retries).
        StorageError: the file could not be written, or another process holds DEST's lock.
    """
    if not lock_timeout >= 0:
        raise UsageError("lock_timeout cannot be negative")
    job = _make_job(url, dest, config=config, sha256=sha256, size=size, max_size=max_size,
                    manager=manager, headers=headers, timeout=timeout, connect_timeout=connect_timeout,
                    read_timeout=read_timeout, deadline=deadline, min_rate=min_rate,
                    rate_window=rate_window, retries=retries, resume=resume,
                    max_redirects=max_redirects, progress=progress, proxy=proxy)
    try:
        with dest_lock(job.target, lock_timeout):
            job.start_clock()
            _add_signature_check(job, signature, signing_keys)
            part = PartFile(job.target)
            try:
                result = _run(job, part)
            except BaseException as e:
                keep = job.resume and isinstance(e, (NetworkError, StorageError, KeyboardInterrupt))
                if part.stop(keep=keep):
                    log.info("kept %s (%d bytes) to resume next time", part.path, part.written)
                raise
            return result
    finally:
        if manager is None:
            job.pm.clear()


def _make_job(url: str, dest: str | os.PathLike[str], *, config: PinConfig, sha256: str | None,
              size: int | None, max_size: int | None, manager: Any, headers: Mapping[str, str] | None,
              timeout: float | None, connect_timeout: float | None, read_timeout: float | None,
              deadline: float | None, min_rate: float | None, rate_window: float,
              retries: int | RetryPolicy, resume: bool, max_redirects: int, progress: Progress | None,
              proxy: str | bool | None) -> _Job:
    url = normalize_url(url)
    expected = _expected_hash(sha256)
    if size is not None and size < 0:
        raise UsageError("size must not be negative")
    if max_size is not None and max_size <= 0:
        raise UsageError("max_size must be positive")
    if size is not None and max_size is not None and size > max_size:
        raise UsageError(f"the expected size ({size} bytes) is over max_size ({max_size} bytes).")
    for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout),
                        ("read_timeout", read_timeout), ("deadline", deadline),
                        ("rate_window", rate_window)):
        _positive(name, value)
    if min_rate is not None and min_rate < 0:
        raise UsageError("min_rate cannot be negative")
    if max_redirects < 0:
        raise UsageError("max_redirects cannot be negative")
    try:
        policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries=int(retries))
    except ValueError as e:
        raise UsageError(f"retries: {e}") from None
    target = Path(dest)
    if "\0" in str(target):  # os functions raise ValueError on it (found by fuzz/fuzz_cli.py)
        raise UsageError(f"destination {str(target)!r} contains a NUL character.")
    if target.is_dir():
        raise UsageError(f"destination {str(target)!r} is a folder; give a file name.")
    if not target.parent.is_dir():
        raise UsageError(f"destination folder {str(target.parent)!r} does not exist.")
    request_headers = _request_headers(headers)
    if manager is None:
        from .transport import pinning_manager

        manager = pinning_manager(config, proxy=proxy)
    return _Job(
        url=url, target=target, config=config, pm=manager, expected=expected, size=size,
        max_size=max_size, headers=request_headers,
        connect_timeout=connect_timeout or timeout or DEFAULT_CONNECT_TIMEOUT,
        read_timeout=read_timeout or timeout or DEFAULT_READ_TIMEOUT, max_redirects=max_redirects,
        retry=policy, resume=resume, deadline=deadline, min_rate=min_rate, rate_window=rate_window,
        progress=progress)


# --------------------------------------------------------------------------- attempts


def _run(job: _Job, part: PartFile) -> FetchResult:
    """Resume what an earlier run left (if it matches), then attempt until done or out of retries."""
    host = urlsplit(job.url).hostname or ""
    info = part.read_sidecar() if job.resume else None
    job.offset = resume_offset(info, part.size_on_disk(), url=job.url, sha256=job.expected,
                               size=job.size, limit=job.limit_for(host)[0])
    if job.offset and info is not None:
        job.validator = info.validator
        part.info = info
        log.info("resuming %s from byte %d", job.target, job.offset)
    _start(job, part, job.offset)
    rng = random.Random()  # noqa: S311 - backoff jitter, not a secret
    restarted = False
    failures = 0
    while True:
        try:
            return _attempt(job, part)
        except _Restart:
            if restarted:
                raise NetworkError(f"{job.url} keeps answering range requests with bytes that do not "
                                   "continue the file; giving up.", url=job.url, transient=False) from None
            restarted = True
            _start_over(job, part)
        except PinclientError as err:
            delay = _backoff(job, failures, err, rng)
            failures += 1
            if not (job.resume and job.validator):
                _start_over(job, part)
            else:
                job.offset = part.written  # the digest has seen exactly these bytes
            log.warning("%s. Retrying in %.1f s (retry %d of %d%s).", err.message.rstrip("."), delay,
                        failures, job.retry.retries, f", from byte {job.offset}" if job.offset else "")
            time.sleep(delay)


def _backoff(job: _Job, failures: int, err: PinclientError, rng: random.Random) -> float:
    """The delay before retrying after ``err`` (the ``failures``-th so far).

    Raises:
        PinclientError: ``err`` itself when it must not be retried or the retries are used up, or a
            deadline error when the wait would run past ``--deadline``.
    """
    delay = retry_delay(job.retry, failures, err, rng)
    if delay is None:
        raise err
    left = job.budget.remaining(time.monotonic())
    if left is not None and delay >= left:
        raise _deadline_error(job) from err
    return delay


def _start_over(job: _Job, part: PartFile) -> None:
    job.offset, job.validator = 0, None
    _start(job, part, 0)


def _start(job: _Job, part: PartFile, offset: int) -> None:
    """Keep ``offset`` bytes of the part; the digest and the sinks go on from there."""
    job.digest = part.start(offset)
    for sink in job.sinks:
        sink.restart(offset)


def _add_signature_check(job: _Job, signature: SignatureSource | None,
                         signing_keys: Sequence[str | PublicKey] | None) -> None:
    """Get and parse the payload's signature, if one is required, before the payload is requested."""
    from ._signed import prepare_signature_check

    check = prepare_signature_check(job.config, job.url, signature=signature, signing_keys=signing_keys,
                                    fetch=lambda url, limit: _fetch_small(job, url, limit))
    if check is not None:
        job.sinks.append(check)


def _finish_sinks(job: _Job, part: PartFile) -> Any:
    """Run the sinks' final checks on the complete part, before it replaces DEST; returns the
    last non-None result (the verified signature)."""
    if not job.sinks:
        return None
    try:
        part.file.flush()  # a legacy signature is verified from the file itself
    except OSError as e:
        raise StorageError(f"cannot write {str(part.path)!r}: {e.strerror or e}", path=str(part.path)) from e
    outcome = None
    for sink in job.sinks:
        outcome = sink.finish(part.path) or outcome
    return outcome


def _attempt(job: _Job, part: PartFile) -> FetchResult:
    """One request chain and its body. Raises as :func:`fetch_update`, or :class:`_Restart`."""
    from urllib3 import exceptions as u3

    job.attempts += 1
    headers = dict(job.headers)
    if job.offset and job.validator:
        headers.update(range_headers(job.offset, job.validator))
    resp, url = _open(job, headers)
    verdict = getattr(resp.connection, "verdict", None)  # before release_conn() forgets the connection
    try:
        total = _accept(job, part, resp, url)
        resumed_from = job.offset
        received = _stream(resp, part, job, url=url, received=job.offset, total=total,
                           limit=job.limit_for(urlsplit(url).hostname or ""))
    except BaseException as e:
        # A connection with unread body bytes must never go back to the pool: the next request
        # on it would read them as its status line.
        resp.close()
        if isinstance(e, u3.HTTPError):
            raise _network_error(e, url, during_body=True) from e
        raise
    finally:
        resp.release_conn()
    digest = job.digest.hexdigest()
    if total is not None and received != total:
        raise NetworkError(f"{url} ended after {received} of {total} bytes.", url=url)
    if job.size is not None and received != job.size:
        raise SizeError(f"{url} sent {received} bytes; expected exactly {job.size}.")
    if job.expected is not None and not hmac.compare_digest(digest, job.expected):
        raise HashMismatch(f"SHA-256 mismatch for {url}: expected {job.expected}, got {digest}. "
                           "The file was not saved.", expected=job.expected, actual=digest)
    signature = _finish_sinks(job, part)
    part.commit()
    return FetchResult(
        url=url, dest=job.target, size=received, sha256=digest, status=resp.status,
        pinset=verdict.pinset.name if verdict and verdict.pinset else None,
        chain=tuple(c.entry() for c in verdict.chain) if verdict else (),
        attempts=job.attempts, resumed_from=resumed_from, signature=signature,
        pin_result=verdict.reason if verdict else "pinned",
        report_only=bool(verdict and verdict.report_only))


def _accept(job: _Job, part: PartFile, resp: Any, url: str) -> int | None:
    """Decide what the response is (the rest of our part, a whole new body, or an error), check its
    declared length against the limits before any body byte is read, and record the sidecar.
    Returns the body's full length when known."""
    status = resp.status
    total: int | None = None
    if job.offset:
        assert job.validator is not None
        verdict = resume_verdict(status, resp.headers, offset=job.offset, validator=job.validator)
        if verdict is not None and verdict[0] == "reset":
            log.info("%s answered the range request with %d; starting over", url, status)
            raise _Restart
        if verdict is not None and verdict[0] == "replace":
            log.info("%s sent the whole file instead of the rest; starting over", url)
            _start_over(job, part)
        elif verdict is not None:
            total = verdict[1]
            if part.info is not None and part.info.total not in (None, total):
                log.info("%s now has %s bytes, not %s; starting over", url, total, part.info.total)
                raise _Restart
    if status >= 400:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), dt.datetime.now(dt.timezone.utc))
        raise HTTPStatusError(f"{url} answered HTTP {status} {resp.reason or ''}".rstrip(),
                              url=url, status=status, retry_after=retry_after)
    if (status == 206 and not job.offset) or status not in (200, 206):
        raise NetworkError(f"{url} answered HTTP {status}; expected 200 with the update.", url=url,
                           transient=False)
    limit, why = job.limit_for(urlsplit(url).hostname or "")
    if total is None:
        declared = (resp.headers.get("Content-Length") or "").strip()
        total = int(declared) if declared.isdigit() else None
    if total is not None:
        if job.size is not None and total != job.size:
            raise SizeError(f"{url} declares {total} bytes; expected exactly {job.size}.")
        if total > limit:
            raise SizeError(f"{url} declares {total} bytes, over the limit of {limit} ({why}).")
    if status == 200:
        validator = validator_of(resp.headers) if job.resume else None
        job.validator = validator
        if validator is not None:
            part.record(PartInfo(url=job.url, validator=validator, total=total, received=0,
                                 sha256=job.expected, size=job.size))
        elif part.info is not None:
            part.discard_sidecar()
    return total


def _stream(resp: Any, part: PartFile, job: _Job, *, url: str, received: int, total: int | None,
            limit: tuple[int, str]) -> int:
    """The hot loop. This thread reads straight into large reused buffers, at most one TLS record
    per call (so that a trickle cannot hide in one long read), and checks size, deadline, rate and
    progress after every record; a second thread hashes and writes each filled buffer
    (:mod:`._pipeline`), so decryption and SHA-256 overlap on two cores. Whatever was read before a
    failure is still hashed and written (a resume relies on the digest and the part agreeing).
    Bounded memory: the buffer pool plus the part file's buffer."""
    cap, why = limit
    readinto1 = body_reader(resp)
    progress, clock = job.progress, time.monotonic
    gap = job.read_timeout
    now = clock()
    job.budget.start_body(now, received)
    next_report = now
    if progress is not None:
        progress(received, total)
    with Pipeline((job.digest.update, *(sink.update for sink in job.sinks), part.write)) as pipe:
        buf, pos, handoff = pipe.take(), 0, now + HANDOFF_INTERVAL
        view = memoryview(buf)
        try:
            while True:
                # Never ask for more than one byte past the cap: an endless body stops right there.
                n = readinto1(view[pos:min(len(view), pos + max(1, cap - received + 1))])
                if not n:
                    break
                received += n
                if received > cap:
                    raise SizeError(f"{url} sent more than {cap} bytes ({why}). Download stopped.")
                pos += n
                now = clock()
                gap = _pace(resp, job, url, now, received, gap)
                if progress is not None and now >= next_report:
                    progress(received, total)
                    next_report = now + PROGRESS_INTERVAL
                if pos == len(view) or now >= handoff:
                    pipe.submit(buf, pos)
                    pos = 0
                    buf = pipe.take()
                    view = memoryview(buf)
                    handoff = now + HANDOFF_INTERVAL
        finally:
            if pos:
                pipe.submit(buf, pos)
    if progress is not None:
        progress(received, total)
    return received


def _pace(resp: Any, job: _Job, url: str, now: float, received: int, gap: float) -> float:
    """After each record: the deadline (see :func:`_near_deadline`) and the minimum rate. Returns
    the read timeout now in force."""
    budget = job.budget
    if budget.deadline_at is not None:
        gap = _near_deadline(resp, job, now, gap)
    slow = budget.too_slow(now, received)
    if slow is not None:
        raise NetworkError(f"{url} sent {slow:.0f} bytes/s over the last {budget.window:g} s, below "
                           f"the minimum of {budget.min_rate:g} bytes/s (--min-rate).", url=url)
    return gap


def _near_deadline(resp: Any, job: _Job, now: float, gap: float) -> float:
    """Shorten the socket's read timeout as the deadline nears, so a stall cannot outlast it."""
    left = job.budget.remaining(now)
    assert left is not None
    if left <= 0:
        raise _deadline_error(job)
    if left < gap:
        sock = getattr(getattr(resp, "connection", None), "sock", None)
        if sock is not None:
            sock.settimeout(left)
        return left
    return gap


# --------------------------------------------------------------------------- requests and redirects


def _fetch_small(job: _Job, url: str, limit: int) -> bytes:
    """GET a small document (a signature) into memory as the payload is fetched: the same pins,
    redirects, headers, timeouts and retries; at most ``limit`` bytes.

    Raises:
        SizeError: the body is over ``limit``.
        HTTPStatusError / NetworkError / PinViolation: as for the payload (after retries).
    """
    from urllib3 import exceptions as u3

    rng = random.Random()  # noqa: S311 - backoff jitter, not a secret
    failures = 0
    while True:
        try:
            resp, final = _open(job, dict(job.headers), url)
            try:
                if resp.status >= 400:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"),
                                                    dt.datetime.now(dt.timezone.utc))
                    raise HTTPStatusError(f"{final} answered HTTP {resp.status} {resp.reason or ''}".rstrip(),
                                          url=final, status=resp.status, retry_after=retry_after)
                if resp.status != 200:
                    raise NetworkError(f"{final} answered HTTP {resp.status}; expected 200.", url=final,
                                       transient=False)
                data: bytes = resp.read(limit + 1, decode_content=False)
                if len(data) > limit:
                    raise SizeError(f"{final} sent more than {limit} bytes.")
            except BaseException as e:
                resp.close()  # never pool a connection with unread body bytes
                if isinstance(e, u3.HTTPError):
                    raise _network_error(e, final, during_body=True) from e
                raise
            finally:
                resp.release_conn()
            return data
        except PinclientError as err:
            delay = _backoff(job, failures, err, rng)
            failures += 1
            log.warning("%s. Retrying in %.1f s (retry %d of %d).", err.message.rstrip("."), delay,
                        failures, job.retry.retries)
            time.sleep(delay)


def _open(job: _Job, headers: dict[str, str], start: str | None = None) -> tuple[Any, str]:
    """GET ``start`` (default ``job.url``), following up to ``max_redirects`` https redirects;
    returns the final response (body unread) and its URL. Every new host is a new connection,
    checked by the pins.

    Raises:
        PinViolation: a pin check failed, or a redirect to http:// or to an unpinned host.
        NetworkError: connection failure, too many redirects, or a redirect loop.
    """
    from urllib3 import exceptions as u3

    url = start or job.url
    seen = {url}
    while True:
        try:
            resp = job.pm.urlopen("GET", url, redirect=False, retries=False, preload_content=False,
                                  headers=headers, timeout=job.timeout())
        except u3.HTTPError as e:
            raise _network_error(e, url) from e
        location = resp.headers.get("Location")
        if resp.status not in REDIRECTS or not location:
            return resp, url
        _discard(resp)
        try:
            target = urljoin(url, location)
        except ValueError:  # a hostile Location such as "https://[::1/" (found by fuzz/fuzz_cli.py)
            raise NetworkError(f"{url} redirected to {location!r}, which is not a URL; refusing.",
                               url=url, transient=False) from None
        if len(seen) > job.max_redirects:
            raise NetworkError(f"more than {job.max_redirects} redirects, the last to {target}; "
                               "refusing to follow more.", url=url, transient=False)
        url, headers = _redirect(job, url, target, headers)
        if url in seen:
            raise NetworkError(f"redirect loop: {url} was already visited; refusing.", url=url,
                               transient=False)
        seen.add(url)
        log.info("redirect %d to %s", len(seen) - 1, url)


def _redirect(job: _Job, source: str, target: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Check one redirect before connecting anywhere: https only, to a pinned host (unless unpinned
    hosts are allowed), without credentials when the host changes."""
    if urlsplit(target).scheme.lower() != "https":
        raise PinViolation(
            f"Refusing the redirect from {source} to {target}: pinclient follows only https:// "
            "redirects, each one checked against the pins.",
            host=urlsplit(target).hostname or "", reason="insecure-redirect")
    url = normalize_url(target)
    host = urlsplit(url).hostname or ""
    defaults = job.config.defaults
    enforcing = getattr(defaults, "mode", "enforce") != "report-only"
    if enforcing and defaults.unpinned == "refuse" and job.config.pinset_for(host) is None:
        raise PinViolation(
            f"Refusing the redirect from {source} to {url}: no pinset covers {host} and "
            'unpinned = "refuse", so pinclient will not connect to it.',
            host=host, port=urlsplit(url).port, reason="unpinned")
    if host != urlsplit(source).hostname:
        headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
    return url, headers


def _discard(resp: Any) -> None:
    """Finish with a redirect response: reuse the connection if its body is small, else close it
    (drain_conn would read an endless body to its end)."""
    length = (resp.headers.get("Content-Length") or "").strip()
    try:
        if length.isdigit() and int(length) <= _REDIRECT_BODY_DRAIN:
            resp.drain_conn()
            resp.release_conn()
            return
    except Exception:  # noqa: S110 - a broken redirect body only costs the connection
        pass
    resp.close()
    resp.release_conn()


# --------------------------------------------------------------------------- error conversion


def _is_cert_failure(exc: BaseException) -> bool:
    """Whether a TLS error is a certificate validation failure (as opposed to a broken connection)."""
    import ssl

    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(e):
            return True
        todo.extend(a for a in e.args if isinstance(a, BaseException))
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    return False


def _network_error(e: Exception, url: str, *, during_body: bool = False) -> NetworkError:
    """Convert urllib3's exceptions at one boundary into pinclient's tree.

    Certificate validation failures (of the origin or of an https:// proxy) become :class:`TLSError`,
    which is never retried; everything else is a transient :class:`NetworkError`.
    """
    from urllib3 import exceptions as u3

    reason: BaseException = e
    if isinstance(e, u3.MaxRetryError) and e.reason is not None:
        reason = e.reason
    where = "while reading the body" if during_body else ""
    if isinstance(reason, u3.ProxyError):
        cause = reason.original_error
        if _is_cert_failure(cause):
            return TLSError(f"TLS validation of the proxy failed for {url}: {cause}", url=url)
        return NetworkError(f"the proxy failed for {url}: {cause}", url=url)
    if isinstance(reason, u3.SSLError):
        if _is_cert_failure(reason):
            return TLSError(f"TLS validation failed for {url}: {reason}", url=url)
        return NetworkError(f"the TLS connection to {url} broke {where}: {reason}".replace("  ", " "),
                            url=url)
    if isinstance(reason, u3.NewConnectionError):  # a subclass of ConnectTimeoutError: test it first
        return NetworkError(f"cannot connect to {url}: {reason}", url=url)
    if isinstance(reason, u3.ConnectTimeoutError):
        return NetworkError(f"connecting to {url} timed out", url=url)
    if isinstance(reason, u3.ReadTimeoutError):
        return NetworkError(f"reading from {url} timed out (no data for the read timeout)", url=url)
    if isinstance(reason, u3.ProtocolError):
        return NetworkError(f"the connection to {url} broke {where}: {reason}".replace("  ", " "),
                            url=url)
    return NetworkError(f"fetching {url} failed: {reason}", url=url)

