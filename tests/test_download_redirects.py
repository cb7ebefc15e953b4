"""Redirect games: to http://, to a host no pinset covers, loops and long chains are refused; every
hop to a pinned host is checked again; credentials stay with their host."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinclient import NetworkError, PinViolation, fetch_update
from pinclient._demo import Response
from pinclient.config import PinConfig, load_pins

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins


@pytest.fixture
def two_host_config(pki: PKI, tmp_path: Path) -> PinConfig:
    body = pinset("x", [HOST, "mirror.test"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    return load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))


def test_redirect_to_http_is_refused(root_pinned_config: PinConfig, tmp_path: Path,
                                     https_server: ServeHTTPS) -> None:
    routes = {"/u": Response(301, headers={"Location": "http://updates.test/u"})}
    with https_server(routes) as s:
        with pytest.raises(PinViolation) as info:
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config)
    assert info.value.reason == "insecure-redirect"
    assert info.value.exit_code == 3


def test_redirect_to_an_unpinned_host_is_refused_before_connecting(
        root_pinned_config: PinConfig, tmp_path: Path, payload: bytes,
        https_server: ServeHTTPS) -> None:
    with https_server({"/u": Response(200, payload)}, host="mirror.test") as mirror:
        routes = {"/u": Response(302, headers={"Location": mirror.url("/u", "mirror.test")})}
        with https_server(routes) as origin:
            with pytest.raises(PinViolation) as info:
                fetch_update(origin.url("/u"), tmp_path / "u", config=root_pinned_config)
    assert info.value.reason == "unpinned"
    assert info.value.host == "mirror.test"
    assert mirror.conns == [], "not even a TCP connection to a host no pinset covers"


def test_redirect_to_an_unpinned_host_follows_when_allowed(pki: PKI, tmp_path: Path,
                                                           payload: bytes, https_server: ServeHTTPS) -> None:
    body = pinset("x", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle, unpinned="allow"))
    with https_server({"/u": Response(200, payload)}, issuer=pki.rogue_root, host="mirror.test") as mirror:
        routes = {"/u": Response(302, headers={"Location": mirror.url("/u", "mirror.test")})}
        with https_server(routes) as origin:
            result = fetch_update(origin.url("/u"), tmp_path / "u", config=config)
    assert result.url == mirror.url("/u", "mirror.test")
    assert result.pinset is None


def test_redirect_loop_is_refused_and_not_retried(root_pinned_config: PinConfig,
                                                  tmp_path: Path, https_server: ServeHTTPS) -> None:
    routes = {"/a": Response(302, headers={"Location": "/b"}),
              "/b": Response(307, headers={"Location": "/a"})}
    with https_server(routes) as s:
        with pytest.raises(NetworkError, match="redirect loop") as info:
            fetch_update(s.url("/a"), tmp_path / "u", config=root_pinned_config)
    assert info.value.transient is False
    assert s.requests == ["/a", "/b"]


def test_more_than_max_redirects_is_refused(root_pinned_config: PinConfig, tmp_path: Path,
                                            payload: bytes, https_server: ServeHTTPS) -> None:
    routes: dict[str, Response] = {f"/{i}": Response(302, headers={"Location": f"/{i + 1}"}) for i in range(6)}
    routes["/6"] = Response(200, payload)
    with https_server(routes) as s:
        with pytest.raises(NetworkError, match="more than 5 redirects"):
            fetch_update(s.url("/0"), tmp_path / "u", config=root_pinned_config)
        assert len(s.requests) == 6
        result = fetch_update(s.url("/0"), tmp_path / "u", config=root_pinned_config, max_redirects=6)
    assert result.url == s.url("/6")


def test_every_hop_is_pin_checked_and_credentials_stay_home(pki: PKI, two_host_config: PinConfig,
                                                            tmp_path: Path, payload: bytes,
                                                            https_server: ServeHTTPS) -> None:
    seen: list[dict[str, str]] = []

    def mirror_route(path: str, headers: dict[str, str]) -> Response:
        seen.append(headers)
        return Response(200, payload)

    for leaf_ca, ok in ((pki.pinned_int, True), (pki.rogue_root, False)):
        with https_server({"/u": mirror_route}, leaf=leaf_ca.issue_leaf("mirror.test")) as mirror:
            routes = {"/u": Response(308, headers={"Location": mirror.url("/u", "mirror.test")})}
            with https_server(routes) as origin:
                call = lambda: fetch_update(origin.url("/u"), tmp_path / "u", config=two_host_config,  # noqa: E731
                                            headers={"Authorization": "Bearer s3cret", "X-Channel": "beta"})
                if ok:
                    assert call().url == mirror.url("/u", "mirror.test")
                else:
                    with pytest.raises(PinViolation):
                        call()
                    assert mirror.requests == []
    assert "authorization" not in seen[0], "credentials are not sent to another host"
    assert seen[0]["x-channel"] == "beta"
