"""PinningPoolManager: a urllib3 PoolManager whose HTTPS connections check the pins right after the
handshake and before a single request byte is written.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any

from urllib3 import PoolManager, ProxyManager, Timeout
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import LocationValueError, ProxySchemeUnknown
from urllib3.poolmanager import PoolKey
from urllib3.util.ssl_ import resolve_cert_reqs

from ._deadline import WATCHED_POOLS, WatchedPoolMixin
from ._known import KnownIssuers
from ._proxy import no_proxy_matches, proxy_route
from ._reporting import DEFAULT_REPORT_TIMEOUT, MAX_RESPONSE, Reporter, has_report_destination
from ._revocation.hook import RevocationHook
from ._tls import OptionError, PinnedContext, served_chain, shared_context, tls_info, tls_versions
from .config import PinConfig
from .errors import PinViolation, UsageError
from .policy import Verdict, VerdictMemo, expiry_warning, format_report_only

__all__ = [
    "OptionError",
    "PinGuard",
    "PinnedHTTPSConnection",
    "PinningPoolManager",
    "PinningProxyManager",
    "ProxySchemeError",
    "check_pool_kwargs",
    "pinning_manager",
]

log = logging.getLogger("pinclient")

#: Called with (verdict, port) after an accepted pin check, still before the request is sent.
#: Revocation checks and reporting hook in here; raising refuses the connection.
AfterCheck = Callable[[Verdict, int], None]


class PinGuard:
    """Applies a :class:`PinConfig` to established TLS connections. Thread-safe; counts its checks.

    Every violation, enforced or report-only, goes to ``reporter`` (if any) before the connection
    is refused or let through. A report-only violation is logged at WARNING on the ``pinclient``
    logger with the full refusal text marked REPORT-ONLY; an expired pinset warns on every use.
    With ``unpinned = "remember"``, hosts no pinset covers are judged against (and recorded in)
    the known-issuers file of the config's state folder (:mod:`pinclient._known`).
    """

    def __init__(self, config: PinConfig, *, reporter: Reporter | None = None) -> None:
        self.config = config
        self.reporter = reporter
        self.after_check: list[AfterCheck] = []
        self._lock = threading.Lock()
        self.checks = 0
        self.known = KnownIssuers.for_config(config) if config.defaults.unpinned == "remember" else None
        self._memo = VerdictMemo()

    def check(self, sock: Any, port: int) -> Verdict:
        """Check the verified chain of ``sock`` against the pins of the name TLS verified.

        The host comes from the TLS object's ``server_hostname`` (the name OpenSSL checked the
        certificate against), never from the connection's host, which is the proxy's when tunnelling.

        Raises:
            PinViolation: refused (unexpected issuer, blocked, unpinned, issuer changed, or
                nothing verified).
            StorageError / UsageError: ``unpinned = "remember"`` and the known-issuers file could
                not be locked, written, or is not pinclient's.
        """
        with self._lock:
            self.checks += 1
        info = tls_info(sock)
        host = info.server_hostname or ""
        if not info.verified or not host:
            raise PinViolation(
                f"Certificate pinning failure for {host or 'an unknown host'}: the TLS connection was "
                "not made with certificate and host-name verification on, so its chain cannot be "
                "trusted for pinning; refusing.",
                host=host,
                port=port,
                reason="no-verified-chain",
            )
        now = dt.datetime.now(dt.timezone.utc)
        try:
            verdict = (self.known.judge(self.config, host, info.chain, now) if self.known is not None
                       else self._memo.evaluate(self.config, host, info.chain, now))
        except ValueError as e:  # a host no pinset can be looked up for, e.g. 0177.0.0.1 (_names.py)
            raise PinViolation(f"Certificate pinning failure: {e}; refusing.", host=host, port=port,
                               reason="invalid-host") from None
        if log.isEnabledFor(logging.DEBUG):
            for cert in verdict.chain:
                log.debug("  %s sha256/%s", cert.subject_text, cert.spki_b64)
        expired = expiry_warning(verdict)
        if expired:
            log.warning("%s", expired)
        if verdict.report_only:
            log.warning("%s", format_report_only(verdict, port))
        if verdict.violated and self.reporter is not None:
            self._report(verdict, port, sock, now)
        if not verdict.accepted:
            log.info("refused %s:%s (%s)", verdict.host, port, verdict.reason)
            raise verdict.violation(port)
        log.info("%s %s:%s (%s%s)", "let through (report-only)" if verdict.report_only else "accepted",
                 verdict.host, port, verdict.reason,
                 f", pinset {verdict.pinset.name}" if verdict.pinset else "")
        for hook in self.after_check:
            hook(verdict, port)
        return verdict

    def _report(self, verdict: Verdict, port: int, sock: Any, now: dt.datetime) -> None:
        assert self.reporter is not None
        try:
            self.reporter.submit(verdict, port, served_chain=served_chain(sock), now=now)
        except Exception as e:  # belt and braces: Reporter.submit already swallows; never fail here
            log.warning("pin violation report for %s failed: %s", verdict.host, e)


class PinnedHTTPSConnection(HTTPSConnection):
    """An HTTPSConnection that runs its :class:`PinGuard` as the last step of ``connect()``."""

    def __init__(self, *args: Any, pin_guard: PinGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pin_guard = pin_guard
        self.verdict: Verdict | None = None

    def connect(self) -> None:
        _check_connection_tls(self)
        super().connect()
        try:
            # Through a proxy, self.port is the proxy's; the origin's is the tunnel's.
            self.verdict = self.pin_guard.check(self.sock, self._tunnel_port or self.port)
        except BaseException:
            # Close the socket itself, not self.close(): urllib3 reports a closed connection that
            # had a proxy as a proxy error, which would hide the pin violation.
            sock, self.sock = self.sock, None
            if sock is not None:
                sock.close()
            raise


# A connection's TLS attributes come from its pool (pool.ca_certs, pool.assert_hostname, … and
# pool.conn_kw), which anyone may change after the manager checked its keyword arguments. urllib3 would
# apply them to the shared context on this connect; the frozen context refuses that, and this check,
# run first, names the attribute. Either way only this pool's connection fails (issue 17).
_CONNECTION_ATTRS = ("ca_certs", "ca_cert_dir", "ca_cert_data", "cert_file", "key_file", "key_password",
                     "assert_hostname", "assert_fingerprint", "server_hostname", "ssl_version",
                     "ssl_minimum_version", "ssl_maximum_version")


def _check_connection_tls(conn: HTTPSConnection) -> None:
    """Fail closed when a connection is about to use TLS settings pinclient did not choose.

    Raises:
        UsageError: a TLS attribute was set on the pool (or connection) after construction, or the
            connection (or its https:// proxy) would verify with a context pinclient did not build.
    """
    def refuse(what: str) -> UsageError:
        return UsageError(f"refusing to connect to {conn.host!r}: {what} was set on the connection pool "
                          "after PinningPoolManager checked its options; TLS settings belong to the "
                          "manager's constructor, where each set gets a verifying context of its own.")

    for attr in _CONNECTION_ATTRS:
        if getattr(conn, attr, None) is not None:
            raise refuse(f"{attr}={getattr(conn, attr)!r}")
    if conn.cert_reqs is not None and resolve_cert_reqs(conn.cert_reqs) != ssl.CERT_REQUIRED:
        raise refuse(f"cert_reqs={conn.cert_reqs!r}")
    if not isinstance(conn.ssl_context, PinnedContext) or not conn.ssl_context.frozen:
        raise refuse(f"ssl_context={conn.ssl_context!r}")
    proxy_config = conn.proxy_config
    if conn.proxy is not None and conn.proxy.scheme == "https" and (
            proxy_config is None or proxy_config.ssl_context is None or proxy_config.use_forwarding_for_https
            or proxy_config.assert_hostname is not None or proxy_config.assert_fingerprint is not None):
        # urllib3 would verify the proxy against the OS store, or forward requests to it in clear.
        raise refuse(f"the proxy configuration {proxy_config!r}")


class PinnedHTTPSConnectionPool(WatchedPoolMixin, HTTPSConnectionPool):
    """Pinned connections; each one handed out is watched by the current deadline
    (:mod:`pinclient._deadline`), so a handshake or response head cannot be dripped past it."""

    ConnectionCls = PinnedHTTPSConnection

    def __init__(self, host: str, port: int | None = None, *, pin_guard: PinGuard,
                 **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self.conn_kw["pin_guard"] = pin_guard

    def _new_conn(self) -> Any:
        conn = super()._new_conn()
        if not isinstance(conn, PinnedHTTPSConnection):
            # pool.ConnectionCls replaced: that connection would never run the pin check.
            conn.close()
            raise UsageError(f"refusing to connect to {self.host!r}: the pool's ConnectionCls was "
                             f"replaced by {type(conn).__name__}, which does not check the pins.")
        return conn


_REFUSED = {
    "assert_fingerprint": "it checks only the leaf and turns host-name checking off",
    "assert_hostname": "it changes or turns off the host-name check the pins depend on",
    "server_hostname": "pins are looked up by the name TLS verifies; set it through the URL",
    "ssl_context": "pinclient builds and shares its own verifying context; use ca_certs= or "
    "ca_bundle in pins.toml to choose the trust bundle",
    "ca_cert_dir": "use one PEM bundle (ca_certs= or ca_bundle in pins.toml)",
    "ca_cert_data": "use one PEM bundle (ca_certs= or ca_bundle in pins.toml)",
}


# Options urllib3 would apply to the SSLContext itself on every connection: the manager takes them
# once, into a context of their own (see _tls.shared_context).
_CONTEXT_KEYS = ("ca_certs", "cert_file", "key_file", "key_password", "ssl_version",
                 "ssl_minimum_version", "ssl_maximum_version")

# The keywords urllib3's PoolManager turns into a PoolKey; any other ends in "TypeError:
# PoolKey.__new__() got an unexpected keyword argument" at the first request, so refuse it now.
_POOL_KEYS = frozenset(field.removeprefix("key_") for field in PoolKey._fields)
_PROXY_KEYS = ("proxy_url", "proxy_headers", "proxy_ssl_context", "use_forwarding_for_https",
               "proxy_assert_hostname", "proxy_assert_fingerprint")


class ProxySchemeError(OptionError, ProxySchemeUnknown):
    """The proxy URL is not ``http://`` or ``https://`` (also urllib3's :class:`ProxySchemeUnknown`)."""

    def __init__(self, message: str, scheme: str | None = None) -> None:
        # Not super().__init__: ProxySchemeUnknown would rewrite the message around ``scheme``.
        Exception.__init__(self, message)
        self.message = message
        self.scheme = scheme or ""


def check_pool_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Refuse urllib3 pool options that would weaken the pin (see :class:`PinningPoolManager`), and
    keywords urllib3's pools do not take.

    Raises:
        UsageError: one of them is set.
    """
    for key in kwargs:
        if key in _PROXY_KEYS:
            raise UsageError(f"PinningPoolManager does not take {key}= (a ProxyManager keyword): use "
                             "PinningProxyManager or pinning_manager(config, proxy=...).")
        if key not in _POOL_KEYS:
            raise UsageError(f"PinningPoolManager got an unexpected keyword argument {key!r}.")
    for key, why in _REFUSED.items():
        if kwargs.get(key) is not None:
            raise UsageError(f"PinningPoolManager refuses {key}=: {why}.")
    cert_reqs = kwargs.get("cert_reqs")
    if cert_reqs not in (None, ssl.CERT_REQUIRED, "CERT_REQUIRED", "REQUIRED"):
        raise UsageError(
            f"PinningPoolManager refuses cert_reqs={cert_reqs!r}: with verification off the chain "
            "cannot be trusted, and pins would be checked against whatever the server sent."
        )


def _reporter(config: PinConfig, bundle: str, send: bool, timeout: float | None) -> Reporter | None:
    if not send or not has_report_destination(config):
        return None
    return Reporter(config, post=functools.partial(_post_report, config, bundle),
                    timeout=DEFAULT_REPORT_TIMEOUT if timeout is None else timeout)


def _post_report(config: PinConfig, bundle: str, uri: str, body: bytes, headers: dict[str, str],
                 timeout: float) -> int:
    """POST one violation report through the same pins and bundle; returns the HTTP status.

    ``send_reports=False``: a violation by the collector itself is refused (or let through in
    report-only mode) and logged, but never reported, or reports would recurse.
    """
    pm = PinningPoolManager(config, send_reports=False, ca_certs=bundle)
    try:
        resp = pm.urlopen("POST", uri, body=body, redirect=False, retries=False, preload_content=False,
                          timeout=Timeout(total=timeout), headers=headers)
        try:
            resp.read(MAX_RESPONSE)
        finally:
            resp.close()
        return int(resp.status)
    finally:
        pm.clear()


class PinningPoolManager(PoolManager):
    """A :class:`urllib3.PoolManager` that enforces ``config`` on every HTTPS connection.

    Every new connection, to any host and after every redirect, is checked once, right after the
    handshake. Plain ``http://`` is refused. Keyword arguments go to urllib3, except those that
    would weaken the pin: ``cert_reqs`` other than required, ``assert_fingerprint``,
    ``assert_hostname``, ``server_hostname``, ``ssl_context``, ``ca_cert_dir``, ``ca_cert_data``
    (each raises :class:`UsageError`), and keywords urllib3's pools do not take (``proxy_*``
    included). ``ca_certs=`` picks the trust bundle instead of the config's ``ca_bundle``,
    ``cert_file``/``key_file``/``key_password`` a client certificate, and ``ssl_minimum_version``/
    ``ssl_maximum_version``/``ssl_version`` the TLS versions (TLS 1.2 at least); one frozen
    SSLContext per (bundle, client certificate, versions) is built once and shared by all
    connections, and always offers HTTP/1.1 alone in ALPN. Per-request ``pool_kwargs`` may not
    change them, and a TLS attribute set on a pool later fails that pool's connections with
    :class:`UsageError` (see ``_check_connection_tls``).

    When the host's pinset (or ``[defaults]``) sets ``revocation``, each new connection's verified
    chain is also checked by OCSP/CRL after the pins, before the request: a revoked certificate
    raises :class:`CertificateRevoked`, an unestablished status in hard-fail
    :class:`RevocationCheckFailed` (see :mod:`pinclient._revocation.hook`).

    When the config names a ``report_uri`` or ``report_file``, violations are reported (see
    :mod:`pinclient._reporting`) with a total timeout of ``report_timeout`` seconds;
    ``send_reports=False`` turns reporting off (the reporter's own transport does that).

    Raises:
        UsageError: an unsafe or unknown keyword argument, or a client key that cannot be loaded.
        OptionError: TLS versions that cannot be honoured (also a ``ValueError``).
        OSError / ssl.SSLError: the trust bundle cannot be read.
    """

    def __init__(self, config: PinConfig, num_pools: int = 10,
                 headers: dict[str, str] | None = None, *, send_reports: bool = True,
                 report_timeout: float | None = None, pin_guard: PinGuard | None = None,
                 **connection_pool_kw: Any) -> None:
        check_pool_kwargs(connection_pool_kw)
        bundle = connection_pool_kw.pop("ca_certs", None) or config.trust_bundle()
        connection_pool_kw.pop("cert_reqs", None)
        lo, hi = tls_versions(*(connection_pool_kw.pop(k, None) for k in _CONTEXT_KEYS[4:]))
        client_cert = tuple(connection_pool_kw.pop(k, None) for k in _CONTEXT_KEYS[1:4])
        connection_pool_kw["ssl_context"] = shared_context(bundle, *client_cert, minimum_version=lo,
                                                           maximum_version=hi)
        super().__init__(num_pools=num_pools, headers=headers, **connection_pool_kw)
        self.config = config
        self.trust_bundle = bundle
        # Revocation (pins.toml `revocation`) runs after the pin check, before the request; a shared
        # guard (pin_guard=, as requests' proxy managers use) brings its owner's hook.
        self.revocation: RevocationHook | None = None
        if pin_guard is None:
            pin_guard = PinGuard(config, reporter=_reporter(config, bundle, send_reports, report_timeout))
            self.revocation = RevocationHook(config)
            pin_guard.after_check.append(self.revocation)
        self.guard = pin_guard
        pool: Any = functools.partial(PinnedHTTPSConnectionPool, pin_guard=self.guard)
        self.pool_classes_by_scheme = {"https": pool}

    def clear(self) -> None:
        """Close every pooled connection, the revocation responders' included."""
        super().clear()
        if self.revocation is not None:
            self.revocation.close()

    def connection_from_host(self, host: str | None, port: int | None = None,
                             scheme: str | None = "http",
                             pool_kwargs: dict[str, Any] | None = None) -> HTTPConnectionPool:
        if not host:
            raise LocationValueError("No host specified.")  # as urllib3's, before the scheme's refusal
        # Another scheme is left to urllib3, which raises URLSchemeUnknown for it (a ValueError,
        # as callers of a PoolManager expect) before anything connects.
        if (scheme or "http").lower() == "http":
            raise PinViolation(
                f"Refusing plain {scheme}:// to {host}: pinclient speaks only HTTPS, and a "
                "redirect to http:// would bypass every pin.",
                host=host or "",
                port=port,
                reason="insecure-scheme",
            )
        if pool_kwargs:
            check_pool_kwargs(pool_kwargs)
            for key in _CONTEXT_KEYS:
                if pool_kwargs.get(key) is not None:
                    # urllib3 would load these into the shared SSLContext on every connection,
                    # changing the trust (or client identity) of every pinned connection in the
                    # process. They belong to the manager, where each set gets its own context.
                    raise UsageError(f"PinningPoolManager refuses per-request {key}=: pass it to "
                                     "the PinningPoolManager constructor instead.")
        return super().connection_from_host(host, port, scheme, pool_kwargs)


_REFUSED_PROXY = {
    "use_forwarding_for_https": "the proxy, not the origin, would answer the TLS handshake and see "
    "every request in clear",
    "proxy_assert_hostname": "it turns off host-name checking in the proxy's TLS context; give a "
    "proxy_ssl_context of your own to verify the proxy differently",
    "proxy_assert_fingerprint": "it checks only the proxy's leaf and turns host-name checking off; "
    "give a proxy_ssl_context of your own to verify the proxy differently",
}


class PinningProxyManager(PinningPoolManager):
    """A :class:`PinningPoolManager` that tunnels its HTTPS connections through a proxy with
    ``CONNECT``: ``http://`` proxies in plain TCP, ``https://`` proxies over TLS (TLS in TLS).

    The proxy only carries the tunnel. The origin's TLS handshake runs end to end inside it, and the
    pin check reads the name and chain that *that* handshake verified (``_tls.py`` finds the inner
    TLS object), never the proxy's certificate. An ``https://`` proxy's certificate is validated
    against the same trust bundle (or ``proxy_ssl_context``, the one proxy TLS keyword honoured;
    ``proxy_assert_hostname``, ``proxy_assert_fingerprint`` and ``use_forwarding_for_https=True``
    are refused) but is not pinned. Hosts matching
    ``no_proxy`` (curl's ``NO_PROXY`` rules) connect directly. ``proxy_headers`` go on the CONNECT
    request only (for example ``Proxy-Authorization``).

    Raises:
        ProxySchemeError: the proxy URL is not http:// or https:// (also urllib3's
            ``ProxySchemeUnknown``).
        UsageError: a refused proxy keyword, or as :class:`PinningPoolManager`.
    """

    def __init__(self, config: PinConfig, proxy_url: str, *, no_proxy: tuple[str, ...] = (),
                 proxy_headers: dict[str, str] | None = None,
                 proxy_ssl_context: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        from urllib3.connection import ProxyConfig
        from urllib3.util import parse_url

        try:
            proxy = parse_url(proxy_url)
        except ValueError as e:
            raise OptionError(f"bad proxy URL: {e}") from None
        if proxy.scheme not in ("http", "https") or not proxy.host:
            # urllib3's own words first ("Proxy URL had no scheme, ..."): callers and tests match them.
            words = f"{ProxySchemeUnknown(proxy.scheme)}: " if proxy.scheme not in ("http", "https") else ""
            raise ProxySchemeError(f"{words}the proxy URL must be http://HOST[:PORT] or https://HOST[:PORT].",
                                   proxy.scheme)
        if proxy.port is None:
            proxy = proxy._replace(port=443 if proxy.scheme == "https" else 80)
        for key, why in _REFUSED_PROXY.items():
            value = kwargs.pop(key, None)
            # use_forwarding_for_https=False is urllib3's default; an assert_* of False still
            # turns host-name checking off.
            if value is not None and (value is not False or key != "use_forwarding_for_https"):
                raise UsageError(f"PinningProxyManager refuses {key}={value!r}: {why}.")
        super().__init__(config, **kwargs)
        self.proxy = proxy
        self.no_proxy = tuple(no_proxy)
        self.proxy_headers = dict(proxy_headers or {})
        context = proxy_ssl_context or self.connection_pool_kw["ssl_context"]
        # OCSP and CRL requests take the same way out as the update (plain http:// responders are
        # forwarded by the proxy); a network that only a proxy leaves would otherwise hard-fail.
        if self.revocation is not None:
            responders = ProxyManager(proxy.url, num_pools=8, maxsize=2, proxy_headers=self.proxy_headers,
                                      proxy_ssl_context=context)
            responders.pool_classes_by_scheme = dict(WATCHED_POOLS)  # the checker's deadline holds
            self.revocation.route_through(responders)
        self.connection_pool_kw.update(
            _proxy=proxy, _proxy_headers=self.proxy_headers,
            # Never forward: with use_forwarding_for_https the proxy would see the request in clear.
            _proxy_config=ProxyConfig(context, False, None, None))

    def connection_from_host(self, host: str | None, port: int | None = None,
                             scheme: str | None = "http",
                             pool_kwargs: dict[str, Any] | None = None) -> HTTPConnectionPool:
        if host and self.no_proxy and no_proxy_matches(self.no_proxy, host, port):
            # None removes the key from the pool context: a direct pool, keyed apart from the proxied one.
            pool_kwargs = {**(pool_kwargs or {}), "_proxy": None, "_proxy_headers": None,
                           "_proxy_config": None}
        return super().connection_from_host(host, port, scheme, pool_kwargs)


def pinning_manager(config: PinConfig, *, proxy: str | bool | None = None, no_proxy: str | None = None,
                    env: Mapping[str, str] | None = None, **kwargs: Any) -> PinningPoolManager:
    """The pinned transport with the proxy the caller or the environment asks for.

    ``proxy=None`` reads ``https_proxy``/``HTTPS_PROXY`` and ``no_proxy``/``NO_PROXY`` from ``env``
    (default ``os.environ``); a URL string uses that proxy; ``False`` connects directly. Credentials
    in the proxy URL become a ``Proxy-Authorization: Basic`` header on CONNECT. Other keyword
    arguments go to :class:`PinningPoolManager`.

    Raises:
        UsageError: a bad proxy URL, or as :class:`PinningPoolManager`.
    """
    import os

    route = proxy_route(proxy, no_proxy=no_proxy, env=os.environ if env is None else env)
    if route is None:
        return PinningPoolManager(config, **kwargs)
    headers = {}
    if route.auth is not None:
        from urllib3.util import make_headers

        headers = make_headers(proxy_basic_auth=route.auth)
    log.debug("proxy %s (no_proxy: %s)", route.url, ", ".join(route.no_proxy) or "none")
    return PinningProxyManager(config, route.url, no_proxy=route.no_proxy, proxy_headers=headers,
                               **kwargs)
