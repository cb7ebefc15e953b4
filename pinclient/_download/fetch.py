"""fetch_update: a bounded, verified, atomic and resumable download over the pinned transport.

One call holds the destination's lock (:mod:`.lock`), streams the body into a part file while
hashing it (:mod:`.stream`, :mod:`.partfile`), resumes an interrupted part with ``Range``/``If-Range``
(:mod:`.resume`), retries what may pass with backoff (:mod:`.retry`), and aborts endless or slow
bodies (size limit, read-gap timeout, :mod:`.rate`). Only after the size, hash and signature
(:mod:`.signature`) check out is the part fsynced and renamed over DEST, and the folder fsynced. On
any failure DEST keeps its old bytes; the only thing ever left behind is a resumable
``.DEST.pinclient-part`` with its sidecar. DEST ``-`` (standard output) and ``/dev/null`` get the
bytes only once verified, through a private temporary file; another device, a FIFO or a socket at
DEST is refused. How to fetch is one :class:`~.options.FetchOptions`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hmac
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from urllib3 import exceptions as u3

from .._deadline import deadline, expired
from .._names import normalize_url, printable
from .._sizes import ascii_decimal
from ..config import PinConfig
from ..errors import (
    ChainEntry,
    HashMismatch,
    HTTPStatusError,
    NetworkError,
    PinclientError,
    PinViolation,
    RevocationError,
    SizeError,
    StorageError,
    UsageError,
)
from ..transport import pinning_manager
from .dest import STDOUT, DestKind, check_dest, dest_kind
from .digest import DigestCheck, parse_hashes
from .http import fetch_small, open_url, request_error
from .job import (
    MIRROR_FAILOVER,
    Job,
    Restart,
    deadline_error,
    prepare_retry,
    restart_once,
    signature_possible,
    start_over,
    start_part,
)
from .lock import dest_lock
from .options import FetchOptions, expected_hash, request_headers
from .partfile import PartFile, StreamPart
from .resume import PartInfo, range_headers, resume_offset, resume_verdict, validator_of
from .retry import parse_retry_after
from .stream import stream_body

if TYPE_CHECKING:
    from ..minisign import PublicKey, VerifiedSignature
    from ..policy import Verdict
    from .signature import SignatureSource

__all__ = ["FetchResult", "Progress", "fetch_update"]

log = logging.getLogger("pinclient")

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
    #: How the pins judged the final connection: "pinned", "unpinned-allowed", "first-contact" or
    #: "remembered" (unpinned = "remember"), or — only when ``report_only`` is True — the violation
    #: that report-only mode let through.
    pin_result: str = "pinned"
    report_only: bool = False
    #: Digests checked beside ``sha256`` (``hashes=`` / ``--hash``): algorithm → hex.
    digests: dict[str, str] = field(default_factory=dict)
    #: The mirror (as given, before redirects) that served the payload; ``url`` is where it ended.
    mirror: str = ""
    #: Mirrors tried before it, in order: (mirror, error class name, message); a pin violation among
    #: them was refused (and reported, as any violation is) before a request byte was sent.
    failed_mirrors: tuple[tuple[str, str, str], ...] = ()

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
            "digests": dict(self.digests),
            "mirror": self.mirror,
            "failed_mirrors": [{"url": u, "error": kind, "message": message}
                               for u, kind, message in self.failed_mirrors],
            "signature": None if self.signature is None else {
                "key_id": self.signature.key_id_hex, "trusted_comment": self.signature.trusted_comment,
                "prehashed": self.signature.prehashed},
        }


def fetch_update(
    url: str,
    dest: str | os.PathLike[str],
    *,
    config: PinConfig,
    sha256: str | None = None,
    size: int | None = None,
    options: FetchOptions | None = None,
    hashes: Sequence[str] | None = None,
    urls: Sequence[str] | None = None,
    signature: SignatureSource | None = None,
    signing_keys: Sequence[str | PublicKey] | None = None,
    manager: Any = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> FetchResult:
    """Fetch ``url`` over the pinned transport into ``dest``, verified and atomically.

    What: ``sha256`` (hex), ``hashes`` (pip's spelling, ``["sha384:HEX", "sha512:HEX"]``; every one
    must match) and ``size`` (exact bytes) are checked before DEST is touched. The body
    may never exceed ``options.max_size``, else the host's pinset ``max_size``, else ``[defaults]``
    ``max_size``, else :data:`DEFAULT_MAX_SIZE` (and never ``size``); a larger Content-Length aborts
    before the body, a longer body is cut off at the limit.

    Where: ``dest`` is a file (created, or replaced keeping its permission bits), ``"-"`` for
    standard output or ``os.devnull``; the last two get the bytes only once verified. A folder,
    another device, a FIFO or a socket is refused. Side files beside DEST are hidden and marked
    (``.DEST.pinclient-part``, …), and a file pinclient did not make is never touched.

    How: ``options`` (a :class:`FetchOptions`; default ``FetchOptions()``) holds the timeouts,
    ``deadline``, ``min_rate``, ``max_rate``, ``retries``, ``resume``, ``max_redirects``, ``proxy``,
    ``max_size``, ``lock_timeout`` and extra ``headers``. Any of its fields may also be given as a keyword
    argument (``fetch_update(url, dest, config=c, deadline=300)``), applied on top of ``options``;
    ``timeout=`` sets both connect and read timeouts.

    Signature: with ``signing_keys`` (minisign public keys), or else the ``signing_keys`` of the
    pinset covering the URL's host, the payload must carry a minisign signature by one of them:
    ``URL.minisig``, fetched through the same pins, or ``signature`` (an https URL, a file path or
    the ``.minisig`` bytes). It is parsed and its key checked before the payload is requested, and
    verified before DEST is touched. ``signature=False`` skips this (for a payload authenticated
    otherwise, such as by the hash of a signed manifest). See :mod:`pinclient._download.signature`.

    Mirrors: ``urls`` are further URLs of the same payload, tried after ``url`` in order. Each is
    pinned on its own (its own pinset, its own pin check). A mirror that fails with a network or
    TLS error or an HTTP error status (after its retries), or whose connection the pins or the
    revocation check refuse (:class:`PinViolation`, reported like any violation, or
    :class:`RevocationError`), is logged and the next one is tried;
    integrity failures (size, hash, signature) are not, they end the fetch. The same size, hash and
    signature checks apply whichever mirror serves it; every mirror must need the same signing
    keys (else :class:`UsageError`, so that a failing mirror cannot downgrade a signed fetch to an
    unsigned one). Bytes kept from one mirror are continued from another only when it answers the
    ``If-Range`` with the same validator (ETag or Last-Modified); otherwise the body starts over.
    ``result.mirror`` names the mirror that served it, ``result.failed_mirrors`` those before it.
    When every mirror fails, the first trust refusal (pin violation or revocation) is raised, else
    the last mirror's error, its message listing every mirror's failure.

    Resilience: connection errors, broken bodies, 429 and 5xx are retried with jittered backoff or
    the server's Retry-After; with ``resume`` an interrupted body continues where it stopped, in
    this call or the next one (``.DEST.pinclient-part``). Each https redirect is re-checked against the pins;
    a redirect to a host no pinset covers is refused unless ``unpinned = "allow"``.

    Transport: ``manager`` is a shared :class:`~pinclient.PinningPoolManager` (thread-safe);
    otherwise one is built with ``options.proxy``. A redirect to another origin (scheme, host or
    port) drops Authorization, Cookie and Proxy-Authorization. ``progress(done, total)`` is called
    as bytes arrive, at most ten times a second and once at the end. Another process fetching to
    the same DEST is waited for up to ``options.lock_timeout`` seconds.

    Raises:
        TypeError: an unknown keyword argument.
        UsageError: bad URL, hash, header, option or destination.
        PinViolation: the pins refused a connection (any hop), or a redirect to http:// or to an
            unpinned host.
        SizeError / HashMismatch: the body is not the expected one.
        SignatureError: a required signature is missing (HTTP 4xx), malformed, by another key, or
            does not match the body or its trusted comment.
        NetworkError / TLSError / HTTPStatusError: the body could not be fetched (after retries).
        StorageError: the file could not be written, or another process holds DEST's lock.
    """
    opts = (options or FetchOptions()).with_overrides(overrides)
    config = opts.pins(config)  # unpinned=, before any manager is built from it
    job = _make_job(url, dest, config=config, sha256=sha256, size=size, options=opts,
                    manager=manager, progress=progress, hashes=hashes, urls=urls)
    kind = dest_kind(job.target)
    lock = dest_lock(job.target, opts.lock_timeout) if kind == "file" else contextlib.nullcontext()
    try:
        with lock:
            job.start_clock()
            _check_mirror_keys(job, signature, signing_keys)
            base_sinks = list(job.sinks)
            failed: list[tuple[str, PinclientError]] = []
            for mirror in job.mirrors:
                job.url, job.sinks[:] = mirror, base_sinks  # a signature is prepared per mirror
                try:
                    result = _fetch_from(job, kind, signature, signing_keys)
                except MIRROR_FAILOVER as e:  # not integrity failures
                    failed.append((mirror, e))
                    if len(failed) == len(job.mirrors) or _deadline_passed(job):
                        raise _mirrors_failed(failed)  # noqa: B904 - e itself, or an earlier mirror's
                    log.warning("mirror %s failed: %s; trying the next one", printable(mirror),
                                printable(e.message))
                    continue
                return dataclasses.replace(result, mirror=mirror, failed_mirrors=tuple(
                    (m, type(e).__name__, e.message) for m, e in failed))
            raise AssertionError("unreachable: job.mirrors is never empty")
    finally:
        if manager is None:
            job.pm.clear()


def _fetch_from(job: Job, kind: DestKind, signature: SignatureSource | None,
                signing_keys: Sequence[str | PublicKey] | None) -> FetchResult:
    """The whole fetch from one mirror (``job.url``): its signature, then its attempts."""
    _add_signature_check(job, signature, signing_keys)
    part = PartFile(job.target) if kind == "file" else StreamPart(kind)
    try:
        with deadline(job.budget.deadline_at):  # every byte of every request (issue 14)
            return _run(job, part)
    except BaseException as e:
        keep = job.options.resume and isinstance(e, (NetworkError, StorageError, KeyboardInterrupt))
        if part.stop(keep=keep):
            log.info("kept %s (%d bytes) to resume next time", part.path, part.written)
        raise


def _check_mirror_keys(job: Job, signature: SignatureSource | None,
                       signing_keys: Sequence[str | PublicKey] | None) -> None:
    """Every mirror must need the same signing keys: otherwise making the signed mirror fail would
    get the payload from one whose pinset asks for no signature."""
    if len(job.mirrors) == 1 or signature is False or signing_keys is not None:
        return
    from .signature import resolve_signing_keys  # deferred: minisign, for signed payloads only

    needs = {m: frozenset(k.to_string() for k in resolve_signing_keys(job.config, m, None))
             for m in job.mirrors}
    if len(set(needs.values())) > 1:
        raise UsageError("the mirrors need different signing keys (" + "; ".join(
            f"{printable(m)}: {len(keys)} key(s)" for m, keys in needs.items()) + "): give the same "
            "signing_keys to their pinsets, or pass signing_keys= / --signing-key for all of them.")


def _deadline_passed(job: Job) -> bool:
    left = job.budget.remaining(time.monotonic())
    return left is not None and left <= 0


def _mirrors_failed(failed: list[tuple[str, PinclientError]]) -> PinclientError:
    """The error to raise when every mirror failed: the first trust refusal (a pin violation or a
    revoked certificate: a security event outranks an outage), else the last error; with several
    mirrors its message lists them all."""
    if len(failed) == 1:
        return failed[0][1]
    chosen = next((e for _, e in failed if isinstance(e, (PinViolation, RevocationError))), failed[-1][1])
    summary = "; ".join(f"{printable(m)}: {type(e).__name__}: {printable(e.message)}" for m, e in failed)
    chosen.message = f"all {len(failed)} mirrors failed ({summary})"
    chosen.args = (chosen.message,)
    return chosen


def _make_job(url: str, dest: str | os.PathLike[str], *, config: PinConfig, sha256: str | None,
              size: int | None, options: FetchOptions, manager: Any, progress: Progress | None,
              hashes: Sequence[str] | None = None, urls: Sequence[str] | None = None) -> Job:
    """Check what to fetch and where (before any connection), and build the job."""
    mirrors = _mirror_list(url, urls)
    url = mirrors[0]
    expected = expected_hash(sha256)
    digests = parse_hashes(hashes, sha256=expected)
    expected = digests.pop("sha256", None)  # the SHA-256 keeps its own path (resume sidecar, result)
    if size is not None and size < 0:
        raise UsageError("size must not be negative")
    if size is not None and options.max_size is not None and size > options.max_size:
        raise UsageError(f"the expected size ({size} bytes) is over max_size ({options.max_size} bytes).")
    target = STDOUT if os.fspath(dest) == "-" else Path(dest)  # "-": standard output, like curl
    if "\0" in str(target):  # os functions raise ValueError on it (found by fuzz/fuzz_cli.py)
        raise UsageError(f"destination {str(target)!r} contains a NUL character.")
    check_dest(target)  # a folder, device, FIFO or socket is never replaced; the name must fit
    headers = request_headers(options.headers)
    if manager is None:
        manager = pinning_manager(config, proxy=options.proxy)
    job = Job(url=url, target=target, config=config, pm=manager, options=options, headers=headers,
              expected=expected, size=size, progress=progress, mirrors=mirrors)
    if digests:
        job.sinks.append(DigestCheck(digests))
    return job


def _mirror_list(url: str, urls: Sequence[str] | None) -> tuple[str, ...]:
    """``url`` and then ``urls``, each normalised (https only), without repeats.

    Raises:
        UsageError: a URL that is not https, or ``urls`` given as one string.
    """
    if isinstance(urls, (str, bytes)):
        raise UsageError("urls must be a list of mirror URLs, not one string.")
    mirrors: list[str] = []
    for item in (url, *(urls or ())):
        normal = normalize_url(item)
        if normal not in mirrors:
            mirrors.append(normal)
    return tuple(mirrors)


# --------------------------------------------------------------------------- attempts


def _run(job: Job, part: PartFile) -> FetchResult:
    """Resume what an earlier run left (if it matches), then attempt until done or out of retries."""
    host = urlsplit(job.url).hostname or ""
    info = part.read_sidecar() if job.options.resume else None
    # A part kept from another mirror of this payload may continue here, if this one proves (by
    # answering If-Range with the same validator) that it serves the same file; see _accept.
    source = info.url if info is not None and info.url in job.mirrors else job.url
    job.offset = resume_offset(info, part.size_on_disk(), url=source, sha256=job.expected,
                               size=job.size, limit=job.limit_for(host)[0])
    job.part_source = None
    if job.offset and info is not None:
        job.validator = info.validator
        job.part_source = info.url
        part.info = info
        log.info("resuming %s from byte %d", job.target, job.offset)
    start_part(job, part, job.offset)
    rng = random.Random()  # noqa: S311 - backoff jitter, not a secret
    restarted = False
    failures = 0
    while True:
        try:
            return _attempt(job, part)
        except Restart:
            restarted = restart_once(job, part, restarted)
        except PinclientError as err:
            delay = prepare_retry(job, part, err, failures, rng)
            failures += 1
            time.sleep(delay)


def _add_signature_check(job: Job, signature: SignatureSource | None,
                         signing_keys: Sequence[str | PublicKey] | None) -> None:
    """Get and parse the payload's signature, if one is required, before the payload is requested."""
    if not signature_possible(job, signature, signing_keys):
        return
    from .signature import prepare_signature_check  # deferred: minisign, for signed payloads only

    check = prepare_signature_check(job.config, job.url, signature=signature, signing_keys=signing_keys,
                                    fetch=lambda url, limit: fetch_small(job, url, limit),
                                    allow_legacy_signatures=job.options.allow_legacy_signatures)
    if check is not None:
        job.sinks.append(check)


def _finish_sinks(job: Job, part: PartFile) -> Any:
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


def _attempt(job: Job, part: PartFile) -> FetchResult:
    """One request chain and its body. Raises as :func:`fetch_update`, or :class:`Restart`."""
    job.attempts += 1
    headers = dict(job.headers)
    if job.offset and job.validator:
        headers.update(range_headers(job.offset, job.validator))
    resp, url = open_url(job, headers)
    verdict = getattr(resp.connection, "verdict", None)  # before release_conn() forgets the connection
    try:
        total = _accept(job, part, resp, url)
        resumed_from = job.offset
        received = stream_body(resp, part, job, url=url, received=job.offset, total=total,
                           limit=job.limit_for(urlsplit(url).hostname or ""))
    except BaseException as e:
        # A connection with unread body bytes must never go back to the pool: the next request
        # on it would read them as its status line.
        resp.close()
        if isinstance(e, u3.HTTPError):
            raise request_error(job, e, url, during_body=True) from e
        raise
    finally:
        resp.release_conn()
    if job.options.deadline is not None and expired():  # a body cut off by the watchdog (issue 14)
        raise deadline_error(job)
    return _complete(job, part, url, received=received, total=total, status=resp.status,
                     verdict=verdict, resumed_from=resumed_from)


def _complete(job: Job, part: PartFile, url: str, *, received: int, total: int | None, status: int,
              verdict: Verdict | None, resumed_from: int) -> FetchResult:
    """After the body: the declared length, the exact size, the SHA-256 (constant-time), the
    sinks (the signature); only then the part replaces DEST. The sync and async downloads' one
    ending. No I/O but the commit, which is synchronous: a cancellation cannot stop it half-way."""
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
        url=url, dest=job.target, size=received, sha256=digest, status=status,
        pinset=verdict.pinset.name if verdict and verdict.pinset else None,
        chain=tuple(c.entry() for c in verdict.chain) if verdict else (),
        attempts=job.attempts, resumed_from=resumed_from, signature=signature,
        pin_result=verdict.reason if verdict else "pinned",
        report_only=bool(verdict and verdict.report_only),
        digests={k: v for s in job.sinks if isinstance(s, DigestCheck) for k, v in s.verified.items()})


def _accept(job: Job, part: PartFile, resp: Any, url: str) -> int | None:
    """Decide what the response is (the rest of our part, a whole new body, or an error), check its
    declared length against the limits before any body byte is read, and record the sidecar.
    Returns the body's full length when known."""
    status = resp.status
    total: int | None = None
    if job.offset:
        assert job.validator is not None
        verdict = resume_verdict(status, resp.headers, offset=job.offset, validator=job.validator,
                                 same_source=job.part_source in (None, job.url))
        if verdict is not None and verdict[0] == "reset":
            log.info("%s answered the range request with %d; starting over", url, status)
            raise Restart
        if verdict is not None and verdict[0] == "replace":
            log.info("%s sent the whole file instead of the rest; starting over", url)
            start_over(job, part)
        elif verdict is not None:
            total = verdict[1]
            if part.info is not None and part.info.total not in (None, total):
                log.info("%s now has %s bytes, not %s; starting over", url, total, part.info.total)
                raise Restart
    if status >= 400:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), dt.datetime.now(dt.timezone.utc))
        raise HTTPStatusError(f"{url} answered HTTP {status} {resp.reason or ''}".rstrip(),
                              url=url, status=status, retry_after=retry_after)
    if (status == 206 and not job.offset) or status not in (200, 206):
        raise NetworkError(f"{url} answered HTTP {status}; expected 200 with the update.", url=url,
                           transient=False)
    limit, why = job.limit_for(urlsplit(url).hostname or "")
    if total is None:
        total = ascii_decimal(resp.headers.get("Content-Length"))  # "²" is no length (issue 14)
    if total is not None:
        if job.size is not None and total != job.size:
            raise SizeError(f"{url} declares {total} bytes; expected exactly {job.size}.")
        if total > limit:
            raise SizeError(f"{url} declares {total} bytes, over the limit of {limit} ({why}).")
    if status == 200:
        validator = validator_of(resp.headers) if job.options.resume else None
        job.validator, job.part_source = validator, job.url
        if validator is not None:
            part.record(PartInfo(url=job.url, validator=validator, total=total, received=0,
                                 sha256=job.expected, size=job.size))
        elif part.info is not None:
            part.discard_sidecar()
    return total
