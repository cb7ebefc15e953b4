"""One contract, every integration (issue 16 §2): the same pin scenarios, over real loopback TLS,
through the urllib3 PinningPoolManager, the requests PinningAdapter, the TUF PinnedFetcher and the
httpx transports (sync and async).

The contract: a connection whose verified chain the pins refuse carries no request byte, and the
caller gets the pinclient error, either raised as it is (urllib3, requests) or as the ``__cause__``
of the library's own error (tuf's ``DownloadError``, httpx's ``ConnectError``); an accepted chain
gets the payload. Redirects are followed by each library and every new host is checked again; a
proxy only carries the CONNECT tunnel, and the pins judge the origin inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import urllib3

from pinclient import PinclientError, PinViolation, load_pins
from pinclient._demo import LoopbackServer, Response
from pinclient._pki import CA
from pinclient.config import PinConfig
from pinclient.transport import PinningPoolManager, PinningProxyManager

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins
from .hostile import ConnectProxy

Get = Callable[[PinConfig, str, "str | None"], bytes]


def via_urllib3(config: PinConfig, url: str, proxy: str | None) -> bytes:
    pm = PinningProxyManager(config, proxy) if proxy else PinningPoolManager(config)
    try:
        # retries=False would turn redirects off too: follow them, retry nothing else.
        retries = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5)
        resp = pm.request("GET", url, retries=retries, redirect=True, timeout=10)
        assert resp.status == 200, resp.status
        return bytes(resp.data)
    finally:
        pm.clear()


def via_requests(config: PinConfig, url: str, proxy: str | None) -> bytes:
    from pinclient.requests import pinned_session

    with pinned_session(config) as s:
        s.trust_env = False
        return bytes(s.get(url, proxies={"https": proxy} if proxy else {}, timeout=10).content)


def via_tuf(config: PinConfig, url: str, proxy: str | None) -> bytes:
    from pinclient.tuf import PinnedFetcher

    with PinnedFetcher(config, proxy=proxy or False, timeout=10) as fetcher:
        return b"".join(fetcher.fetch(url))


def via_httpx(config: PinConfig, url: str, proxy: str | None) -> bytes:
    import httpx

    from pinclient.httpx import PinningTransport

    with httpx.Client(transport=PinningTransport(config, proxy=proxy), follow_redirects=True) as client:
        resp = client.get(url, timeout=10)
        resp.raise_for_status()
        return resp.content


def via_httpx_async(config: PinConfig, url: str, proxy: str | None) -> bytes:
    import httpx

    from pinclient.httpx import AsyncPinningTransport

    async def get() -> bytes:
        async with httpx.AsyncClient(transport=AsyncPinningTransport(config, proxy=proxy),
                                     follow_redirects=True) as client:
            resp = await client.get(url, timeout=10)
            resp.raise_for_status()
            return resp.content

    return asyncio.run(get())


INTEGRATIONS: dict[str, tuple[Get, str | None]] = {
    "urllib3": (via_urllib3, None),
    "requests": (via_requests, "requests"),
    "tuf": (via_tuf, "tuf"),
    "httpx": (via_httpx, "httpx"),
    "httpx-async": (via_httpx_async, "httpx"),
}


@dataclass
class Scene:
    """What one scenario serves and expects: the URL to GET, the refusal reason (None: accepted),
    and the servers that must never see a request byte."""

    config: PinConfig
    url: str
    reason: str | None
    untouched: list[LoopbackServer] = field(default_factory=list)
    proxy: ConnectProxy | None = None


def config_for(pki: PKI, tmp_path: Path, issuer_pin: CA | None = None, extra: str = "") -> PinConfig:
    body = pinset("example-updates", [HOST], f'{{ spki_sha256 = "{pki.pin_of(issuer_pin or pki.pinned_root)}" }}')
    return load_pins(write_pins(tmp_path / "cfg", body + extra, bundle=pki.bundle))


def accept(pki: PKI, tmp_path: Path, serve: ServeHTTPS, payload: bytes, stack: Any) -> Scene:
    return Scene(config_for(pki, tmp_path), serve({"/u": payload}).url("/u"), None)


def comodo_replay(pki: PKI, tmp_path: Path, serve: ServeHTTPS, payload: bytes, stack: Any) -> Scene:
    s = serve({"/u": payload}, issuer=pki.rogue_root)
    return Scene(config_for(pki, tmp_path), s.url("/u"), "unexpected-issuer", [s])


def padded_chain(pki: PKI, tmp_path: Path, serve: ServeHTTPS, payload: bytes, stack: Any) -> Scene:
    # CVE-2016-2402: the pinned CAs appended to the rogue chain; only the verified chain counts.
    s = serve({"/u": payload}, issuer=pki.rogue_root, include_root=True,
              extra=[pki.pinned_int.cert, pki.pinned_root.cert])
    return Scene(config_for(pki, tmp_path), s.url("/u"), "unexpected-issuer", [s])


def impostor(pki: PKI, tmp_path: Path, serve: ServeHTTPS, payload: bytes, stack: Any) -> Scene:
    # A sub-CA of the rogue root with the pinned intermediate's subject and its own key.
    fake = CA("ignored", parent=pki.rogue_root, subject=pki.pinned_int.cert.subject)
    s = serve({"/u": payload}, leaf=fake.issue_leaf(HOST))
    return Scene(config_for(pki, tmp_path, pki.pinned_int), s.url("/u"), "unexpected-issuer", [s])


def blocked_serial(pki: PKI, tmp_path: Path, serve: ServeHTTPS, payload: bytes, stack: Any) -> Scene:
    leaf = pki.pinned_int.issue_leaf(HOST, serial=0x9239D5348F40D1695A745470E1F23F43)
    issuer = pki.pinned_int.cert.subject.rfc4514_string()
    extra = (f'[[blocked]]\nissuer = "{issuer}"\nserial = "0x9239D5348F40D1695A745470E1F23F43"\n'
             'reason = "Comodo RA compromise"\n')
    s = serve({"/u": payload}, leaf=leaf)
    return Scene(config_for(pki, tmp_path, extra=extra), s.url("/u"), "blocked", [s])


def unpinned_host(pki: PKI, tmp_path: Path, serve: ServeHTTPS, payload: bytes, stack: Any) -> Scene:
    s = serve({"/u": payload}, host="elsewhere.test")
    return Scene(config_for(pki, tmp_path), s.url("/u", "elsewhere.test"), "unpinned", [s])


def redirect_to_unpinned(pki: PKI, tmp_path: Path, serve: ServeHTTPS, payload: bytes, stack: Any) -> Scene:
    other = serve({"/u": payload}, host="elsewhere.test")
    origin = serve({"/u": Response(302, headers={"Location": other.url("/u", "elsewhere.test")})})
    return Scene(config_for(pki, tmp_path), origin.url("/u"), "unpinned", [other])


def proxy_accept(pki: PKI, tmp_path: Path, serve: ServeHTTPS, payload: bytes, stack: Any) -> Scene:
    # The proxy's own certificate comes from the rogue root: verified, never pinned.
    proxy = stack.enter_context(ConnectProxy(pki.rogue_root.issue_leaf("proxy.test")))
    return Scene(config_for(pki, tmp_path), serve({"/u": payload}).url("/u"), None, proxy=proxy)


def proxy_comodo_replay(pki: PKI, tmp_path: Path, serve: ServeHTTPS, payload: bytes, stack: Any) -> Scene:
    # The proxy's certificate is from the pinned CA: that must not let the rogue origin pass.
    proxy = stack.enter_context(ConnectProxy(pki.pinned_int.issue_leaf("proxy.test")))
    s = serve({"/u": payload}, issuer=pki.rogue_root)
    return Scene(config_for(pki, tmp_path), s.url("/u"), "unexpected-issuer", [s], proxy)


SCENES = {f.__name__.replace("_", "-"): f for f in (
    accept, comodo_replay, padded_chain, impostor, blocked_serial, unpinned_host, redirect_to_unpinned,
    proxy_accept, proxy_comodo_replay)}


def pinclient_cause(error: BaseException) -> PinclientError | None:
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, PinclientError):
        seen = seen.__cause__
    return seen


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as s:
        yield s


@pytest.mark.parametrize("integration", list(INTEGRATIONS))
@pytest.mark.parametrize("scene", list(SCENES))
def test_pin_scenario_through_every_integration(scene: str, integration: str, pki: PKI, tmp_path: Path,
                                                payload: bytes, https_server: ServeHTTPS,
                                                stack: contextlib.ExitStack) -> None:
    get, extra = INTEGRATIONS[integration]
    if extra:
        pytest.importorskip(extra)
    s = SCENES[scene](pki, tmp_path, https_server, payload, stack)
    proxy = s.proxy.url if s.proxy else None
    if s.reason is None:
        assert get(s.config, s.url, proxy) == payload
    else:
        with pytest.raises(Exception) as info:  # noqa: PT011 - each library has its own wrapper
            get(s.config, s.url, proxy)
        cause = pinclient_cause(info.value)
        assert isinstance(cause, PinViolation), f"{integration}: {info.value!r} is not caused by a PinViolation"
        assert cause.reason == s.reason
        for server in s.untouched:
            server.wait_idle()
            assert all(c.received == b"" for c in server.conns), "not one request byte"
    if s.proxy is not None:
        assert [t.target.split(":")[0] for t in s.proxy.tunnels] == [HOST], "the origin went through the tunnel"
