"""Proxies: the pin check applies to the origin through the CONNECT tunnel, never to the proxy, and
the proxy sees nothing but CONNECT. A tiny threaded CONNECT proxy on loopback records what it saw."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from pinclient import PinViolation, UsageError, fetch_update
from pinclient._cli.main import fetch_main
from pinclient._demo import Response
from pinclient._proxy import no_proxy_matches, parse_no_proxy, parse_proxy_url, proxy_route
from pinclient.config import PinConfig
from pinclient.transport import PinningPoolManager, PinningProxyManager, pinning_manager

from .conftest import HOST, PKI, ServeHTTPS
from .hostile import ConnectProxy


def assert_only_connect(proxy: ConnectProxy, port: int) -> None:
    heads = [t.request_head.split(b"\r\n")[0] for t in proxy.tunnels]
    assert [h.rsplit(b" ", 1)[0] for h in heads] == [f"CONNECT {HOST}:{port}".encode()]
    tunnelled = bytes(proxy.tunnels[0].client_bytes)
    assert tunnelled[:1] == b"\x16", "what went through the tunnel starts with a TLS handshake"
    assert b"GET /u" not in tunnelled, "the request never crossed the proxy in clear"
    assert b"pinclient/" not in tunnelled


@pytest.mark.parametrize("tls_proxy", [False, True], ids=["http-proxy", "https-proxy"])
def test_connect_proxy_to_pinned_origin_succeeds(pki: PKI, root_pinned_config: PinConfig, tmp_path: Path,
                                                 payload: bytes, tls_proxy: bool,
                                                 https_server: ServeHTTPS) -> None:
    # The https:// proxy's own certificate comes from the *rogue* root: trusted, not pinned. The
    # fetch succeeds, so the pin was checked against the origin, not the proxy.
    leaf = pki.rogue_root.issue_leaf("proxy.test") if tls_proxy else None
    with https_server({"/u": Response(200, payload)}) as s, ConnectProxy(leaf) as proxy:
        result = fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, proxy=proxy.url)
    assert (tmp_path / "u").read_bytes() == payload
    assert result.pinset == "example-updates"
    assert result.chain[-1].spki_sha256 == pki.pin_of(pki.pinned_root)
    assert_only_connect(proxy, s.port)


@pytest.mark.parametrize("tls_proxy", [False, True], ids=["http-proxy", "https-proxy"])
def test_connect_proxy_to_rogue_origin_is_refused(pki: PKI, root_pinned_config: PinConfig, tmp_path: Path,
                                                  payload: bytes, tls_proxy: bool,
                                                  https_server: ServeHTTPS) -> None:
    # The proxy's certificate is from the *pinned* CA: that must not make the rogue origin pass.
    leaf = pki.pinned_int.issue_leaf("proxy.test") if tls_proxy else None
    with https_server({"/u": Response(200, payload)}, issuer=pki.rogue_root) as s, ConnectProxy(leaf) as proxy:
        with pytest.raises(PinViolation) as info:
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, proxy=proxy.url)
        s.wait_idle()
    assert info.value.host == HOST
    assert info.value.port == s.port, "the origin's port, not the proxy's"
    assert info.value.reason == "unexpected-issuer"
    assert all(c.received == b"" for c in s.conns), "no request byte reached the origin"
    assert len(proxy.tunnels) == 1, "a pin violation is not retried"
    assert not (tmp_path / "u").exists()


def test_proxy_credentials_go_on_connect_only(root_pinned_config: PinConfig, tmp_path: Path,
                                              payload: bytes, https_server: ServeHTTPS) -> None:
    with https_server({"/u": Response(200, payload)}) as s, ConnectProxy() as proxy:
        url = proxy.url.replace("http://", "http://alice:s%40fe@")
        fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, proxy=url)
    expected = base64.b64encode(b"alice:s@fe").decode()
    assert f"proxy-authorization: basic {expected.lower()}".encode() in proxy.tunnels[0].request_head.lower()
    assert b"alice" not in bytes(proxy.tunnels[0].client_bytes)


def test_https_proxy_from_the_environment_and_no_proxy(root_pinned_config: PinConfig,
                                                       tmp_path: Path, payload: bytes,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       https_server: ServeHTTPS) -> None:
    with https_server({"/u": Response(200, payload)}) as s, ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config)
        assert len(proxy.tunnels) == 1
        monkeypatch.setenv("NO_PROXY", "example.com, .test")
        fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config)
        monkeypatch.delenv("NO_PROXY")
        fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, proxy=False)
        assert fetch_main([s.url("/u"), "-o", str(tmp_path / "v"), "--pins",
                           str(root_pinned_config.path), "--no-proxy", "-q"]) == 0
    assert len(proxy.tunnels) == 1, "NO_PROXY, proxy=False and --no-proxy all went direct"


def test_cli_proxy_flag(root_pinned_config: PinConfig, tmp_path: Path, payload: bytes,
                        https_server: ServeHTTPS) -> None:
    with https_server({"/u": Response(200, payload)}) as s, ConnectProxy() as proxy:
        code = fetch_main([s.url("/u"), "-o", str(tmp_path / "u"), "--pins", str(root_pinned_config.path),
                           "--proxy", proxy.url, "-q"])
    assert code == 0
    assert_only_connect(proxy, s.port)


def test_proxy_refusing_connect_is_a_network_error(pki: PKI, root_pinned_config: PinConfig,
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ConnectProxy() as proxy:
        # The test proxy refuses anything but *.test and loopback with 403.
        code = fetch_main(["https://updates.example:4443/u", "-o", str(tmp_path / "u"),
                           "--pins", str(root_pinned_config.path), "--proxy", proxy.url,
                           "--retries", "0", "-q"])
    assert code == 6
    assert "proxy" in capsys.readouterr().err
    assert not (tmp_path / "u").exists()


def test_untrusted_https_proxy_is_a_tls_error_and_not_retried(pki: PKI, root_pinned_config: PinConfig,
                                                              tmp_path: Path, payload: bytes,
                                                              https_server: ServeHTTPS) -> None:
    from pinclient import TLSError

    with https_server({"/u": Response(200, payload)}) as s, \
            ConnectProxy(pki.untrusted_root.issue_leaf("proxy.test")) as proxy:
        with pytest.raises(TLSError, match="proxy"):
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, proxy=proxy.url)
    assert proxy.connections == 1
    assert proxy.tunnels[0].request_head == b"", "nothing was said to an unverified proxy"


def test_pinning_manager_picks_the_transport(root_pinned_config: PinConfig) -> None:
    assert type(pinning_manager(root_pinned_config, proxy=False)) is PinningPoolManager
    assert type(pinning_manager(root_pinned_config, env={})) is PinningPoolManager
    pm = pinning_manager(root_pinned_config, env={"https_proxy": "proxy.corp:3128", "NO_PROXY": "*.local"})
    assert isinstance(pm, PinningProxyManager)
    assert pm.proxy.url == "http://proxy.corp:3128"
    assert pm.no_proxy == ("*.local",)
    with pytest.raises(UsageError):
        pinning_manager(root_pinned_config, proxy="socks5://proxy:1080")


# --------------------------------------------------------------------------- the rules, pure


@pytest.mark.parametrize(("entries", "host", "port", "bypass"), [
    ("*", "anything.example", 443, True),
    ("example.com", "example.com", 443, True),
    ("example.com", "updates.example.com", 443, True),
    (".example.com", "updates.example.com", 443, True),
    ("*.example.com", "updates.example.com", 443, True),
    ("example.com", "badexample.com", 443, False),
    ("EXAMPLE.COM.", "Updates.Example.Com", 443, True),
    ("10.0.0.0/8", "10.1.2.3", 443, True),
    ("10.0.0.0/8", "11.1.2.3", 443, False),
    ("::1", "[::1]", 443, True),
    ("example.com:8443", "example.com", 443, False),
    ("example.com:8443", "example.com", 8443, True),
    ("", "example.com", 443, False),
])
def test_no_proxy_rules(entries: str, host: str, port: int, bypass: bool) -> None:
    assert no_proxy_matches(parse_no_proxy(entries), host, port) is bypass


def test_proxy_url_parsing() -> None:
    assert parse_proxy_url("proxy:3128") == ("http://proxy:3128", None)
    assert parse_proxy_url("https://Proxy.Corp") == ("https://proxy.corp:443", None)
    assert parse_proxy_url("http://u%3Ax:p@proxy") == ("http://proxy:80", "u:x:p")
    for bad in ("socks5://proxy:1080", "ftp://proxy", "http://"):
        with pytest.raises(UsageError):
            parse_proxy_url(bad)
    assert proxy_route(None, env={"HTTP_PROXY": "http://not-for-https:1"}) is None, "HTTP_PROXY is never read"
    route = proxy_route(None, env={"https_proxy": "http://a:1", "HTTPS_PROXY": "http://b:2"})
    assert route is not None
    assert route.url == "http://a:1"


def test_revocation_requests_take_the_proxy_too(pki: PKI, tmp_path: Path, payload: bytes,
                                                https_server: ServeHTTPS) -> None:
    # On a network that only the proxy leaves, OCSP must go through the proxy as well. This proxy
    # only tunnels (405 for a forwarded request), so hard-fail refuses: what matters is that the
    # OCSP request reached the proxy rather than going straight to the responder.
    from pinclient import RevocationCheckFailed
    from pinclient.config import load_pins

    from .conftest import pinset, write_pins

    leaf = pki.pinned_int.issue_leaf(HOST, ocsp_url="http://ocsp.test:9/")
    body = pinset("x", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += 'revocation = "hard-fail"\n'
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    assert config.pinsets[0].revocation == "hard-fail"
    with https_server({"/u": Response(200, payload)}, leaf=leaf) as s, ConnectProxy() as proxy:
        with pytest.raises(RevocationCheckFailed):
            fetch_update(s.url("/u"), tmp_path / "u", config=config, proxy=proxy.url, retries=0)
    heads = [t.request_head for t in proxy.tunnels]
    assert any(h.startswith(b"POST http://ocsp.test:9/") for h in heads), heads
    assert s.requests == []
