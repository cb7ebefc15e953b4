"""pinclient.aio.fetch_update over real loopback TLS: the same results and errors as the sync call,
built on AsyncPinningTransport; a cancelled download leaves DEST as it was and a part that the
next run (sync or async) resumes."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("httpx")

import pinclient
from pinclient import HashMismatch, PinViolation, load_pins
from pinclient import minisign as ms
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


# --------------------------------------------------------------------------- mirrors (urls=)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback listener that never accepts: the TLS handshake waits forever."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("failure", ["refused", "503"])
def test_a_failing_mirror_is_skipped_and_the_result_names_the_one_that_served(
        root_pinned_config: PinConfig, tmp_path: Path, payload: bytes, https_server: ServeHTTPS,
        closed_port: int, failure: str) -> None:
    dest = tmp_path / "u"
    with https_server({"/u": Response(503, b"busy")}) as bad, https_server({"/u": payload}) as good:
        first = f"https://{HOST}:{closed_port}/u" if failure == "refused" else bad.url("/u")
        result = asyncio.run(fetch_update(first, dest, urls=[good.url("/u")], config=root_pinned_config,
                                          sha256=sha(payload), retries=0))
    assert dest.read_bytes() == payload
    assert (result.mirror, result.url) == (good.url("/u"), good.url("/u"))
    assert [m for m, _, _ in result.failed_mirrors] == [first]
    assert result.failed_mirrors[0][1] == ("NetworkError" if failure == "refused" else "HTTPStatusError")


def test_a_mirror_whose_pins_are_violated_is_refused_and_the_next_tried(
        pki: PKI, root_pinned_config: PinConfig, tmp_path: Path, payload: bytes, https_server: ServeHTTPS,
        caplog: pytest.LogCaptureFixture) -> None:
    rogue_seen, good_seen = Seen(), Seen()
    dest = tmp_path / "u"
    with https_server({"/u": ranged(b"malware", rogue_seen)}, issuer=pki.rogue_root) as rogue, \
            https_server({"/u": ranged(payload, good_seen)}) as good:
        result = asyncio.run(fetch_update(rogue.url("/u"), dest, urls=[good.url("/u")],
                                          config=root_pinned_config, retries=0))
        assert rogue.handshakes >= 1
    assert rogue_seen.requests == [], "not a request byte to the mirror the pins refused"
    assert dest.read_bytes() == payload
    assert result.mirror == good.url("/u")
    assert result.failed_mirrors[0][:2] == (rogue.url("/u"), "PinViolation")
    assert any(f"mirror {rogue.url('/u')} failed" in r.getMessage() for r in caplog.records)


def test_when_every_mirror_fails_the_pin_violation_is_raised_naming_all(
        pki: PKI, root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS,
        closed_port: int) -> None:
    dest = tmp_path / "u"
    dest.write_bytes(b"old")
    dead = f"https://{HOST}:{closed_port}/u"
    with https_server({"/u": b"malware"}, issuer=pki.rogue_root) as rogue, pytest.raises(PinViolation) as info:
        asyncio.run(fetch_update(dead, dest, urls=[rogue.url("/u")], config=root_pinned_config, retries=0))
    assert info.value.message.startswith("all 2 mirrors failed")
    assert dead in info.value.message
    assert rogue.url("/u") in info.value.message
    assert dest.read_bytes() == b"old"


def test_an_integrity_failure_ends_the_fetch_without_trying_other_mirrors(
        root_pinned_config: PinConfig, tmp_path: Path, payload: bytes, https_server: ServeHTTPS) -> None:
    seen = Seen()
    with https_server({"/u": b"stale file"}) as stale, https_server({"/u": ranged(payload, seen)}) as good, \
            pytest.raises(HashMismatch):
        asyncio.run(fetch_update(stale.url("/u"), tmp_path / "u", urls=[good.url("/u")],
                                 config=root_pinned_config, sha256=sha(payload), retries=0))
    assert seen.requests == []


@pytest.mark.parametrize(("etag", "continued"), [('"v1"', True), ('"other"', False)])
def test_a_part_from_one_mirror_continues_on_another_only_with_the_same_validator(
        root_pinned_config: PinConfig, tmp_path: Path, payload: bytes, https_server: ServeHTTPS,
        etag: str, continued: bool) -> None:
    first, second = Seen(), Seen()
    dest = tmp_path / "u"
    with https_server({"/u": ranged(payload, first, drop_after={0: 1000})}) as a, \
            https_server({"/u": ranged(payload, second, etag=etag)}) as b:
        result = asyncio.run(fetch_update(a.url("/u"), dest, urls=[b.url("/u")], config=root_pinned_config,
                                          sha256=sha(payload), retries=0))
    assert dest.read_bytes() == payload
    assert result.mirror == b.url("/u")
    kept = result.resumed_from if continued else 1000  # the first mirror was cut after 1000 bytes
    assert second.ranges[0] == f"bytes={kept}-", "the rest is asked for, under If-Range"
    assert second.requests[0]["if-range"] == '"v1"'
    assert (result.resumed_from > 0) is continued


def test_a_mirror_that_answers_a_range_without_a_validator_is_not_spliced_in(
        root_pinned_config: PinConfig, tmp_path: Path, payload: bytes, https_server: ServeHTTPS) -> None:
    # The second mirror serves another file and answers any Range with 206, ignoring If-Range and
    # sending no validator. No hash is given: only the same-validator rule keeps the files apart.
    other = bytes(reversed(payload))
    asked: list[str | None] = []

    def careless(path: str, headers: dict[str, str]) -> Response:
        asked.append(headers.get("range"))
        if headers.get("range"):
            start = int(headers["range"][6:].split("-")[0])
            return Response(206, other[start:], headers={
                "Content-Range": f"bytes {start}-{len(other) - 1}/{len(other)}"})
        return Response(200, other)

    dest = tmp_path / "u"
    with https_server({"/u": ranged(payload, Seen(), drop_after={0: 1000})}) as a, \
            https_server({"/u": careless}) as b:
        result = asyncio.run(fetch_update(a.url("/u"), dest, urls=[b.url("/u")], config=root_pinned_config,
                                          retries=0))
    assert asked[0] is not None
    assert asked[-1] is None, "the 206 was refused and the whole file asked for"
    assert dest.read_bytes() == other
    assert result.resumed_from == 0


def test_mirrors_that_need_different_signing_keys_are_refused_before_connecting(
        pki: PKI, tmp_path: Path, closed_port: int) -> None:
    key = ms.SecretKey(key_id=bytes.fromhex("0102030405060708"), seed=b"\x11" * 32)
    body = pinset("signed", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'signing_keys = ["{key.public_key.to_string()}"]\n'
    body += pinset("plain", ["mirror.test"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(write_pins(tmp_path / "cfg", body, bundle=pki.bundle))
    with pytest.raises(pinclient.UsageError, match="different signing keys"):
        asyncio.run(fetch_update(f"https://{HOST}:{closed_port}/u", tmp_path / "u", config=config,
                                 urls=[f"https://mirror.test:{closed_port}/u"]))


def test_every_mirror_is_bounded_by_the_one_deadline(root_pinned_config: PinConfig, tmp_path: Path,
                                                     silent_port: int) -> None:
    dead = f"https://{HOST}:{silent_port}/u"
    start = time.monotonic()
    with pytest.raises(pinclient.NetworkError):
        asyncio.run(fetch_update(dead, tmp_path / "u", urls=[dead + "?2"], config=root_pinned_config,
                                 deadline=1.0, retries=0))
    assert time.monotonic() - start < 3.0, "the deadline covers all mirrors together"
    gc.collect()  # a socket left open by the cancelled handshakes shows here as a ResourceWarning


# --------------------------------------------------------------------------- max_rate (--limit-rate)


def test_max_rate_paces_the_body_within_ten_percent(root_pinned_config: PinConfig, tmp_path: Path,
                                                    https_server: ServeHTTPS) -> None:
    limit = 256 * 1024
    data = os.urandom(3 * limit)
    with https_server({"/u": Response(200, data)}) as s:
        started = time.monotonic()
        asyncio.run(fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, sha256=sha(data),
                                 max_rate=limit))
        took = time.monotonic() - started
    rate = len(data) / took
    assert 0.90 * limit <= rate <= 1.10 * limit, f"{rate:.0f} bytes/s against a limit of {limit}"
    assert (tmp_path / "u").read_bytes() == data


def test_max_rate_waits_are_bounded_by_the_deadline(root_pinned_config: PinConfig, tmp_path: Path,
                                                    https_server: ServeHTTPS) -> None:
    data = os.urandom(1024 * 1024)
    with https_server({"/u": Response(200, data)}) as s:
        started = time.monotonic()
        with pytest.raises(pinclient.NetworkError, match="deadline") as info:
            asyncio.run(fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, max_rate=2_000,
                                     min_rate=0, deadline=1.0, retries=0))
        took = time.monotonic() - started
    assert info.value.exit_code == 6
    assert took < 4, "the rate limit's pause overran the deadline"
    assert not (tmp_path / "u").exists()


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
