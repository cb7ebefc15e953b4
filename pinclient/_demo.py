"""``pinclient demo``: the 2011 Comodo attack replayed on 127.0.0.1, in a temporary folder.

Two root CAs are trusted, as both were in every browser in March 2011: the update server's expected
CA, and a rogue root (UTN-USERFirst-Hardware's role) that issues a certificate for the same host
straight off the root. The demo writes a pins.toml pinning the expected CA, fetches an update with
the real :func:`~pinclient.fetch_update` while the server presents each chain in turn, and prints
the accepted download and the refusal. No network, no files outside the temporary folder.

:class:`LoopbackServer` is the demo's update server and, through tests/conftest.py, every HTTPS
update server of the test suite: one server loop, shipped because the demo needs it.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ._download.fetch import fetch_update
from ._pki import CA
from ._x509 import spki_sha256
from .config import PinConfig, load_pins
from .errors import PinViolation
from .transport import PinningPoolManager

__all__ = ["Conn", "LoopbackServer", "Response", "Route", "run_demo"]

HOST = "localhost"  # a real name the certificates are issued for, resolved to loopback by the OS
PATH = "/app-2.1.tar.gz"
PAYLOAD = b"pretend this is app 2.1\n" * 2048

Say = Callable[[str], None]


@dataclass
class Response:
    """An answer; a streamed ``body`` (a function yielding bytes) may raise to drop the connection."""

    status: int = 200
    body: bytes | Callable[[], Iterable[bytes]] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: int | None = -1  # -1: len(body); None: omit (close-delimited)


Route = bytes | Response | Callable[[str, dict[str, str]], Response]


@dataclass
class Conn:
    """One client connection: whether its handshake completed and what it sent after it."""

    received: bytearray = field(default_factory=bytearray)
    handshake_ok: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class LoopbackServer:
    """Serves ``routes`` over TLS with ``context`` on 127.0.0.1 only, a thread per connection; records
    per connection whether the handshake completed and every byte the client sent after it (how the
    demo and the tests prove a refused client sent none). A route is a body, a :class:`Response`, or
    a function of (path, lower-case request headers) returning one; ``context`` is read for every new
    connection, so one host and port can present one chain, then another. The tests reuse it
    (tests/conftest.py ``https_server``) for every HTTPS update server, hostile ones included.
    ``start()`` (or ``with``) starts it, ``stop()`` (or leaving the ``with``) stops it; both may be
    called more than once."""

    def __init__(self, context: ssl.SSLContext, routes: dict[str, Route] | None = None, *,
                 name: str = "pinclient-loopback-server") -> None:
        self.context = context
        self.routes: dict[str, Route] = routes if routes is not None else {}
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.sock.settimeout(0.05)  # so that the accept loop notices stop() promptly
        self.port: int = self.sock.getsockname()[1]
        self.conns: list[Conn] = []
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self._accept, name=name, daemon=True)

    def start(self) -> LoopbackServer:
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sock.close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str = "/", host: str = "updates.test") -> str:
        return f"https://{host}:{self.port}{path}"

    @property
    def handshakes(self) -> int:
        return sum(1 for c in self.conns if c.handshake_ok)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until the server has finished with every connection so far."""
        for conn in list(self.conns):
            conn.done.wait(timeout)

    def connections_since(self, start: int, timeout: float = 5.0) -> list[Conn]:
        """The connections after the first ``start``, once the server has finished with them (the
        client may hang up before the server thread has even read its handshake)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.conns) > start, timeout)
            recent = self.conns[start:]
        for conn in recent:
            conn.done.wait(timeout)
        return recent

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn = Conn()
            with self._arrived:
                self.conns.append(conn)
                self._arrived.notify_all()
            threading.Thread(target=self._serve, args=(raw, conn), daemon=True).start()

    def _serve(self, raw: socket.socket, conn: Conn) -> None:
        raw.settimeout(10)
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            conn.done.set()
            return
        conn.handshake_ok = True
        try:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = tls.recv(65536)
                    if not data:
                        # Answer a clean close_notify: OpenSSL drops sessions that end without one,
                        # and a session resumption test needs this one kept.
                        tls = tls.unwrap()  # type: ignore[assignment]
                        return
                    conn.received += data
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {k.strip().lower(): v.strip() for k, v in
                           (line.split(":", 1) for line in lines[1:] if ":" in line)}
                self.requests.append(path)
                if not self._send(tls, self._answer(path, headers)):
                    return
        except (OSError, ssl.SSLError, ValueError, IndexError):
            return  # the client broke off (a refusing client may skip close_notify)
        finally:
            try:
                tls.close()
            finally:
                conn.done.set()

    def _answer(self, path: str, headers: dict[str, str]) -> Response:
        route = self.routes.get(path.split("?")[0])
        if route is None:
            return Response(404, b"not found")
        if isinstance(route, bytes):
            return Response(200, route)
        if isinstance(route, Response):
            return route
        return route(path, headers)

    @staticmethod
    def _send(tls: ssl.SSLSocket, resp: Response) -> bool:
        """Send ``resp``; whether the connection may carry another request."""
        lines = [f"HTTP/1.1 {resp.status} X"]
        body = resp.body
        length = resp.content_length
        if length == -1:
            length = len(body) if isinstance(body, bytes) else None
        headers = dict(resp.headers)
        if length is not None:
            headers["Content-Length"] = str(length)
        else:
            headers["Connection"] = "close"
        lines += [f"{k}: {v}" for k, v in headers.items()]
        tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        if isinstance(body, bytes):
            tls.sendall(body)
        else:
            for chunk in body():
                tls.sendall(chunk)
        return length is not None


def _pin(ca: CA) -> str:
    import base64

    return base64.b64encode(spki_sha256(ca.cert)).decode()


def _plain_tls_accepts(bundle: Path, port: int) -> bool:
    """Whether ordinary TLS validation (same trust bundle, no pins) accepts the server's chain."""
    ctx = ssl.create_default_context(cafile=str(bundle))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname=HOST):
            return True
    except (OSError, ssl.SSLError):
        return False


def run_demo(say: Say = print, warn: Say = print) -> int:
    """Run the demo, narrating with ``say``; report a demo that misbehaved with ``warn``.

    Returns 0 when the expected chain was accepted and the rogue one refused before any request
    byte, 1 otherwise. Raises nothing on purpose: an unexpected pinclient error is a failed demo.
    """
    with tempfile.TemporaryDirectory(prefix="pinclient-demo-") as tmp:
        folder = Path(tmp)
        expected_root = CA("Example Update Root R1", org="Example Software")
        expected_ca = expected_root.child_ca("Example Update CA 1", org="Example Software")
        rogue_root = CA("UTN-USERFirst-Hardware", org="The USERTRUST Network")
        bundle = folder / "bundle.pem"
        bundle.write_bytes(expected_root.cert_pem() + rogue_root.cert_pem())
        pins_text = (
            'version = 1\n[defaults]\nca_bundle = "bundle.pem"\n[[pinset]]\nname = "demo-updates"\n'
            f'hosts = ["{HOST}"]\n'
            f'issuers = [\n  {{ spki_sha256 = "{_pin(expected_root)}", '
            'label = "Example Update Root R1" },\n]\n'
        )
        (folder / "pins.toml").write_text(pins_text)
        config = load_pins(folder / "pins.toml")
        rogue = rogue_root.issue_leaf(HOST).server_context()
        server = LoopbackServer(expected_ca.issue_leaf(HOST).server_context(), {PATH: PAYLOAD},
                                name="pinclient-demo-server").start()
        try:
            return _narrate(say, warn, folder, server, rogue, pins_text, config, bundle)
        finally:
            server.stop()


def _narrate(say: Say, warn: Say, folder: Path, server: LoopbackServer, rogue: ssl.SSLContext,
             pins_text: str, config: PinConfig, bundle: Path) -> int:
    url = f"https://{HOST}:{server.port}{PATH}"
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    say("pinclient demo: an HTTPS update server on 127.0.0.1 and a temporary folder; no network.\n")
    say("Two root CAs are in the trust bundle, as both were in every browser in March 2011:")
    say(f"  expected  Example Update Root R1 -> Example Update CA 1 -> {HOST}")
    say(f"  rogue     UTN-USERFirst-Hardware -> {HOST}   (straight off the root, as in 2011)")
    say("pins.toml accepts only the expected CA for this host:")
    for line in pins_text.splitlines():
        say(f"  {line}")
    say(f"The update: {url} ({len(PAYLOAD)} bytes, sha256 {digest[:16]}…)\n")

    say("1. The server presents its certificate from the expected CA.")
    pm = PinningPoolManager(config)
    try:
        result = fetch_update(url, folder / "app-2.1.tar.gz", config=config, sha256=digest,
                              size=len(PAYLOAD), manager=pm, timeout=10)
    except PinViolation as e:
        warn(f"pinclient demo FAILED: the expected chain was refused:\n{e.message}")
        return 1
    finally:
        pm.clear()
    say(f"   ACCEPTED: saved {result.dest.name} ({result.size} bytes; size and sha256 verified).")
    say(f'   pinset "{result.pinset}" matched; verified chain (leaf first):')
    for entry in result.chain:
        say(f"     {entry.describe()}")

    say("\n2. The server presents the rogue certificate, as an attacker holding it would.")
    server.context = rogue
    if not _plain_tls_accepts(bundle, server.port):
        warn("pinclient demo FAILED: ordinary TLS did not accept the rogue certificate.")
        return 1
    say("   Ordinary TLS validation accepts it: a handshake with the same trust bundle succeeds.")
    dest = folder / "app-2.1-rogue.tar.gz"
    before = len(server.conns)
    pm = PinningPoolManager(config)
    try:
        fetch_update(url, dest, config=config, sha256=digest, size=len(PAYLOAD), manager=pm, timeout=10)
    except PinViolation as e:
        refusal = e
    else:
        warn("pinclient demo FAILED: the rogue certificate was ACCEPTED; pinning did not work.")
        return 1
    finally:
        pm.clear()
    recent = server.connections_since(before)
    sent = sum(len(c.received) for c in recent)
    handshakes = sum(c.handshake_ok for c in recent)
    if sent or dest.exists() or not handshakes:
        warn(f"pinclient demo FAILED: after the refusal the server received {sent} request bytes, "
             f"handshakes={handshakes}, file saved={dest.exists()}.")
        return 1
    say(f"   REFUSED (exit code {refusal.exit_code}) right after the handshake, before any request: the\n"
        f"   server received {sent} request bytes and nothing was saved. The refusal message:")
    for line in refusal.message.splitlines():
        say(f"     {line}")

    say("\nBoth certificates are valid for this host and chain to a trusted root, so ordinary TLS\n"
        "validation accepts either one. pinclient also requires a CA pinned for the host in the\n"
        "verified chain, so the rogue certificate is refused before the update is even requested.")
    say("\nThe demo behaved as designed: one download accepted, one refused.")
    return 0
