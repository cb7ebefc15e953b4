"""Redirect games: to http://, to a host no pinset covers, loops and long chains are refused; every
hop to a pinned host is checked again; credentials stay with their host."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinclient import NetworkError, PinViolation, fetch_update
from pinclient._demo import Response, Route
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



CREDENTIALS = {"AUTHORIZATION": "Bearer s3cret", "cookie": "session=s3cret",
               "Proxy-Authorization": "Basic czNjcmV0"}


@pytest.mark.parametrize("hop", ["other port, same host", "other host, same port"])
def test_credentials_are_dropped_on_any_change_of_origin_and_never_come_back(
        pki: PKI, two_host_config: PinConfig, tmp_path: Path, payload: bytes, hop: str,
        https_server: ServeHTTPS) -> None:
    # Credentials belong to an origin (scheme, host, port), as in urllib3 and requests: another
    # port on the same host may be another service. Once dropped they stay dropped, even when a
    # later hop comes back to the first origin. Header names match in any case; a redirect that
    # only respells the origin (case, trailing dot, explicit port) keeps them.
    seen: dict[str, dict[str, str]] = {}

    def record(name: str, response: Response) -> Route:
        def route(path: str, headers: dict[str, str]) -> Response:
            seen[name] = headers
            return response
        return route

    both = pki.pinned_int.issue_leaf(HOST, "mirror.test")
    with https_server(leaf=both) as origin, https_server(leaf=both) as other:
        # Both names are 127.0.0.1: "other host, same port" reaches the origin's server by its
        # other name, so only the host differs.
        away = other.url("/away") if hop == "other port, same host" else origin.url("/away", "mirror.test")
        origin.routes.update({
            "/u": record("first", Response(302, headers={"Location": origin.url("/same", "UPDATES.test.")})),
            "/same": record("same origin", Response(302, headers={"Location": away})),
            "/away": record("away", Response(302, headers={"Location": origin.url("/back")})),
            "/back": record("back home", Response(200, payload)),
        })
        other.routes["/away"] = origin.routes["/away"]
        fetch_update(origin.url("/u"), tmp_path / "u", config=two_host_config, headers=CREDENTIALS)
    for kept in ("first", "same origin"):
        assert all(seen[kept].get(k.lower()) == v for k, v in CREDENTIALS.items()), kept
    for dropped in ("away", "back home"):
        assert not {k.lower() for k in CREDENTIALS} & set(seen[dropped]), dropped
