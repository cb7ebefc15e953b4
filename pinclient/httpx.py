"""pinclient's pin checks for ``httpx``: :class:`PinningTransport` and :class:`AsyncPinningTransport`.

::

    import httpx
    from pinclient import load_pins
    from pinclient.httpx import AsyncPinningTransport, PinningTransport

    config = load_pins("pins.toml")
    with httpx.Client(transport=PinningTransport(config)) as client:
        client.get("https://updates.example.com/app.tar.gz")
    async with httpx.AsyncClient(transport=AsyncPinningTransport(config)) as client:
        await client.get("https://updates.example.com/app.tar.gz")

How: httpcore opens every TCP connection through a network backend and upgrades it with
``stream.start_tls(ssl_context, server_hostname)``, which returns a stream whose
``get_extra_info("ssl_object")`` is the connection's TLS object. The transports hand httpcore a
backend whose streams run :meth:`pinclient.transport.PinGuard.check` on that TLS object as the last
step of ``start_tls``, so the verified chain of every new connection (direct, tunnelled through an
``http://`` proxy, TLS in TLS through an ``https://`` proxy, and each redirect's new host, which
httpx sends through the transport again) is judged before httpcore writes a request byte. The
blocklist, report-only mode, violation reports and revocation (``revocation`` in pins.toml) apply as
in :class:`~pinclient.PinningPoolManager`, through the same kind of guard.

A handshake may use only the two contexts the transport built: pinclient's shared, frozen verifying
context for origins (checked against the pins) and, for an ``https://`` proxy, a verifying context
over the same trust bundle (the proxy is verified, not pinned). Any other context is refused, and
so are ``verify=False``, ``verify=`` a context or path, SOCKS proxies, ``uds=`` and plain
``http://`` URLs (a redirect to ``http://`` included).

Errors: a refusal is :class:`httpx.ConnectError` (a connection that could not be made), whose
``__cause__`` is the pinclient error (:class:`~pinclient.PinViolation`, ``CertificateRevoked``,
``RevocationCheckFailed``); refused options raise :class:`~pinclient.UsageError` at construction.

Give the proxy to the transport (``PinningTransport(config, proxy=...)``), never to the client
(``httpx.Client(proxy=...)`` mounts httpx's own, unpinned transport). Hosts matching ``no_proxy=``
(curl's ``NO_PROXY`` rules) connect directly, judged per request, pinned alike; ``HTTPS_PROXY``
and ``NO_PROXY`` are not read. A TLS error mid-body is ``httpx.ReadError``. Needs ``pinclient[httpx]``.
"""

from __future__ import annotations

import contextvars
import ssl
from collections.abc import Iterable
from typing import Any

try:
    import anyio.to_thread
    import httpcore
    import httpx
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("pinclient.httpx needs httpx: pip install 'pinclient[httpx]'") from e

from ._proxy import no_proxy_matches, parse_no_proxy
from ._revocation.hook import RevocationHook
from ._tls import PinnedContext, _build_context, received_records, shared_context
from .config import PinConfig
from .errors import PinclientError, PinViolation, RevocationError, UsageError
from .policy import Verdict
from .transport import PinGuard, _reporter

__all__ = ["AsyncPinningTransport", "PinningTransport", "pinclient_error"]

# The port of the request whose connection is being opened (httpcore connects inside the request's
# own call, in the caller's thread or task): the TLS stream knows only the host name, and through a
# proxy the TCP port is the proxy's. Used for messages and reports, never for the decision.
_port: contextvars.ContextVar[int] = contextvars.ContextVar("pinclient_httpx_port", default=443)

_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's default

_Cert = str | tuple[str, str | None] | tuple[str, str | None, str | None]


class _Pins:
    """What both transports share: the guard, the origin context and the proxy's context."""

    def __init__(self, config: PinConfig, *, verify: Any, cert: _Cert | None, ca_certs: str | None,
                 proxy: httpx.Proxy | None, send_reports: bool, report_timeout: float | None) -> None:
        if verify is not True:
            why = ("with verification off the chain cannot be trusted, and pins would be checked "
                   "against whatever the server sent" if verify is False else
                   "pinclient builds and shares its own verifying context; choose the trust bundle "
                   "with ca_certs= or ca_bundle in pins.toml")
            raise UsageError(f"pinclient.httpx refuses verify={verify!r}: {why}.")
        self.bundle = ca_certs or config.trust_bundle()
        cert_file, key_file, password = _client_cert(cert)
        self.context: PinnedContext = shared_context(self.bundle, cert_file, key_file, password)
        self.proxy_context: PinnedContext | None = None
        if proxy is not None and proxy.url.scheme == "https":
            # Verified, not pinned (as PinningProxyManager); by the origin's loader, so that "system"
            # (no file for create_default_context) and the TLS floor hold too; its own object, so that
            # start_tls tells the proxy's handshake from the origin's.
            self.proxy_context = _build_context(self.bundle, None, None)
            self.proxy_context.freeze()
        self.guard = PinGuard(config, reporter=_reporter(config, self.bundle, send_reports, report_timeout))
        self.revocation = RevocationHook(config)
        self.guard.after_check.append(self.revocation)

    def is_origin(self, ssl_context: ssl.SSLContext, server_hostname: str | None) -> bool:
        """True for the origin's handshake, False for the https proxy's.

        Raises:
            PinViolation: any other context (it was not built, or not frozen, by pinclient).
        """
        if ssl_context is self.context and self.context.frozen:
            return True
        if self.proxy_context is not None and ssl_context is self.proxy_context:
            return False
        raise PinViolation(f"Certificate pinning failure for {server_hostname!r}: the TLS handshake was "
                           f"asked to use a context pinclient did not build ({ssl_context!r}); refusing.",
                           host=server_hostname or "", port=_port.get(), reason="foreign-context")

    def check(self, stream: Any) -> Verdict:
        return self.guard.check(_tls_object(stream), _port.get())

    def close(self) -> None:
        self.revocation.close()


def _tls_object(stream: Any) -> Any:
    """The ``ssl.SSLSocket`` or ``ssl.SSLObject`` of an httpcore TLS stream (what ``_tls.tls_info`` reads).

    httpcore's sync stream answers ``ssl_object`` with the socket's private ``_ssl._SSLSocket``; its
    ``socket`` is then the ``ssl.SSLSocket`` that owns it. TLS in TLS and anyio give an ``SSLObject``.
    Anything else is passed on as it is, and ``tls_info`` refuses it (no verified chain).
    """
    obj = stream.get_extra_info("ssl_object")
    if isinstance(obj, (ssl.SSLSocket, ssl.SSLObject)):
        return obj
    sock = stream.get_extra_info("socket")
    if obj is not None and isinstance(sock, ssl.SSLSocket) and getattr(sock, "_sslobj", None) is obj:
        return sock
    return obj


def _client_cert(cert: _Cert | None) -> tuple[str | None, str | None, str | None]:
    if cert is None or isinstance(cert, str):
        return cert, None, None
    if isinstance(cert, tuple) and len(cert) in (2, 3):
        return (cert[0], cert[1], cert[2] if len(cert) == 3 else None)
    raise UsageError(f"pinclient.httpx: cert= must be a path or (cert_file, key_file[, password]), "
                     f"not {cert!r}.")


def _proxy(proxy: str | httpx.URL | httpx.Proxy | None) -> httpx.Proxy | None:
    if proxy is None:
        return None
    proxy = proxy if isinstance(proxy, httpx.Proxy) else httpx.Proxy(proxy)
    if proxy.url.scheme not in ("http", "https"):
        raise UsageError(f"pinclient.httpx does not support {proxy.url.scheme}:// proxies; use an "
                         "http:// or https:// proxy, which pinclient tunnels with CONNECT and checks end "
                         "to end.")
    if proxy.ssl_context is not None:
        raise UsageError("pinclient.httpx refuses httpx.Proxy(ssl_context=...): an https:// proxy is "
                         "verified against the pins file's trust bundle (or ca_certs=).")
    return proxy


def _pool_kwargs(pins: _Pins, proxy: httpx.Proxy | None, limits: httpx.Limits, retries: int,
                 backend: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        ssl_context=pins.context, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry, http1=True, http2=False, retries=retries,
        network_backend=backend)
    if proxy is None:
        return kwargs
    url = httpcore.URL(scheme=proxy.url.raw_scheme, host=proxy.url.raw_host, port=proxy.url.port,
                       target=proxy.url.raw_path)
    return {**kwargs, "proxy_url": url, "proxy_auth": proxy.raw_auth,
                  "proxy_headers": proxy.headers.raw, "proxy_ssl_context": pins.proxy_context}


def _build_pool(pins: _Pins, proxy: httpx.Proxy | None, no_proxy: Any, limits: httpx.Limits, retries: int,
                backend: Any, proxy_pool: type, pool: type, route: type) -> Any:
    """What the transports use instead of httpx's own pool (unpinned): one on ``backend``, sync or
    async, through ``proxy`` if any, with ``no_proxy`` hosts routed to a direct pool."""
    kwargs = _pool_kwargs(pins, proxy, limits, retries, backend)
    built = proxy_pool(**kwargs) if proxy else pool(**kwargs)
    if proxy is not None and (bypass := _no_proxy(no_proxy)):
        built = route(built, pool(**_pool_kwargs(pins, None, limits, retries, backend)), bypass)
    return built


def _refusal(request: httpx.Request, error: PinclientError) -> httpx.ConnectError:
    return httpx.ConnectError(f"{type(error).__name__}: {error}", request=request)


def _check_pool(pool: Any, backend: type[Any]) -> None:
    """Fail closed when the pool no longer connects through the pinning backend (``_pool`` or its
    ``_network_backend`` replaced after construction): its connections would never be checked.

    Raises:
        UsageError: the pool or its backend is not the one the transport built.
    """
    pools = (pool.proxied, pool.direct) if isinstance(pool, (_Route, _AsyncRoute)) else (pool,)
    if not all(isinstance(getattr(p, "_network_backend", None), backend) for p in pools):
        raise UsageError(f"refusing to connect: the transport's connection pool ({type(pool).__name__}) "
                         "no longer uses pinclient's network backend, so its connections would not be "
                         "checked against the pins.")


def _refuse_plain(request: httpx.Request) -> None:
    if request.url.scheme != "https":
        host = request.url.host
        raise PinViolation(
            f"Refusing plain {request.url.scheme}:// to {host!r}: pinclient speaks only HTTPS, and a "
            "redirect to http:// would bypass every pin.", host=host, port=request.url.port,
            reason="insecure-scheme")


def _no_proxy(no_proxy: str | Iterable[str] | None) -> tuple[str, ...]:
    return parse_no_proxy(no_proxy if isinstance(no_proxy, str) else ",".join(no_proxy or ()))


def _bypasses(no_proxy: tuple[str, ...], request: httpcore.Request) -> bool:
    """Whether ``request`` goes direct: its host (and port) matches ``no_proxy`` (curl's rules)."""
    host = request.url.host.decode("ascii", "replace")
    return no_proxy_matches(no_proxy, host, request.url.port or 443)


class _Route:
    """The pool of a transport whose proxy has ``no_proxy`` exceptions (httpx calls only these methods):
    each request goes to the proxied or the direct pool by its own host, both on the pinning backend."""

    def __init__(self, proxied: httpcore.ConnectionPool, direct: httpcore.ConnectionPool,
                 no_proxy: tuple[str, ...]) -> None:
        self.proxied, self.direct, self.no_proxy = proxied, direct, no_proxy

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        pool = self.direct if _bypasses(self.no_proxy, request) else self.proxied
        return pool.handle_request(request)

    def close(self) -> None:
        try:
            self.proxied.close()
        finally:
            self.direct.close()

    def __enter__(self) -> _Route:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AsyncRoute:
    """:class:`_Route` for the async transport."""

    def __init__(self, proxied: httpcore.AsyncConnectionPool, direct: httpcore.AsyncConnectionPool,
                 no_proxy: tuple[str, ...]) -> None:
        self.proxied, self.direct, self.no_proxy = proxied, direct, no_proxy

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        pool = self.direct if _bypasses(self.no_proxy, request) else self.proxied
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        try:
            await self.proxied.aclose()
        finally:
            await self.direct.aclose()

    async def __aenter__(self) -> _AsyncRoute:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Stream(httpcore.NetworkStream):
    """A network stream whose TLS upgrade ends with the pin check (see the module docstring)."""

    def __init__(self, stream: httpcore.NetworkStream, pins: _Pins, verdict: Verdict | None = None) -> None:
        self._stream = stream
        self._pins = pins
        #: The pin verdict of this connection's origin (None before TLS, or for a proxy's TLS); httpx
        #: users find the stream in ``response.extensions["network_stream"]``.
        self.verdict = verdict

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        try:
            origin = self._pins.is_origin(ssl_context, server_hostname)
        except BaseException:
            self._stream.close()
            raise
        tls = self._stream.start_tls(ssl_context, server_hostname, timeout)
        try:
            verdict = self._pins.check(tls) if origin else None
        except BaseException:
            tls.close()
            raise
        return _Stream(tls, self._pins, verdict)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, pins: _Pins) -> None:
        self._backend = httpcore.SyncBackend()
        self._pins = pins

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _Stream(self._backend.connect_tcp(host, port, timeout, local_address, socket_options),
                       self._pins)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise UsageError("pinclient.httpx does not connect to Unix sockets.")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: httpcore.AsyncNetworkStream, pins: _Pins,
                 verdict: Verdict | None = None) -> None:
        self._stream = stream
        self._pins = pins
        #: The pin verdict of this connection's origin (None before TLS, or for a proxy's TLS); httpx
        #: users find the stream in ``response.extensions["network_stream"]``.
        self.verdict = verdict
        self._more = received_records(stream)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            data = await self._stream.read(max_bytes, timeout)
        except ssl.SSLError as e:  # a bad record: httpcore's anyio backend lets it out unmapped
            raise httpcore.ReadError(e) from e
        return data if self._more is None else self._more(data, max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            origin = self._pins.is_origin(ssl_context, server_hostname)
        except BaseException:
            await self._stream.aclose()
            raise
        try:
            tls = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            # httpcore closes the socket on an error, not on a cancellation (a deadline, a task
            # cancelled mid-handshake): without this the socket leaks until garbage collection.
            with anyio.CancelScope(shield=True):
                await self._stream.aclose()
            raise
        try:
            verdict = None
            if origin:
                # In a worker thread: revocation checks and violation reports do blocking I/O (each
                # bounded by its own timeouts), which must not stall the event loop.
                run = contextvars.copy_context().run
                verdict = await anyio.to_thread.run_sync(run, self._pins.check, tls)
        except BaseException:
            await tls.aclose()
            raise
        return _AsyncStream(tls, self._pins, verdict)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, pins: _Pins) -> None:
        self._backend = httpcore.AnyIOBackend()
        self._pins = pins

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _AsyncStream(stream, self._pins)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise UsageError("pinclient.httpx does not connect to Unix sockets.")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class PinningTransport(httpx.HTTPTransport):
    """An :class:`httpx.HTTPTransport` whose connections are pinned by ``config``
    (``httpx.Client(transport=PinningTransport(config))``).

    ``ca_certs`` picks the trust bundle instead of the config's ``ca_bundle``; ``cert`` a client
    certificate (a path, or ``(cert_file, key_file[, password])``); ``proxy`` an ``http://`` or
    ``https://`` proxy (a URL or an :class:`httpx.Proxy` without ``ssl_context``), tunnelled with
    CONNECT; ``no_proxy`` the hosts that bypass it (a ``NO_PROXY``-style string or a list of
    entries, curl's rules: ``example.com`` and names under it, ``*``, an address or CIDR block,
    ``host:port``). HTTP/1.1 only. ``send_reports``/``report_timeout`` as for ``PinningPoolManager``.

    Raises:
        UsageError: ``verify`` other than True, a SOCKS proxy, a proxy ``ssl_context``, a client key
            that cannot be loaded (from the constructor).
        httpx.ConnectError: from ``client.get()`` and friends, when the pins (or revocation) refuse a
            connection or a URL is plain ``http://``; ``__cause__`` is the pinclient error.
    """

    def __init__(self, config: PinConfig, *, ca_certs: str | None = None, verify: Any = True,
                 cert: _Cert | None = None, proxy: str | httpx.URL | httpx.Proxy | None = None,
                 no_proxy: str | Iterable[str] | None = None, limits: httpx.Limits = _LIMITS,
                 retries: int = 0, send_reports: bool = True, report_timeout: float | None = None) -> None:
        proxy = _proxy(proxy)
        self.pins = _Pins(config, verify=verify, cert=cert, ca_certs=ca_certs, proxy=proxy,
                          send_reports=send_reports, report_timeout=report_timeout)  # no super().__init__()
        self._pool = _build_pool(self.pins, proxy, no_proxy, limits, retries, _Backend(self.pins),
                                 httpcore.HTTPProxy, httpcore.ConnectionPool, _Route)

    @property
    def guard(self) -> PinGuard:
        """The PinGuard behind every connection of this transport (add ``after_check`` hooks here)."""
        return self.pins.guard

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        token = _port.set(request.url.port or 443)
        try:
            _refuse_plain(request)
            _check_pool(self._pool, _Backend)
            return super().handle_request(request)
        except (PinViolation, RevocationError) as e:
            raise _refusal(request, e) from e
        finally:
            _port.reset(token)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.pins.close()


class AsyncPinningTransport(httpx.AsyncHTTPTransport):
    """:class:`PinningTransport` for ``httpx.AsyncClient(transport=AsyncPinningTransport(config))``,
    on asyncio (or trio through anyio). The same options, checks and errors; the pin check (and
    any revocation check) runs in a worker thread so that its I/O does not block the event loop.
    """

    def __init__(self, config: PinConfig, *, ca_certs: str | None = None, verify: Any = True,
                 cert: _Cert | None = None, proxy: str | httpx.URL | httpx.Proxy | None = None,
                 no_proxy: str | Iterable[str] | None = None, limits: httpx.Limits = _LIMITS,
                 retries: int = 0, send_reports: bool = True, report_timeout: float | None = None) -> None:
        proxy = _proxy(proxy)
        self.pins = _Pins(config, verify=verify, cert=cert, ca_certs=ca_certs, proxy=proxy,
                          send_reports=send_reports, report_timeout=report_timeout)
        self._pool = _build_pool(self.pins, proxy, no_proxy, limits, retries, _AsyncBackend(self.pins),
                                 httpcore.AsyncHTTPProxy, httpcore.AsyncConnectionPool, _AsyncRoute)

    @property
    def guard(self) -> PinGuard:
        """The PinGuard behind every connection of this transport."""
        return self.pins.guard

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        token = _port.set(request.url.port or 443)
        try:
            _refuse_plain(request)
            _check_pool(self._pool, _AsyncBackend)
            return await super().handle_async_request(request)
        except (PinViolation, RevocationError) as e:
            raise _refusal(request, e) from e
        finally:
            _port.reset(token)

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            self.pins.close()


def pinclient_error(error: BaseException) -> PinclientError | None:
    """The pinclient error behind an httpx exception raised by these transports, or None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, PinclientError):
            return seen
        seen = seen.__cause__
    return None

