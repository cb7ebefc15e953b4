# ruff: noqa: S113, PT007, PT012, PT017 - upstream's tests, restated with https: kept in upstream's style
"""requests' ``tests/test_requests.py`` over TLS, added to the unpacked sdist by pinclient's
compat/run.py as ``tests/test_pinclient_https.py`` (requests' own files are not edited).

requests' tests talk plain ``http://`` to pytest-httpbin's ``httpbin`` fixture, which pinclient
refuses by design. This module collects every test of test_requests.py (its classes are subclassed
and its test functions imported, so they run here) with one change: ``httpbin`` answers from the
same httpbin application served over TLS on 127.0.0.1, with the runner's certificate
(``$PINCLIENT_COMPAT_CERT``, issued by the CA both runs trust). ``httpbin_secure`` is pytest-httpbin's
own server, its CA trusted by neither run, as requests' tests expect.

A few tests spell ``http://`` themselves (a scheme list, a proxy keyed "http", an ``http_proxy``
variable, a mount on ``http://``); their variants below say ``https`` instead and are otherwise the
same. The connect-timeout tests' ``TARPIT`` (10.255.255.1, off this machine) becomes a loopback
port whose accept queue is full. Two tests are about plain http itself (a redirect down to it,
a ``cert=`` that plain http ignores): they keep a plain httpbin, and pinclient refuses them
(compat/refusals.toml)."""

from __future__ import annotations

import os
import socket
import socketserver
import ssl
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import tests.test_requests as upstream
from httpbin import app as httpbin_app
from pytest_httpbin import serve
from requests.adapters import HTTPAdapter  # pinclient's adapter in the pinclient run (the plugin)
from requests.compat import urlparse
from requests.exceptions import ConnectionError, InvalidProxyURL, InvalidURL, ProxyError, RetryError
from tests.utils import override_environ
from urllib3.util import Retry
from urllib3.util import Timeout as Urllib3Timeout

from tests.conftest import prepare_url

INVALID_PROXY = upstream.INVALID_PROXY  # "http://localhost:1": nothing listens there


class _TLSWSGIServer(socketserver.ThreadingMixIn, serve.SecureWSGIServer):
    """pytest-httpbin's TLS server with the runner's certificate, one thread per request (so that
    ``/delay/10`` in the timeout tests does not hold up the next test)."""

    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        sock, address = serve.WSGIServer.get_request(self)
        sock.settimeout(1.0)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.environ["PINCLIENT_COMPAT_CERT"], os.environ["PINCLIENT_COMPAT_KEY"])
        return context.wrap_socket(sock, server_side=True, suppress_ragged_eofs=True), address


class _HttpbinOverTLS(serve.Server):
    port_envvar = "PINCLIENT_COMPAT_HTTPBIN_PORT"  # never set: a free port

    def __init__(self) -> None:
        super().__init__(application=httpbin_app, server_class=_TLSWSGIServer)
        self.protocol = "https"


@pytest.fixture(scope="module")
def httpbin_tls() -> Iterator[serve.Server]:
    with _HttpbinOverTLS() as server:
        yield server


@pytest.fixture
def httpbin(httpbin_tls: serve.Server) -> Any:
    return prepare_url(httpbin_tls)


@pytest.fixture(scope="module")
def httpbin_plain() -> Iterator[Any]:
    """pytest-httpbin's plain server, for the two tests about plain http itself."""
    with serve.Server(application=httpbin_app) as server:
        yield prepare_url(server)


class TestRequests(upstream.TestRequests):
    @pytest.mark.parametrize("scheme", ("https://", "HTTPS://", "hTTps://", "HttPs://"))
    def test_mixed_case_scheme_acceptable(self, httpbin: Any, scheme: str) -> None:
        super().test_mixed_case_scheme_acceptable(httpbin, scheme)

    def test_uppercase_scheme_redirect(self, httpbin: Any) -> None:
        parts = urlparse(httpbin("html"))
        url = "HTTPS://" + parts.netloc + parts.path
        r = requests.get(httpbin("redirect-to"), params={"url": url})
        assert r.status_code == 200
        assert r.url.lower() == url.lower()

    @pytest.mark.parametrize(
        ("url", "exception"),
        (
            ("https://doesnotexist.google.com", ConnectionError),  # skipped: the plugin's CANNOT_RUN_HERE
            ("https://localhost:1", ConnectionError),
            ("http://fe80::5054:ff:fe5a:fc0", InvalidURL),
        ),
    )
    def test_errors(self, url: str, exception: type[Exception]) -> None:
        super().test_errors(url, exception)

    def test_proxy_error(self) -> None:
        with pytest.raises(ProxyError):
            requests.get("https://localhost:1", proxies={"https": "non-resolvable-address"})

    def test_proxy_error_on_bad_url(self, httpbin: Any, httpbin_secure: Any) -> None:
        with pytest.raises(InvalidProxyURL):
            requests.get(httpbin_secure(), proxies={"https": "http:/badproxyurl:3128"})
        with pytest.raises(InvalidProxyURL):
            requests.get(httpbin(), proxies={"https": "http://:8080"})
        with pytest.raises(InvalidProxyURL):
            requests.get(httpbin_secure(), proxies={"https": "https://"})
        with pytest.raises(InvalidProxyURL):
            requests.get(httpbin(), proxies={"https": "http:///example.com:8080"})

    # The test_respect_proxy_env_* tests with https_proxy instead of http_proxy.
    def test_respect_proxy_env_on_send_self_prepared_request(self, httpbin: Any) -> None:
        with override_environ(https_proxy=INVALID_PROXY), pytest.raises(ProxyError):
            requests.Session().send(requests.Request("GET", httpbin()).prepare())

    def test_respect_proxy_env_on_send_session_prepared_request(self, httpbin: Any) -> None:
        with override_environ(https_proxy=INVALID_PROXY), pytest.raises(ProxyError):
            session = requests.Session()
            session.send(session.prepare_request(requests.Request("GET", httpbin())))

    def test_respect_proxy_env_on_send_with_redirects(self, httpbin: Any) -> None:
        with override_environ(https_proxy=INVALID_PROXY), pytest.raises(ProxyError):
            requests.Session().send(requests.Request("GET", httpbin("redirect/1")).prepare())

    def test_respect_proxy_env_on_get(self, httpbin: Any) -> None:
        with override_environ(https_proxy=INVALID_PROXY), pytest.raises(ProxyError):
            requests.Session().get(httpbin())

    def test_respect_proxy_env_on_request(self, httpbin: Any) -> None:
        with override_environ(https_proxy=INVALID_PROXY), pytest.raises(ProxyError):
            requests.Session().request(method="GET", url=httpbin())

    def test_basicauth_with_netrc_leak(self, httpbin: Any) -> None:
        url = httpbin("basic-auth", "user", "pass")[len("https://"):]
        domain = url.split(":")[0]
        with tempfile.NamedTemporaryFile(mode="w", delete=False) as fp:
            fp.write(f"machine example.com\nlogin wronguser\npassword wrongpass\n"
                     f"machine {domain}\nlogin user\npassword pass\n")
        old_netrc = os.environ.get("NETRC", "")
        os.environ["NETRC"] = fp.name
        try:
            # netrc's credentials for the host, not example.com's (the URL's user info)
            assert requests.get(f"https://example.com:@{url}").status_code == 200
        finally:
            os.environ["NETRC"] = old_netrc
            os.unlink(fp.name)

    # About plain http itself: a plain httpbin, as upstream (refused by pinclient).
    def test_auth_is_stripped_on_http_downgrade(self, httpbin: Any, httpbin_secure: Any,
                                                httpbin_ca_bundle: Any, httpbin_plain: Any) -> None:
        super().test_auth_is_stripped_on_http_downgrade(httpbin_plain, httpbin_secure, httpbin_ca_bundle)

    def test_http_with_certificate(self, httpbin_plain: Any) -> None:
        super().test_http_with_certificate(httpbin_plain)


@pytest.fixture
def tarpit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """upstream's TARPIT (10.255.255.1, where a connect hangs) on loopback: a listening socket whose
    accept queue (backlog 0) is already full, so the kernel leaves the next SYN unanswered."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        monkeypatch.setattr(upstream, "TARPIT", f"https://127.0.0.1:{listener.getsockname()[1]}")
        yield


class TestTimeout(upstream.TestTimeout):
    @pytest.mark.parametrize("timeout", ((0.1, None), Urllib3Timeout(connect=0.1, read=None)))
    def test_connect_timeout(self, tarpit: None, timeout: Any) -> None:
        super().test_connect_timeout(timeout)

    @pytest.mark.parametrize("timeout", ((0.1, 0.1), Urllib3Timeout(connect=0.1, read=0.1)))
    def test_total_timeout_connect(self, tarpit: None, timeout: Any) -> None:
        super().test_total_timeout_connect(timeout)


def test_urllib3_retries(httpbin: Any) -> None:
    s = requests.Session()
    s.mount("https://", HTTPAdapter(max_retries=Retry(total=2, status_forcelist=[500])))
    with pytest.raises(RetryError):
        s.get(httpbin("status/500"))


def test_urllib3_pool_connection_closed(httpbin: Any) -> None:
    s = requests.Session()
    s.mount("https://", HTTPAdapter(pool_connections=0, pool_maxsize=0))
    try:
        s.get(httpbin("status/200"))
    except ConnectionError as e:
        assert "Pool is closed." in str(e)


# Everything else of test_requests.py runs here unchanged: its other test classes and functions.
for _name, _test in vars(upstream).items():
    if _name.startswith(("test_", "Test")) and _name not in globals():
        globals()[_name] = _test
del _name, _test
