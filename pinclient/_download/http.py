"""Requests over the pinned transport: GET with https redirects checked hop by hop, a small body
(a signature) fetched with the payload's retries, and the one boundary that turns urllib3's
exceptions into pinclient's (:func:`network_error`).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import ssl
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

from urllib3 import exceptions as u3

from .._deadline import Scope, deadline, expired
from .._names import normalize_url
from .._sizes import ascii_decimal
from .._tls import missing_anchor_hint
from ..errors import HTTPStatusError, NetworkError, PinclientError, PinViolation, SizeError, TLSError
from .job import Job, deadline_error
from .retry import parse_retry_after

__all__ = ["REDIRECTS", "fetch_small", "network_error", "next_hop", "open_url", "request_error"]

log = logging.getLogger("pinclient")

REDIRECTS = frozenset({301, 302, 303, 307, 308})
_REDIRECT_BODY_DRAIN = 64 * 1024  # a larger (or endless) redirect body closes the connection instead
# Dropped on a redirect to another origin (scheme, host or port), as urllib3 and requests do:
# credentials stay with their origin.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def fetch_small(job: Job, url: str, limit: int) -> bytes:
    """GET a small document (a signature) into memory as the payload is fetched: the same pins,
    redirects, headers, timeouts and retries; at most ``limit`` bytes.

    Raises:
        SizeError: the body is over ``limit``.
        HTTPStatusError / NetworkError / PinViolation: as for the payload (after retries).
    """
    with deadline(job.budget.deadline_at):  # every byte, not only each read (issue 14)
        return _fetch_small(job, url, limit)


def _fetch_small(job: Job, url: str, limit: int) -> bytes:
    rng = random.Random()  # noqa: S311 - backoff jitter, not a secret
    failures = 0
    while True:
        try:
            return _get_small(job, url, limit)
        except PinclientError as err:
            delay = job.backoff(failures, err, rng)
            failures += 1
            log.warning("%s. Retrying in %.1f s (retry %d of %d).", err.message.rstrip("."), delay,
                        failures, job.options.retry_policy.retries)
            time.sleep(delay)


def _get_small(job: Job, url: str, limit: int) -> bytes:
    """One GET of a small document, all of it within one exchange's bound. Raises as
    :func:`fetch_small` (before retries)."""
    with deadline(time.monotonic() + job.exchange_bound()) as exchange:
        return _read_small(job, url, limit, exchange)


def _read_small(job: Job, url: str, limit: int, exchange: Scope) -> bytes:
    resp, final = open_url(job, dict(job.headers), url)
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
        exchange.close()  # settle: a watchdog that has not fired by now will not cut this answer
        _after_watchdog(job, resp, final)
        if len(data) > limit:
            raise SizeError(f"{final} sent more than {limit} bytes.")
    except BaseException as e:
        resp.close()  # never pool a connection with unread body bytes
        if isinstance(e, u3.HTTPError):
            raise request_error(job, e, final, during_body=True) from e
        raise
    finally:
        resp.release_conn()
    return data


def open_url(job: Job, headers: dict[str, str], start: str | None = None) -> tuple[Any, str]:
    """GET ``start`` (default ``job.url``), following up to ``max_redirects`` https redirects;
    returns the final response (body unread) and its URL. Every new host is a new connection,
    checked by the pins.

    Raises:
        PinViolation: a pin check failed, or a redirect to http:// or to an unpinned host.
        NetworkError: connection failure, too many redirects, or a redirect loop.
    """
    url = start or job.url
    seen = {url}
    while True:
        # Connection, handshake, revocation checks, head and a redirect's body: one bound for all.
        with deadline(time.monotonic() + job.exchange_bound()) as hop:
            try:
                resp = job.pm.urlopen("GET", url, redirect=False, retries=False,
                                      preload_content=False, headers=headers, timeout=job.timeout())
            except u3.HTTPError as e:
                raise request_error(job, e, url) from e
            location = resp.headers.get("Location")
            final = resp.status not in REDIRECTS or not location
            if final:
                hop.close()  # the body is the caller's (under the deadline): no cut after this check
            _after_watchdog(job, resp, url)
            if final:
                return resp, url
            _discard(resp)
        url, headers = next_hop(job, url, location, headers, seen)


def next_hop(job: Job, url: str, location: str, headers: dict[str, str],
             seen: set[str]) -> tuple[str, dict[str, str]]:
    """The URL and headers of the redirect from ``url`` to ``location``, decided before connecting
    anywhere (shared by the sync and async GET loops); ``seen`` (the URLs visited) gains it.

    Raises:
        NetworkError: not a URL, too many redirects, or a redirect loop.
        PinViolation: as :func:`_redirect` (http://, or an unpinned host).
    """
    try:
        target = urljoin(url, location)
    except ValueError:  # a hostile Location such as "https://[::1/" (found by fuzz/fuzz_cli.py)
        raise NetworkError(f"{url} redirected to {location!r}, which is not a URL; refusing.",
                           url=url, transient=False) from None
    if len(seen) > job.options.max_redirects:
        raise NetworkError(f"more than {job.options.max_redirects} redirects, the last to {target}; "
                           "refusing to follow more.", url=url, transient=False)
    url, headers = _redirect(job, url, target, headers)
    if url in seen:
        raise NetworkError(f"redirect loop: {url} was already visited; refusing.", url=url,
                           transient=False)
    seen.add(url)
    log.info("redirect %d to %s", len(seen) - 1, url)
    return url, headers


def _redirect(job: Job, source: str, target: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Check one redirect before connecting anywhere: https only, to a pinned host (unless unpinned
    hosts are allowed), without credentials when the origin (scheme, host or port) changes."""
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
    if _origin(url) != _origin(source):
        headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
    return url, headers


def _origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a normalised URL, the port made explicit. Credentials belong to
    an origin, not to a host name: urllib3 (``Retry.remove_headers_on_redirect``) and requests
    (``should_strip_auth``) drop them on any change of scheme, host or port, and so does pinclient;
    another port on the same host can be another service, or another user's."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def _discard(resp: Any) -> None:
    """Finish with a redirect response: reuse the connection if its body is small, else close it
    (drain_conn would read an endless body to its end)."""
    length = ascii_decimal(resp.headers.get("Content-Length"))
    try:
        if length is not None and length <= _REDIRECT_BODY_DRAIN:
            resp.drain_conn()
            resp.release_conn()
            return
    except Exception:  # noqa: S110 - a broken redirect body only costs the connection
        pass
    resp.close()
    resp.release_conn()


def _is_cert_failure(exc: BaseException) -> bool:
    """Whether a TLS error is a certificate validation failure (as opposed to a broken connection)."""
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


def _after_watchdog(job: Job, resp: Any, url: str) -> None:
    """Distrust what arrived once a watchdog has fired: http.client takes the end of a shut-down
    socket for the end of the headers or of a close-delimited body, so a dripped answer cut off
    by the watchdog would otherwise look complete (an empty 200).

    Raises:
        NetworkError: the deadline or the exchange's bound has passed.
    """
    error = _cut_off(job, url)
    if error is not None:
        resp.close()
        raise error


def request_error(job: Job, e: Exception, url: str, *, during_body: bool = False) -> NetworkError:
    """:func:`network_error`, unless the failure is a watchdog at work (:mod:`pinclient._deadline`
    shut the socket down): then the deadline (never retried) or the exchange's bound (retried)."""
    return _cut_off(job, url) or network_error(e, url, during_body=during_body)


def _cut_off(job: Job, url: str) -> NetworkError | None:
    """The error to report when a watchdog has fired, else None."""
    left = job.budget.remaining(time.monotonic())
    if left is not None and left <= 0:
        return deadline_error(job)
    if expired():
        return NetworkError(f"{url} did not finish its answer within {job.exchange_bound():g} s (the "
                            "connect and read timeouts together), though it kept sending; cut off.",
                            url=url)
    return None


def network_error(e: Exception, url: str, *, during_body: bool = False) -> NetworkError:
    """Convert urllib3's exceptions at one boundary into pinclient's tree.

    Certificate validation failures (of the origin or of an https:// proxy) become :class:`TLSError`,
    which is never retried; everything else is a transient :class:`NetworkError`. The message names
    the host and port in words and the system's reason (``connection refused``), never urllib3's
    objects (``PinnedHTTPSConnection(host='localhost', port=9): …``).
    """
    reason: BaseException = e
    if isinstance(e, u3.MaxRetryError) and e.reason is not None:
        reason = e.reason
    parts = urlsplit(url)
    where = f"{parts.hostname} port {parts.port or 443}"
    during = " while reading the body" if during_body else ""
    if isinstance(reason, u3.ProxyError):
        cause = reason.original_error
        if _is_cert_failure(cause):
            detail = _words(cause)
            return TLSError(f"TLS validation of the proxy failed (fetching {url}): {detail}."
                            f"{missing_anchor_hint(detail)}", url=url)
        return NetworkError(f"the proxy failed (fetching {url}): {_words(cause)}", url=url)
    if isinstance(reason, u3.SSLError):
        detail = _words(reason)
        if _is_cert_failure(reason):
            return TLSError(f"TLS validation failed for {where} ({url}): {detail}."
                            f"{missing_anchor_hint(detail)}", url=url)
        return NetworkError(f"the TLS connection to {where} broke{during} ({url}): {detail}", url=url)
    if isinstance(reason, u3.NameResolutionError):
        return NetworkError(f"cannot resolve the host name {parts.hostname} ({url}): {_words(reason)}",
                            url=url)
    if isinstance(reason, u3.NewConnectionError):  # a subclass of ConnectTimeoutError: test it first
        return NetworkError(f"cannot connect to {where} ({url}): {_words(reason)}", url=url)
    if isinstance(reason, u3.ConnectTimeoutError):
        return NetworkError(f"connecting to {where} timed out ({url})", url=url)
    if isinstance(reason, u3.ReadTimeoutError):
        return NetworkError(f"reading from {where} timed out: no data for the read timeout ({url})",
                            url=url)
    if isinstance(reason, u3.ProtocolError):
        return NetworkError(f"the connection to {where} broke{during} ({url}): {_words(reason)}",
                            url=url)
    return NetworkError(f"fetching {url} failed: {_words(reason)}", url=url)


# urllib3 prefixes its messages with the connection or pool object: "PinnedHTTPSConnection(host=
# 'localhost', port=9): Failed to establish a new connection: [Errno 111] Connection refused".
_OBJECT_PREFIX = re.compile(r"^\w+\(host=[^)]*\):\s*")


def _words(exc: BaseException) -> str:
    """The system's reason for ``exc`` in words: the innermost ``OSError``'s ``strerror`` (lower
    case, as in "connection refused"), else the message without urllib3's object prefix."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        err = todo.pop(0)
        if id(err) in seen:
            continue
        seen.add(id(err))
        if (isinstance(err, OSError) and not isinstance(err, (u3.HTTPError, ssl.SSLError))
                and err.strerror):
            return err.strerror[:1].lower() + err.strerror[1:]
        if isinstance(err, ssl.SSLCertVerificationError) and err.verify_message:
            return str(err.verify_message)
        todo.extend(a for a in err.args if isinstance(a, BaseException))
        todo.extend(x for x in (err.__cause__, err.__context__) if x is not None)
    text = _OBJECT_PREFIX.sub("", str(exc))
    return text.replace("Failed to establish a new connection: ", "") or type(exc).__name__
