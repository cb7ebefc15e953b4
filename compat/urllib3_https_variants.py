"""HTTPS variants of urllib3's plain-http dummy-server tests, added to the unpacked sdist by
pinclient's compat/run.py (urllib3's own files are not edited).

urllib3 runs its connection-pool, pool-manager, proxy and chunked-upload behaviour (redirects,
retries, ``Retry-After``, headers, bodies, pool sizes, timeouts) against plain ``http://`` servers,
which pinclient refuses by design. These classes inherit every test method unchanged and differ in
three things only: the server speaks TLS with a certificate from urllib3's own test CA, the URLs say
``https://``, and while the class runs, the test module's ``HTTPConnectionPool`` / ``PoolManager``
are the HTTPS ones (whichever the run has: urllib3's in the baseline, pinclient's with the plugin
swapping them in) trusting urllib3's test CA (``ca_certs=DEFAULT_CA``). Tests whose assertions are
about plain http itself (an ``http://`` URL in a log line, a scheme change, http-only keywords,
what an http:// origin sees through a proxy) are left out (``= None``), with the reason beside them.
"""

from __future__ import annotations

import datetime
import shutil
import ssl
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import dummyserver.app
import test.with_dummyserver.test_chunked_transfer as chunked_transfer
import test.with_dummyserver.test_connectionpool as connectionpool
import test.with_dummyserver.test_poolmanager as poolmanager
import test.with_dummyserver.test_proxy_poolmanager as proxy_poolmanager
import trustme
import urllib3
import urllib3.connectionpool
import urllib3.poolmanager
from dummyserver.app import hypercorn_app
from dummyserver.socketserver import DEFAULT_CA, DEFAULT_CA_KEY, DEFAULT_CERTS
from dummyserver.testcase import run_hypercorn_in_thread


def _trusting_the_test_ca(base: type) -> type:
    class TrustingTheTestCA(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("ca_certs", DEFAULT_CA)
            super().__init__(*args, **kwargs)

    TrustingTheTestCA.__name__ = TrustingTheTestCA.__qualname__ = base.__name__
    return TrustingTheTestCA


def _leaf_for_localhost(folder: str) -> dict[str, str]:
    """A server certificate from urllib3's test CA for localhost and 127.0.0.1, written to ``folder``."""
    ca = trustme.CA.from_pem(Path(DEFAULT_CA).read_bytes(), Path(DEFAULT_CA_KEY).read_bytes())
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    certs = {"certfile": str(Path(folder) / "server.pem"), "keyfile": str(Path(folder) / "server.key")}
    leaf.cert_chain_pems[0].write_to_path(certs["certfile"])
    leaf.private_key_pem.write_to_path(certs["keyfile"])
    return certs


class OverTLS:
    """Serve the class over TLS and make the plain-http names it uses the HTTPS ones.

    The server certificate comes from urllib3's test CA, for ``localhost`` and ``127.0.0.1`` (urllib3's
    own ``DEFAULT_CERTS`` names ``localhost`` alone; the cross-host redirect tests use both).
    """

    certs: ClassVar[dict[str, Any]] = {}
    module: ClassVar[Any]
    swapped: ClassVar[list[tuple[Any, str, Any]]] = []
    certs_folder: ClassVar[str] = ""

    @classmethod
    def setup_class(cls) -> None:
        cls.certs_folder = tempfile.mkdtemp(prefix="urllib3-https-variants-")
        cls.certs = _leaf_for_localhost(cls.certs_folder)
        # The dummy app counts retries per "test-name" header in one process-wide Counter, which the
        # plain-http originals of these same tests have already counted up.
        dummyserver.app.RETRY_TEST_NAMES.clear()
        dummyserver.app.LAST_RETRY_AFTER_REQ = datetime.datetime.min
        cls.swapped = []
        for module, name, replacement in cls.replacements():
            cls.swapped.append((module, name, getattr(module, name)))
            setattr(module, name, replacement)
        super().setup_class()  # type: ignore[misc]
        for name in ("base_url", "base_url_alt"):
            url = getattr(cls, name, None)
            if url is not None:
                setattr(cls, name, url.replace("http://", "https://", 1))

    @classmethod
    def teardown_class(cls) -> None:
        super().teardown_class()  # type: ignore[misc]
        for module, name, original in reversed(cls.swapped):
            setattr(module, name, original)
        shutil.rmtree(cls.certs_folder, ignore_errors=True)

    @classmethod
    def replacements(cls) -> list[tuple[Any, str, Any]]:
        return []


class PoolOverTLS(OverTLS):
    @classmethod
    def replacements(cls) -> list[tuple[Any, str, Any]]:
        pool = _trusting_the_test_ca(urllib3.connectionpool.HTTPSConnectionPool)
        return [(connectionpool, "HTTPConnectionPool", pool)]


class TestConnectionPoolHTTPS(PoolOverTLS, connectionpool.TestConnectionPool):
    test_http2_test_error = None  # expects the ValueError urllib3's h2 fixture raises for http:// only
    test_debug_log = None  # asserts the log line "http://localhost:PORT ..."
    test_mixed_case_hostname = None  # requests http://LoCaLhOsT:PORT/ by that URL


class TestRetryHTTPS(PoolOverTLS, connectionpool.TestRetry):
    pass


class TestRetryAfterHTTPS(PoolOverTLS, connectionpool.TestRetryAfter):
    pass


class TestFileBodiesOnRetryOrRedirectHTTPS(PoolOverTLS, connectionpool.TestFileBodiesOnRetryOrRedirect):
    pass


class TestRetryPoolSizeHTTPS(PoolOverTLS, connectionpool.TestRetryPoolSize):
    pass


class TestRedirectPoolSizeHTTPS(PoolOverTLS, connectionpool.TestRedirectPoolSize):
    pass


class TestPoolManagerHTTPS(OverTLS, poolmanager.TestPoolManager):
    @classmethod
    def replacements(cls) -> list[tuple[Any, str, Any]]:
        manager = _trusting_the_test_ca(urllib3.poolmanager.PoolManager)
        # urllib3.request() uses the module's _DEFAULT_POOL (pinclient's, in the pinclient run).
        return [(poolmanager, "PoolManager", manager), (urllib3, "_DEFAULT_POOL", manager())]

    test_too_many_redirects = None  # counts connections of connection_from_host(), whose scheme is http
    test_missing_port = None  # moves port_by_scheme["http"] and requests http://localhost/
    test_http_with_ssl_keywords = None  # http:// with TLS keywords that http ignores
    test_http_with_server_hostname = None  # http:// with server_hostname=, which http ignores
    test_http_with_ca_cert_dir = None  # http:// with ca_cert_dir=, which http ignores
    test_encode_http_target = None  # requests http://localhost:PORT/... by that URL


class TestHTTPProxyManagerHTTPS(proxy_poolmanager.TestHTTPProxyManager):
    """urllib3's proxy tests with their "http" origin served over TLS too (``http_url`` says https://),
    through the same http:// and https:// dummy proxies."""

    tls_folder: ClassVar[str] = ""

    # What an http:// origin gets through a proxy: a forwarded, unverified request (proxy headers
    # reach the origin, no InsecureRequestWarning, the socket of the proxy connection itself).
    test_is_verified_http_proxy_to_http_target = None
    test_is_verified_https_proxy_to_http_target = None
    test_is_verified_https_proxy_to_http_target_without_proxy_config = None
    test_nagle_proxy = None
    test_headers = None
    test_https_headers = None
    test_proxy_pooling = None
    test_proxy_pooling_ext = None  # compares with connection_from_host()'s default scheme, http
    # Their ProxyManager has no ca_certs=: an https:// origin fails against the system store.
    test_redirect = None
    test_cross_host_redirect = None
    test_cross_host_redirect_remove_headers_via_proxy_manager = None
    test_cross_host_redirect_remove_headers_via_pool = None
    test_headerdict = None

    @classmethod
    def setup_class(cls) -> None:
        super().setup_class()
        cls.tls_folder = tempfile.mkdtemp(prefix="urllib3-https-variants-")
        certs = _leaf_for_localhost(cls.tls_folder)
        cls.http_port = cls._stack.enter_context(run_hypercorn_in_thread(cls.http_host, certs, hypercorn_app))
        cls.http_url = f"https://{cls.http_host}:{cls.http_port}"
        cls.http_url_alt = f"https://{cls.http_host_alt}:{cls.http_port}"

    @classmethod
    def teardown_class(cls) -> None:
        super().teardown_class()
        shutil.rmtree(cls.tls_folder, ignore_errors=True)


class SocketsOverTLS:
    """urllib3's socket-level test servers with TLS: the handler's listening socket is wrapped, so
    each socket it accepts has finished a TLS handshake (urllib3's own certificate for localhost)
    and the handler reads and writes the same bytes as before. The test module's
    ``HTTPConnectionPool`` is the HTTPS pool trusting urllib3's test CA while the class runs. (Not
    for TestConnectionPoolTimeouts: a client that gives up mid-handshake, as its 1 ms timeouts make
    it do, fails the server thread.)"""

    module: ClassVar[Any]
    swapped: ClassVar[Any] = None

    @classmethod
    def setup_class(cls) -> None:
        cls.swapped = cls.module.HTTPConnectionPool
        cls.module.HTTPConnectionPool = _trusting_the_test_ca(urllib3.connectionpool.HTTPSConnectionPool)

    @classmethod
    def teardown_class(cls) -> None:
        super().teardown_class()  # type: ignore[misc]
        cls.module.HTTPConnectionPool = cls.swapped

    @classmethod
    def _start_server(cls, socket_handler: Any, quit_event: Any = None) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(DEFAULT_CERTS["certfile"], DEFAULT_CERTS["keyfile"])

        def over_tls(listener: Any) -> None:
            tls = context.wrap_socket(listener, server_side=True)  # takes the listener's descriptor
            try:
                socket_handler(tls)
            finally:
                tls.close()

        super()._start_server(over_tls, quit_event=quit_event)  # type: ignore[misc]


class TestChunkedTransferHTTPS(SocketsOverTLS, chunked_transfer.TestChunkedTransfer):
    module = chunked_transfer
