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


class CorruptingServer:
    """One HTTPS answer whose last TLS record is corrupted in flight, sent in the same TCP segment as
    the good records before it: the batching reads the good ones and meets the bad one. TLS runs
    over memory BIOs so that the ciphertext can be changed (one byte of the last record's tag)."""

    def __init__(self, context: ssl.SSLContext, records: list[bytes], *, split: bool) -> None:
        self.context, self.records, self.split = context, records, split
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

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
    from pinclient import PinclientError

    from .conftest import HOST

    records = [os.urandom(RECORD) for _ in range(good_records + 1)]
    server = CorruptingServer(pki.pinned_int.issue_leaf(HOST).server_context(), records, split=split)
    dest = tmp_path / "u"
    dest.write_bytes(b"old")
    with pytest.raises(PinclientError) as caught:
        asyncio.run(fetch_update(f"https://{HOST}:{server.port}/u", dest, config=root_pinned_config,
                                 sha256=hashlib.sha256(b"".join(records)).hexdigest(), retries=0,
                                 resume=False))
    assert caught.value.exit_code == 6, caught.value  # NetworkError: typed, and retried like one
    assert dest.read_bytes() == b"old"
    server.thread.join(10)


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
