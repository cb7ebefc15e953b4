"""``pinclient.aio.fetch_update``: the verified, atomic, resumable download for asyncio applications.

::

    from pinclient import load_pins
    from pinclient.aio import fetch_update

    result = await fetch_update("https://updates.example.com/app-2.1.tar.gz", "app-2.1.tar.gz",
                                config=load_pins("pins.toml"), sha256="9f86d08…")

The same arguments, :class:`~pinclient.FetchOptions`, :class:`~pinclient.download.FetchResult` and
errors as :func:`pinclient.fetch_update`, over :class:`pinclient.httpx.AsyncPinningTransport`
instead of urllib3: every connection's verified chain is checked before a request byte is sent. The
decisions are the sync download's own, not a copy: the job is built by the same checks (URL, hash,
destination), resume offsets and answers are judged by :mod:`pinclient._download.resume` and
``_accept``, redirects by ``next_hop``, retries by ``prepare_retry``, the size, hash and signature
checks by ``_complete``, and the bytes go through the same
:class:`~pinclient._download.partfile.PartFile` (sidecar, checkpoints, fsync, rename). Only the I/O
loop is asynchronous.

Cancellation (``task.cancel()``, a timeout around the call) leaves DEST as it was and, with
``resume`` (the default), a resumable ``.DEST.pinclient-part`` that the next call, sync or async,
continues. After httpx's first chunk, the rest of a Content-Length body is decrypted straight into
1 MiB buffers (:mod:`pinclient._download.aiobody`: about the sync download's CPU per GiB, against
twice that through httpcore; the connection is then closed, not reused); the buffers are hashed
and written on the sync download's worker thread. When all three buffers are in flight, and at
the end while the last ones are written, the download waits for that thread in a worker thread of
anyio's, never on the event loop (a slow disk slows the download, not the application); waiting
for DEST's lock and the signature's key check run in a worker thread too.

Mirrors (``urls=``) follow the sync rules through the sync helpers (``_make_job``'s mirror list,
``_check_mirror_keys``, ``MIRROR_FAILOVER``, ``_mirrors_failed``): each mirror pinned on its own,
the next tried after a network, HTTP, pin or revocation failure, an integrity failure ending the
fetch, a part continued on another mirror only with the very same validator, one deadline for all.
``options.max_rate`` paces the body with :func:`pinclient._download.rate.rate_limit_pause` and
``anyio.sleep``, never past the deadline.

Not supported here: ``no_proxy`` for redirect targets (the proxy is chosen for each mirror's host,
not for the hosts it redirects to). The simple alternative is
``await asyncio.to_thread(pinclient.fetch_update, …)``. Needs the ``pinclient[httpx]`` extra.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import ssl
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx

from ._download.aiobody import declared_length, tls_body
from ._download.dest import DestKind, dest_kind
from ._download.fetch import (
    FetchResult,
    Progress,
    _accept,
    _check_mirror_keys,
    _complete,
    _deadline_passed,
    _make_job,
    _mirrors_failed,
)
from ._download.http import REDIRECTS, next_hop
from ._download.job import (
    MIRROR_FAILOVER,
    Job,
    Restart,
    deadline_error,
    prepare_retry,
    restart_once,
    signature_possible,
    start_part,
)
from ._download.lock import dest_lock
from ._download.options import FetchOptions
from ._download.partfile import PartFile, StreamPart
from ._download.pipeline import Pipeline
from ._download.rate import rate_limit_pause
from ._download.resume import range_headers, resume_offset
from ._names import printable
from ._proxy import no_proxy_matches, proxy_route
from ._tls import missing_anchor_hint
from .config import PinConfig
from .errors import NetworkError, PinclientError, SizeError, StorageError, TLSError
from .httpx import AsyncPinningTransport, pinclient_error

if TYPE_CHECKING:
    from ._download.signature import SignatureSource
    from .minisign import PublicKey

__all__ = ["fetch_update"]

log = logging.getLogger("pinclient")


async def fetch_update(url: str, dest: str | os.PathLike[str], *, config: PinConfig,
                       sha256: str | None = None, size: int | None = None,
                       options: FetchOptions | None = None, hashes: Sequence[str] | None = None,
                       urls: Sequence[str] | None = None, signature: SignatureSource | None = None,
                       signing_keys: Sequence[str | PublicKey] | None = None,
                       transport: AsyncPinningTransport | None = None, progress: Progress | None = None,
                       **overrides: Any) -> FetchResult:
    """Fetch ``url`` into ``dest`` as :func:`pinclient.fetch_update` does, from a coroutine.

    ``urls`` are further mirrors of the same payload, tried after ``url`` in order, exactly as
    the sync call tries them (``result.mirror``, ``result.failed_mirrors``). ``options.max_rate``
    caps the body's average rate with asyncio sleeps bounded by the deadline.

    ``transport`` is a shared :class:`~pinclient.httpx.AsyncPinningTransport` used for every
    mirror (else one is built with ``options.proxy``, as the sync call builds its manager, one more
    for mirrors that ``no_proxy`` sends direct, and all are closed at the end).

    Raises:
        the same as :func:`pinclient.fetch_update`; a cancellation propagates unchanged after the
        part was kept (``resume``) or removed.
    """
    opts = (options or FetchOptions()).with_overrides(overrides)
    config = opts.pins(config)
    transports = _Transports(config, opts, transport)
    try:
        job = _make_job(url, dest, config=config, sha256=sha256, size=size, options=opts,
                        manager=transports.for_url(url), progress=progress, hashes=hashes, urls=urls)
        kind = dest_kind(job.target)
        lock = dest_lock(job.target, opts.lock_timeout) if kind == "file" else contextlib.nullcontext()
        with anyio.CancelScope(shield=True):  # a lock taken in the thread is always released below
            await anyio.to_thread.run_sync(lock.__enter__)
        try:
            job.start_clock()
            _check_mirror_keys(job, signature, signing_keys)
            return await _fetch_mirrors(job, kind, transports, signature, signing_keys)
        finally:
            lock.__exit__(None, None, None)
    finally:
        with anyio.CancelScope(shield=True):
            await transports.aclose()


async def _fetch_mirrors(job: Job, kind: DestKind, transports: _Transports, signature: Any,
                         signing_keys: Any) -> FetchResult:
    """The sync mirror loop (``pinclient._download.fetch.fetch_update``), awaiting each mirror: the
    next one after a :data:`MIRROR_FAILOVER` failure, the result naming the mirror that served."""
    base_sinks = list(job.sinks)
    failed: list[tuple[str, PinclientError]] = []
    for mirror in job.mirrors:
        job.url, job.sinks[:] = mirror, base_sinks  # a signature is prepared per mirror
        try:
            result = await _fetch_from(job, kind, transports.for_url(mirror), signature, signing_keys)
        except MIRROR_FAILOVER as e:  # not integrity failures
            failed.append((mirror, e))
            if len(failed) == len(job.mirrors) or _deadline_passed(job):
                raise _mirrors_failed(failed)  # noqa: B904 - e itself, or an earlier mirror's
            log.warning("mirror %s failed: %s; trying the next one", printable(mirror), printable(e.message))
            continue
        return dataclasses.replace(result, mirror=mirror, failed_mirrors=tuple(
            (m, type(e).__name__, e.message) for m, e in failed))
    raise AssertionError("unreachable: job.mirrors is never empty")


async def _fetch_from(job: Job, kind: DestKind, transport: AsyncPinningTransport, signature: Any,
                      signing_keys: Any) -> FetchResult:
    """The whole fetch from one mirror (``job.url``): its signature, then its attempts."""
    await _add_signature_check(job, transport, signature, signing_keys)
    part = PartFile(job.target) if kind == "file" else StreamPart(kind)
    try:
        return await _run(job, part, transport)
    except BaseException as e:
        keep = job.options.resume and isinstance(e, (NetworkError, StorageError, KeyboardInterrupt,
                                                     anyio.get_cancelled_exc_class()))
        if part.stop(keep=keep):
            log.info("kept %s (%d bytes) to resume next time", part.path, part.written)
        raise


class _Transports:
    """The transports :func:`pinclient.transport.pinning_manager` would build, per mirror: the
    proxy the options or the environment ask for, unless ``no_proxy`` matches the mirror's host.
    A caller's ``transport`` serves every mirror and is left open."""

    def __init__(self, config: PinConfig, opts: FetchOptions, given: AsyncPinningTransport | None) -> None:
        self.config, self.given = config, given
        self.route = proxy_route(opts.proxy, env=os.environ)
        self.own: dict[bool, AsyncPinningTransport] = {}

    def for_url(self, url: str) -> AsyncPinningTransport:
        if self.given is not None:
            return self.given
        parts = urlsplit(url)
        route = self.route
        proxied = route is not None and not no_proxy_matches(route.no_proxy, parts.hostname or "", parts.port)
        if proxied not in self.own:
            if route is None or not proxied:
                self.own[proxied] = AsyncPinningTransport(self.config)
            else:
                auth = tuple(route.auth.split(":", 1)) if route.auth is not None else None
                self.own[proxied] = AsyncPinningTransport(
                    self.config, proxy=httpx.Proxy(route.url, auth=auth))  # type: ignore[arg-type]
        return self.own[proxied]

    async def aclose(self) -> None:
        for transport in self.own.values():
            await transport.aclose()


async def _add_signature_check(job: Job, transport: AsyncPinningTransport, signature: Any,
                               signing_keys: Any) -> None:
    """The sync decision (:func:`pinclient._download.signature.prepare_signature_check`) in a worker
    thread; the ``.minisig`` it asks for is fetched back on the event loop, through the pins."""
    if not signature_possible(job, signature, signing_keys):
        return
    from ._download.signature import prepare_signature_check  # deferred: minisign, for signed payloads only

    def fetch(url: str, limit: int) -> bytes:
        return anyio.from_thread.run(_fetch_small, job, transport, url, limit)

    check = await anyio.to_thread.run_sync(lambda: prepare_signature_check(
        job.config, job.url, signature=signature, signing_keys=signing_keys, fetch=fetch,
        allow_legacy_signatures=job.options.allow_legacy_signatures))
    if check is not None:
        job.sinks.append(check)


async def _fetch_small(job: Job, transport: AsyncPinningTransport, url: str, limit: int) -> bytes:
    failures, rng = 0, random.Random()  # noqa: S311 - backoff jitter, not a secret
    while True:
        try:
            resp, final = await _open(job, transport, dict(job.headers), url)
            try:
                if resp.status_code >= 400:
                    _accept(job, _NoPart(), _Head(resp), final)  # type: ignore[arg-type]  # raises HTTPStatusError
                body = b""
                async for chunk in resp.aiter_raw():
                    body += chunk
                    if len(body) > limit:
                        raise SizeError(f"{final} sent more than {limit} bytes; refusing.")
                return body
            except httpx.HTTPError as e:
                raise _network_error(e, final, during_body=True) from e
            finally:
                await resp.aclose()
        except PinclientError as err:
            delay = job.backoff(failures, err, rng)
            failures += 1
            await anyio.sleep(delay)


# --------------------------------------------------------------------------- attempts


async def _run(job: Job, part: PartFile, transport: AsyncPinningTransport) -> FetchResult:
    """As the sync ``_run``: resume what an earlier run (or mirror) left, then attempt with backoff."""
    info = part.read_sidecar() if job.options.resume else None
    # A part kept from another mirror of this payload may continue here only if this one answers
    # If-Range with the same validator (``_accept``, ``same_source``).
    source = info.url if info is not None and info.url in job.mirrors else job.url
    job.offset = resume_offset(info, part.size_on_disk(), url=source, sha256=job.expected,
                               size=job.size, limit=job.limit_for(urlsplit(job.url).hostname or "")[0])
    job.part_source = None
    if job.offset and info is not None:
        job.validator = info.validator
        job.part_source = info.url
        part.info = info
        log.info("resuming %s from byte %d", job.target, job.offset)
    start_part(job, part, job.offset)
    rng = random.Random()  # noqa: S311 - backoff jitter, not a secret
    restarted, failures = False, 0
    while True:
        try:
            left = job.budget.remaining(time.monotonic())
            try:
                with anyio.fail_after(left):
                    return await _attempt(job, part, transport)
            except TimeoutError:
                raise deadline_error(job) from None
        except Restart:
            restarted = restart_once(job, part, restarted)
        except PinclientError as err:
            delay = prepare_retry(job, part, err, failures, rng)
            failures += 1
            await anyio.sleep(delay)


async def _attempt(job: Job, part: PartFile, transport: AsyncPinningTransport) -> FetchResult:
    job.attempts += 1
    headers = dict(job.headers)
    if job.offset and job.validator:
        headers.update(range_headers(job.offset, job.validator))
    resp, url = await _open(job, transport, headers, job.url)
    verdict = getattr(resp.extensions.get("network_stream"), "verdict", None)
    try:
        total = _accept(job, part, _Head(resp), url)
        resumed_from = job.offset
        received = await _body(job, part, resp, url, total)
    except httpx.HTTPError as e:
        raise _network_error(e, url, during_body=True) from e
    finally:
        with anyio.CancelScope(shield=True):
            await resp.aclose()
    # No await from here on: a cancellation cannot stop the commit half-way.
    return _complete(job, part, url, received=received, total=total, status=resp.status_code,
                     verdict=verdict, resumed_from=resumed_from)


async def _open(job: Job, transport: AsyncPinningTransport, headers: dict[str, str],
                url: str) -> tuple[httpx.Response, str]:
    """GET ``url``, following https redirects that ``_redirect`` allows (each new host pinned by the
    transport); the final response with its body unread. Connection, handshake, pin and revocation
    checks and the response head of each hop are bounded together by ``Job.exchange_bound``."""
    seen = {url}
    while True:
        request = httpx.Request("GET", url, headers=headers, extensions={"timeout": _timeouts(job)})
        try:
            with anyio.fail_after(job.exchange_bound()):
                resp = await transport.handle_async_request(request)
        except TimeoutError:
            raise NetworkError(f"{url} did not finish its answer within {job.exchange_bound():g} s (the "
                               "connect and read timeouts together); cut off.", url=url) from None
        except httpx.HTTPError as e:
            raise _network_error(e, url) from e
        location = resp.headers.get("Location")
        if resp.status_code not in REDIRECTS or not location:
            return resp, url
        await resp.aclose()
        url, headers = next_hop(job, url, location, headers, seen)


def _timeouts(job: Job) -> dict[str, float]:
    """httpcore's timeouts for the next request: ``Job.timeout``'s connect and read-gap timeouts
    (shortened to the deadline; raises the deadline's error once it has passed)."""
    t = job.timeout()
    connect, read = float(t.connect_timeout), float(t.read_timeout)  # type: ignore[arg-type]
    return {"connect": connect, "read": read, "write": read, "pool": connect}


async def _body(job: Job, part: PartFile, resp: httpx.Response, url: str, total: int | None) -> int:
    """The body, into the sync download's 1 MiB buffers, hashed and written on its worker thread
    (:class:`~pinclient._download.pipeline.Pipeline`: SHA-256 off the event loop). The first chunk
    comes through httpx; the rest of a Content-Length body is decrypted straight into the buffers
    (:mod:`pinclient._download.aiobody`, half the CPU per GiB), any other body stays on httpx's
    chunks. The size cap at every chunk or record, the minimum rate, the rate limit and progress
    at every chunk or socket read. Every byte that arrived, up to the cap, is hashed and written
    before this returns or raises (a resume relies on the digest and the part agreeing), waited
    for off the event loop (:func:`_free_buffer`, ``Pipeline.close``)."""
    cap, why = job.limit_for(urlsplit(url).hostname or "")
    length = declared_length(resp)
    first, received = job.offset, job.offset
    budget = job.budget
    start = time.monotonic()
    budget.start_body(start, received)
    next_report = 0.0

    async def checks(now: float) -> None:
        nonlocal next_report
        rate = budget.too_slow(now, received)
        if rate is not None:
            raise NetworkError(f"{url} sent {rate:.0f} bytes/s over the last {budget.window:g} s, "
                               f"below the minimum of {budget.min_rate:g} bytes/s.", url=url)
        if job.options.max_rate:
            await _pace(job, now, start, first, received)
        if job.progress is not None and now >= next_report:
            job.progress(received, total)
            next_report = now + 0.1

    with Pipeline((job.digest.update, *(sink.update for sink in job.sinks), part.write)) as pipe:
        buf, pos = await _free_buffer(pipe), 0
        view = memoryview(buf)
        end = len(buf)
        direct = None

        async def hand_over() -> None:
            """The full buffer to the hashing thread, then the next free one."""
            nonlocal buf, pos, view
            pipe.submit(buf, end)
            pos = 0  # before the wait: a cancellation in it must not submit buf again
            buf = await _free_buffer(pipe)
            view = memoryview(buf)

        # Kept referenced until the body is read: a dropped iterator is closed by the event loop at
        # once, and closing httpcore's closes the connection under the direct reads.
        chunks = resp.aiter_raw()
        try:
            async for chunk in chunks:
                over = received + len(chunk) > cap
                data = memoryview(chunk)[:cap - received] if over else memoryview(chunk)
                received += len(data)
                while data:
                    n = min(len(data), end - pos)
                    view[pos:pos + n] = data[:n]
                    pos += n
                    data = data[n:]
                    if pos == end:
                        await hand_over()
                if over:
                    raise SizeError(f"{url} sent more than {cap} bytes ({why}). Download stopped.")
                await checks(time.monotonic())
                left = None if length is None else length - (received - first)
                # Direct reads stop at the declared length: only a body that ends within the cap
                # (the httpx path meets the cap inside a longer one).
                if left and received + left <= cap:
                    direct = tls_body(resp.extensions.get("network_stream"), left)
                    if direct is not None:
                        break
            gap = _timeouts(job)["read"]
            while direct is not None and direct.remaining:
                n = direct.fill(view[pos:])
                if n:
                    received += n
                    pos += n
                    if pos == end:
                        await hand_over()
                    await checks(time.monotonic())
                elif direct.ended:
                    break
                else:
                    await direct.receive(gap)
        finally:
            if pos:
                pipe.submit(buf, pos)
            with anyio.CancelScope(shield=True):  # the last buffers, written off the event loop
                await anyio.to_thread.run_sync(pipe.close)
    if job.progress is not None:
        job.progress(received, total)
    return received


async def _free_buffer(pipe: Pipeline) -> bytearray:
    """A free buffer of ``pipe``; when all are being hashed and written, waited for in a worker
    thread, so the event loop runs other tasks meanwhile (a slow disk never stalls it)."""
    buf = pipe.take_nowait()
    return buf if buf is not None else await anyio.to_thread.run_sync(pipe.take)


async def _pace(job: Job, now: float, start: float, start_bytes: int, received: int) -> None:
    """``max_rate`` (``--limit-rate``): wait until the body's bytes since ``start`` are no ahead of
    the rate (the sync stream's rule), never past the deadline: then its error."""
    assert job.options.max_rate
    pause, past_deadline = rate_limit_pause(now=now, start=start, start_bytes=start_bytes, received=received,
                                            max_rate=job.options.max_rate,
                                            left=job.budget.remaining(now))
    if pause:
        await anyio.sleep(pause)
    if past_deadline:
        raise deadline_error(job)


class _Head:
    """An httpx response as ``_accept`` reads a urllib3 one (status, headers, reason)."""

    def __init__(self, resp: httpx.Response) -> None:
        self.status = resp.status_code
        self.headers = resp.headers
        self.reason = resp.reason_phrase


class _NoPart:
    """``_accept`` for a small document: nothing to resume or record."""

    info = None


def _network_error(e: httpx.HTTPError, url: str, *, during_body: bool = False) -> PinclientError:
    """httpx's exceptions as pinclient's, at one boundary (as ``_download.http.network_error`` does
    for urllib3): the pinclient error behind a refusal itself; a certificate validation failure a
    :class:`TLSError` (never retried); anything else a transient :class:`NetworkError`."""
    inner = pinclient_error(e)
    if inner is not None:
        return inner
    parts = urlsplit(url)
    where = f"{parts.hostname} port {parts.port or 443}"
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = cause.verify_message or str(cause)
            return TLSError(f"TLS validation failed for {where} ({url}): {detail}."
                            f"{missing_anchor_hint(detail)}", url=url)
        cause = cause.__cause__ or cause.__context__
    during = " while reading the body" if during_body else ""
    if isinstance(e, httpx.ConnectTimeout):
        return NetworkError(f"connecting to {where} timed out ({url})", url=url)
    if isinstance(e, httpx.ReadTimeout):
        return NetworkError(f"reading from {where} timed out: no data for the read timeout ({url})", url=url)
    if isinstance(e, httpx.ConnectError):
        return NetworkError(f"cannot connect to {where} ({url}): {e}", url=url)
    return NetworkError(f"the connection to {where} broke{during} ({url}): {type(e).__name__}: {e}", url=url)
