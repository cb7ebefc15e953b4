"""``pinclient.check``: handshake with a host, download nothing, and say what the pins make of it.

For add-on distributors who run a list of update hosts through CI: each URL's host gets one TLS
handshake with ordinary validation against the configured trust bundle; its verified chain goes
through the same pure policy as every fetch. Nothing is requested, and no violation report is sent
(a check is a diagnosis, not an update).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ._deadline import deadline, expired, watch
from ._known import KnownIssuers
from ._names import parse_target, printable
from ._proxy import ProxyRoute, proxy_route
from ._tls import TLSInfo, missing_anchor_hint, shared_context, tls_info
from .config import PinConfig
from .errors import ChainEntry, NetworkError, TLSError, UsageError
from .policy import evaluate, expiry_warning, format_refusal, format_report_only

__all__ = ["CheckResult", "Outcome", "check", "handshake", "parse_target"]

Outcome = Literal["ok", "violation", "report-only", "tls-error"]
_EXIT = {"ok": 0, "report-only": 0, "violation": 3, "tls-error": 6}


@dataclass(frozen=True)
class CheckResult:
    """What one host's handshake gave.

    ``verdict`` is ``"ok"`` (pinned, or unpinned and allowed), ``"violation"`` (the pins refuse the
    verified chain), ``"report-only"`` (they would, but report-only mode applies) or ``"tls-error"``
    (ordinary TLS validation or the network failed; ``chain`` is then empty). ``reason`` is the
    policy's reason (``"pinned"``, ``"unexpected-issuer"``, ``"blocked"``, …), ``message`` the
    refusal or error text, ``warning`` the expiry warning of an expired pinset.
    """

    url: str
    host: str
    port: int
    verdict: Outcome
    pinset: str | None = None
    reason: str | None = None
    chain: tuple[ChainEntry, ...] = ()
    message: str = ""
    warning: str | None = None

    @property
    def exit_code(self) -> int:
        """0 for ok and report-only, 3 for a violation, 6 for a TLS or network failure."""
        return _EXIT[self.verdict]

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "host": self.host,
            "port": self.port,
            "verdict": self.verdict,
            "pinset": self.pinset,
            "reason": self.reason,
            "chain": [{"subject": c.subject, "spki_sha256": c.spki_sha256, "issuer": c.issuer,
                       "not_after": c.not_after} for c in self.chain],
            "message": self.message,
            "warning": self.warning,
        }


def handshake(host: str, port: int, bundle: str, *, timeout: float,
              proxy: str | bool | None = None) -> list[bytes]:
    """One TLS handshake with certificate and host-name verification against ``bundle``; returns
    the verified chain (DER, leaf first) and sends no application data.

    ``proxy`` follows the rules of every fetch (:func:`pinclient._proxy.proxy_route`): False
    connects directly, a URL tunnels through that proxy, None reads ``https_proxy``/``HTTPS_PROXY``
    and ``no_proxy``/``NO_PROXY``. Through a proxy the handshake runs end to end inside a CONNECT
    tunnel, so the chain is the origin's, never the proxy's (an ``https://`` proxy's certificate is
    validated against the same bundle, not pinned).

    Raises:
        TLSError: validation failed (untrusted, expired, wrong-host certificate), TLS broke, or
            the context did not verify the certificate and host name (``tls_info().verified``).
        NetworkError: the host or proxy cannot be resolved or reached, the proxy refused the
            tunnel, or the handshake timed out.
        UsageError: the trust bundle cannot be loaded, or the proxy URL is not usable.
    """
    where = f"{host}:{port}"
    started = time.monotonic()
    try:
        ctx = shared_context(bundle)
    except (OSError, ssl.SSLError) as e:
        raise UsageError(f"cannot load the trust bundle {bundle!r}: {e}") from None
    route = proxy_route(proxy, env=os.environ)
    if route is not None and route.bypass(host, port):
        route = None
    via = urlsplit(route.url) if route is not None else None
    address = (host, port) if via is None else (via.hostname or "", via.port or 80)
    connect_to = where if via is None else f"the proxy {route.url if route else ''}"
    try:
        raw = socket.create_connection(address, timeout=timeout)
    except TimeoutError:
        raise NetworkError(f"connecting to {connect_to} timed out") from None
    except OSError as e:
        raise NetworkError(f"cannot connect to {connect_to}: {e.strerror or e}") from None
    # ``timeout`` bounds the whole handshake, not each read: a server dripping its handshake a
    # byte at a time inside the socket timeout is cut off by the watchdog (issue 14).
    with deadline(started + timeout) as bound, raw:
        try:
            if route is not None:
                watch(raw)
                info = _handshake_through(raw, route, ctx, host, port)
            else:
                with ctx.wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False) as tls:
                    watch(tls)
                    tls.do_handshake()
                    bound.close()  # settle: a handshake done before the watchdog fired is whole
                    if bound.fired:
                        raise TimeoutError
                    info = tls_info(tls)
        except (ssl.SSLError, OSError) as e:
            raise _handshake_error(e, where, timeout) from None
    # As PinGuard.check does: with certificate or host-name verification off, the "verified" chain
    # is what OpenSSL attempted with the certificates the server chose (cpython PR 109113), so
    # neither a verdict nor a pin may be taken from it.
    if not info.verified:
        raise TLSError(f"the TLS connection to {where} was not made with certificate and host-name "
                       "verification on, so its chain cannot be trusted; refusing.")
    return info.chain


#: The most a proxy may send in answer to CONNECT (status line and headers).
_MAX_CONNECT_ANSWER = 64 * 1024


def _handshake_through(raw: socket.socket, route: ProxyRoute, ctx: ssl.SSLContext, host: str,
                       port: int) -> TLSInfo:
    """TLS to the proxy when it is ``https://``, a CONNECT tunnel to ``host:port``, then the origin's
    handshake inside it (TLS in TLS through urllib3's ``SSLTransport`` for an https proxy).

    Raises:
        NetworkError: the proxy refused the tunnel or broke the connection.
        ssl.SSLError / OSError: as the handshakes raise them (the caller words them).
    """
    via = urlsplit(route.url)
    sock: socket.socket = raw
    if via.scheme == "https":
        try:
            sock = ctx.wrap_socket(raw, server_hostname=via.hostname)
        except ssl.SSLCertVerificationError as e:
            raise TLSError(f"TLS validation of the proxy {route.url} failed: "
                           f"{e.verify_message or e}") from None
    try:
        return _tunnel(sock, route, ctx, host, port)
    finally:
        if sock is not raw:  # the TLS session with an https:// proxy (raw is the caller's)
            sock.close()


def _tunnel(sock: socket.socket, route: ProxyRoute, ctx: ssl.SSLContext, host: str,
            port: int) -> TLSInfo:
    from urllib3.util.ssltransport import SSLTransport  # deferred: urllib3 only through a proxy

    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    head = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
    if route.auth is not None:
        head += f"Proxy-Authorization: Basic {base64.b64encode(route.auth.encode()).decode()}\r\n"
    sock.sendall((head + "\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk or len(answer) > _MAX_CONNECT_ANSWER or expired():
            raise NetworkError(f"the proxy {route.url} closed the tunnel to {authority} before "
                               "answering CONNECT")
        answer += chunk
    status = answer.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status.split(" ", 2)
    if len(parts) < 2 or parts[1] != "200":
        raise NetworkError(f"the proxy {route.url} refused the tunnel to {authority}: "
                           f"{printable(status)}")
    if isinstance(sock, ssl.SSLSocket):
        tunnel = SSLTransport(sock, ctx, server_hostname=host)
        if expired():
            raise TimeoutError
        return tls_info(tunnel)
    with ctx.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False) as tls:
        tls.do_handshake()
        if expired():
            raise TimeoutError
        return tls_info(tls)


def _handshake_error(e: BaseException, where: str, timeout: float) -> NetworkError:
    if expired():
        return NetworkError(f"the TLS handshake with {where} did not finish within {timeout:g} s")
    if isinstance(e, ssl.SSLCertVerificationError):
        detail = str(e.verify_message or e)
        return TLSError(f"TLS validation failed for {where}: {detail}.{missing_anchor_hint(detail)}")
    if isinstance(e, ssl.SSLError):
        return TLSError(f"TLS handshake with {where} failed: {e}")
    if isinstance(e, TimeoutError):
        return NetworkError(f"the TLS handshake with {where} timed out")
    strerror = getattr(e, "strerror", None)
    return NetworkError(f"the TLS handshake with {where} failed: {strerror or e}")


def check(url: str, config: PinConfig, *, timeout: float = 10.0,
          now: dt.datetime | None = None, proxy: str | bool | None = None) -> CheckResult:
    """Handshake with ``url``'s host and judge its verified chain with ``config``.

    TLS and network failures are results, not exceptions, so a list of hosts can be checked and
    summarised.

    Raises:
        UsageError: ``url`` is not an https:// URL, or the trust bundle cannot be loaded.
    """
    host, port = parse_target(url)
    covering = config.pinset_for(host)
    try:
        chain = handshake(host, port, config.trust_bundle(), timeout=timeout, proxy=proxy)
    except NetworkError as e:
        return CheckResult(url, host, port, "tls-error", pinset=covering.name if covering else None,
                           message=e.message)
    when = now or dt.datetime.now(dt.timezone.utc)
    verdict = evaluate(config, host, chain, now=when, known=_remembered_keys(config, host, when))
    outcome: Outcome
    if verdict.report_only:
        outcome, message = "report-only", format_report_only(verdict, port)
    elif verdict.violated:
        outcome, message = "violation", format_refusal(verdict, port)
    else:
        outcome, message = "ok", ""
    return CheckResult(url, host, port, outcome, pinset=verdict.pinset.name if verdict.pinset else None,
                       reason=verdict.reason, chain=tuple(c.entry() for c in verdict.chain),
                       message=message, warning=expiry_warning(verdict))


def _remembered_keys(config: PinConfig, host: str, now: dt.datetime) -> dict[bytes, str] | None:
    """With ``unpinned = "remember"``, the CA keys recorded for an uncovered ``host`` (None: no
    record, or a stale one), read only: a check judges against the records but never writes them.

    Raises:
        UsageError / StorageError: the known-issuers file is not pinclient's, or cannot be read.
    """
    if config.defaults.unpinned != "remember" or config.pinset_for(host) is not None:
        return None
    store = KnownIssuers.for_config(config)
    record = store.records().get(host)
    return None if record is None or record.stale(now, store.max_age_days) else record.keys()
