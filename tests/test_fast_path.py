"""The download fast path (issue 18) and ``--limit-rate`` (issue 16): what it skips must not lose a
byte or a check. Direct TLS reads after http.client's buffer is drained (and the fallback through an
HTTPS proxy, TLS in TLS), short writes on the unbuffered part file, and the rate limit, measured.
All over real loopback TLS."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from pinclient import NetworkError, UsageError, fetch_update
from pinclient._cli.main import fetch_main
from pinclient._demo import LoopbackServer, Response
from pinclient._download import body, partfile
from pinclient._download.options import FetchOptions
from pinclient.config import PinConfig
from pinclient.transport import pinning_manager

from .conftest import PKI, ServeHTTPS
from .hostile import ConnectProxy

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def socket_choice(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What :func:`body._tls_reader` chose for each body: a TLS read (direct reads) or None."""
    chosen: list[object] = []
    real = body._tls_reader

    def spy(raw: Any) -> Any:
        chosen.append(real(raw))
        return chosen[-1]

    monkeypatch.setattr(body, "_tls_reader", spy)
    return chosen


def one_write(tls: ssl.SSLSocket, resp: Response) -> bool:
    """Send the head and the body in one write, so the first TLS record carries both: http.client's
    reader then holds body bytes when the headers are parsed."""
    assert isinstance(resp.body, bytes)
    head = f"HTTP/1.1 {resp.status} X\r\nContent-Length: {len(resp.body)}\r\n\r\n".encode()
    tls.sendall(head + resp.body)
    return True


# Around every size where the buffered reader and the direct reads hand over: nothing of the body
# that http.client read ahead with the headers may be skipped or read twice.
@pytest.mark.parametrize("size", [1, 8191, 8193, 64 * 1024 + 1, 5 * MiB + 7])
@pytest.mark.parametrize("send", ["head-then-body", "one-write"])
def test_direct_tls_reads_keep_every_byte(root_pinned_config: PinConfig, tmp_path: Path, size: int,
                                          send: str, monkeypatch: pytest.MonkeyPatch,
                                          https_server: ServeHTTPS, socket_choice: list[object]) -> None:
    if send == "one-write":
        monkeypatch.setattr(LoopbackServer, "_send", staticmethod(one_write))
    data = os.urandom(size)
    with https_server({"/u": Response(200, data)}) as s:
        result = fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, sha256=sha(data))
    assert result.size == size
    assert (tmp_path / "u").read_bytes() == data
    assert socket_choice
    assert socket_choice[0] is not None, "a direct connection reads the TLS socket"


def test_connection_is_reused_after_a_direct_read_body(root_pinned_config: PinConfig, tmp_path: Path,
                                                      https_server: ServeHTTPS,
                                                      socket_choice: list[object]) -> None:
    data = os.urandom(3 * MiB + 5)
    with https_server({"/u": Response(200, data)}) as s:
        pm = pinning_manager(root_pinned_config)
        for name in ("a", "b"):
            fetch_update(s.url("/u"), tmp_path / name, config=root_pinned_config, sha256=sha(data),
                         manager=pm)
        assert s.handshakes == 1, "the body ended exactly: the connection carried the next request"
    assert all(c is not None for c in socket_choice)


def test_https_proxy_tls_in_tls_falls_back_to_the_buffered_reader(
        pki: PKI, root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS,
        socket_choice: list[object]) -> None:
    # Through an https:// proxy the origin's TLS runs inside the proxy's: urllib3's SSLTransport,
    # not an ssl.SSLSocket. It keeps its own buffers, so the fast path must not read under it.
    data = os.urandom(4 * MiB + 3)
    leaf = pki.rogue_root.issue_leaf("proxy.test")
    with https_server({"/u": Response(200, data)}) as s, ConnectProxy(leaf) as proxy:
        result = fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, sha256=sha(data),
                              proxy=proxy.url)
    assert result.size == len(data)
    assert (tmp_path / "u").read_bytes() == data
    assert socket_choice == [None], "TLS in TLS goes through http.client's reader"


def cut_off(tls: ssl.SSLSocket, resp: Response) -> bool:
    """Declare the whole body, send 1 MiB of it, then end the TCP stream without a TLS close_notify
    (a ragged EOF: what a cut cable or an attacker resetting the path looks like)."""
    assert isinstance(resp.body, bytes)
    tls.sendall(f"HTTP/1.1 200 X\r\nContent-Length: {len(resp.body)}\r\n\r\n".encode())
    tls.sendall(resp.body[:MiB])
    tls.shutdown(socket.SHUT_RDWR)  # SSLSocket.shutdown sends no close_notify (unwrap would)
    return False


@pytest.mark.parametrize("resume", [True, False])
def test_a_ragged_eof_mid_body_under_direct_reads_fails_closed(
        root_pinned_config: PinConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        https_server: ServeHTTPS, socket_choice: list[object], resume: bool) -> None:
    # The direct read turns the TLS layer's "EOF without close_notify" into the end of the body, as
    # SSLSocket.read does; the byte count must then refuse the short body like any other truncation.
    monkeypatch.setattr(LoopbackServer, "_send", staticmethod(cut_off))
    data = os.urandom(3 * MiB)
    dest = tmp_path / "u"
    dest.write_bytes(b"the user's old file")
    with https_server({"/u": Response(200, data)}) as s, \
            pytest.raises(NetworkError, match=f"ended after {MiB} of {3 * MiB} bytes"):
        fetch_update(s.url("/u"), dest, config=root_pinned_config, sha256=sha(data), retries=0,
                     resume=resume)
    assert dest.read_bytes() == b"the user's old file"
    assert socket_choice
    assert socket_choice[0] is not None, "the body was read by direct TLS reads"


class ShortWrites(io.FileIO):
    """A file whose write(2) takes at most 1000 bytes at a time, as a pipe or a full quota may."""

    def write(self, b: Any) -> int:
        return super().write(memoryview(b).cast("B")[:1000])


def test_short_writes_to_the_part_file_are_continued(root_pinned_config: PinConfig, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     https_server: ServeHTTPS) -> None:
    monkeypatch.setattr(partfile, "_open_file", lambda fd: ShortWrites(fd, "r+"))
    data = os.urandom(2 * MiB + 1)
    with https_server({"/u": Response(200, data)}) as s:
        fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, sha256=sha(data))
    assert (tmp_path / "u").read_bytes() == data


# --------------------------------------------------------------------------- --limit-rate


def test_limit_rate_stays_within_ten_percent_over_three_seconds(root_pinned_config: PinConfig,
                                                                 tmp_path: Path,
                                                                 https_server: ServeHTTPS) -> None:
    limit = 256 * 1024
    data = os.urandom(3 * limit)
    with https_server({"/u": Response(200, data)}) as s:
        started = time.monotonic()
        fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, sha256=sha(data),
                     max_rate=limit)
        took = time.monotonic() - started
    rate = len(data) / took
    # Faster than the limit is the bug this catches exactly (the pause is computed, not timed). The
    # lower bound is generous for a loaded machine: the handshake and scheduling count against it.
    assert 0.90 * limit <= rate <= 1.10 * limit, f"{rate:.0f} bytes/s against a limit of {limit}"


def test_limit_rate_flag_uses_curls_units(root_pinned_config: PinConfig, tmp_path: Path,
                                          https_server: ServeHTTPS) -> None:
    data = os.urandom(48 * 1024)
    with https_server({"/u": Response(200, data)}) as s:
        started = time.monotonic()
        code = fetch_main([s.url("/u"), "-o", str(tmp_path / "u"), "--pins", str(root_pinned_config.path),
                           "--sha256", sha(data), "--limit-rate", "32k", "-q"])
        took = time.monotonic() - started
    assert code == 0
    assert took >= 1.5 * 0.95, "32k is 32 KiB/s: 48 KiB take 1.5 s"


def test_limit_rate_waits_are_bounded_by_the_deadline(root_pinned_config: PinConfig, tmp_path: Path,
                                                      https_server: ServeHTTPS) -> None:
    data = os.urandom(MiB)
    with https_server({"/u": Response(200, data)}) as s:
        started = time.monotonic()
        with pytest.raises(NetworkError, match="deadline") as info:
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, max_rate=2_000,
                         min_rate=0, deadline=1.0, retries=0)
        took = time.monotonic() - started
    assert info.value.exit_code == 6
    # One 16 KiB record at 2 kB/s asks for an 8 s pause: it must stop at the 1 s deadline.
    assert took < 5, "the rate limit's pause overran the deadline"


@pytest.mark.parametrize(("options", "message"), [
    ({"max_rate": -1}, "max_rate cannot be negative"),
    ({"max_rate": "fast"}, "max_rate cannot be negative"),
    ({"max_rate": 500}, r"max_rate \(500 bytes/s\) is below min_rate \(1024 bytes/s\)"),
])
def test_limit_rate_that_cannot_work_is_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        FetchOptions(**options)


def test_limit_rate_below_the_default_min_rate_works_with_min_rate_lowered() -> None:
    assert FetchOptions(max_rate=500, min_rate=100).max_rate == 500
    assert FetchOptions(max_rate=0).max_rate == 0  # 0: no limit, as for min_rate
