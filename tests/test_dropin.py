"""pinclient's transports as drop-ins for urllib3 (issue 17): every TLS knob urllib3 offers is
honoured or refused, never silently ignored, and nothing a caller does to one pool reaches the
verifying SSLContext that every manager on the same bundle shares. Real TLS on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from cryptography.hazmat.primitives import serialization
from urllib3.exceptions import ProxySchemeUnknown

from pinclient import UsageError
from pinclient._demo import LoopbackServer, Response
from pinclient._tls import ContextFrozen, PinnedContext, shared_context
from pinclient.config import PinConfig
from pinclient.transport import (
    OptionError,
    PinningPoolManager,
    PinningProxyManager,
    ProxySchemeError,
)

from .conftest import HOST, PKI, ServeHTTPS
from .hostile import ConnectProxy


def context_state(ctx: ssl.SSLContext) -> tuple[Any, ...]:
    return (ctx.verify_mode, ctx.check_hostname, ctx.verify_flags, ctx.options, ctx.minimum_version,
            ctx.maximum_version, ctx.cert_store_stats(), len(ctx.get_ca_certs()),
            ctx.hostname_checks_common_name)


# --------------------------------------------------------------------------- 1. the shared context


MUTATIONS: dict[str, Callable[[ssl.SSLContext, PKI], object]] = {
    "verify_mode=CERT_NONE": lambda c, p: setattr(c, "verify_mode", ssl.CERT_NONE),
    "verify_mode=CERT_OPTIONAL": lambda c, p: setattr(c, "verify_mode", ssl.CERT_OPTIONAL),
    "check_hostname=False": lambda c, p: setattr(c, "check_hostname", False),
    "verify_flags": lambda c, p: setattr(c, "verify_flags", ssl.VERIFY_DEFAULT),
    "options": lambda c, p: setattr(c, "options", c.options & ~ssl.OP_NO_COMPRESSION),
    "minimum_version": lambda c, p: setattr(c, "minimum_version", ssl.TLSVersion.TLSv1),
    "maximum_version": lambda c, p: setattr(c, "maximum_version", ssl.TLSVersion.TLSv1_2),
    "hostname_checks_common_name": lambda c, p: setattr(c, "hostname_checks_common_name", True),
    "load_verify_locations": lambda c, p: c.load_verify_locations(cadata=p.untrusted_root.cert_pem().decode()),
    "load_default_certs": lambda c, p: c.load_default_certs(),
    "set_default_verify_paths": lambda c, p: c.set_default_verify_paths(),
    "set_ciphers": lambda c, p: c.set_ciphers("ALL:@SECLEVEL=0"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_shared_context_refuses_every_change(pki: PKI, mutation: str) -> None:
    ctx = shared_context(str(pki.bundle))
    before = context_state(ctx)
    with pytest.raises(ContextFrozen):
        MUTATIONS[mutation](ctx, pki)
    assert context_state(ctx) == before
    assert isinstance(ContextFrozen("x"), UsageError)


def test_setting_the_value_already_set_is_allowed(pki: PKI) -> None:
    # urllib3 assigns verify_mode on every connect; the same value must not fail.
    ctx = shared_context(str(pki.bundle))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    assert ctx.verify_mode == ssl.CERT_REQUIRED


@pytest.fixture
def client_files(pki: PKI, tmp_path: Path) -> dict[str, str]:
    leaf = pki.pinned_int.issue_leaf("client.test")
    (tmp_path / "client.pem").write_bytes(leaf.chain_pem())
    (tmp_path / "client.key").write_bytes(leaf.key_pem())
    (tmp_path / "rogue-only.pem").write_bytes(pki.untrusted_root.cert_pem())
    return {"cert": str(tmp_path / "client.pem"), "key": str(tmp_path / "client.key"),
            "rogue": str(tmp_path / "rogue-only.pem"), "dir": str(tmp_path)}


# (where, attribute, value): what a urllib3 user can set on a pool after the manager was built.
POOL_ATTRIBUTES: list[tuple[str, str, Any]] = [
    ("pool", "ca_certs", "rogue"),
    ("pool", "ca_cert_dir", "dir"),
    ("pool", "cert_file", "cert"),
    ("pool", "key_file", "key"),
    ("pool", "key_password", "secret"),
    ("pool", "cert_reqs", ssl.CERT_NONE),
    ("pool", "cert_reqs", "CERT_NONE"),
    ("pool", "cert_reqs", ssl.CERT_OPTIONAL),
    ("pool", "assert_hostname", False),
    ("pool", "assert_hostname", "other.test"),
    ("pool", "assert_fingerprint", "00" * 32),
    ("pool", "ssl_version", "PROTOCOL_TLSv1_2"),
    ("pool", "ssl_minimum_version", ssl.TLSVersion.TLSv1_3),
    ("pool", "ssl_maximum_version", ssl.TLSVersion.TLSv1_2),
    ("conn_kw", "ca_cert_data", "rogue-pem"),
    ("conn_kw", "server_hostname", "other.test"),
    ("conn_kw", "ssl_context", "default-context"),
    ("conn_kw", "ssl_context", "unfrozen-pinned-context"),
    # The manager's own keyword arguments, changed after construction, reach every new pool.
    ("manager", "ca_certs", "rogue"),
    ("manager", "cert_reqs", ssl.CERT_NONE),
    ("manager", "assert_hostname", False),
    ("manager", "ssl_context", "default-context"),
    ("manager", "ssl_minimum_version", ssl.TLSVersion.TLSv1_3),
]


@pytest.mark.parametrize(("where", "attr", "value"), POOL_ATTRIBUTES,
                         ids=[f"{w}.{a}={v!r}" for w, a, v in POOL_ATTRIBUTES])
def test_a_pool_attribute_set_later_fails_that_pool_alone(
        pki: PKI, root_pinned_config: PinConfig, payload: bytes, https_server: ServeHTTPS,
        client_files: dict[str, str], where: str, attr: str, value: Any) -> None:
    # Issue 17: pool.ca_certs = "other.pem" used to add that CA to every pinned connection in the
    # process; pool.assert_hostname = False turned host-name checking off in the shared context.
    if value == "unfrozen-pinned-context":
        value = PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
        value.load_verify_locations(cadata=pki.untrusted_root.cert_pem().decode())
    elif isinstance(value, str):
        value = {"rogue-pem": pki.untrusted_root.cert_pem().decode(),
                 "default-context": ssl.create_default_context()}.get(value, client_files.get(value, value))
    with https_server({"/u": payload}) as server:
        tampered, other = PinningPoolManager(root_pinned_config), PinningPoolManager(root_pinned_config)
        ctx = other.connection_pool_kw["ssl_context"]
        before = context_state(ctx)
        if where == "manager":
            tampered.connection_pool_kw[attr] = value
        pool = tampered.connection_from_url(server.url("/u"))
        if where == "pool":
            setattr(pool, attr, value)
        elif where == "conn_kw":
            pool.conn_kw[attr] = value
        with pytest.raises(UsageError, match=attr) as info:
            tampered.request("GET", server.url("/u"), retries=False)
        assert not isinstance(info.value, OSError)
        assert server.conns == [], "refused before connecting"
        # Every other manager on the bundle is untouched and still works.
        assert context_state(ctx) == before
        assert other.request("GET", server.url("/u")).data == payload
    assert tampered.connection_pool_kw["ssl_context"] is ctx or where == "manager"


# --------------------------------------------------------------------------- 2. TLS versions


def negotiated(pm: PinningPoolManager, url: str) -> str | None:
    resp = pm.request("GET", url, preload_content=False, retries=False)
    try:
        return resp.connection.sock.version()  # type: ignore[union-attr, no-any-return]
    finally:
        resp.drain_conn()
        resp.release_conn()


def test_ssl_minimum_version_is_honoured(root_pinned_config: PinConfig, payload: bytes,
                                         https_server: ServeHTTPS) -> None:
    with https_server({"/u": payload}, max_version=ssl.TLSVersion.TLSv1_2) as old_server:
        assert negotiated(PinningPoolManager(root_pinned_config), old_server.url("/u")) == "TLSv1.2"
        strict = PinningPoolManager(root_pinned_config, ssl_minimum_version=ssl.TLSVersion.TLSv1_3)
        with pytest.raises(urllib3.exceptions.SSLError):
            strict.request("GET", old_server.url("/u"), retries=False)
    assert old_server.requests == ["/u"], "only the default manager got as far as a request"
    with https_server({"/u": payload}) as server:
        assert negotiated(strict, server.url("/u")) == "TLSv1.3"


def test_ssl_maximum_version_and_ssl_version_are_honoured(root_pinned_config: PinConfig, payload: bytes,
                                                          https_server: ServeHTTPS) -> None:
    capped = PinningPoolManager(root_pinned_config, ssl_maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.warns(FutureWarning, match="ssl_version"):  # as urllib3 warns
        exact = PinningPoolManager(root_pinned_config, ssl_version="PROTOCOL_TLSv1_2")
    with https_server({"/u": payload}) as server:
        assert negotiated(PinningPoolManager(root_pinned_config), server.url("/u")) == "TLSv1.3"
        assert negotiated(capped, server.url("/u")) == "TLSv1.2"
        assert negotiated(exact, server.url("/u")) == "TLSv1.2"


def test_tls_versions_reach_the_requests_adapter_and_its_proxy_managers(
        root_pinned_config: PinConfig, payload: bytes, https_server: ServeHTTPS) -> None:
    requests = pytest.importorskip("requests")
    from pinclient.requests import PinningAdapter

    adapter = PinningAdapter(root_pinned_config, ssl_minimum_version=ssl.TLSVersion.TLSv1_3)
    with requests.Session() as s, https_server({"/u": payload}, max_version=ssl.TLSVersion.TLSv1_2) as old:
        s.trust_env = False
        s.mount("https://", adapter)
        with pytest.raises(requests.exceptions.SSLError):
            s.get(old.url("/u"), timeout=10)
        with ConnectProxy() as proxy, pytest.raises(requests.exceptions.SSLError):
            s.get(old.url("/u"), proxies={"https": proxy.url}, timeout=10)
    assert old.requests == []
    proxied = adapter.proxy_manager_for(f"http://127.0.0.1:{proxy.port}")
    assert proxied.connection_pool_kw["ssl_context"].minimum_version == ssl.TLSVersion.TLSv1_3


def test_one_context_per_distinct_tls_setting_shared_like_the_others(root_pinned_config: PinConfig) -> None:
    def ctx(**kw: Any) -> ssl.SSLContext:
        return PinningPoolManager(root_pinned_config, **kw).connection_pool_kw["ssl_context"]

    tls13 = ctx(ssl_minimum_version=ssl.TLSVersion.TLSv1_3)
    assert tls13 is ctx(ssl_minimum_version=ssl.TLSVersion.TLSv1_3)
    assert tls13 is not ctx()
    assert tls13.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx(ssl_maximum_version=ssl.TLSVersion.MAXIMUM_SUPPORTED) is ctx()
    assert ctx().minimum_version == ssl.TLSVersion.TLSv1_2


def test_sslkeylogfile_set_after_the_first_context_still_logs_the_keys(
        root_pinned_config: PinConfig, payload: bytes, https_server: ServeHTTPS, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib3 reads SSLKEYLOGFILE for every context it builds (its test_sslkeylogfile sets it in the
    # middle of a run); a context shared from before must not leave the key log unwritten.
    monkeypatch.delenv("SSLKEYLOGFILE", raising=False)
    before = PinningPoolManager(root_pinned_config).connection_pool_kw["ssl_context"]
    monkeypatch.setenv("KEYLOG_FOLDER", str(tmp_path))
    monkeypatch.setenv("SSLKEYLOGFILE", "${KEYLOG_FOLDER}/keys.txt")  # expanded, as urllib3 does
    pm = PinningPoolManager(root_pinned_config)
    assert pm.connection_pool_kw["ssl_context"] is not before
    with https_server({"/u": payload}) as server:
        assert pm.request("GET", server.url("/u"), retries=False).data == payload
    assert (tmp_path / "keys.txt").read_text().startswith("# TLS secrets log file")
    monkeypatch.delenv("SSLKEYLOGFILE")
    assert PinningPoolManager(root_pinned_config).connection_pool_kw["ssl_context"] is before


@pytest.mark.parametrize("kwargs", [
    {"ssl_minimum_version": ssl.TLSVersion.TLSv1},
    {"ssl_minimum_version": ssl.TLSVersion.TLSv1_1},
    {"ssl_minimum_version": ssl.TLSVersion.MINIMUM_SUPPORTED},
    {"ssl_maximum_version": ssl.TLSVersion.TLSv1_1},
    {"ssl_version": "PROTOCOL_TLSv1"},
    {"ssl_version": "TLSv1_1"},
    {"ssl_version": "PROTOCOL_TLSv1_2", "ssl_minimum_version": ssl.TLSVersion.TLSv1_2},
    {"ssl_minimum_version": ssl.TLSVersion.TLSv1_3, "ssl_maximum_version": ssl.TLSVersion.TLSv1_2},
    {"ssl_minimum_version": 12345},
    {"ssl_version": "PROTOCOL_NONSENSE"},
], ids=repr)
def test_tls_versions_that_cannot_be_honoured_are_refused(root_pinned_config: PinConfig,
                                                          kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with pytest.raises(OptionError) as info:
            PinningPoolManager(root_pinned_config, **kwargs)
    assert isinstance(info.value, ValueError), "what urllib3 raises for the same mistakes"


@pytest.mark.parametrize("key", ["ssl_version", "ssl_minimum_version", "ssl_maximum_version"])
def test_per_request_tls_versions_are_refused(root_pinned_config: PinConfig, key: str) -> None:
    pm = PinningPoolManager(root_pinned_config)
    with pytest.raises(UsageError, match=key):
        pm.connection_from_host(HOST, 443, "https", pool_kwargs={key: ssl.TLSVersion.TLSv1_3})


# --------------------------------------------------------------------------- 3. encrypted client keys


def test_encrypted_client_key_without_password_is_a_usage_error_never_a_prompt(
        pki: PKI, root_pinned_config: PinConfig, tmp_path: Path, payload: bytes,
        https_server: ServeHTTPS) -> None:
    leaf = pki.pinned_int.issue_leaf("client.test")
    (tmp_path / "c.pem").write_bytes(leaf.chain_pem())
    (tmp_path / "k.pem").write_bytes(leaf.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret")))
    files = {"cert_file": str(tmp_path / "c.pem"), "key_file": str(tmp_path / "k.pem")}
    with pytest.raises(UsageError, match=r"encrypted.*key_password") as info:
        PinningPoolManager(root_pinned_config, **files)
    assert not isinstance(info.value, OSError)
    with pytest.raises(UsageError, match="key_password does not open it"):
        PinningPoolManager(root_pinned_config, **files, key_password="wrong")
    with pytest.raises(UsageError, match="need cert_file"):
        PinningPoolManager(root_pinned_config, key_file=files["key_file"], key_password="s3cret")
    pm = PinningPoolManager(root_pinned_config, **files, key_password="s3cret")
    with https_server({"/u": payload}) as server:
        assert pm.request("GET", server.url("/u")).data == payload


def test_an_unknown_scheme_is_urllib3s_url_scheme_unknown_and_http_still_a_pin_violation(
        root_pinned_config: PinConfig, https_server: ServeHTTPS) -> None:
    # urllib3's test_unknown_scheme: callers catch URLSchemeUnknown (a ValueError) for these, directly
    # and after a redirect; only http:// is pinclient's own refusal.
    from urllib3.exceptions import URLSchemeUnknown

    from pinclient import PinViolation

    pm = PinningPoolManager(root_pinned_config)
    with pytest.raises(URLSchemeUnknown) as direct:
        pm.request("GET", "unknown://host/")
    assert direct.value.scheme == "unknown"
    routes = {"/r": Response(303, headers={"Location": "unknown://host/"})}
    with https_server(routes) as server:
        with pytest.raises(URLSchemeUnknown):
            pm.request("GET", server.url("/r"))
        assert pm.request("GET", server.url("/r"), redirect=False).status == 303
    with pytest.raises(PinViolation) as plain:
        pm.request("GET", "http://updates.test/")
    assert plain.value.reason == "insecure-scheme"
    assert pm.guard.checks == 1  # the one https:// connection, kept alive; nothing else connected


# --------------------------------------------------------------------------- 4. HTTP/2 mode


def test_http2_mode_still_negotiates_http11_after_the_pin_check(
        pki: PKI, root_pinned_config: PinConfig, payload: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib3.http2.inject_into_urllib3() sets exactly these two (and needs the h2 package, which
    # this machine lacks); pinclient's connections speak HTTP/1.1, so they must never offer h2.
    import urllib3.util
    import urllib3.util.ssl_

    monkeypatch.setattr(urllib3.util.ssl_, "ALPN_PROTOCOLS", ["h2"])
    monkeypatch.setattr(urllib3.util, "ALPN_PROTOCOLS", ["h2"])
    server_ctx = pki.pinned_int.issue_leaf(HOST).server_context()
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    with LoopbackServer(server_ctx, {"/u": payload}) as server:
        pm = PinningPoolManager(root_pinned_config)
        resp = pm.request("GET", server.url("/u"), preload_content=False, retries=False)
        assert resp.connection.sock.selected_alpn_protocol() == "http/1.1"  # type: ignore[union-attr]
        assert resp.read() == payload
        assert pm.guard.checks == 1


# --------------------------------------------------------------------------- 5. proxy keywords


@pytest.mark.parametrize("key", ["use_forwarding_for_https", "proxy_assert_hostname",
                                 "proxy_assert_fingerprint", "proxy_ssl_context", "proxy_headers",
                                 "no_such_option"])
def test_keywords_urllib3_pools_do_not_take_are_refused_at_construction(
        root_pinned_config: PinConfig, key: str) -> None:
    # They used to reach urllib3 and end in "TypeError: PoolKey.__new__() got an unexpected
    # keyword argument" at the first request.
    with pytest.raises(UsageError, match=key):
        PinningPoolManager(root_pinned_config, **{key: "x"})


@pytest.mark.parametrize(("key", "value"), [("use_forwarding_for_https", True),
                                            ("proxy_assert_hostname", "proxy.test"),
                                            ("proxy_assert_hostname", False),
                                            ("proxy_assert_fingerprint", "00" * 32)])
def test_proxy_keywords_that_weaken_the_tunnel_are_refused_at_construction(
        root_pinned_config: PinConfig, key: str, value: object) -> None:
    with pytest.raises(UsageError, match=key):
        PinningProxyManager(root_pinned_config, "https://proxy.test:3128", **{key: value})


def test_use_forwarding_for_https_false_is_the_default_and_accepted(root_pinned_config: PinConfig) -> None:
    PinningProxyManager(root_pinned_config, "https://proxy.test:3128", use_forwarding_for_https=False)


def test_proxy_ssl_context_is_honoured_for_the_proxy_only(
        pki: PKI, root_pinned_config: PinConfig, payload: bytes, https_server: ServeHTTPS) -> None:
    # The proxy's certificate comes from a root outside the bundle; the caller's proxy_ssl_context
    # trusts it. The origin is still verified and pinned with pinclient's own context.
    proxy_ctx = ssl.create_default_context(cadata=pki.untrusted_root.cert_pem().decode())
    with https_server({"/u": payload}) as good, https_server({"/u": payload}, issuer=pki.rogue_root,
                                                             host="rogue.test") as rogue, \
            ConnectProxy(pki.untrusted_root.issue_leaf("proxy.test")) as proxy:
        pm = PinningProxyManager(root_pinned_config, proxy.url, proxy_ssl_context=proxy_ctx)
        assert pm.request("GET", good.url("/u"), retries=False).data == payload
        from pinclient import PinViolation

        with pytest.raises(PinViolation):
            pm.request("GET", rogue.url("/u", host="rogue.test"), retries=False)
        # Without it, the same proxy is refused (its root is not in the bundle).
        with pytest.raises(urllib3.exceptions.ProxyError, match="CERTIFICATE_VERIFY_FAILED"):
            PinningProxyManager(root_pinned_config, proxy.url).request("GET", good.url("/u"), retries=False)


@pytest.mark.parametrize("url", ["socks5://proxy.test:1080", "ftp://proxy.test", "proxy.test:3128"])
def test_a_bad_proxy_scheme_is_a_usage_error_and_urllib3s_proxy_scheme_unknown(
        root_pinned_config: PinConfig, url: str) -> None:
    with pytest.raises(ProxySchemeUnknown) as info:
        PinningProxyManager(root_pinned_config, url)
    assert isinstance(info.value, UsageError)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ProxySchemeError)
    assert info.value.exit_code == 2
    assert "http://HOST" in str(info.value)
    # urllib3's message too (its test_invalid_schema matches it)
    assert str(ProxySchemeUnknown(info.value.scheme or None)) in str(info.value)


# --------------------------------------------------------------------------- 6. the proxy's certificate


@pytest.fixture
def os_store_trusts_untrusted_root(pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # What an OpenSSL default store (load_default_certs) trusts in this process: only the root the
    # pins.toml bundle does NOT hold. A proxy verified against the OS store would pass.
    (tmp_path / "os-store.pem").write_bytes(pki.untrusted_root.cert_pem())
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "os-store.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
    yield


def test_https_proxy_is_verified_against_the_pins_bundle_not_the_os_store(
        pki: PKI, root_pinned_config: PinConfig, payload: bytes, https_server: ServeHTTPS,
        os_store_trusts_untrusted_root: None) -> None:
    with https_server({"/u": payload}) as server, \
            ConnectProxy(pki.untrusted_root.issue_leaf("proxy.test")) as proxy:
        with pytest.raises(urllib3.exceptions.ProxyError, match="CERTIFICATE_VERIFY_FAILED"):
            PinningProxyManager(root_pinned_config, proxy.url).request("GET", server.url("/u"),
                                                                       retries=False)
    assert proxy.tunnels[0].request_head == b"", "nothing was said to the unverified proxy"
    assert server.conns == []


def test_a_proxy_config_without_pinclients_context_fails_closed(
        pki: PKI, root_pinned_config: PinConfig, payload: bytes, https_server: ServeHTTPS,
        os_store_trusts_untrusted_root: None) -> None:
    # Anyone rewriting the pool's proxy configuration (urllib3 would then verify the proxy against
    # the OS store) gets a refusal for that pool, not a connection.
    from urllib3.connection import ProxyConfig

    with https_server({"/u": payload}) as server, \
            ConnectProxy(pki.untrusted_root.issue_leaf("proxy.test")) as proxy:
        pm = PinningProxyManager(root_pinned_config, proxy.url)
        pool = pm.connection_from_url(server.url("/u"))
        pool.proxy_config = ProxyConfig(None, False, None, None)
        pool.conn_kw["proxy_config"] = pool.proxy_config
        with pytest.raises(UsageError, match="proxy"):
            pm.request("GET", server.url("/u"), retries=False)
    assert proxy.connections == 0


def test_requests_adapter_verifies_an_https_proxy_against_the_pins_bundle(
        pki: PKI, root_pinned_config: PinConfig, payload: bytes, https_server: ServeHTTPS,
        os_store_trusts_untrusted_root: None) -> None:
    requests = pytest.importorskip("requests")
    from pinclient.requests import PinningAdapter

    with requests.Session() as s, https_server({"/u": payload}) as server:
        s.trust_env = False
        s.mount("https://", PinningAdapter(root_pinned_config))
        with ConnectProxy(pki.untrusted_root.issue_leaf("proxy.test")) as bad:
            with pytest.raises(requests.exceptions.ProxyError, match="CERTIFICATE_VERIFY_FAILED"):
                s.get(server.url("/u"), proxies={"https": bad.url}, timeout=10)
        assert bad.tunnels[0].request_head == b""
        # A proxy whose certificate the bundle does trust (the rogue root is in it) works.
        with ConnectProxy(pki.rogue_root.issue_leaf("proxy.test")) as good:
            assert s.get(server.url("/u"), proxies={"https": good.url}, timeout=10).content == payload
        assert len(good.tunnels) == 1


def test_pinned_contexts_are_what_the_managers_use(root_pinned_config: PinConfig) -> None:
    pm = PinningProxyManager(root_pinned_config, "https://proxy.test:3128")
    assert isinstance(pm.connection_pool_kw["ssl_context"], PinnedContext)
    assert pm.connection_pool_kw["_proxy_config"].ssl_context is pm.connection_pool_kw["ssl_context"]


# --------------------------------------------------------------------------- 7. python-tuf's errors


def _stalled_body(first: bytes, stop: threading.Event) -> Callable[[], Iterator[bytes]]:
    def body() -> Iterator[bytes]:
        yield first
        stop.wait(10)  # far beyond the fetchers' 0.5 s read timeout

    return body


def _stalled_headers(stop: threading.Event) -> Callable[[str, dict[str, str]], Response]:
    def route(path: str, headers: dict[str, str]) -> Response:
        stop.wait(10)
        return Response(200, b"late")

    return route


def _broken_body() -> Iterator[bytes]:
    yield b"x" * 1000
    raise ConnectionResetError("the server dropped the connection mid-body")


# scenario -> (route, content length given?)
TUF_SCENARIOS = ["stall-mid-body", "stall-mid-body-close-delimited", "stall-before-headers",
                 "stall-in-handshake", "dropped-mid-body", "http-404", "too-long", "refused"]


@pytest.fixture
def tuf_fetchers(pki: PKI, root_pinned_config: PinConfig,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], dict[str, Any]]]:
    pytest.importorskip("tuf.ngclient")
    from tuf.ngclient import Urllib3Fetcher

    from pinclient.tuf import PinnedFetcher

    # tuf's own fetcher trusts the OS store; here that is the test bundle (both roots, no pins).
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.bundle))
    made: list[PinnedFetcher] = []

    def make(proxy: str | None) -> dict[str, Any]:
        if proxy is not None:
            monkeypatch.setenv("https_proxy", proxy)  # how tuf's fetcher takes a proxy
        made.append(PinnedFetcher(root_pinned_config, timeout=0.5, proxy=proxy or False))
        return {"tuf": Urllib3Fetcher(socket_timeout=0.5), "pinclient": made[-1]}  # type: ignore[arg-type]

    yield make
    for fetcher in made:
        fetcher.close()


@pytest.mark.parametrize("via", ["direct", "https-proxy"])
@pytest.mark.parametrize("scenario", TUF_SCENARIOS)
def test_pinned_fetcher_raises_what_tufs_own_fetcher_raises(
        pki: PKI, https_server: ServeHTTPS, tuf_fetchers: Callable[[str | None], dict[str, Any]],
        scenario: str, via: str) -> None:
    from tuf.api import exceptions

    stop = threading.Event()
    routes: dict[str, Any] = {
        "stall-mid-body": Response(200, _stalled_body(b"x" * 1000, stop), content_length=2000),
        "stall-mid-body-close-delimited": Response(200, _stalled_body(b"x" * 1000, stop),
                                                   content_length=None),
        "stall-before-headers": _stalled_headers(stop),
        "dropped-mid-body": Response(200, _broken_body, content_length=2000),
        "too-long": b"x" * 5000,
    }
    raised: dict[str, BaseException] = {}
    silent = socket.create_server(("127.0.0.1", 0), backlog=8)  # accepts TCP (backlog), never TLS
    with https_server({"/f": routes[scenario]} if scenario in routes else {}) as server, \
            ConnectProxy(pki.pinned_int.issue_leaf("proxy.test")) as proxy:
        url = {"refused": "https://updates.test:1/f",
               "stall-in-handshake": f"https://{HOST}:{silent.getsockname()[1]}/f"}.get(scenario,
                                                                                       server.url("/f"))
        try:
            for name, fetcher in tuf_fetchers(proxy.url if via == "https-proxy" else None).items():
                try:
                    fetcher.download_bytes(url, 3000)
                except Exception as e:  # compared below
                    raised[name] = e
        finally:
            stop.set()
            silent.close()
    ours, theirs = raised["pinclient"], raised["tuf"]
    if scenario == "dropped-mid-body":
        # tuf's fetcher lets urllib3's ProtocolError escape mid-body (not a DownloadError, which
        # its own FetcherInterface documents); pinclient keeps the documented type, with it as cause.
        assert isinstance(theirs, urllib3.exceptions.ProtocolError)
        assert type(ours) is exceptions.DownloadError
        assert isinstance(ours.__cause__, urllib3.exceptions.ProtocolError)
        return
    assert type(ours) is type(theirs), raised
    # urllib3's NewConnectionError is a ConnectTimeoutError, so tuf calls a refused connection slow
    # too; through the proxy, the proxy's hang-up is a plain DownloadError for both.
    expected = {"http-404": exceptions.DownloadHTTPError, "too-long": exceptions.DownloadLengthMismatchError,
                "refused" if via == "https-proxy" else "": exceptions.DownloadError}
    assert type(ours) is expected.get(scenario, exceptions.SlowRetrievalError)


def test_a_timeout_reported_as_max_retry_error_mid_body_is_slow_retrieval(
        root_pinned_config: PinConfig, payload: bytes, https_server: ServeHTTPS,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # tuf's own test_response_read_timeout: urllib3 may hand a timeout over as the reason of a
    # MaxRetryError; tuf's fetcher calls that slow retrieval wherever it surfaces, the body included.
    from tuf.api import exceptions
    from urllib3.response import HTTPResponse

    from pinclient.tuf import PinnedFetcher

    def stream(self: HTTPResponse, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        raise urllib3.exceptions.MaxRetryError(None, "/u", urllib3.exceptions.ReadTimeoutError(  # type: ignore[arg-type]
            None, "/u", "Read timed out."))  # type: ignore[arg-type]

    monkeypatch.setattr(HTTPResponse, "stream", stream)
    with https_server({"/u": payload}) as server, PinnedFetcher(root_pinned_config) as fetcher:
        with pytest.raises(exceptions.SlowRetrievalError):
            fetcher.download_bytes(server.url("/u"), len(payload))


def test_revocation_requests_verify_the_https_proxy_against_the_pins_bundle_too(
        pki: PKI, tmp_path: Path, payload: bytes, https_server: ServeHTTPS,
        os_store_trusts_untrusted_root: None) -> None:
    # The proxy's certificate comes from a root in the pins.toml bundle but not in the OS store: the
    # update's tunnel and the OCSP request (forwarded by the proxy) must both verify it with the
    # bundle. Through the OS store the OCSP request never reached the proxy.
    from pinclient import RevocationCheckFailed, fetch_update
    from pinclient.config import load_pins

    from .conftest import pinset, write_pins

    leaf = pki.pinned_int.issue_leaf(HOST, ocsp_url="http://ocsp.test:9/")
    body = pinset("x", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(write_pins(tmp_path / "c", body + 'revocation = "hard-fail"\n', bundle=pki.bundle))
    with https_server({"/u": payload}, leaf=leaf) as server, \
            ConnectProxy(pki.rogue_root.issue_leaf("proxy.test")) as proxy:
        with pytest.raises(RevocationCheckFailed):  # the test proxy answers a forwarded POST with 405
            fetch_update(server.url("/u"), tmp_path / "u", config=config, proxy=proxy.url, retries=0)
    heads = [t.request_head for t in proxy.tunnels]
    assert any(h.startswith(b"POST http://ocsp.test:9/") for h in heads), heads
    assert server.requests == []


def test_a_replaced_connection_class_is_refused_not_left_unpinned(
        pki: PKI, root_pinned_config: PinConfig, payload: bytes, https_server: ServeHTTPS) -> None:
    from urllib3.connection import HTTPSConnection

    class Unpinned(HTTPSConnection):
        def __init__(self, *args: Any, pin_guard: object = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

    with https_server({"/u": payload}, issuer=pki.rogue_root) as rogue:
        pm = PinningPoolManager(root_pinned_config)
        pool = pm.connection_from_url(rogue.url("/u"))
        pool.ConnectionCls = Unpinned  # type: ignore[assignment, misc]
        with pytest.raises(UsageError, match="ConnectionCls"):
            pm.request("GET", rogue.url("/u"), retries=False)
    assert rogue.conns == []


def test_the_compat_refusal_list_names_a_peer_a_test_and_a_reason_for_each_entry() -> None:
    # compat/run.py (not part of the suite: its first run downloads the peer's sdist) trusts this
    # list to tell intended refusals from regressions; a malformed entry would hide one.
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    compat = Path(__file__).resolve().parent.parent / "compat"
    entries = tomllib.loads((compat / "refusals.toml").read_text())["refusal"]
    assert entries
    for entry in entries:
        assert set(entry) == {"peer", "test", "reason"}, entry
        assert entry["peer"] in ("tuf", "requests", "urllib3")
        assert "::" in entry["test"]
        assert len(entry["reason"].split()) >= 5, "a reason a reader can check"


def test_a_compat_refusal_pattern_matches_any_run_of_characters_and_nothing_else_is_special(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # compat/run.py: urllib3's parametrized ids ("[h2]", "[127.0.0.1-True]") stay literal, "*" is
    # the one wildcard, and an exact entry wins over a pattern.
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        "compat_run", Path(__file__).resolve().parent.parent / "compat" / "run.py")
    assert spec is not None
    assert spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "compat_run", run)  # its dataclasses look themselves up there
    monkeypatch.setattr(sys, "path", list(sys.path))  # run.py puts the checkout first
    spec.loader.exec_module(run)
    intended = {"t.py::TestA_*::test_x[h2]": "pattern", "t.py::TestA_1::test_y": "exact",
                "t.py::TestA_*::test_y": "other"}
    assert run.refusal_for("t.py::TestA_1_2::test_x[h2]", intended) == "pattern"
    assert run.refusal_for("t.py::TestA_1::test_xh", intended) is None  # [h2] is not a set, as in fnmatch
    assert run.refusal_for("t.py::TestA_1::test_x[h2]x", intended) is None  # the whole id
    assert run.refusal_for("t.py::TestA_1::test_y", intended) == "exact"
    assert run.refusal_for("t.py::TestA_2::test_y", intended) == "other"
