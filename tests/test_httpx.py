"""pinclient.httpx over real loopback TLS: PinningTransport and AsyncPinningTransport check the
verified chain of each new connection (direct, through http:// and https:// CONNECT proxies, after
each redirect) before httpcore writes a request byte; refusals are httpx.ConnectError with the
pinclient error as __cause__; options that would weaken the pin are refused."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")

from pinclient import CertificateRevoked, PinViolation, UsageError  # noqa: E402
from pinclient._demo import Response  # noqa: E402
from pinclient.config import PinConfig, load_pins  # noqa: E402
from pinclient.httpx import AsyncPinningTransport, PinningTransport, pinclient_error  # noqa: E402

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins  # noqa: E402
from .hostile import ConnectProxy  # noqa: E402


def get(transport: Any, url: str, **kwargs: Any) -> httpx.Response:
    """One GET through a sync or async transport, from synchronous test code."""
    if isinstance(transport, AsyncPinningTransport):
        async def run() -> httpx.Response:
            async with httpx.AsyncClient(transport=transport, **kwargs) as client:
                resp = await client.get(url, timeout=10)
                await resp.aread()
                return resp
        return asyncio.run(run())
    with httpx.Client(transport=transport, **kwargs) as client:
        return client.get(url, timeout=10)


def refusal(transport: Any, url: str, **kwargs: Any) -> Any:
    with pytest.raises(httpx.ConnectError) as info:
        get(transport, url, **kwargs)
    cause = info.value.__cause__
    assert cause is not None
    assert pinclient_error(info.value) is cause
    return cause


KINDS: dict[str, Callable[..., Any]] = {"sync": PinningTransport, "async": AsyncPinningTransport}
kinds = pytest.mark.parametrize("kind", list(KINDS))


@kinds
def test_pinned_chain_is_accepted_with_one_check_per_connection(kind: str, root_pinned_config: PinConfig,
                                                                payload: bytes, https_server: ServeHTTPS) -> None:
    transport = KINDS[kind](root_pinned_config)

    async def three() -> list[bytes]:
        async with httpx.AsyncClient(transport=transport) as client:
            return [(await client.get(server.url("/u"), timeout=10)).content for _ in range(3)]

    with https_server({"/u": payload}) as server:
        if kind == "async":
            bodies = asyncio.run(three())
        else:
            with httpx.Client(transport=transport) as client:
                bodies = [client.get(server.url("/u"), timeout=10).content for _ in range(3)]
    assert bodies == [payload] * 3
    assert server.handshakes == 1, "keep-alive: one connection"
    assert transport.guard.checks == 1


@kinds
def test_comodo_replay_is_a_connect_error_caused_by_the_pin_violation(kind: str, pki: PKI,
                                                                     root_pinned_config: PinConfig,
                                                                     payload: bytes,
                                                                     https_server: ServeHTTPS) -> None:
    with https_server({"/u": payload}, issuer=pki.rogue_root) as server:
        cause = refusal(KINDS[kind](root_pinned_config), server.url("/u"))
        server.wait_idle()
    assert isinstance(cause, PinViolation)
    assert cause.reason == "unexpected-issuer"
    assert cause.host == HOST
    assert cause.port == server.port
    assert server.handshakes == 1, "the certificate is valid: the handshake itself succeeded"
    assert all(c.received == b"" for c in server.conns), "not one request byte may be sent"


@kinds
def test_a_revocation_hook_that_refuses_stops_the_request(kind: str, root_pinned_config: PinConfig,
                                                          payload: bytes, https_server: ServeHTTPS) -> None:
    # Revocation runs as the guard's after_check hook (pinclient._revocation.hook), like the blocklist
    # and reports it runs inside PinGuard.check: a hook that raises refuses before the request.
    transport = KINDS[kind](root_pinned_config)

    def revoked(verdict: Any, port: int) -> None:
        raise CertificateRevoked(f"{verdict.host} revoked")

    transport.guard.after_check.append(revoked)
    with https_server({"/u": payload}) as server:
        cause = refusal(transport, server.url("/u"))
        server.wait_idle()
    assert isinstance(cause, CertificateRevoked)
    assert all(c.received == b"" for c in server.conns)


@kinds
def test_redirect_to_a_rogue_mirror_is_refused(kind: str, pki: PKI, tmp_path: Path, payload: bytes,
                                               https_server: ServeHTTPS) -> None:
    body = pinset("x", [HOST, "mirror.test"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    with https_server({"/u": payload}, issuer=pki.rogue_root, host="mirror.test") as mirror:
        routes = {"/u": Response(302, headers={"Location": mirror.url("/u", "mirror.test")})}
        with https_server(routes) as origin:
            cause = refusal(KINDS[kind](config), origin.url("/u"), follow_redirects=True)
        mirror.wait_idle()
    assert cause.host == "mirror.test"
    assert all(c.received == b"" for c in mirror.conns)


@kinds
def test_plain_http_and_a_redirect_to_it_are_refused(kind: str, root_pinned_config: PinConfig,
                                                     https_server: ServeHTTPS) -> None:
    cause = refusal(KINDS[kind](root_pinned_config), "http://updates.test/u")
    assert cause.reason == "insecure-scheme"
    routes = {"/u": Response(302, headers={"Location": "http://updates.test/u"})}
    with https_server(routes) as origin:
        cause = refusal(KINDS[kind](root_pinned_config), origin.url("/u"), follow_redirects=True)
    assert cause.reason == "insecure-scheme"


@kinds
@pytest.mark.parametrize("tls_proxy", [False, True], ids=["http-proxy", "https-proxy"])
def test_through_a_proxy_the_origin_is_pinned_never_the_proxy(kind: str, tls_proxy: bool, pki: PKI,
                                                              root_pinned_config: PinConfig, payload: bytes,
                                                              https_server: ServeHTTPS) -> None:
    # The https proxy's certificate comes from the rogue root (trusted, not pinned): the good origin
    # passes through it, so the pins were applied to the origin's chain inside the tunnel.
    leaf = pki.rogue_root.issue_leaf("proxy.test") if tls_proxy else None
    with ConnectProxy(leaf) as proxy:
        transport = KINDS[kind](root_pinned_config, proxy=proxy.url)
        with https_server({"/u": payload}) as good:
            assert get(transport, good.url("/u")).content == payload
        with https_server({"/u": payload}, issuer=pki.rogue_root) as rogue:
            cause = refusal(KINDS[kind](root_pinned_config, proxy=proxy.url), rogue.url("/u"))
            rogue.wait_idle()
    assert cause.reason == "unexpected-issuer"
    assert cause.port == rogue.port, "the origin's port, not the proxy's"
    assert all(c.received == b"" for c in rogue.conns), "no request byte through the tunnel"
    assert [t.target for t in proxy.tunnels] == [f"{HOST}:{good.port}", f"{HOST}:{rogue.port}"]
    assert all(b"GET /u" not in bytes(t.client_bytes) for t in proxy.tunnels)


@kinds
def test_a_pinned_proxy_certificate_does_not_let_a_rogue_origin_through(kind: str, pki: PKI,
                                                                       root_pinned_config: PinConfig,
                                                                       payload: bytes,
                                                                       https_server: ServeHTTPS) -> None:
    with ConnectProxy(pki.pinned_int.issue_leaf("proxy.test")) as proxy, \
            https_server({"/u": payload}, issuer=pki.rogue_root) as rogue:
        cause = refusal(KINDS[kind](root_pinned_config, proxy=proxy.url), rogue.url("/u"))
    assert cause.reason == "unexpected-issuer"


@kinds
@pytest.mark.parametrize("option", [
    {"verify": False}, {"verify": ssl.create_default_context()}, {"verify": "/etc/ssl/certs/ca.pem"},
    {"proxy": "socks5://127.0.0.1:1080"},
    {"proxy": "PROXY_WITH_CONTEXT"},
], ids=["verify-false", "verify-context", "verify-path", "socks", "proxy-ssl-context"])
def test_options_that_weaken_the_pin_are_refused(kind: str, option: dict[str, Any],
                                                 root_pinned_config: PinConfig) -> None:
    if option.get("proxy") == "PROXY_WITH_CONTEXT":
        option = {"proxy": httpx.Proxy("https://proxy.test:1", ssl_context=ssl.create_default_context())}
    with pytest.raises(UsageError):
        KINDS[kind](root_pinned_config, **option)


@kinds
def test_a_foreign_context_put_on_the_pool_later_is_refused(kind: str, root_pinned_config: PinConfig,
                                                            payload: bytes, https_server: ServeHTTPS) -> None:
    # A hostile variant of verify=False: the pool's context swapped after construction. The
    # handshake is refused before it starts, whatever the context would verify.
    transport = KINDS[kind](root_pinned_config)
    loose = ssl.create_default_context()
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    transport._pool._ssl_context = loose
    with https_server({"/u": payload}) as server:
        cause = refusal(transport, server.url("/u"))
    assert cause.reason == "foreign-context"
    assert server.requests == []


@kinds
def test_a_pool_without_the_pinning_backend_is_refused(kind: str, root_pinned_config: PinConfig,
                                                       payload: bytes, https_server: ServeHTTPS) -> None:
    # A hostile variant: the pool's network backend swapped after construction would make
    # connections that no start_tls hook sees. Refused before connecting.
    import httpcore

    transport = KINDS[kind](root_pinned_config)
    transport._pool._network_backend = httpcore.SyncBackend() if kind == "sync" else httpcore.AnyIOBackend()
    with https_server({"/u": payload}) as server:
        with pytest.raises(UsageError, match="network backend"):
            get(transport, server.url("/u"))
    assert server.handshakes == 0


# --------------------------------------------------------------------------- ca_bundle = "system", no_proxy


@kinds
def test_an_https_proxy_is_verified_against_the_system_trust_store(
        kind: str, pki: PKI, tmp_path: Path, payload: bytes, https_server: ServeHTTPS,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The proxy's context was ssl.create_default_context(cafile=bundle): with ca_bundle = "system"
    # (no file) the transport could not even be built. It now loads trust as the origin's does.
    pytest.importorskip("truststore")
    empty = tmp_path / "no-certs"
    empty.mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.bundle))  # the "system" store is the test bundle
    monkeypatch.setenv("SSL_CERT_DIR", str(empty))
    pins = tmp_path / "pins.toml"
    pins.write_text('version = 1\n[defaults]\nca_bundle = "system"\n\n' + pinset(
        "example-updates", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}'))
    config = load_pins(pins)
    with ConnectProxy(pki.rogue_root.issue_leaf("proxy.test")) as proxy:  # trusted there, not pinned
        transport = KINDS[kind](config, proxy=proxy.url)
        assert transport.pins.proxy_context is not transport.pins.context
        with https_server({"/u": payload}) as good:
            assert get(transport, good.url("/u")).content == payload
        with https_server({"/u": payload}, issuer=pki.rogue_root) as rogue:
            cause = refusal(KINDS[kind](config, proxy=proxy.url), rogue.url("/u"))
            rogue.wait_idle()
    assert cause.reason == "unexpected-issuer"
    assert all(c.received == b"" for c in rogue.conns)
    # A proxy the system store does not trust is refused: the proxy's TLS is verified, not skipped.
    with ConnectProxy(pki.untrusted_root.issue_leaf("proxy.test")) as untrusted, \
            https_server({"/u": payload}) as good:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            get(KINDS[kind](config, proxy=untrusted.url), good.url("/u"))
    assert all(t.request_head == b"" for t in untrusted.tunnels), "no CONNECT over an unverified proxy"


@kinds
@pytest.mark.parametrize("entry", ["updates.test", ".test", "*.test", "*", "UPDATES.TEST", "updates.test:PORT",
                                   "127.0.0.1/8 , updates.test", ["other.test", "updates.test"]])
def test_hosts_matching_no_proxy_connect_directly_and_are_still_pinned(
        kind: str, entry: str | list[str], pki: PKI, root_pinned_config: PinConfig, payload: bytes,
        https_server: ServeHTTPS) -> None:
    with ConnectProxy() as proxy, https_server({"/u": payload}) as good, \
            https_server({"/u": payload}) as other_port, \
            https_server({"/u": payload}, issuer=pki.rogue_root) as rogue:
        no_proxy = entry.replace("PORT", str(good.port)) if isinstance(entry, str) else entry
        transport = KINDS[kind](root_pinned_config, proxy=proxy.url, no_proxy=no_proxy)
        assert get(transport, good.url("/u")).content == payload
        assert proxy.tunnels == [], "a no_proxy host goes direct"
        if entry == "updates.test:PORT":  # another port of the same host is not exempt
            assert get(KINDS[kind](root_pinned_config, proxy=proxy.url, no_proxy=no_proxy),
                       other_port.url("/u")).content == payload
            assert [t.target for t in proxy.tunnels] == [f"{HOST}:{other_port.port}"]
        else:  # direct, and still pinned: the rogue origin is refused before a request byte
            cause = refusal(KINDS[kind](root_pinned_config, proxy=proxy.url, no_proxy=no_proxy),
                            rogue.url("/u"))
            rogue.wait_idle()
            assert cause.reason == "unexpected-issuer"
            assert all(c.received == b"" for c in rogue.conns)
            assert proxy.tunnels == []


@kinds
@pytest.mark.parametrize("entry", ["other.test", "test.other", "pdates.test", "updates.test:1", ""])
def test_hosts_not_matching_no_proxy_still_go_through_the_proxy(
        kind: str, entry: str, root_pinned_config: PinConfig, payload: bytes,
        https_server: ServeHTTPS) -> None:
    with ConnectProxy() as proxy, https_server({"/u": payload}) as good:
        transport = KINDS[kind](root_pinned_config, proxy=proxy.url, no_proxy=entry)
        assert get(transport, good.url("/u")).content == payload
    assert [t.target for t in proxy.tunnels] == [f"{HOST}:{good.port}"]


@kinds
def test_a_direct_pool_without_the_pinning_backend_is_refused(kind: str, root_pinned_config: PinConfig,
                                                              payload: bytes, https_server: ServeHTTPS) -> None:
    # The no_proxy variant of the swap above: the direct pool beside the proxied one is checked too.
    import httpcore

    with ConnectProxy() as proxy:
        transport = KINDS[kind](root_pinned_config, proxy=proxy.url, no_proxy=HOST)
        transport._pool.direct._network_backend = (httpcore.SyncBackend() if kind == "sync"
                                                   else httpcore.AnyIOBackend())
        with https_server({"/u": payload}) as server:
            with pytest.raises(UsageError, match="network backend"):
                get(transport, server.url("/u"))
        assert server.handshakes == 0


@kinds
@pytest.mark.parametrize("rogue_mirror", [False, True], ids=["pinned-mirror", "rogue-mirror"])
def test_a_redirect_is_routed_by_its_own_host_through_or_around_the_proxy(
        kind: str, rogue_mirror: bool, pki: PKI, tmp_path: Path, payload: bytes,
        https_server: ServeHTTPS) -> None:
    # The origin goes through the proxy, its redirect to a no_proxy mirror goes direct, and the
    # mirror is pinned there like any other host.
    body = pinset("x", [HOST, "mirror.test"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    issuer = pki.rogue_root if rogue_mirror else None
    with ConnectProxy() as proxy, \
            https_server({"/u": payload}, issuer=issuer, host="mirror.test") as mirror:
        routes = {"/u": Response(302, headers={"Location": mirror.url("/u", "mirror.test")})}
        with https_server(routes) as origin:
            transport = KINDS[kind](config, proxy=proxy.url, no_proxy="mirror.test")
            if rogue_mirror:
                cause = refusal(transport, origin.url("/u"), follow_redirects=True)
                mirror.wait_idle()
                assert cause.host == "mirror.test"
                assert all(c.received == b"" for c in mirror.conns)
            else:
                assert get(transport, origin.url("/u"), follow_redirects=True).content == payload
    assert [t.target for t in proxy.tunnels] == [f"{HOST}:{origin.port}"], "only the origin was proxied"
