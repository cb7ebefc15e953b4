"""A TLS 1.2 server asking for renegotiation after the pin check: pinclient's clients refuse it,
so the chain that was checked against the pins stays the connection's only chain. The server is
OpenSSL's own ``s_server`` (not Python's ``ssl``, which cannot ask), driven through its stdin: its
``R`` command sends a HelloRequest mid-response. It then ends the connection with a fatal alert,
which the client reports as a TLS error: the response fails rather than goes on under an unchecked
chain."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from pinclient import PinningPoolManager
from pinclient.config import PinConfig

from .conftest import HOST, PKI

BODY_1, BODY_2 = b"first half\n", b"second half\n"


class SServer:
    """``openssl s_server -tls1_2 -msg`` on a free loopback port; ``log()`` is what it printed."""

    def __init__(self, pki: PKI, folder: Path) -> None:
        leaf = pki.pinned_int.issue_leaf(HOST)
        (folder / "cert.pem").write_bytes(leaf.cert.public_bytes(Encoding.PEM))
        (folder / "chain.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in leaf.parents[:-1]))
        (folder / "key.pem").write_bytes(leaf.key_pem())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.out = folder / "s_server.log"
        self._log_file = self.out.open("wb")
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", str(folder / "cert.pem"),
             "-cert_chain", str(folder / "chain.pem"), "-key", str(folder / "key.pem"), "-tls1_2",
             "-msg", "-ign_eof"],
            stdin=subprocess.PIPE, stdout=self._log_file, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"s_server never printed {text!r}:\n{self.log()}")
            time.sleep(0.05)

    def type(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        time.sleep(0.4)  # s_server reads stdin per poll: each write is read, and sent, on its own

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self._log_file.close()


@pytest.fixture
def s_server(pki: PKI, tmp_path: Path) -> Iterator[SServer]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    server = SServer(pki, tmp_path)
    try:
        server.wait_for("ACCEPT")
        yield server
    finally:
        server.stop()


def _urllib3_get(config: PinConfig, url: str) -> bytes:
    with PinningPoolManager(config) as pm:
        return bytes(pm.request("GET", url, retries=False, timeout=15).data)


def _httpx_get(config: PinConfig, url: str) -> bytes:
    httpx = pytest.importorskip("httpx")
    from pinclient.httpx import PinningTransport

    with httpx.Client(transport=PinningTransport(config), timeout=15) as client:
        return bytes(client.get(url).content)


@pytest.mark.parametrize("get", [_urllib3_get, _httpx_get], ids=["urllib3", "httpx"])
def test_a_renegotiation_asked_after_the_pin_check_is_refused(
        s_server: SServer, root_pinned_config: PinConfig, get: Callable[[PinConfig, str], bytes]) -> None:
    got: list[bytes | BaseException] = []

    def client() -> None:
        try:
            got.append(get(root_pinned_config, f"https://{HOST}:{s_server.port}/u"))
        except BaseException as e:  # reported below
            got.append(e)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    s_server.wait_for("GET /u")  # the pinned handshake is done and the request is in
    s_server.type(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY_1 + BODY_2) + BODY_1)
    s_server.type(b"R\n")  # HelloRequest: renegotiate
    s_server.type(BODY_2)
    thread.join(20)
    log = s_server.log()
    assert log.count("ClientHello") == 1, f"the client began a second handshake:\n{log}"
    assert "no_renegotiation" in log, log
    # s_server answers the refusal with a fatal handshake_failure alert: the client's read fails
    # (fail closed) where it would have gone on under a chain nobody checked against the pins.
    assert not thread.is_alive()
    assert len(got) == 1, got
    assert isinstance(got[0], Exception) or got[0] == BODY_1 + BODY_2, got
