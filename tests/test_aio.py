"""pinclient.aio.fetch_update over real loopback TLS: the same results and errors as the sync call,
built on AsyncPinningTransport; a cancelled download leaves DEST as it was and a part that the
next run (sync or async) resumes."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("httpx")

import pinclient
from pinclient import HashMismatch, PinViolation, load_pins
from pinclient._demo import Response
from pinclient.aio import fetch_update
from pinclient.config import PinConfig

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins
from .hostile import Seen, ranged, trickle


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_verified_download_gives_the_sync_result(pki: PKI, root_pinned_config: PinConfig, tmp_path: Path,
                                                 payload: bytes, https_server: ServeHTTPS) -> None:
    dest = tmp_path / "u"
    with https_server({"/u": payload}) as server:
        result = asyncio.run(fetch_update(server.url("/u"), dest, config=root_pinned_config,
                                          sha256=sha(payload), size=len(payload)))
    assert dest.read_bytes() == payload
    assert isinstance(result, pinclient.FetchResult)
    assert (result.size, result.sha256, result.status, result.attempts) == (len(payload), sha(payload), 200, 1)
    assert result.pinset == "example-updates"
    assert result.chain[-1].spki_sha256 == pki.pin_of(pki.pinned_root)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg", "u"], "no side file left behind"


def test_comodo_replay_raises_the_pin_violation_and_leaves_dest(pki: PKI, root_pinned_config: PinConfig,
                                                                tmp_path: Path, payload: bytes,
                                                                https_server: ServeHTTPS) -> None:
    dest = tmp_path / "u"
    dest.write_bytes(b"old")
    with https_server({"/u": payload}, issuer=pki.rogue_root) as server:
        with pytest.raises(PinViolation) as info:
            asyncio.run(fetch_update(server.url("/u"), dest, config=root_pinned_config, retries=3))
        server.wait_idle()
    assert info.value.reason == "unexpected-issuer"
    assert info.value.port == server.port
    assert server.handshakes == 1, "a pin violation is not retried"
    assert all(c.received == b"" for c in server.conns)
    assert dest.read_bytes() == b"old"


def test_redirect_to_an_unpinned_host_is_refused_before_connecting(root_pinned_config: PinConfig,
                                                                   tmp_path: Path, payload: bytes,
                                                                   https_server: ServeHTTPS) -> None:
    with https_server({"/u": payload}, host="elsewhere.test") as other:
        routes = {"/u": Response(302, headers={"Location": other.url("/u", "elsewhere.test")})}
        with https_server(routes) as origin, pytest.raises(PinViolation) as info:
            asyncio.run(fetch_update(origin.url("/u"), tmp_path / "u", config=root_pinned_config))
    assert info.value.reason == "unpinned"
    assert other.handshakes == 0
    assert not (tmp_path / "u").exists()


def test_hash_mismatch_leaves_dest_untouched(root_pinned_config: PinConfig, tmp_path: Path, payload: bytes,
                                             https_server: ServeHTTPS) -> None:
    dest = tmp_path / "u"
    dest.write_bytes(b"old")
    with https_server({"/u": payload}) as server, pytest.raises(HashMismatch):
        asyncio.run(fetch_update(server.url("/u"), dest, config=root_pinned_config, sha256="0" * 64))
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg", "u"]


def test_a_body_over_the_size_limit_is_cut_off(root_pinned_config: PinConfig, tmp_path: Path, payload: bytes,
                                               https_server: ServeHTTPS) -> None:
    with https_server({"/u": Response(200, lambda: iter([payload]), content_length=None)}) as server, \
            pytest.raises(pinclient.SizeError):
        asyncio.run(fetch_update(server.url("/u"), tmp_path / "u", config=root_pinned_config, max_size=1000))
    assert not (tmp_path / "u").exists()


def test_cancellation_keeps_dest_and_a_part_the_next_run_resumes(root_pinned_config: PinConfig,
                                                                  tmp_path: Path, payload: bytes,
                                                                  https_server: ServeHTTPS) -> None:
    dest = tmp_path / "u"
    dest.write_bytes(b"old")
    half = len(payload) // 2
    release = threading.Event()
    seen = Seen()
    resume = ranged(payload, seen)

    def stalls() -> Iterator[bytes]:
        yield payload[:half]
        release.wait(10)  # until the test is done with the first request

    def route(path: str, headers: dict[str, str]) -> Response:
        if not seen.requests:
            seen.requests.append(headers)
            return Response(200, stalls, headers={"ETag": '"v1"'}, content_length=len(payload))
        return resume(path, headers)

    part = tmp_path / ".u.pinclient-part"

    async def cancel_half_way() -> None:
        task = asyncio.create_task(fetch_update(server.url("/u"), dest, config=root_pinned_config,
                                                sha256=sha(payload)))
        for _ in range(500):
            if part.exists() and part.stat().st_size >= half:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with https_server({"/u": route}) as server:
        asyncio.run(cancel_half_way())
        release.set()
        assert dest.read_bytes() == b"old", "a cancelled fetch never touches DEST"
        assert part.stat().st_size == half
        result = pinclient.fetch_update(server.url("/u"), dest, config=root_pinned_config, sha256=sha(payload))
    assert dest.read_bytes() == payload
    assert result.resumed_from == half
    assert seen.ranges[1] == f"bytes={half}-"


def test_a_resume_run_by_aio_continues_a_part_left_by_aio(root_pinned_config: PinConfig, tmp_path: Path,
                                                          payload: bytes, https_server: ServeHTTPS) -> None:
    seen = Seen()
    dest = tmp_path / "u"
    # The first request is cut after 1000 bytes and retried: the retry asks for the rest.
    with https_server({"/u": ranged(payload, seen, drop_after={0: 1000})}) as server:
        result = asyncio.run(fetch_update(server.url("/u"), dest, config=root_pinned_config,
                                          sha256=sha(payload), retries=2))
    assert dest.read_bytes() == payload
    assert seen.ranges == [None, "bytes=1000-"]
    assert result.attempts == 2


def test_a_mirror_pinned_elsewhere_in_the_same_config_is_fetched(pki: PKI, tmp_path: Path, payload: bytes,
                                                                 https_server: ServeHTTPS) -> None:
    body = pinset("x", [HOST, "mirror.test"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    with https_server({"/u": payload}, host="mirror.test") as mirror:
        routes = {"/u": Response(302, headers={"Location": mirror.url("/u", "mirror.test")})}
        with https_server(routes) as origin:
            result = asyncio.run(fetch_update(origin.url("/u"), tmp_path / "u", config=config))
    assert result.url == mirror.url("/u", "mirror.test")
    assert (tmp_path / "u").read_bytes() == payload


def test_max_rate_is_refused_not_ignored(root_pinned_config: PinConfig, tmp_path: Path) -> None:
    with pytest.raises(pinclient.UsageError, match="max_rate"):
        asyncio.run(fetch_update("https://updates.test/u", tmp_path / "u", config=root_pinned_config,
                                 max_rate=1000))


def test_the_deadline_bounds_a_dripping_body(root_pinned_config: PinConfig, tmp_path: Path, payload: bytes,
                                             https_server: ServeHTTPS) -> None:
    stop = threading.Event()
    body = trickle(payload, 0.05, stop)
    with https_server({"/u": Response(200, body, content_length=len(payload))}) as server:
        start = time.monotonic()
        with pytest.raises(pinclient.NetworkError, match="deadline"):
            asyncio.run(fetch_update(server.url("/u"), tmp_path / "u", config=root_pinned_config,
                                     deadline=1, read_timeout=5))
        elapsed = time.monotonic() - start
        stop.set()
    assert elapsed < 4, f"the 1 s deadline took {elapsed:.1f} s"
    assert not (tmp_path / "u").exists()
