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
from pathlib import Path

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
    data = os.urandom(2 * MiB)
    dest = tmp_path / "u"
    dest.write_bytes(b"old")
    with https_server({"/u": Response(200, data)}) as s, pytest.raises(SizeError):
        asyncio.run(fetch_update(s.url("/u"), dest, config=root_pinned_config, max_size=MiB + 7))
    assert dest.read_bytes() == b"old"
