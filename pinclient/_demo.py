"""``pinclient demo``: the 2011 Comodo attack replayed on 127.0.0.1, in a temporary folder.

Two root CAs are trusted, as both were in every browser in March 2011: the update server's expected
CA, and a rogue root (UTN-USERFirst-Hardware's role) that issues a certificate for the same host
straight off the root. The demo writes a pins.toml pinning the expected CA, fetches an update with
the real :func:`~pinclient.fetch_update` while the server presents each chain in turn, and prints
the accepted download and the refusal. No network, no files outside the temporary folder.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ._download.fetch import fetch_update
from ._pki import CA, Leaf
from ._x509 import spki_sha256
from .config import PinConfig, load_pins
from .errors import PinViolation
from .transport import PinningPoolManager

__all__ = ["run_demo"]

HOST = "localhost"  # a real name the certificates are issued for, resolved to loopback by the OS
PATH = "/app-2.1.tar.gz"
PAYLOAD = b"pretend this is app 2.1\n" * 2048

Say = Callable[[str], None]


@dataclass
class _Conn:
    handshake_ok: bool = False
    received: int = 0
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class _UpdateServer:
    """A one-file HTTPS server on 127.0.0.1. ``context`` picks the chain for the next connections,
    so the same host and port can present the expected chain, then the rogue one."""

    context: ssl.SSLContext
    body: bytes
    conns: list[_Conn] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)  # so that the accept loop notices stop() promptly
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self._accept, name="pinclient-demo-server", daemon=True)
        self._thread.start()

    def connections_since(self, start: int, timeout: float = 5.0) -> list[_Conn]:
        """The connections after the first ``start``, once the server has finished with them (the
        client may hang up before the server thread has even read its handshake)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.conns) > start, timeout)
            recent = self.conns[start:]
        for conn in recent:
            conn.done.wait(timeout)
        return recent

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            # One connection at a time is enough: each answer says "Connection: close".
            self._serve(raw)

    def _serve(self, raw: socket.socket) -> None:
        conn = _Conn()
        with self._arrived:
            self.conns.append(conn)
            self._arrived.notify_all()
        raw.settimeout(5)
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                conn.handshake_ok = True
                head = b""
                while b"\r\n\r\n" not in head:
                    data = tls.recv(4096)
                    if not data:
                        return  # the client hung up without a request: a refused connection
                    conn.received += len(data)
                    head += data
                self.requests.append(head.split(b" ")[1].decode("latin-1"))
                found = self.requests[-1] == PATH
                status = b"200 OK" if found else b"404 Not Found"
                body = self.body if found else b"not found\n"
                tls.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode()
                            + b"\r\nConnection: close\r\n\r\n" + body)
        except (OSError, ValueError, IndexError):
            return  # the client broke off (a refusing client may skip close_notify)
        finally:
            raw.close()
            conn.done.set()


def _server_context(leaf: Leaf, folder: Path, name: str) -> ssl.SSLContext:
    chain, key = folder / f"{name}-chain.pem", folder / f"{name}-key.pem"
    chain.write_bytes(leaf.chain_pem())
    key.write_bytes(leaf.key_pem())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, key)
    return ctx


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
        good = _server_context(expected_ca.issue_leaf(HOST), folder, "expected")
        rogue = _server_context(rogue_root.issue_leaf(HOST), folder, "rogue")
        server = _UpdateServer(good, PAYLOAD)
        try:
            return _narrate(say, warn, folder, server, rogue, pins_text, config, bundle)
        finally:
            server.stop()


def _narrate(say: Say, warn: Say, folder: Path, server: _UpdateServer, rogue: ssl.SSLContext,
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
    sent = sum(c.received for c in recent)
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
