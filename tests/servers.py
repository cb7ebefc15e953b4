"""Real TLS servers on 127.0.0.1 for the tests: a tiny HTTP/1.1 server that records every byte it
receives per connection (to prove a refused client sent none) and counts handshakes."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pinclient._pki import Leaf


@dataclass
class Response:
    status: int = 200
    body: bytes | Callable[[], Iterable[bytes]] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: int | None = -1  # -1: len(body); None: omit (close-delimited)


Route = Response | Callable[[str, dict[str, str]], Response]


@dataclass
class Conn:
    received: bytearray = field(default_factory=bytearray)
    handshake_ok: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class TLSServer:
    """Serves ``routes`` over TLS with ``leaf``'s chain. Use as a context manager."""

    def __init__(self, leaf: Leaf, tmp: Path, *, routes: dict[str, Route] | None = None,
                 include_root: bool = False, extra: Iterable[object] = (),
                 max_version: ssl.TLSVersion | None = None) -> None:
        self.routes: dict[str, Route] = routes or {}
        tmp.mkdir(parents=True, exist_ok=True)
        chain = tmp / f"chain-{id(self)}.pem"
        key = tmp / f"key-{id(self)}.pem"
        chain.write_bytes(leaf.chain_pem(include_root=include_root, extra=list(extra)))  # type: ignore[arg-type]
        key.write_bytes(leaf.key_pem())
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(chain, key)
        if max_version is not None:
            self.ctx.maximum_version = max_version
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)  # so that the accept loop notices a stop promptly
        self.port: int = self.sock.getsockname()[1]
        self.conns: list[Conn] = []
        self.requests: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TLSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self.sock.close()
        self._thread.join(5)

    def url(self, path: str = "/", host: str = "updates.test") -> str:
        return f"https://{host}:{self.port}{path}"

    @property
    def handshakes(self) -> int:
        return sum(1 for c in self.conns if c.handshake_ok)

    def wait_idle(self, timeout: float = 5.0) -> None:
        for conn in list(self.conns):
            conn.done.wait(timeout)

    def _accept(self) -> None:
        while not self._stop:
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn = Conn()
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(raw, conn), daemon=True).start()

    def _serve(self, raw: socket.socket, conn: Conn) -> None:
        raw.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
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
                        # and the resumption test needs this one kept.
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
                route = self.routes.get(path.split("?")[0])
                if route is None:
                    resp = Response(404, b"not found")
                elif isinstance(route, Response):
                    resp = route
                else:
                    resp = route(path, headers)
                if not self._send(tls, resp):
                    return
        except (OSError, ssl.SSLError, ValueError, IndexError):
            return
        finally:
            try:
                tls.close()
            finally:
                conn.done.set()

    def _send(self, tls: ssl.SSLSocket, resp: Response) -> bool:
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
