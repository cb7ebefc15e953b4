"""Hostile and flaky behaviour for the download tests, on loopback only: routes for
:class:`pinclient._demo.LoopbackServer` (the ``https_server`` fixture) that drop connections, ignore Range, trickle or never end; a tiny
threaded CONNECT proxy (plain or TLS) that records what it saw; and a child-process entry point
(``python -m tests.hostile ARGS``) that runs ``pinclient fetch`` with ``*.test`` names on loopback.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pinclient._demo import Response
from pinclient._pki import Leaf

Route = Callable[[str, dict[str, str]], Response]


@dataclass
class Seen:
    """What a route was asked: one dict of (lower-case) request headers per request."""

    requests: list[dict[str, str]] = field(default_factory=list)

    @property
    def ranges(self) -> list[str | None]:
        return [h.get("range") for h in self.requests]


def ranged(payload: bytes, seen: Seen, *, etag: str | None = '"v1"', last_modified: str | None = None,
           drop_after: dict[int, int] | None = None, ignore_range: bool = False,
           statuses: dict[int, Response] | None = None) -> Route:
    """Serve ``payload`` with Range/If-Range support like a static file server.

    ``drop_after={n: k}`` cuts the connection after ``k`` body bytes of request number ``n`` (0-based);
    ``ignore_range`` answers every request with the whole file (200); ``statuses={n: response}``
    answers request ``n`` with that response instead.
    """

    def route(path: str, headers: dict[str, str]) -> Response:
        n = len(seen.requests)
        seen.requests.append(headers)
        if statuses and n in statuses:
            return statuses[n]
        meta = {}
        if etag:
            meta["ETag"] = etag
        if last_modified:
            meta["Last-Modified"] = last_modified
        start = 0
        wanted = headers.get("range", "")
        if_range = headers.get("if-range")
        if wanted.startswith("bytes=") and not ignore_range and if_range in (None, etag, last_modified):
            start = int(wanted[6:].split("-")[0])
        body = payload[start:]
        status = 206 if start else 200
        if start:
            meta["Content-Range"] = f"bytes {start}-{len(payload) - 1}/{len(payload)}"
        cut = (drop_after or {}).get(n)
        if cut is None:
            return Response(status, body, headers=meta)

        def dropped() -> Iterator[bytes]:
            yield body[:cut]
            raise ConnectionResetError("hostile server drops the connection mid-body")

        return Response(status, dropped, headers=meta, content_length=len(body))

    return route


def trickle(data: bytes, interval: float, stop: threading.Event) -> Callable[[], Iterator[bytes]]:
    """A body that sends one byte every ``interval`` seconds (slow retrieval)."""

    def body() -> Iterator[bytes]:
        for i in range(len(data)):
            if stop.wait(interval):
                return
            yield data[i : i + 1]

    return body


def endless(counter: dict[str, int], chunk_size: int = 65536, cap: int = 1 << 30) -> Callable[[], Iterator[bytes]]:
    """A body that never ends (up to ``cap`` bytes), counting what it sent in ``counter["sent"]``."""
    chunk = b"E" * chunk_size

    def body() -> Iterator[bytes]:
        while counter.setdefault("sent", 0) < cap:
            counter["sent"] += len(chunk)
            yield chunk

    return body


# --------------------------------------------------------------------------- a CONNECT proxy


@dataclass
class Tunnel:
    request_head: bytes = b""  # everything the client sent before the tunnel opened
    target: str = ""
    client_bytes: bytearray = field(default_factory=bytearray)  # what went through, client -> origin


class ConnectProxy:
    """A threaded CONNECT-only proxy on 127.0.0.1 (not the update server: it relays bytes both ways
    instead of answering requests, so it has its own loop). With ``leaf`` it speaks TLS to the client (an
    ``https://`` proxy). It resolves ``*.test`` to loopback, records every request head and every
    tunnelled client byte, and answers anything but CONNECT with 405."""

    def __init__(self, leaf: Leaf | None = None) -> None:
        self.ctx = leaf.server_context() if leaf is not None else None
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.tunnels: list[Tunnel] = []
        self.connections = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.ctx else 'http'}://proxy.test:{self.port}"

    def __enter__(self) -> ConnectProxy:
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.sock.close()
        self._accepter.join(5)
        for t in self._threads:
            t.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        client: socket.socket = raw
        upstream: socket.socket | None = None
        tunnel = Tunnel()
        self.tunnels.append(tunnel)
        try:
            if self.ctx is not None:
                client = self.ctx.wrap_socket(raw, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(4096)
                if not data:
                    return
                head += data
            head, _, rest = head.partition(b"\r\n\r\n")
            tunnel.request_head = head
            method, target = head.split(b" ")[:2]
            if method != b"CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            tunnel.target = target.decode()
            host, _, port = tunnel.target.rpartition(":")
            if not (host.endswith(".test") or host in ("127.0.0.1", "localhost")):
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                tunnel.client_bytes += rest
                upstream.sendall(rest)
            self._pipe(client, upstream, tunnel)
        except (OSError, ValueError):
            return
        finally:
            if upstream is not None:
                upstream.close()
            client.close()

    def _pipe(self, client: socket.socket, upstream: socket.socket, tunnel: Tunnel) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(client, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                for key, _ in sel.select(0.1):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    if src is client:
                        tunnel.client_bytes += data
                    key.data.sendall(data)
                # A TLS client socket may hold decrypted bytes the selector cannot see.
                if isinstance(client, ssl.SSLSocket):
                    while client.pending():
                        data = client.recv(65536)
                        tunnel.client_bytes += data
                        upstream.sendall(data)
        finally:
            sel.close()


# --------------------------------------------------------------------------- child processes


def child_main(argv: list[str]) -> int:
    """``pinclient fetch ARGS`` with ``*.test`` resolved to 127.0.0.1, as the test suite does."""
    real = socket.getaddrinfo

    def loopback(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.rstrip(".").endswith(".test"):
            name = "127.0.0.1"
        return real(name, *args, **kwargs)

    socket.getaddrinfo = loopback  # type: ignore[assignment]
    from pinclient._cli.main import main

    return main(["fetch", *argv])


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll until ``predicate()`` (a synchronisation helper, not a timing assertion)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
