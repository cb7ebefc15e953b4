"""``pin``, ``check`` and ``lint --against`` follow the proxy rules of every fetch (``--proxy``,
``--no-proxy``, ``HTTPS_PROXY`` minus ``NO_PROXY``): behind a proxy the fetch worked and the
check failed. The handshake runs end to end inside the CONNECT tunnel, so the verdict is the
origin's (an ``https://`` proxy's certificate comes from the rogue root: trusted, never pinned)."""

from __future__ import annotations

import json

import pytest

from pinclient import check
from pinclient._cli.main import main
from pinclient.config import PinConfig

from .conftest import HOST, PKI, ServeHTTPS
from .hostile import ConnectProxy


def tunnels_to(proxy: ConnectProxy, port: int) -> list[bytes]:
    heads = [t.request_head.split(b"\r\n")[0] for t in proxy.tunnels]
    assert all(bytes(t.client_bytes)[:1] == b"\x16" for t in proxy.tunnels), "TLS in the tunnel"
    return [h for h in heads if h.startswith(f"CONNECT {HOST}:{port} ".encode())]


@pytest.mark.parametrize("tls_proxy", [False, True], ids=["http-proxy", "https-proxy"])
def test_pin_check_and_lint_against_go_through_the_proxy_flag(
        pki: PKI, root_pinned_config: PinConfig, tls_proxy: bool, https_server: ServeHTTPS,
        capsys: pytest.CaptureFixture[str]) -> None:
    pins = str(root_pinned_config.path)
    leaf = pki.rogue_root.issue_leaf("proxy.test") if tls_proxy else None
    with https_server() as server, ConnectProxy(leaf) as proxy:
        url = server.url("/")
        assert main(["pin", f"{HOST}:{server.port}", "--pins", pins, "--proxy", proxy.url]) == 0
        assert pki.pin_of(pki.pinned_root) in capsys.readouterr().out
        assert main(["check", url, "--pins", pins, "--proxy", proxy.url, "--json"]) == 0
        [result] = json.loads(capsys.readouterr().out)["results"]
        assert result["verdict"] == "ok"
        assert main(["lint", pins, "--against", url, "--proxy", proxy.url, "--json"]) == 0
        codes = [f["code"] for f in json.loads(capsys.readouterr().out)["findings"]]
        assert "against-match" in codes
        server.wait_idle()
    assert len(tunnels_to(proxy, server.port)) == 3
    assert server.requests == [], "a handshake only, through the tunnel"


def test_rogue_origin_through_the_proxy_is_still_a_violation(
        pki: PKI, root_pinned_config: PinConfig, https_server: ServeHTTPS) -> None:
    with https_server(issuer=pki.rogue_root) as server, ConnectProxy() as proxy:
        result = check(server.url("/"), root_pinned_config, proxy=proxy.url)
    assert result.verdict == "violation"
    assert len(tunnels_to(proxy, server.port)) == 1


def test_the_environment_and_no_proxy_apply_as_for_fetch(
        root_pinned_config: PinConfig, monkeypatch: pytest.MonkeyPatch,
        https_server: ServeHTTPS, capsys: pytest.CaptureFixture[str]) -> None:
    pins = str(root_pinned_config.path)
    with https_server() as server, ConnectProxy() as proxy:
        url = server.url("/")
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        assert main(["check", url, "--pins", pins]) == 0
        assert main(["pin", f"{HOST}:{server.port}", "--pins", pins]) == 0
        assert len(tunnels_to(proxy, server.port)) == 2
        # --no-proxy, and NO_PROXY, go direct.
        assert main(["check", url, "--pins", pins, "--no-proxy"]) == 0
        monkeypatch.setenv("NO_PROXY", "example.com, .test")
        assert main(["lint", pins, "--against", url]) == 0
        assert len(tunnels_to(proxy, server.port)) == 2
    capsys.readouterr()


def test_a_proxy_refusing_the_tunnel_is_a_network_error_in_words(
        root_pinned_config: PinConfig, capsys: pytest.CaptureFixture[str]) -> None:
    with ConnectProxy() as proxy:
        # The test proxy refuses anything but *.test and loopback with 403; nothing else is dialled.
        assert main(["pin", "updates.example:4443", "--pins", str(root_pinned_config.path),
                     "--proxy", proxy.url]) == 6
    err = capsys.readouterr().err
    assert f"the proxy {proxy.url} refused the tunnel to updates.example:4443: HTTP/1.1 403" in err
