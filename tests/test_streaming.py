"""The streaming path (pinclient._download.body, pinclient._download.pipeline): bodies spanning many buffers in every
framing, connections reused after a download, and every way the loop stops with its hashing thread
joined. Counts only, no timings: the speed is bench/run.py's job."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import urllib3

import pinclient._download.partfile as partfile
from pinclient import NetworkError, PinningPoolManager, StorageError, fetch_update
from pinclient._demo import Response
from pinclient._download import pipeline
from pinclient._download.body import body_reader
from pinclient._download.pipeline import Inline, Pipeline
from pinclient.config import PinConfig

from .conftest import ServeHTTPS
from .test_download_storage import FullDisk

MiB = 1024 * 1024
BIG = os.urandom(3 * MiB + 12345)  # three full buffers and a partial one
WORKER = "pinclient-hash-write"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WORKER]


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def chunked(data: bytes, *, size: int = 77_777, end: bool = True) -> Callable[[], Iterator[bytes]]:
    """A Transfer-Encoding: chunked body (odd chunk sizes, so chunks straddle the buffers)."""

    def body() -> Iterator[bytes]:
        for piece in pieces(data, size):
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        if end:
            yield b"0\r\n\r\n"
        else:
            raise ConnectionResetError("the server dies mid-body")

    return body


FRAMINGS = {
    "content-length": lambda: Response(200, BIG),
    "close-delimited": lambda: Response(200, lambda: iter(pieces(BIG, 100_000)), content_length=None),
    "chunked": lambda: Response(200, chunked(BIG), headers={"Transfer-Encoding": "chunked"},
                                content_length=None),
}


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_body_spanning_many_buffers_is_saved_and_hashed_exactly(
        root_pinned_config: PinConfig, tmp_path: Path, framing: str,
        https_server: ServeHTTPS) -> None:
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": FRAMINGS[framing]()}) as server:
        result = fetch_update(server.url("/u.bin"), dest, config=root_pinned_config, sha256=sha(BIG))
    assert dest.read_bytes() == BIG
    assert (result.size, result.sha256) == (len(BIG), sha(BIG))
    assert not workers()


def test_identity_body_is_read_below_urllib3_into_reused_buffers(
        root_pinned_config: PinConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        https_server: ServeHTTPS) -> None:
    # The fast path: not one urllib3 read1/read call for a Content-Length body.
    calls: list[int] = []
    for name in ("read", "read1"):
        real = getattr(urllib3.HTTPResponse, name)
        monkeypatch.setattr(urllib3.HTTPResponse, name,
                            lambda self, *a, _real=real, **k: calls.append(1) or _real(self, *a, **k))
    with https_server({"/u.bin": Response(200, BIG)}) as server:
        fetch_update(server.url("/u.bin"), tmp_path / "u.bin", config=root_pinned_config, sha256=sha(BIG))
    assert calls == []


def test_downloads_through_one_manager_share_one_connection_and_one_pin_check(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    # The fast path ends the response as http.client would, so the connection goes back to the pool
    # and carries the next download: keep-alive costs one handshake and one pin check.
    pm = PinningPoolManager(root_pinned_config)
    with https_server({"/u.bin": Response(200, BIG)}) as server:
        for i in range(3):
            fetch_update(server.url("/u.bin"), tmp_path / f"u{i}.bin", config=root_pinned_config,
                         sha256=sha(BIG), manager=pm)
        pm.clear()
    assert server.handshakes == 1
    assert pm.guard.checks == 1
    assert len(server.requests) == 3


def test_body_reader_ends_the_response_so_the_next_request_reuses_the_connection(
        root_pinned_config: PinConfig, https_server: ServeHTTPS) -> None:
    # The response stays referenced here, so nothing but body_reader itself can end it.
    pm = PinningPoolManager(root_pinned_config)
    with https_server({"/u.bin": Response(200, BIG)}) as server:
        resp = pm.urlopen("GET", server.url("/u.bin"), preload_content=False, retries=False)
        readinto1 = body_reader(resp)
        buf = memoryview(bytearray(MiB))
        got = bytearray()
        while n := readinto1(buf):
            got += buf[:n]
        resp.release_conn()
        assert bytes(got) == BIG
        assert pm.request("GET", server.url("/u.bin")).data == BIG
        pm.clear()
    assert server.handshakes == 1
    assert resp.status == 200  # still alive


@pytest.mark.parametrize("body", ["truncated", "malformed"])
def test_broken_chunked_body_is_a_network_error_and_dest_is_untouched(
        root_pinned_config: PinConfig, tmp_path: Path, body: str, https_server: ServeHTTPS) -> None:
    dest = tmp_path / "u.bin"
    dest.write_bytes(b"old version")
    if body == "truncated":
        route = Response(200, chunked(BIG, end=False), headers={"Transfer-Encoding": "chunked"},
                         content_length=None)
    else:
        route = Response(200, lambda: iter([b"10\r\n" + b"x" * 16 + b"\r\nzz\r\n"]),
                         headers={"Transfer-Encoding": "chunked"}, content_length=None)
    with https_server({"/u.bin": route}) as server:
        with pytest.raises(NetworkError) as info:
            fetch_update(server.url("/u.bin"), dest, config=root_pinned_config, retries=0)
    assert info.value.exit_code == 6
    assert dest.read_bytes() == b"old version"
    assert not workers()


def test_full_disk_stops_the_reader_soon_and_joins_the_worker(
        root_pinned_config: PinConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        https_server: ServeHTTPS) -> None:
    FullDisk.quota = 0
    monkeypatch.setattr(partfile, "_open_file",
                        lambda fd: FullDisk(fd, "r+"))
    total, sent = 64 * MiB, [0]
    block = os.urandom(MiB)

    def body() -> Iterator[bytes]:
        for _ in range(total // MiB):
            sent[0] += MiB
            yield block

    with https_server({"/u.bin": Response(200, body, content_length=total)}) as server:
        with pytest.raises(StorageError, match="No space left on device"):
            fetch_update(server.url("/u.bin"), tmp_path / "u.bin", config=root_pinned_config)
        server.wait_idle()
    assert not workers()
    assert sent[0] < total // 2, "the reader went on long after the disk was full"
    assert not list(tmp_path.glob("u.bin*"))


def test_interrupt_mid_body_joins_the_worker(root_pinned_config: PinConfig,
                                             tmp_path: Path, https_server: ServeHTTPS) -> None:
    def progress(done: int, total: int | None) -> None:
        if done > MiB:
            raise KeyboardInterrupt

    with https_server({"/u.bin": Response(200, BIG)}) as server:
        with pytest.raises(KeyboardInterrupt):
            fetch_update(server.url("/u.bin"), tmp_path / "u.bin", config=root_pinned_config,
                         progress=progress)
    assert not workers()
    assert not (tmp_path / "u.bin").exists()


# --------------------------------------------------------------------------- the pipeline alone


def fill(pipe: Pipeline, data: bytes) -> None:
    buf = pipe.take()
    buf[: len(data)] = data
    pipe.submit(buf, len(data))


def test_pipeline_feeds_every_buffer_in_order_to_every_consumer() -> None:
    seen: list[bytes] = []
    digest = hashlib.sha256()
    with Pipeline((digest.update, lambda view: seen.append(bytes(view))), buffers=2, size=8) as pipe:
        for i in range(20):
            fill(pipe, bytes([i]) * (i % 8 + 1))
    assert seen == [bytes([i]) * (i % 8 + 1) for i in range(20)]
    assert digest.hexdigest() == sha(b"".join(seen))
    assert not workers()


def test_consumer_error_stops_the_consumers_and_reaches_the_reader() -> None:
    fed: list[int] = []

    def consume(view: memoryview) -> None:
        fed.append(len(view))
        if len(fed) == 2:
            raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):  # noqa: PT012 - the loop is the scenario
        with Pipeline((consume,), buffers=2, size=4) as pipe:
            for _ in range(100):
                fill(pipe, b"abcd")
    assert len(fed) == 2, "nothing is consumed after the first error"
    assert not workers()


def _fail_while_feeding_a_broken_consumer(error: BaseException) -> None:
    def broken(view: memoryview) -> None:
        raise OSError("disk on fire")

    with Pipeline((broken,), buffers=1, size=4) as pipe:
        fill(pipe, b"abcd")
        raise error


def test_consumer_error_wins_over_the_readers_error_but_not_over_an_interrupt() -> None:
    # A reader error is most likely caused by the stalled writer (e.g. a read timeout): report the cause.
    with pytest.raises(OSError, match="disk on fire"):
        _fail_while_feeding_a_broken_consumer(NetworkError("reading timed out"))
    with pytest.raises(KeyboardInterrupt):
        _fail_while_feeding_a_broken_consumer(KeyboardInterrupt())
    assert not workers()


def test_inline_feeds_every_buffer_in_order_and_raises_at_submit() -> None:
    seen: list[bytes] = []
    digest = hashlib.sha256()
    with Inline((digest.update, lambda view: seen.append(bytes(view))), size=8) as pipe:
        for i in range(20):
            fill(pipe, bytes([i]) * (i % 8 + 1))
    assert seen == [bytes([i]) * (i % 8 + 1) for i in range(20)]
    assert digest.hexdigest() == sha(b"".join(seen))

    def broken(view: memoryview) -> None:
        raise OSError("disk on fire")

    with Inline((broken,), size=4) as pipe, pytest.raises(OSError, match="disk on fire"):
        fill(pipe, b"abcd")


@pytest.mark.parametrize("kind", [Inline, Pipeline])
def test_a_failing_write_feeds_no_buffer_twice(kind: type[Inline] | type[Pipeline], root_pinned_config: PinConfig,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               https_server: ServeHTTPS) -> None:
    # A consumer's error comes out of submit() (Inline) or the next take() (Pipeline), and the
    # loop's clean-up must not hand the same buffer over again (the digest would count it twice).
    fed: list[str] = []

    class Recording(kind):  # type: ignore[valid-type,misc]
        def submit(self, buf: bytearray, n: int) -> None:
            fed.append(sha(bytes(buf[:n])))
            super().submit(buf, n)

    monkeypatch.setattr(pipeline, "hash_and_write", Recording)
    monkeypatch.setattr(FullDisk, "quota", MiB + MiB // 2)
    monkeypatch.setattr(partfile, "_open_file", lambda fd: FullDisk(fd, "r+"))
    data = os.urandom(4 * MiB)
    with https_server({"/u": Response(200, data)}) as s, pytest.raises(StorageError):
        fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, sha256=sha(data), retries=0)
    assert len(fed) >= 2
    assert len(set(fed)) == len(fed), "a buffer was handed over twice"
    assert not (tmp_path / "u").exists()
    assert not workers()


@pytest.mark.parametrize(("cpus", "where"), [(2, "pinclient-hash-write"), (1, "reader")])
def test_the_sync_download_hashes_and_writes_on_a_worker_thread_only_with_a_second_core(
        cpus: int, where: str, root_pinned_config: PinConfig, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, https_server: ServeHTTPS) -> None:
    # Issue 18: with two cores the worker thread hashes and writes one buffer while the next one
    # is read (0.8x the wall time); with one it could only add hand-offs.
    threads: set[str] = set()
    real_write = partfile.PartFile.write

    def write(self: partfile.PartFile, chunk: bytes | memoryview) -> None:
        threads.add(threading.current_thread().name)
        real_write(self, chunk)

    monkeypatch.setattr(pipeline, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(partfile.PartFile, "write", write)
    data = os.urandom(3 * MiB + 5)
    threading.current_thread().name, name = "reader", threading.current_thread().name
    try:
        with https_server({"/u": Response(200, data)}) as s:
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, sha256=sha(data))
    finally:
        threading.current_thread().name = name
    assert threads == {where}
    assert (tmp_path / "u").read_bytes() == data
    assert not workers()


def test_written_bytes_are_handed_to_write_back_in_contiguous_ranges(
        root_pinned_config: PinConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        https_server: ServeHTTPS) -> None:
    # Without the hint a large download reaches the disk only at the fsyncs, while the transfer waits.
    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise on this platform")
    ranges: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def advise(fd: int, offset: int, length: int, advice: int) -> None:
        if advice == os.POSIX_FADV_DONTNEED:
            ranges.append((offset, length))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", advise)
    data = os.urandom(partfile.WRITE_BACK * 2 + MiB)
    with https_server({"/u.bin": Response(200, data)}) as server:
        fetch_update(server.url("/u.bin"), tmp_path / "u.bin", config=root_pinned_config, sha256=sha(data))
    assert (tmp_path / "u.bin").read_bytes() == data
    assert len(ranges) == 2
    assert ranges[0][0] == 0
    assert ranges[1][0] == sum(ranges[0])
    assert sum(ranges[1]) >= 2 * partfile.WRITE_BACK
