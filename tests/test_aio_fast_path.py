"""The async download's fast path (issue 18): the records a socket read already brought in are
handed to httpcore together (``_tls.received_records``), never by waiting for more; and the body is
hashed and written through the sync download's buffers, with every byte and check kept. Real
loopback TLS throughout."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
import anyio  # noqa: E402  (installed with httpx)

from pinclient import SizeError  # noqa: E402
from pinclient._demo import LoopbackServer, Response  # noqa: E402
from pinclient.aio import fetch_update  # noqa: E402
from pinclient.config import PinConfig  # noqa: E402
from pinclient.httpx import AsyncPinningTransport  # noqa: E402

from .conftest import ServeHTTPS  # noqa: E402

RECORD = 4096
RECORDS = 5
MiB = 1024 * 1024

needs_cork = pytest.mark.skipif(not hasattr(socket, "TCP_CORK"), reason="needs Linux's TCP_CORK")


class Stepped:
    """A server answer in two steps: the head and RECORDS records of RECORD bytes sent as one TCP
    segment (corked), then, only once the client has taken those, the last record."""

    def __init__(self) -> None:
        self.taken = threading.Event()
        self.body = os.urandom((RECORDS + 1) * RECORD)

    def send(self, tls: ssl.SSLSocket, resp: Response) -> bool:
        tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        tls.sendall(f"HTTP/1.1 200 X\r\nContent-Length: {len(self.body)}\r\n\r\n".encode())
        for i in range(RECORDS):
            tls.sendall(self.body[i * RECORD:(i + 1) * RECORD])  # one TLS record each
        tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)  # out they go, together
        if self.taken.wait(20):
            tls.sendall(self.body[RECORDS * RECORD:])
        return False


@needs_cork
def test_records_already_received_come_together_and_nothing_waits_for_more(
        root_pinned_config: PinConfig, https_server: ServeHTTPS, monkeypatch: pytest.MonkeyPatch) -> None:
    stepped = Stepped()
    monkeypatch.setattr(LoopbackServer, "_send", staticmethod(stepped.send))

    async def fetch(url: str) -> list[bytes]:
        chunks: list[bytes] = []
        async with httpx.AsyncClient(transport=AsyncPinningTransport(root_pinned_config)) as client:
            # A read that waited for more than was received would wait for the last record, which
            # the server sends only after this first chunk: the timeout turns that into a failure.
            with anyio.fail_after(15):
                async with client.stream("GET", url) as resp:
                    async for chunk in resp.aiter_raw():
                        chunks.append(chunk)
                        stepped.taken.set()
        return chunks

    with https_server({"/u": Response(200, b"")}) as s:
        chunks = asyncio.run(fetch(s.url("/u")))
    assert b"".join(chunks) == stepped.body
    # Without the batching each record is a chunk of its own: RECORDS + 1 chunks.
    assert len(chunks[0]) == RECORDS * RECORD, [len(c) for c in chunks]
    assert len(chunks) == 2


@pytest.mark.parametrize("size", [1, RECORD * 3 + 1, MiB - 1, MiB, 3 * MiB + 5])
def test_async_download_keeps_every_byte_around_the_buffer_edges(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS, size: int) -> None:
    data = os.urandom(size)
    with https_server({"/u": Response(200, data)}) as s:
        result = asyncio.run(fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config,
                                          sha256=hashlib.sha256(data).hexdigest()))
    assert result.size == size
    assert (tmp_path / "u").read_bytes() == data


def test_async_size_cap_still_stops_inside_a_batched_chunk(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    # No Content-Length (close-delimited), so the cap is met inside the body, in a batched chunk
    # that crosses it, past a full 1 MiB buffer: not refused up front from a declared length.
    data = os.urandom(2 * MiB)
    dest = tmp_path / "u"
    dest.write_bytes(b"old")
    body = Response(200, lambda: iter([data]), content_length=None)
    with https_server({"/u": body}) as s, pytest.raises(SizeError, match=f"more than {MiB + 7} bytes"):
        asyncio.run(fetch_update(s.url("/u"), dest, config=root_pinned_config, max_size=MiB + 7))
    assert dest.read_bytes() == b"old"


def _serve_once(server: Any) -> None:
    """Give ``server`` a loopback listener (``listener``, ``port``) and a thread running its
    ``_serve`` for one connection (``thread``)."""
    server.listener = socket.create_server(("127.0.0.1", 0))
    server.port = server.listener.getsockname()[1]
    server.thread = threading.Thread(target=server._serve, daemon=True)
    server.thread.start()


class CorruptingServer:
    """One HTTPS answer whose last TLS record is corrupted in flight, sent in the same TCP segment as
    the good records before it: the batching reads the good ones and meets the bad one. TLS runs
    over memory BIOs so that the ciphertext can be changed (one byte of the last record's tag)."""

    def __init__(self, context: ssl.SSLContext, records: list[bytes], *, split: bool) -> None:
        self.context, self.records, self.split = context, records, split
        _serve_once(self)

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.context.wrap_bio(incoming, outgoing, server_side=True)

        def pump(step: Any) -> Any:
            while True:
                try:
                    return step()
                except ssl.SSLWantReadError:
                    if outgoing.pending:
                        conn.sendall(outgoing.read())
                    data = conn.recv(65536)
                    if not data:
                        raise ConnectionError("client went away") from None
                    incoming.write(data)

        try:
            pump(tls.do_handshake)
            conn.sendall(outgoing.read())
            request = b""
            while b"\r\n\r\n" not in request:
                request += pump(lambda: tls.read(65536))
            body_size = sum(len(r) for r in self.records)
            tls.write(f"HTTP/1.1 200 X\r\nContent-Length: {body_size}\r\n\r\n".encode())
            wire = outgoing.read()
            for i, record in enumerate(self.records):
                tls.write(record)
                sealed = bytearray(outgoing.read())
                if i == len(self.records) - 1:
                    sealed[-1] ^= 0x01  # the last byte of the AEAD tag
                    if self.split:  # the bad record in a later segment: a read of its own
                        conn.sendall(wire)
                        wire = b""
                        time.sleep(0.3)
                wire += bytes(sealed)
            conn.sendall(wire)
            conn.recv(65536)  # until the client hangs up
        except OSError:
            pass
        finally:
            conn.close()
            self.listener.close()


@pytest.mark.parametrize(("good_records", "split"), [(0, False), (3, False), (3, True)])
def test_a_corrupted_record_fails_closed_batched_or_not(
        pki: Any, root_pinned_config: PinConfig, tmp_path: Path, good_records: int, split: bool) -> None:
    # Batched (the bad record in the same segment as good ones) or read on its own, where anyio's
    # raw ssl.SSLError used to escape pinclient.aio untyped: a NetworkError, DEST untouched.
    error = _fetch_corrupted(pki, root_pinned_config, tmp_path, good_records + 1, split=split)
    assert error.exit_code == 6, error  # NetworkError: typed, and retried like one


def _fetch_corrupted(pki: Any, config: PinConfig, tmp_path: Path, records: int, *, split: bool) -> Any:
    """The async download's error for a body of ``records`` records whose last one is corrupted;
    DEST is checked to be untouched."""
    from pinclient import PinclientError

    from .conftest import HOST

    body = [os.urandom(RECORD) for _ in range(records)]
    server = CorruptingServer(pki.pinned_int.issue_leaf(HOST).server_context(), body, split=split)
    dest = tmp_path / "u"
    dest.write_bytes(b"old")
    with pytest.raises(PinclientError) as caught:
        asyncio.run(fetch_update(f"https://{HOST}:{server.port}/u", dest, config=config,
                                 sha256=hashlib.sha256(b"".join(body)).hexdigest(), retries=0,
                                 resume=False))
    assert dest.read_bytes() == b"old"
    server.thread.join(10)
    return caught.value


@pytest.mark.parametrize("split", [False, True])
def test_a_corrupted_record_fails_closed_in_the_sync_download_too(
        pki: Any, root_pinned_config: PinConfig, tmp_path: Path, split: bool) -> None:
    # The sync direct reads (pinclient._download.body) meet the same record: urllib3's SSLError,
    # then a NetworkError.
    from pinclient import NetworkError
    from pinclient import fetch_update as fetch_sync

    from .conftest import HOST

    records = [os.urandom(RECORD) for _ in range(12)]  # past http.client's buffer: direct reads
    server = CorruptingServer(pki.pinned_int.issue_leaf(HOST).server_context(), records, split=split)
    dest = tmp_path / "u"
    dest.write_bytes(b"old")
    with pytest.raises(NetworkError):
        fetch_sync(f"https://{HOST}:{server.port}/u", dest, config=root_pinned_config,
                   sha256=hashlib.sha256(b"".join(records)).hexdigest(), retries=0, resume=False)
    assert dest.read_bytes() == b"old"
    server.thread.join(10)


# ------------------------------------------------------------ the direct reads (_download.aiobody)


@pytest.fixture
def fills(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts of every direct read (``TLSBody.fill``), to prove a test ran through them."""
    from pinclient._download import aiobody

    counts: list[int] = []
    real = aiobody.TLSBody.fill

    def fill(self: aiobody.TLSBody, view: memoryview) -> int:
        n = real(self, view)
        counts.append(n)
        return n

    monkeypatch.setattr(aiobody.TLSBody, "fill", fill)
    return counts


def test_the_rest_of_a_content_length_body_is_read_below_httpcore(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS, fills: list[int]) -> None:
    # The first chunk through httpx (h11 hands over what it buffered with the head), then direct
    # reads: every byte once, in order, across the switch and the 1 MiB buffer edges.
    data = os.urandom(3 * MiB + 12345)

    def body() -> Any:
        yield data[:1000]
        time.sleep(0.2)  # the first chunk is these 1000 bytes alone
        yield data[1000:]

    with https_server({"/u": Response(200, body, content_length=len(data))}) as s:
        result = asyncio.run(fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config,
                                          sha256=hashlib.sha256(data).hexdigest()))
    assert result.size == len(data)
    assert (tmp_path / "u").read_bytes() == data
    assert sum(fills) == len(data) - 1000, "the rest of the body came through the direct reads"


def test_after_direct_reads_the_connection_is_closed_not_reused(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS, fills: list[int]) -> None:
    # h11 never saw the bytes read below it: its connection is mid-body, so httpcore must close it
    # rather than send the next request on it (which would read the wrong bytes as an answer).
    data = os.urandom(2 * MiB)
    transport = AsyncPinningTransport(root_pinned_config)

    async def twice() -> None:
        async with transport:
            for name in ("a", "b"):
                await fetch_update(s.url("/u"), tmp_path / name, config=root_pinned_config,
                                   sha256=hashlib.sha256(data).hexdigest(), transport=transport)

    with https_server({"/u": Response(200, data)}) as s:
        asyncio.run(twice())
        assert s.handshakes == 2
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == data
    assert sum(fills) > 2 * MiB


class ShortServer:
    """One answer declaring ``length`` bytes that sends ``sent`` and then ends the connection: with
    close_notify (``notify``), without it, or not at all (``stall``: keeps it open, silent)."""

    def __init__(self, context: ssl.SSLContext, length: int, sent: int, end: str) -> None:
        self.context, self.length, self.sent, self.end = context, length, sent, end
        self.release = threading.Event()
        _serve_once(self)

    def _serve(self) -> None:
        raw, _ = self.listener.accept()
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                while b"\r\n\r\n" not in tls.recv(65536):
                    pass
                tls.sendall(f"HTTP/1.1 200 X\r\nContent-Length: {self.length}\r\nETag: \"v1\"\r\n\r\n".encode())
                tls.sendall(b"x" * 1000)
                time.sleep(0.2)  # the first chunk is these 1000 bytes: the rest is read directly
                tls.sendall(b"x" * (self.sent - 1000))
                if self.end == "notify":
                    tls.unwrap().close()
                elif self.end == "stall":
                    self.release.wait(20)
        except OSError:
            pass
        finally:
            self.listener.close()


@pytest.mark.parametrize("end", ["notify", "ragged"])
def test_a_body_cut_short_in_the_direct_reads_fails_and_keeps_what_arrived(
        pki: Any, root_pinned_config: PinConfig, tmp_path: Path, fills: list[int], end: str) -> None:
    from pinclient import NetworkError

    from .conftest import HOST

    length, sent = 3 * MiB, 2 * MiB + 7
    server = ShortServer(pki.pinned_int.issue_leaf(HOST).server_context(), length, sent, end)
    dest = tmp_path / "u"
    with pytest.raises(NetworkError, match=f"{sent}.*{length}|{length}.*{sent}"):
        asyncio.run(fetch_update(f"https://{HOST}:{server.port}/u", dest, config=root_pinned_config,
                                 sha256="0" * 64, retries=0, deadline=30))
    assert not dest.exists()
    assert (tmp_path / ".u.pinclient-part").stat().st_size == sent, "every byte that arrived is kept"
    assert sum(fills) == sent - 1000
    server.thread.join(10)


def test_a_stall_in_the_direct_reads_meets_the_read_timeout(
        pki: Any, root_pinned_config: PinConfig, tmp_path: Path, fills: list[int]) -> None:
    from pinclient import NetworkError

    from .conftest import HOST

    sent = 2 * MiB
    server = ShortServer(pki.pinned_int.issue_leaf(HOST).server_context(), 3 * MiB, sent, "stall")
    started = time.monotonic()
    try:
        with pytest.raises(NetworkError, match="timed out"):
            asyncio.run(fetch_update(f"https://{HOST}:{server.port}/u", tmp_path / "u",
                                     config=root_pinned_config, sha256="0" * 64, retries=0,
                                     read_timeout=0.5, deadline=30))
        took = time.monotonic() - started
    finally:
        server.release.set()
    assert took < 10, f"a 0.5 s read timeout took {took:.1f} s"
    assert (tmp_path / ".u.pinclient-part").stat().st_size == sent
    assert sum(fills) == sent - 1000
    server.thread.join(10)


def test_a_corrupted_record_after_the_switch_to_direct_reads_fails_closed(
        pki: Any, root_pinned_config: PinConfig, tmp_path: Path, fills: list[int]) -> None:
    # 300 records of 4 KiB: well past the first chunk
    error = _fetch_corrupted(pki, root_pinned_config, tmp_path, 300, split=True)
    assert error.exit_code == 6, error
    assert "TLS error" in str(error)
    assert sum(fills) > 0


def test_the_minimum_rate_holds_in_the_direct_reads(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS, fills: list[int]) -> None:
    from pinclient import NetworkError

    stop = threading.Event()
    data = os.urandom(MiB)

    def body() -> Any:
        yield data[:1000]
        time.sleep(0.2)
        yield data[1000:]
        while not stop.wait(0.1):  # then a trickle of 10 bytes/s, each byte within the read timeout
            yield b"x"

    with https_server({"/u": Response(200, body, content_length=2 * MiB)}) as s:
        started = time.monotonic()
        try:
            with pytest.raises(NetworkError, match="below the minimum"):
                asyncio.run(fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config,
                                         sha256="0" * 64, retries=0, min_rate=1000, rate_window=1,
                                         read_timeout=5, deadline=30))
            took = time.monotonic() - started
        finally:
            stop.set()
    assert took < 10, took
    assert sum(fills) >= MiB - 1000


def test_a_resumed_body_is_read_directly_and_joins_the_part_exactly(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS, fills: list[int]) -> None:
    # The first answer drops the connection after 1 MiB + 3; the retry asks for the rest (206),
    # whose declared length is the rest alone: the direct reads must count from the part's end.
    from .hostile import Seen, ranged

    data = os.urandom(3 * MiB)
    seen = Seen()
    cut = MiB + 3
    with https_server({"/u": ranged(data, seen, drop_after={0: cut})}) as s:
        result = asyncio.run(fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config,
                                          sha256=hashlib.sha256(data).hexdigest(), retries=1))
    assert (tmp_path / "u").read_bytes() == data
    assert result.resumed_from == cut
    assert seen.ranges == [None, f"bytes={cut}-"]
    assert sum(fills) >= len(data) - cut - 65536


@pytest.mark.parametrize("tls_proxy", [False, True], ids=["http-proxy", "https-proxy"])
def test_direct_reads_through_a_proxy_tunnel_keep_every_byte(
        tls_proxy: bool, pki: Any, root_pinned_config: PinConfig, tmp_path: Path,
        https_server: ServeHTTPS, fills: list[int]) -> None:
    # Through an https:// proxy the origin's TLS runs inside the proxy's (anyio's TLS stream over
    # another): the direct reads then feed the inner TLS from the outer stream, byte for byte.
    from .conftest import HOST
    from .hostile import ConnectProxy

    data = os.urandom(2 * MiB + 99)
    leaf = pki.rogue_root.issue_leaf("proxy.test") if tls_proxy else None
    with ConnectProxy(leaf) as proxy, https_server({"/u": Response(200, data)}) as s:
        result = asyncio.run(fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config,
                                          sha256=hashlib.sha256(data).hexdigest(), proxy=proxy.url))
    assert result.size == len(data)
    assert (tmp_path / "u").read_bytes() == data
    assert [t.target for t in proxy.tunnels] == [f"{HOST}:{s.port}"]
    assert sum(fills) > MiB


@pytest.mark.parametrize(("headers", "length"), [
    ({"Content-Length": "12"}, 12),
    ({"Content-Length": "0"}, 0),
    ({}, None),
    ({"Content-Length": "12", "Transfer-Encoding": "chunked"}, None),  # h11 frames by the chunks
    ({"Content-Length": "1, 1"}, None),
    ({b"Content-Length": b"\xb2"}, None),  # latin-1 superscript two: isdigit() says yes, int() raises
    ({"Content-Length": "-1"}, None),
])
def test_only_a_plain_declared_length_sends_the_body_to_the_direct_reads(
        headers: dict[Any, Any], length: int | None) -> None:
    from pinclient._download.aiobody import declared_length

    assert declared_length(httpx.Response(200, headers=headers)) == length


def test_direct_reads_let_asyncio_take_a_mebibyte_per_loop_turn(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # asyncio's transport reads 256 KiB per loop turn; a MiB took the async download's CPU per GiB
    # from ~1.25x the sync download's to ~1.0x. Only the body's own connection is changed.
    from pinclient._download import aiobody

    sizes: list[object] = []
    real = aiobody.TLSBody.receive

    async def receive(self: aiobody.TLSBody, timeout: float | None) -> None:
        sizes.append(getattr(getattr(self._transport, "_transport", None), "max_size", None))
        await real(self, timeout)

    monkeypatch.setattr(aiobody.TLSBody, "receive", receive)
    data = os.urandom(3 * MiB)
    with https_server({"/u": Response(200, data)}) as s:
        asyncio.run(fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config,
                                 sha256=hashlib.sha256(data).hexdigest()))
    assert sizes
    assert set(sizes) == {aiobody.RECEIVE_BYTES}
    assert asyncio.selector_events._SelectorSocketTransport.max_size == 256 * 1024  # type: ignore[attr-defined]


def _slow_disk(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[float]:
    """Every part-file write first sleeps ``delay[0]`` seconds (set it to 0 to end that)."""
    import pinclient._download.partfile as partfile

    real = partfile.PartFile.write
    delay = [seconds]

    def write(self: partfile.PartFile, chunk: bytes | memoryview) -> None:
        time.sleep(delay[0])  # on the hashing thread: a disk that takes its time
        real(self, chunk)

    monkeypatch.setattr(partfile.PartFile, "write", write)
    return delay


def test_a_slow_disk_never_stalls_the_event_loop(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # When all three buffers are being hashed and written, the download waits for one in a worker
    # thread: other tasks keep running (here a ticker, which would stop for each 0.3 s write).
    _slow_disk(monkeypatch, 0.3)
    data = os.urandom(6 * MiB)

    async def main(url: str) -> float:
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        try:
            await fetch_update(url, tmp_path / "u", config=root_pinned_config,
                               sha256=hashlib.sha256(data).hexdigest())
        finally:
            done.set()
            await tick
        return max(gaps)

    with https_server({"/u": Response(200, data)}) as s:
        longest = asyncio.run(main(s.url("/u")))
    assert (tmp_path / "u").read_bytes() == data
    assert longest < 0.2, f"the event loop stood still for {longest:.2f} s"


def test_a_cancellation_while_waiting_for_a_buffer_hands_none_over_twice(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Cancelled while every buffer is in flight (the wait for a free one): the buffer just handed
    # over must not be handed over again on the way out, or the part would hold a MiB twice and
    # the resume below would build a file that fails its hash.
    import pinclient

    from .hostile import Seen, ranged

    delay = _slow_disk(monkeypatch, 0.2)
    data = os.urandom(10 * MiB)
    dest = tmp_path / "u"

    async def cancel_midway(url: str) -> None:
        task = asyncio.create_task(fetch_update(url, dest, config=root_pinned_config,
                                                sha256=hashlib.sha256(data).hexdigest()))
        await asyncio.sleep(0.7)  # ~3 buffers written, 3 in flight, the reader waiting
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with https_server({"/u": ranged(data, Seen())}) as s:
        asyncio.run(cancel_midway(s.url("/u")))
        part = tmp_path / ".u.pinclient-part"
        kept = part.stat().st_size
        assert 0 < kept < len(data)
        assert part.read_bytes() == data[:kept]
        delay[0] = 0
        result = pinclient.fetch_update(s.url("/u"), dest, config=root_pinned_config,
                                        sha256=hashlib.sha256(data).hexdigest())
    assert result.resumed_from == kept
    assert dest.read_bytes() == data


def test_a_206_declaring_more_than_its_range_still_meets_the_cap(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    # The resumed answer's Content-Range says the file fits the cap, its Content-Length says a
    # GiB more: the direct reads (which stop only at the declared length) must not take it; the
    # chunk path meets the cap inside the body.
    from .hostile import Seen, endless, ranged

    data = os.urandom(3 * MiB)
    cut, cap = MiB + 3, 4 * MiB
    sent: dict[str, int] = {}
    liar = Response(206, endless(sent), content_length=1 << 30,
                    headers={"ETag": '"v1"', "Content-Range": f"bytes {cut}-{len(data) - 1}/{len(data)}"})
    route = ranged(data, Seen(), drop_after={0: cut}, statuses={1: liar})
    with https_server({"/u": route}) as s, pytest.raises(SizeError, match=f"more than {cap} bytes"):
        asyncio.run(fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config,
                                 max_size=cap, retries=1))
    assert sent["sent"] < 64 * MiB, "the cap stopped the body early"
