"""HTTPS variants of urllib3's plain-http dummy-server tests, added to the unpacked sdist by
pinclient's compat/run.py (urllib3's own files are not edited).

urllib3 runs its connection-pool and pool-manager behaviour (redirects, retries, ``Retry-After``,
headers, bodies, pool sizes, timeouts) against a plain ``http://`` hypercorn, which pinclient refuses
by design. These classes inherit every test method unchanged and differ in three things only: the
dummy server gets urllib3's own test certificate (``DEFAULT_CERTS``), the URLs say ``https://``, and
while the class runs, the test module's ``HTTPConnectionPool`` / ``PoolManager`` are the HTTPS ones
(whichever the run has: urllib3's in the baseline, pinclient's with the plugin swapping them in)
trusting urllib3's test CA (``ca_certs=DEFAULT_CA``). Tests whose assertions are about plain http
itself (an ``http://`` URL in a log line, a scheme change, http-only keywords) are left out
(``= None``), with the reason beside them.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import dummyserver.app
import test.with_dummyserver.test_connectionpool as connectionpool
import test.with_dummyserver.test_poolmanager as poolmanager
import trustme
import urllib3
import urllib3.connectionpool
import urllib3.poolmanager
from dummyserver.socketserver import DEFAULT_CA, DEFAULT_CA_KEY


def _trusting_the_test_ca(base: type) -> type:
    class TrustingTheTestCA(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("ca_certs", DEFAULT_CA)
            super().__init__(*args, **kwargs)

    TrustingTheTestCA.__name__ = TrustingTheTestCA.__qualname__ = base.__name__
    return TrustingTheTestCA


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
        ca = trustme.CA.from_pem(Path(DEFAULT_CA).read_bytes(), Path(DEFAULT_CA_KEY).read_bytes())
        leaf = ca.issue_cert("localhost", "127.0.0.1")
        cls.certs = {"certfile": str(Path(cls.certs_folder) / "server.pem"),
                     "keyfile": str(Path(cls.certs_folder) / "server.key")}
        leaf.cert_chain_pems[0].write_to_path(cls.certs["certfile"])
        leaf.private_key_pem.write_to_path(cls.certs["keyfile"])
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
