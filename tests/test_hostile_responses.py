"""Hostile servers and networks (issue 14, items 3, 4, 6 and 7): redirects of revocation fetches,
numbers that are not ASCII decimals, certificates OpenSSL verifies but cryptography cannot parse,
things that are not files in the revocation cache, and servers that drip their answers.

Every server here is on 127.0.0.1: :class:`RawServer` hands each accepted connection (plain, or TLS
with a certificate from the test PKI) to a function, so a test can answer exactly as badly as it
needs to (a redirect to an internal URL, one header byte every 50 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import logging
import os
import socket
import ssl
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pinclient import RetryPolicy, fetch_update
from pinclient._cli.common import count
from pinclient._cli.main import fetch_main
from pinclient._download.resume import parse_content_range
from pinclient._download.retry import parse_retry_after
from pinclient._proxy import _split_port
from pinclient._revocation.checker import RevocationChecker
from pinclient._revocation.verify import RevocationPolicy
from pinclient._sizes import ascii_decimal
from pinclient.config import PinConfig
from pinclient.errors import RevocationCheckFailed
from tests.conftest import PKI, pinset, write_pins
from tests.revocation_pki import RevocationPKI

HOST = "updates.test"

Handler = Callable[[socket.socket, bytes], None]


class RawServer:
    """A loopback server that reads each request (head and declared body) and hands the connection
    to ``handler(conn, request)``; ``requests`` records every request it read."""

    def __init__(self, handler: Handler, *, context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.context = context
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.base_url = f"{'https' if context else 'http'}://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)  # so that close() is noticed
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), contextlib.closing(conn):
            conn.settimeout(30)
            sock = self.context.wrap_socket(conn, server_side=True) if self.context else conn
            with contextlib.closing(sock):
                request = read_request(sock)
                if request:
                    self.requests.append(request)
                    self.handler(sock, request)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


def read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    def handle(sock: socket.socket, request: bytes) -> None:
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    return handle


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    made: list[RawServer] = []

    def make(handler: Handler, *, context: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(handler, context=context)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture(scope="module")
def front() -> Iterator[RawServer]:
    """The responder and distribution point the revocation PKI names; tests set its handler."""
    server = RawServer(answer(404))
    yield server
    server.close()


@pytest.fixture(scope="module")
def rpki(front: RawServer) -> RevocationPKI:
    return RevocationPKI(front.base_url)


@pytest.fixture
def make_checker(tmp_path: Path) -> Iterator[Callable[..., RevocationChecker]]:
    made: list[RevocationChecker] = []

    def make(mode: str = "hard-fail", **policy: Any) -> RevocationChecker:
        checker = RevocationChecker(RevocationPolicy(mode=mode, **policy),  # type: ignore[arg-type]
                                    cache_dir=tmp_path / "cache")
        made.append(checker)
        return checker

    yield make
    for checker in made:
        checker.close()


# --- item 4: revocation fetches follow no redirect -----------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("kind", ["CRL", "OCSP"])
def test_revocation_redirect_to_an_internal_url_is_not_followed(
    rpki: RevocationPKI, front: RawServer, raw_server: Callable[..., RawServer], make_checker: Any,
    kind: str, status: int,
) -> None:  # fmt: skip
    # The on-path attacker answers the responder (or the distribution point) with a redirect to
    # a loopback "admin" URL; the updater must not send a single byte there.
    internal = raw_server(answer(200, b"internal page"))
    front.requests.clear()
    front.handler = answer(status, headers={"Location": f"{internal.base_url}/admin?delete=all"})
    leaf = rpki.leaf(ocsp=kind == "OCSP", crl=kind == "CRL")
    with pytest.raises(RevocationCheckFailed, match=f"{kind} .* answered HTTP {status}"):
        make_checker("hard-fail", timeout=5).check(rpki.chain(leaf), host=HOST)
    assert len(front.requests) == 1
    assert internal.requests == []


def test_revocation_redirect_is_soft_failed_as_a_withheld_answer(
    rpki: RevocationPKI, front: RawServer, raw_server: Callable[..., RawServer], make_checker: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    internal = raw_server(answer(200, b"internal page"))
    front.handler = answer(302, headers={"Location": f"{internal.base_url}/crl"})
    warnings = make_checker("soft-fail", timeout=5).check(rpki.chain(rpki.leaf(ocsp=False)), host=HOST)
    assert len(warnings) == 2  # the leaf's CRL and the intermediate's
    assert all("answered HTTP 302" in w for w in warnings)
    assert internal.requests == []


# --- item 7: what sits at a cache entry's name is not trusted to be a file -----------------------


def routes(table: dict[str, Callable[[], bytes]]) -> Handler:
    """Answer 200 with ``table[path]()``, 404 for other paths."""

    def handle(sock: socket.socket, request: bytes) -> None:
        path = request.split(b" ", 2)[1].decode()
        make = table.get(path)
        answer(200, make())(sock, request) if make else answer(404)(sock, request)

    return handle


def plant(kind: str, entry: Path, tmp_path: Path) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(entry)
    elif kind == "symlink":  # to a file of someone else's: it must be neither read nor replaced
        target = tmp_path / "precious.txt"
        target.write_bytes(b"not pinclient's")
        entry.symlink_to(target)
    elif kind == "symlink-to-fifo":
        os.mkfifo(tmp_path / "elsewhere.fifo")
        entry.symlink_to(tmp_path / "elsewhere.fifo")
    elif kind == "directory":
        entry.mkdir()
    elif kind == "other-owner":
        if os.getuid() != 0:
            pytest.skip("only root can make a file owned by another user")
        entry.write_bytes(b"x")
        os.chown(entry, 65534, 65534)


def release(entry: Path) -> None:
    """Unblock a reader stuck in open() on a FIFO (only ever needed without the fix)."""
    for fifo in (entry, entry.resolve()):
        with contextlib.suppress(OSError):
            if stat.S_ISFIFO(os.stat(fifo).st_mode):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.parametrize("kind", ["fifo", "symlink", "symlink-to-fifo", "directory", "other-owner"])
def test_cache_entry_that_is_not_our_regular_file_is_a_miss_with_a_warning(
    rpki: RevocationPKI, front: RawServer, make_checker: Any, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, kind: str,
) -> None:  # fmt: skip
    # Entry names are predictable (a hash of the URL): another local user, or a sloppy script,
    # can put anything there. A FIFO used to block every check in open(), past any deadline.
    front.handler = routes({"/int.crl": lambda: rpki.crl(rpki.intermediate),
                            "/root.crl": lambda: rpki.crl(rpki.root)})
    front.requests.clear()
    checker = make_checker("hard-fail", timeout=5)
    leaf = rpki.leaf(ocsp=False)
    entry = checker._cache.path("crl", f"{rpki.base_url}/int.crl".encode())
    plant(kind, entry, tmp_path)
    before = os.lstat(entry)
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(checker.check(rpki.chain(leaf), host=HOST)),
                              daemon=True)
    try:
        with caplog.at_level(logging.WARNING, logger="pinclient._revocation.checker"):
            worker.start()
            worker.join(10)
            assert not worker.is_alive(), f"the check hangs on a {kind} in the cache"
    finally:
        release(entry)
    assert outcome == [[]]  # good, from the network
    assert [r.split(b" ")[1] for r in front.requests] == [b"/int.crl", b"/root.crl"]
    assert f"ignoring revocation cache entry {entry}" in caplog.text
    after = os.lstat(entry)  # left exactly as it was: not read, not replaced
    assert (after.st_ino, after.st_mode, after.st_uid) == (before.st_ino, before.st_mode, before.st_uid)
    if kind == "symlink":
        assert (tmp_path / "precious.txt").read_bytes() == b"not pinclient's"


def test_own_regular_cache_entry_is_still_used(
    rpki: RevocationPKI, front: RawServer, make_checker: Any
) -> None:
    front.handler = routes({"/int.crl": lambda: rpki.crl(rpki.intermediate),
                            "/root.crl": lambda: rpki.crl(rpki.root)})
    front.requests.clear()
    leaf = rpki.leaf(ocsp=False)
    make_checker("hard-fail", timeout=5).check(rpki.chain(leaf), host=HOST)
    make_checker("hard-fail", timeout=5).check(rpki.chain(leaf), host=HOST)
    assert len(front.requests) == 2  # the second check was answered from the cache


# --- item 6: numbers in answers are ASCII decimals -----------------------------------------------
# http.client decodes header bytes as Latin-1, so b"\xb2" arrives as "²": str.isdigit() says yes,
# int() raises ValueError. Every such field now goes through pinclient._sizes.ascii_decimal.


def raw_answer(status: bytes, headers: list[bytes], body: bytes = b"") -> Handler:
    """Exactly these bytes: no Content-Length unless given (then the body ends at close)."""

    def handle(sock: socket.socket, request: bytes) -> None:
        sock.sendall(b"HTTP/1.1 " + status + b"\r\n" + b"".join(h + b"\r\n" for h in headers)
                     + b"Connection: close\r\n\r\n" + body)

    return handle


@pytest.fixture
def tls_server(pki: PKI, raw_server: Callable[..., RawServer]) -> Callable[[Handler], RawServer]:
    """A RawServer with a certificate for updates.test from the pinned intermediate."""
    context = pki.pinned_int.issue_leaf(HOST).server_context()
    return lambda handler: raw_server(handler, context=context)


def url_of(server: RawServer, path: str = "/update.bin") -> str:
    return f"https://{HOST}:{server.port}{path}"


@pytest.mark.parametrize("value", [b"\xb2", b"\xb9", b"\xb3", b"1\xb2", b"\xb2\xb2\xb2"])
def test_content_length_in_superscript_digits_is_no_length_not_a_crash(
    tls_server: Callable[[Handler], RawServer], root_pinned_config: PinConfig, tmp_path: Path,
    payload: bytes, value: bytes,
) -> None:  # fmt: skip
    server = tls_server(raw_answer(b"200 OK", [b"Content-Length: " + value], payload))
    dest = tmp_path / "update.bin"
    result = fetch_update(url_of(server), dest, config=root_pinned_config, retries=0,
                          sha256=hashlib.sha256(payload).hexdigest())
    assert result.size == len(payload)  # read to the close, then verified by its hash
    assert dest.read_bytes() == payload


def test_retry_after_in_superscript_digits_falls_back_to_backoff(
    tls_server: Callable[[Handler], RawServer], root_pinned_config: PinConfig, tmp_path: Path,
    payload: bytes,
) -> None:  # fmt: skip
    busy = raw_answer(b"503 Busy", [b"Retry-After: \xb9", b"Content-Length: 0"])
    good = raw_answer(b"200 OK", [b"Content-Length: %d" % len(payload)], payload)
    server = tls_server(lambda sock, request: (busy if len(server.requests) == 1 else good)(sock, request))
    dest = tmp_path / "update.bin"
    result = fetch_update(url_of(server), dest, config=root_pinned_config,
                          retries=RetryPolicy(retries=1, backoff=0.01))
    assert (result.attempts, len(server.requests)) == (2, 2)
    assert dest.read_bytes() == payload


@pytest.mark.parametrize("header", [b"Retry-After: \xb9", b"Content-Length: \xb2"])
def test_cli_exit_codes_for_superscript_numbers_without_traceback(
    pki: PKI, tls_server: Callable[[Handler], RawServer], tmp_path: Path, payload: bytes,
    capsys: pytest.CaptureFixture[str], header: bytes,
) -> None:  # fmt: skip
    pins = write_pins(tmp_path / "cfg", pinset("example", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}'),
                      bundle=pki.bundle)
    status = b"503 Busy" if header.startswith(b"Retry") else b"200 OK"
    server = tls_server(raw_answer(status, [header], payload))
    dest = str(tmp_path / "out.bin")
    code = fetch_main([url_of(server), "-o", dest, "--pins", str(pins), "--retries", "0"])
    assert code == (6 if status == b"503 Busy" else 0)
    assert "Traceback" not in capsys.readouterr().err


def test_revocation_answer_with_superscript_length_is_read_not_a_crash(
    rpki: RevocationPKI, front: RawServer, make_checker: Any
) -> None:
    leaf = rpki.leaf(crl=False)
    answers = {b"/ocsp": lambda: rpki.ocsp_response(leaf.cert), b"/root.crl": lambda: rpki.crl(rpki.root)}
    front.handler = lambda sock, request: raw_answer(b"200 OK", [b"Content-Length: \xb2"],
                                                     answers[request.split(b" ")[1]]())(sock, request)
    for mode in ("soft-fail", "hard-fail"):
        assert make_checker(mode, timeout=5).check(rpki.chain(leaf), host=HOST) == []


@given(st.text(st.sampled_from("0123456789 \t+-_x\xb2\xb3\xb9\u0663\u06f9") | st.characters(), max_size=40))
def test_number_fields_are_ascii_decimal_or_nothing(text: str) -> None:
    ascii_digits = text.strip(" \t")
    expected = int(ascii_digits) if ascii_digits and all("0" <= c <= "9" for c in ascii_digits) else None
    assert ascii_decimal(text) == expected
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    delay = parse_retry_after(text, now)  # never raises
    assert delay is None or delay >= 0
    parsed = parse_content_range(f"bytes {text}-{text}/{text}")  # never raises
    assert parsed is None or expected is not None


@pytest.mark.parametrize("text", ["²", "¹", "٣", "1_0", "+5", "-1", "0x10", "9" * 5000])
def test_non_ascii_decimal_spellings_are_refused_everywhere(text: str) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert ascii_decimal(text) is None
    assert parse_retry_after(text, now) is None
    assert parse_content_range(f"bytes {text}-{text}/{text}") is None
    assert parse_content_range(f"bytes 0-{text}/100") is None
    with pytest.raises(argparse.ArgumentTypeError):
        count(text)
    assert _split_port(f"proxy.example:{text}") == ("proxy.example", None)
